//! `Broker`: the operations request handlers call. Reads go straight to the
//! catalog and the store; every change is a `Command` proposed to the writer.

use std::ops::ControlFlow;
use std::sync::Arc;

use openraft::async_runtime::WatchReceiver;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::catalog::{Catalog, TopicView};
use super::command::{Applied, AutoCreate, Command, NewRecord};
use super::error::{BrokerError, BrokerResult};
use super::members::Members;
use super::names::{is_internal, validate_group_id, validate_topic_name};
use super::partitioner::partition_for_key;
use super::state_machine::StateMachine;
use super::writer::{Durability, Writer, WriterThread, await_applied};
use crate::cluster::types::{META_GROUP, partition_group};
use crate::cluster::{ClusterNode, ClusterSettings, SharedState};
use crate::observe::metrics::Metrics;
use crate::storage::{Store, TopicConfig};

/// Settings of the core, taken from the broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub node_id: u32,
    /// Client address other parties should use (`host:port`).
    pub advertised_addr: String,
    pub auto_create_topics: bool,
    pub default_partitions: u32,
    pub default_topic_config: TopicConfig,
    /// Largest key + value accepted in one record.
    pub max_message_bytes: usize,
    pub durability: Durability,
}

/// Acknowledgement of a produce: where the records went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceAck {
    pub partition: u32,
    pub base_offset: u64,
    pub count: u32,
    pub timestamp_ms: i64,
}

/// A consumer group with its live member count and committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub topic: String,
    pub group: String,
    pub members: u32,
    pub offsets: Vec<(u32, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    pub leader_id: String,
    pub leader_addr: String,
    pub epoch: u64,
    pub state: &'static str,
    pub replicas: Vec<String>,
    pub isr: Vec<String>,
    pub start_offset: u64,
    pub end_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMember {
    pub node_id: String,
    pub address: String,
    pub role: &'static str,
    pub state: &'static str,
}

/// Where one partition's retained log starts and ends.
struct Position {
    topic_id: u32,
    partition: u32,
    start: u64,
    end: u64,
}

/// How much one FETCH may return and examine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Most records returned.
    pub max_records: usize,
    /// Most records examined (matters with a filter).
    pub max_scanned: usize,
}

/// Lag of a group on one partition (GET_LAG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    pub committed: u64,
    pub latest: u64,
    pub lag: u64,
}

/// How commands become durable: the local group-commit writer (standalone)
/// or Raft groups (cluster mode).
enum Replication {
    Local {
        writer: Writer,
        thread: parking_lot::Mutex<Option<WriterThread>>,
    },
    Cluster(Arc<ClusterNode>),
}

pub struct Broker {
    store: Store,
    catalog: Arc<Catalog>,
    replication: Replication,
    members: Members,
    metrics: Arc<Metrics>,
    settings: BrokerSettings,
    cluster_id: String,
    ready: AtomicBool,
}

/// Waits (briefly) until a just-created topic is visible here: in cluster
/// mode a topic created through another broker reaches this one when the
/// metadata group's entry is applied locally.
async fn wait_for_topic(catalog: &Catalog, name: &str) {
    wait_for_topic_where(catalog, name, |_| true).await;
}

