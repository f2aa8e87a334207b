//! `Broker`: the operations request handlers call. Reads go straight to the
//! catalog and the store; every change is a `Command` given to the
//! `Replicator`. The operations themselves live next to this file, one
//! concern each: `topics`, `produce`, `read`, `groups`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::catalog::{Catalog, TopicView};
use super::command::{Applied, Command};
use super::error::{BrokerError, BrokerResult};
use super::local::LocalReplicator;
use super::members::Members;
use super::replicator::Replicator;
use super::writer::{Durability, await_applied};
use crate::auth::Security;
use crate::observe::metrics::Metrics;
use crate::storage::{StorageError, Store, TopicConfig};
use flymq_security::SecuritySettings;

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
    /// Auth on/off, anonymous access, default-public (WIRE.md §6.4).
    pub security: SecuritySettings,
    /// Newest audit events kept in the replicated trail.
    pub audit_max_entries: u64,
    /// An open transaction without a request for this long is aborted.
    pub transaction_timeout: std::time::Duration,
}

/// Where one partition's retained log starts and ends.
pub(super) struct Position {
    pub topic_id: u32,
    pub partition: u32,
    pub start: u64,
    pub end: u64,
}

pub struct Broker {
    pub(super) store: Store,
    pub(super) catalog: Arc<Catalog>,
    pub(super) replicator: Arc<dyn Replicator>,
    pub(super) members: Members,
    pub(super) metrics: Arc<Metrics>,
    pub(super) settings: BrokerSettings,
    pub(super) transactions: super::transactions::Transactions,
    pub(super) deliveries: super::dlq::Deliveries,
    pub(super) schemas: Arc<super::schemas::SchemaCache>,
    security: Security,
    ready: AtomicBool,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Broker {
    /// Opens a standalone broker on `store`: loads state and starts the writer thread.
    pub fn open(store: Store, settings: BrokerSettings, metrics: Arc<Metrics>) -> Result<Self, crate::StartError> {
        let catalog = Arc::new(Catalog::load(store.load_topics()?));
        catalog.init_security(settings.security, &store.load_security_state()?);
        let replicator = LocalReplicator::start(
            store.clone(),
            catalog.clone(),
            settings.durability,
            metrics.clone(),
            settings.node_id,
            settings.advertised_addr.clone(),
        )?;
        Ok(Self::with_replicator(
            store,
            catalog,
            Arc::new(replicator),
            settings,
            metrics,
        ))
    }

    /// A broker whose commands go to `replicator` (cluster mode builds its
    /// Raft node first, on the same store and catalog).
    pub fn with_replicator(
        store: Store,
        catalog: Arc<Catalog>,
        replicator: Arc<dyn Replicator>,
        settings: BrokerSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            catalog,
            replicator,
            members: Members::default(),
            transactions: super::transactions::Transactions::new(settings.transaction_timeout),
            deliveries: Default::default(),
            schemas: Default::default(),
            metrics,
            security: Security::new(settings.audit_max_entries),
            settings,
            ready: AtomicBool::new(false),
        }
    }

    /// Stops the replicator after the queued commands and quiesces storage.
    pub fn close(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.replicator.close();
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

    pub fn security(&self) -> &Security {
        &self.security
    }

    /// The current authorization snapshot.
    pub fn authorizer(&self) -> flymq_security::Authorizer {
        self.catalog.authorizer()
    }

    pub fn replicator(&self) -> &Arc<dyn Replicator> {
        &self.replicator
    }

    pub fn node_id(&self) -> String {
        self.settings.node_id.to_string()
    }

    pub fn cluster_id(&self) -> String {
        self.replicator.cluster_id()
    }

    /// Serving: started, and (in cluster mode) joined and caught up.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.replicator.is_ready()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn members(&self) -> &Members {
        &self.members
    }

    /// Proposes a command and waits until it is durable.
    pub async fn propose(&self, command: Command) -> BrokerResult<Applied> {
        await_applied(self.replicator.submit(command)).await
    }

    /// Waits until this broker's metadata includes every metadata write
    /// committed anywhere before the call (see `Replicator::metadata_barrier`):
    /// explicit reads of offsets, groups and schemas call it first.
    pub async fn metadata_barrier(&self) -> BrokerResult<()> {
        self.replicator.metadata_barrier().await
    }

    /// Runs a read of the store on a blocking thread: a RocksDB read can
    /// wait for the disk, which must not stall an async worker.
    pub(super) async fn read_store<T: Send + 'static>(
        &self,
        what: &'static str,
        read: impl FnOnce(&Store) -> Result<T, StorageError> + Send + 'static,
    ) -> BrokerResult<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || read(&store))
            .await
            .map_err(|e| BrokerError::Storage(format!("reading {what} failed: {e}")))?
            .map_err(BrokerError::from)
    }

    pub(super) fn topic(&self, name: &str) -> BrokerResult<Arc<TopicView>> {
        self.catalog
            .topic(name)
            .ok_or_else(|| BrokerError::TopicNotFound(name.to_owned()))
    }

    pub(super) fn checked_partition(view: &TopicView, partition: i32) -> BrokerResult<u32> {
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
        self.replicator.leads(topic_id, partition)
    }

    /// The published position of one addressed partition, readable here.
    pub(super) fn position(&self, topic: &str, partition: i32) -> BrokerResult<Position> {
        let view = self.topic(topic)?;
        let p = Self::checked_partition(&view, partition)?;
        self.replicator.check_readable(&view, p)?;
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

    /// Refreshes the gauges that need a scan; called when metrics are scraped.
    pub fn refresh_gauges(&self) {
        self.metrics.storage_size.set(self.store.approximate_size() as i64);
        self.replicator.refresh_metrics();
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

pub(crate) fn unexpected(applied: Applied) -> BrokerError {
    BrokerError::Storage(format!("internal error: unexpected apply result {applied:?}"))
}