/// Waits (briefly) until this broker's catalog shows a change proposed
/// elsewhere (a forwarded proposal is applied here a moment later).
async fn wait_for_topic_where(catalog: &Catalog, name: &str, done: impl Fn(&TopicView) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !catalog.topic(name).is_some_and(|t| done(&t)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a SUBSCRIBE start mode asks for.
fn start_offset(mode: &str, start: u64, end: u64, committed: Option<u64>) -> BrokerResult<u64> {
    match mode {
        "earliest" => Ok(start),
        "latest" | "" => Ok(end),
        "commit" => Ok(committed.unwrap_or(start)),
        other => Err(BrokerError::UnknownSubscribeMode(other.to_owned())),
    }
}

impl Broker {
    /// Opens the core on `store`: loads state and starts the writer thread.
    pub fn open(store: Store, settings: BrokerSettings, metrics: Arc<Metrics>) -> Result<Self, crate::StartError> {
        let machine = StateMachine::load(store.clone())?;
        let catalog = Arc::new(Catalog::load(store.load_topics()?));
        let cluster_id = Self::load_or_stamp_cluster_id(&store)?;
        let (writer, thread) = Writer::start(
            machine,
            store.clone(),
            catalog.clone(),
            settings.durability,
            metrics.clone(),
        )
        .map_err(|e| crate::StartError::Thread(e.to_string()))?;
        Ok(Self {
            store,
            catalog,
            replication: Replication::Local {
                writer,
                thread: parking_lot::Mutex::new(Some(thread)),
            },
            members: Members::default(),
            metrics,
            settings,
            cluster_id,
            ready: AtomicBool::new(false),
        })
    }

    /// Opens the core in cluster mode: every change goes through a Raft group.
    pub async fn open_cluster(
        store: Store,
        settings: BrokerSettings,
        metrics: Arc<Metrics>,
        cluster: ClusterSettings,
    ) -> Result<Self, crate::StartError> {
        let machine = StateMachine::load(store.clone())?;
        let catalog = Arc::new(Catalog::load(store.load_topics()?));
        let shared = Arc::new(SharedState {
            store: store.clone(),
            machine: parking_lot::Mutex::new(machine),
            catalog: catalog.clone(),
        });
        let node = ClusterNode::start(cluster, shared, metrics.clone())
            .await
            .map_err(|e| crate::StartError::Cluster(e.to_string()))?;
        Ok(Self {
            store,
            catalog,
            replication: Replication::Cluster(node),
            members: Members::default(),
            metrics,
            settings,
            cluster_id: String::new(),
            ready: AtomicBool::new(false),
        })
    }

    /// The cluster node, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<ClusterNode>> {
        match &self.replication {
            Replication::Cluster(node) => Some(node),
            Replication::Local { .. } => None,
        }
    }

    /// The Raft group a command belongs to (cluster mode).
    fn group_for(&self, command: &Command) -> u64 {
        match command {
            Command::Append { topic, partition, .. } => self
                .catalog
                .topic(topic)
                .map_or(META_GROUP, |t| partition_group(t.record.id, *partition)),
            Command::Truncate {
                topic_id, partition, ..
            } => partition_group(*topic_id, *partition),
            _ => META_GROUP,
        }
    }

    /// Queues a command; the receiver yields its result once durable.
    fn submit(&self, command: Command) -> tokio::sync::oneshot::Receiver<BrokerResult<Applied>> {
        match &self.replication {
            Replication::Local { writer, .. } => writer.submit(command),
            Replication::Cluster(node) => {
                let group = self.group_for(&command);
                node.submit(group, command)
            }
        }
    }

    /// The cluster id is stamped on disk on first start and never changes.
    fn load_or_stamp_cluster_id(store: &Store) -> Result<String, crate::StartError> {
        if let Some(id) = store.get_cluster_value("cluster_id")? {
            return String::from_utf8(id).map_err(|_| crate::StartError::Storage("cluster id is not UTF-8".into()));
        }
        let id = format!("flymq-{:016x}", rand_u64());
        let mut batch = rocksdb::WriteBatch::default();
        store.put_cluster_value(&mut batch, "cluster_id", id.as_bytes());
        store.write(batch, true)?;
        Ok(id)
    }

    /// Stops the writer after the queued commands and waits for it.
    pub fn close(&self) {
        self.ready.store(false, Ordering::SeqCst);
        if let Replication::Local { writer, thread } = &self.replication {
            writer.stop();
            if let Some(thread) = thread.lock().take() {
                thread.join();
            }
        }
        self.store.quiesce();
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    pub fn node_id(&self) -> String {
        self.settings.node_id.to_string()
    }

    pub fn cluster_id(&self) -> String {
        match self.cluster() {
            Some(node) => node.cluster_id(),
            None => self.cluster_id.clone(),
        }
    }

    /// Serving: started, and in cluster mode joined with a metadata leader known
    /// and the local metadata state caught up with what is committed.
    pub fn is_ready(&self) -> bool {
        if !self.ready.load(Ordering::SeqCst) {
            return false;
        }
        match self.cluster() {
            None => true,
            Some(node) => {
                let meta = node.meta();
                let metrics = meta.raft.metrics().borrow_watched().clone();
                node.has_joined()
                    && metrics.current_leader.is_some()
                    && metrics.last_applied.as_ref().map(|l| l.index)
                        >= metrics.local_committed.as_ref().map(|l| l.index)
            }
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn members(&self) -> &Members {
        &self.members
    }

    pub async fn propose(&self, command: Command) -> BrokerResult<Applied> {
        await_applied(self.submit(command)).await
    }

    fn topic(&self, name: &str) -> BrokerResult<Arc<TopicView>> {
        self.catalog
            .topic(name)
            .ok_or_else(|| BrokerError::TopicNotFound(name.to_owned()))
    }

    fn checked_partition(view: &TopicView, partition: i32) -> BrokerResult<u32> {
        let count = view.partition_count();
        match u32::try_from(partition) {
            Ok(p) if p < count => Ok(p),
            _ => Err(BrokerError::PartitionNotFound {
                topic: view.name().to_owned(),
                partition: partition.into(),
                count,
            }),
        }
    }

    /// Whether this broker leads the partition (always, standalone).
    pub fn leads(&self, topic_id: u32, partition: u32) -> bool {
        match self.cluster() {
            None => true,
            Some(node) => node
                .group(partition_group(topic_id, partition))
                .is_some_and(|g| g.raft.is_leader()),
        }
    }

    /// Cluster mode: a read of a partition with no replica here is redirected
    /// to the broker that leads it (or its preferred leader).
    fn check_local_replica(&self, view: &TopicView, partition: u32) -> BrokerResult<()> {
        let Some(node) = self.cluster() else { return Ok(()) };
        let group = partition_group(view.record.id, partition);
        if node.group(group).is_some() {
            return Ok(());
        }
        let target = node
            .replicas_of(group)
            .first()
            .and_then(|id| node.node_info(*id))
            .map(|info| info.client_addr);
        Err(BrokerError::NotLeader(match target {
            Some(addr) => format!(
                "leader_addr={addr} (partition {partition} of '{}' has no replica on this broker)",
                view.name()
            ),
            None => "no leader elected".into(),
        }))
    }

    /// The published position of one addressed partition.
    fn position(&self, topic: &str, partition: i32) -> BrokerResult<Position> {
        let view = self.topic(topic)?;
        let p = Self::checked_partition(&view, partition)?;
        self.check_local_replica(&view, p)?;
        let state = view
            .partition(p)
            .ok_or_else(|| BrokerError::TopicNotFound(topic.to_owned()))?;
        Ok(Position {
            topic_id: view.record.id,
            partition: p,
            start: state.start_offset(),
            end: state.next_offset(),
        })
    }

    // ---- topics ----

    /// Creates a topic; `Ok(false)` when it already existed.
    pub async fn create_topic(&self, name: &str, partitions: i32) -> BrokerResult<bool> {
        validate_topic_name(name)?;
        let partitions = match partitions {
            0 => 1,
            p if p < 0 => {
                return Err(BrokerError::InvalidArgument(format!(
                    "partition count {p} for topic '{name}' must be positive"
                )));
            }
            p => p as u32,
        };
        self.create_topic_with(name, partitions, 0, self.settings.default_topic_config.clone())
            .await
    }

    /// Creates a topic with an explicit replication factor (0 = the default)
    /// and configuration; `Ok(false)` when it already existed. Returns once
    /// the topic is visible on this broker.
    pub async fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        config: TopicConfig,
    ) -> BrokerResult<bool> {
        validate_topic_name(name)?;
        let command = self.create_topic_command(name, partitions, replication_factor, config)?;
        let created = match self.propose(command).await? {
            Applied::TopicCreated { created } => created,
            other => return Err(unexpected(other)),
        };
        wait_for_topic(&self.catalog, name).await;
        Ok(created)
    }

    fn create_topic_command(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        config: TopicConfig,
    ) -> BrokerResult<Command> {
        let replicas = match self.cluster() {
            Some(node) => node.assign(name, partitions, replication_factor)?,
            None if replication_factor > 1 => {
                return Err(BrokerError::InvalidArgument(format!(
                    "replication factor {replication_factor} needs a cluster; a standalone broker keeps one copy"
                )));
            }
            None => Vec::new(),
        };
        Ok(Command::CreateTopic {
            name: name.to_owned(),
            partitions,
            config,
            created_ms: now_ms(),
            replicas,
        })
    }

    /// Replaces a topic's retention settings.
    pub async fn update_topic_config(&self, name: &str, config: TopicConfig) -> BrokerResult<()> {
        self.topic(name)?;
        let command = Command::UpdateTopicConfig {
            name: name.to_owned(),
            config: config.clone(),
        };
        match self.propose(command).await? {
            Applied::TopicUpdated => {}
            other => return Err(unexpected(other)),
        }
        wait_for_topic_where(&self.catalog, name, |t| t.record.config == config).await;
        Ok(())
    }

    /// Grows a topic to `partitions` in total; returns the previous count.
    /// New partitions get replicas like a new topic's (cluster mode).
    pub async fn add_partitions(&self, name: &str, partitions: u32) -> BrokerResult<u32> {
        let view = self.topic(name)?;
        let current = view.record.partitions;
        let replicas = match self.cluster() {
            Some(node) if partitions > current => {
                let rf = view.record.replicas.first().map_or(1, Vec::len) as u32;
                let mut all = node.assign(name, partitions, rf)?;
                all.split_off(current as usize)
            }
            _ => Vec::new(),
        };
        let command = Command::AddPartitions {
            name: name.to_owned(),
            partitions,
            replicas,
        };
        let previous = match self.propose(command).await? {
            Applied::PartitionsAdded { previous } => previous,
            other => return Err(unexpected(other)),
        };
        wait_for_topic_where(&self.catalog, name, |t| t.record.partitions >= partitions).await;
        Ok(previous)
    }

    /// Deletes a topic; `Ok(false)` when it did not exist.
    pub async fn delete_topic(&self, name: &str) -> BrokerResult<bool> {
        match self.propose(Command::DeleteTopic { name: name.to_owned() }).await? {
            Applied::TopicDeleted { existed } => Ok(existed),
            other => Err(unexpected(other)),
        }
    }

    /// Visible topic names, sorted (internal `__` topics hidden).
    pub fn list_topics(&self) -> Vec<String> {
        self.catalog
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|n| !is_internal(n))
            .collect()
    }

    /// Partition metadata for one topic, or every visible topic when `topic` is empty.
    pub fn topic_metadata(&self, topic: &str) -> BrokerResult<Vec<TopicInfo>> {
        let views = if topic.is_empty() {
            self.catalog
                .topics()
                .into_iter()
                .filter(|t| !is_internal(t.name()))
                .collect()
        } else {
            vec![self.topic(topic)?]
        };
        if let Some(cluster) = self.cluster() {
            return Ok(views
                .iter()
                .map(|view| self.cluster_topic_info(cluster, view))
                .collect());
        }
        let node = self.node_id();
        Ok(views
            .iter()
            .map(|view| TopicInfo {
                name: view.name().to_owned(),
                partitions: view
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| PartitionInfo {
                        partition: i as u32,
                        leader_id: node.clone(),
                        leader_addr: self.settings.advertised_addr.clone(),
                        epoch: 1,
                        state: "online",
                        replicas: vec![node.clone()],
                        isr: vec![node.clone()],
                        start_offset: p.start_offset(),
                        end_offset: p.next_offset(),
                    })
                    .collect(),
            })
            .collect())
    }

    pub fn cluster_members(&self) -> Vec<ClusterMember> {
        let Some(cluster) = self.cluster() else {
            return vec![ClusterMember {
                node_id: self.node_id(),
                address: self.settings.advertised_addr.clone(),
                role: "leader",
                state: if self.is_ready() { "online" } else { "starting" },
            }];
        };
        let meta = cluster.group_view(META_GROUP);
        cluster
            .members()
            .into_iter()
            .map(|(id, info, voter)| ClusterMember {
                node_id: id.to_string(),
                address: info.client_addr,
                role: match (meta.leader == Some(id), voter) {
                    (true, _) => "leader",
                    (false, true) => "follower",
                    (false, false) => "learner",
                },
                state: if meta.in_sync.contains(&id) || meta.leader == Some(id) {
                    "online"
                } else {
                    "unknown"
                },
            })
            .collect()
    }

    fn cluster_topic_info(&self, cluster: &Arc<ClusterNode>, view: &TopicView) -> TopicInfo {
        let addr = |id: u64| cluster.node_info(id).map(|i| i.client_addr).unwrap_or_default();
        TopicInfo {
            name: view.name().to_owned(),
            partitions: view
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let group = partition_group(view.record.id, i as u32);
                    let g = cluster.group_view(group);
                    let replicas = view.record.replicas.get(i).cloned().unwrap_or_default();
                    // Not a replica here: point at the preferred leader, which redirects if needed.
                    let leader = g.leader.or_else(|| replicas.first().copied());
                    PartitionInfo {
                        partition: i as u32,
                        leader_id: leader.map(|l| l.to_string()).unwrap_or_default(),
                        leader_addr: leader.map(addr).unwrap_or_default(),
                        epoch: g.term,
                        state: if g.leader.is_some() || !g.local {
                            "online"
                        } else {
                            "offline"
                        },
                        replicas: replicas.iter().map(u64::to_string).collect(),
                        isr: g.in_sync.iter().map(u64::to_string).collect(),
                        start_offset: p.start_offset(),
                        end_offset: p.next_offset(),
                    }
                })
                .collect(),
        }
    }

    // ---- produce ----

    /// Validates a produce and queues it; await the returned future for the
    /// durable acknowledgement. Queueing happens before this returns, so
    /// produces from one connection are applied in the order they arrived.
    pub fn submit_produce(
        &self,
        topic: &str,
        partition: i32,
        records: Vec<NewRecord>,
    ) -> BrokerResult<impl Future<Output = BrokerResult<ProduceAck>> + Send + 'static> {
        if records.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "a produce must carry at least one record".into(),
            ));
        }
        let max = self.settings.max_message_bytes;
        if let Some(big) = records.iter().find(|r| r.key.len() + r.value.len() > max) {
            return Err(BrokerError::InvalidArgument(format!(
                "message too large: {} bytes exceeds max_message_bytes ({max}); raise FLYMQ_MAX_MESSAGE_BYTES or split the message",
                big.key.len() + big.value.len()
            )));
        }
        let (count, view, auto_create) = match self.catalog.topic(topic) {
            Some(view) => (view.partition_count(), Some(view), None),
            None if self.settings.auto_create_topics => {
                validate_topic_name(topic)?;
                let auto = AutoCreate {
                    partitions: self.settings.default_partitions,
                    config: self.settings.default_topic_config.clone(),
                };
                (auto.partitions, None, Some(auto))
            }
            None => return Err(BrokerError::TopicNotFound(topic.to_owned())),
        };
        let partition = match partition {
            p if p >= 0 => {
                if p as u32 >= count {
                    return Err(BrokerError::PartitionNotFound {
                        topic: topic.to_owned(),
                        partition: p.into(),
                        count,
                    });
                }
                p as u32
            }
            -1 if !records[0].key.is_empty() => partition_for_key(&records[0].key, count),
            -1 => view.as_ref().map_or(0, |v| v.next_round_robin()),
            p => {
                return Err(BrokerError::PartitionNotFound {
                    topic: topic.to_owned(),
                    partition: p.into(),
                    count,
                });
            }
        };
        let bytes: u64 = records.iter().map(|r| (r.key.len() + r.value.len()) as u64).sum();
        let messages = records.len() as u64;
        let append = Command::Append {
            topic: topic.to_owned(),
            partition,
            timestamp_ms: now_ms(),
            records,
            auto_create: None,
        };
        // Standalone: the writer creates a missing topic in the same commit.
        // Cluster: the metadata group creates it first, then the partition group appends.
        let (rx, create) = match (self.cluster(), auto_create) {
            (None, auto_create) => (
                Some(self.submit(match append {
                    Command::Append {
                        topic,
                        partition,
                        timestamp_ms,
                        records,
                        ..
                    } => Command::Append {
                        topic,
                        partition,
                        timestamp_ms,
                        records,
                        auto_create,
                    },
                    other => other,
                })),
                None,
            ),
            (Some(node), Some(auto)) => {
                let create = self.create_topic_command(topic, auto.partitions, 0, auto.config)?;
                (None, Some((node.clone(), self.catalog.clone(), create, append)))
            }
            (Some(_), None) => (Some(self.submit(append)), None),
        };
        let metrics = self.metrics.clone();
        let topic = topic.to_owned();
        Ok(async move {
            let rx = match (rx, create) {
                (Some(rx), _) => rx,
                (None, Some((node, catalog, create, append))) => {
                    node.propose(META_GROUP, create).await?;
                    wait_for_topic(&catalog, &topic).await;
                    let view = catalog
                        .topic(&topic)
                        .ok_or_else(|| BrokerError::TopicNotFound(topic.clone()))?;
                    let Command::Append { partition, .. } = &append else {
                        unreachable!("built above as an append")
                    };
                    node.submit(partition_group(view.record.id, *partition), append)
                }
                (None, None) => unreachable!("one of them is set above"),
            };
            match await_applied(rx).await? {
                Applied::Appended {
                    partition,
                    base_offset,
                    count,
                    timestamp_ms,
                } => {
                    metrics.record_produced(&topic, messages, bytes);
                    Ok(ProduceAck {
                        partition,
                        base_offset,
                        count,
                        timestamp_ms,
                    })
                }
                other => Err(unexpected(other)),
            }
        })
    }

    /// Produces one record and waits for the acknowledgement.
    pub async fn produce(&self, topic: &str, partition: i32, key: Bytes, value: Bytes) -> BrokerResult<ProduceAck> {
        self.submit_produce(topic, partition, vec![NewRecord::new(key, value)])?
            .await
    }

    // ---- read ----

    /// CONSUME: the record at `offset`.
    pub fn consume(&self, topic: &str, partition: i32, offset: u64) -> BrokerResult<(Bytes, Bytes)> {
        let view = self.topic(topic)?;
        let count = view.partition_count();
        let p =
            u32::try_from(partition)
                .ok()
                .filter(|p| *p < count)
                .ok_or_else(|| BrokerError::PartitionOutOfRange {
                    topic: topic.to_owned(),
                    partition: partition.into(),
                    count,
                })?;
        let state = view
            .partition(p)
            .ok_or_else(|| BrokerError::TopicNotFound(topic.to_owned()))?;
        let (start, end) = (state.start_offset(), state.next_offset());
        let mut found = None;
        if offset >= start && offset < end {
            self.store.read_records(view.record.id, p, offset, end, |_, r| {
                found = Some((Bytes::copy_from_slice(r.key), Bytes::copy_from_slice(r.value)));
                ControlFlow::Break(())
            })?;
        }
        let record = found.ok_or_else(|| BrokerError::OffsetNotFound {
            topic: topic.to_owned(),
            partition: p,
            offset,
            start,
            end,
        })?;
        self.metrics
            .record_consumed(topic, 1, (record.0.len() + record.1.len()) as u64);
        Ok(record)
    }

    /// FETCH: calls `emit(offset, key, value)` for the records from `offset`
    /// that pass `filter`, within `limits`, until `emit` returns false. Returns the next offset to read.
    pub fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: u64,
        limits: FetchLimits,
        filter: Option<&crate::messaging::filter::RecordFilter>,
        mut emit: impl FnMut(u64, &[u8], &[u8]) -> bool,
    ) -> BrokerResult<u64> {
        let pos = self.position(topic, partition)?;
        let end = pos.end;
        let (mut emitted, mut scanned, mut bytes) = (0usize, 0usize, 0u64);
        let mut did_not_fit = None;
        let next = self
            .store
            .read_records(pos.topic_id, pos.partition, offset, end, |off, r| {
                scanned += 1;
                if filter.is_none_or(|f| f.matches(r.key, r.value)) {
                    if !emit(off, r.key, r.value) {
                        did_not_fit = Some(off);
                        return ControlFlow::Break(());
                    }
                    emitted += 1;
                    bytes += (r.key.len() + r.value.len()) as u64;
                }
                if emitted >= limits.max_records || scanned >= limits.max_scanned {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
        self.metrics.record_consumed(topic, emitted as u64, bytes);
        // A record that did not fit in the response is read again next time.
        Ok(did_not_fit.unwrap_or(next))
    }

    /// First offset at or after `timestamp_ms` (log end when none).
    pub fn offset_for_timestamp(&self, topic: &str, partition: i32, timestamp_ms: i64) -> BrokerResult<u64> {
        let pos = self.position(topic, partition)?;
        Ok(self
            .store
            .offset_for_timestamp(pos.topic_id, pos.partition, pos.start, pos.end, timestamp_ms)?)
    }

    // ---- consumer groups ----

    /// SUBSCRIBE: the start offset for `mode`; with a group id, creates the
    /// group and registers `connection` as a member.
    pub async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        partition: i32,
        mode: &str,
        connection: u64,
    ) -> BrokerResult<u64> {
        let pos = self.position(topic, partition)?;
        let committed = if group.is_empty() {
            None
        } else {
            self.store.committed_offset(topic, group, pos.partition)?
        };
        let offset = start_offset(mode, pos.start, pos.end, committed)?;
        if !group.is_empty() {
            validate_group_id(group)?;
            if !self.store.group_exists(topic, group)? {
                self.propose(Command::EnsureGroup {
                    topic: topic.to_owned(),
                    group: group.to_owned(),
                })
                .await?;
            }
            self.members.join(connection, topic, group);
        }
        Ok(offset)
    }

    /// COMMIT: stores `offset` as the group's next offset to read.
    pub fn submit_commit(
        &self,
        topic: &str,
        group: &str,
        partition: i32,
        offset: u64,
    ) -> BrokerResult<impl Future<Output = BrokerResult<()>> + Send + 'static> {
        validate_group_id(group)?;
        let partition = u32::try_from(partition)
            .map_err(|_| BrokerError::InvalidArgument(format!("partition {partition} must not be negative")))?;
        let rx = self.submit(Command::CommitOffset {
            topic: topic.to_owned(),
            group: group.to_owned(),
            partition,
            offset,
        });
        Ok(async move { await_applied(rx).await.map(|_| ()) })
    }

    pub async fn commit(&self, topic: &str, group: &str, partition: i32, offset: u64) -> BrokerResult<()> {
        self.submit_commit(topic, group, partition, offset)?.await
    }

    fn require_group(&self, topic: &str, group: &str) -> BrokerResult<()> {
        if self.store.group_exists(topic, group)? {
            Ok(())
        } else {
            Err(BrokerError::GroupNotFound {
                topic: topic.to_owned(),
                group: group.to_owned(),
            })
        }
    }

    /// GET_OFFSET: committed offset, 0 when the group has none for the partition.
    pub fn committed_offset(&self, topic: &str, group: &str, partition: i32) -> BrokerResult<u64> {
        self.require_group(topic, group)?;
        let Ok(p) = u32::try_from(partition) else { return Ok(0) };
        Ok(self.store.committed_offset(topic, group, p)?.unwrap_or(0))
    }

    /// RESET_OFFSET: sets the committed offset to earliest, latest or `offset`.
    pub async fn reset_offset(
        &self,
        topic: &str,
        group: &str,
        partition: i32,
        mode: &str,
        offset: u64,
    ) -> BrokerResult<()> {
        let target = match mode {
            "offset" => offset,
            "earliest" | "latest" => {
                let pos = self.position(topic, partition)?;
                if mode == "earliest" { pos.start } else { pos.end }
            }
            other => return Err(BrokerError::UnknownResetMode(other.to_owned())),
        };
        self.commit(topic, group, partition, target).await
    }

    /// GET_LAG for one partition.
    pub fn lag(&self, topic: &str, group: &str, partition: i32) -> BrokerResult<Lag> {
        self.require_group(topic, group)?;
        let pos = self.position(topic, partition)?;
        let committed = self.store.committed_offset(topic, group, pos.partition)?.unwrap_or(0);
        let latest = pos.end;
        Ok(Lag {
            committed,
            latest,
            lag: latest.saturating_sub(committed),
        })
    }

    pub fn list_groups(&self) -> BrokerResult<Vec<GroupInfo>> {
        Ok(self
            .store
            .list_groups()?
            .into_iter()
            .map(|g| GroupInfo {
                members: self.members.count(&g.topic, &g.group),
                topic: g.topic,
                group: g.group,
                offsets: g.offsets,
            })
            .collect())
    }

    pub fn describe_group(&self, topic: &str, group: &str) -> BrokerResult<GroupInfo> {
        self.require_group(topic, group)?;
        let offsets = self
            .store
            .list_groups()?
            .into_iter()
            .find(|g| g.topic == topic && g.group == group)
            .map(|g| g.offsets)
            .unwrap_or_default();
        Ok(GroupInfo {
            topic: topic.to_owned(),
            group: group.to_owned(),
            members: self.members.count(topic, group),
            offsets,
        })
    }

    pub async fn delete_group(&self, topic: &str, group: &str) -> BrokerResult<()> {
        self.require_group(topic, group)?;
        self.propose(Command::DeleteGroup {
            topic: topic.to_owned(),
            group: group.to_owned(),
        })
        .await
        .map(|_| ())
    }

    /// Refreshes the gauges that need a scan; called when metrics are scraped.
    pub fn refresh_gauges(&self) {
        self.metrics.storage_size.set(self.store.approximate_size() as i64);
        if let Some(node) = self.cluster() {
            node.refresh_metrics();
        }
        self.metrics.group_lag.clear();
        let Ok(groups) = self.store.list_groups() else { return };
        for group in groups {
            let Some(view) = self.catalog.topic(&group.topic) else {
                continue;
            };
            for (partition, committed) in group.offsets {
                if let Some(state) = view.partition(partition) {
                    let labels = crate::observe::metrics::LagLabels {
                        topic: group.topic.clone(),
                        group: group.group.clone(),
                        partition,
                    };
                    self.metrics
                        .group_lag
                        .get_or_create(&labels)
                        .set(state.next_offset().saturating_sub(committed) as i64);
                }
            }
        }
    }
}

fn unexpected(applied: Applied) -> BrokerError {
    BrokerError::Storage(format!("internal error: unexpected apply result {applied:?}"))
}

/// A random u64 without pulling in a RNG crate: hash the time and process id.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    hasher.finish()
}
