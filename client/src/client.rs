//! The low-level client: one pipelined connection with bootstrap failover,
//! and one typed method per protocol operation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flymq_proto::{
    AuthRequest, BatchRecord, ClusterMetadata, ClusterMetadataRequest, ClusterStatus, CommitRequest, ConsumeRequest,
    ConsumeResponse, CreateTopicRequest, FetchRequest, FetchResponse, Frame, GroupPartitionRequest, GroupRecord,
    GroupRequest, LagInfo, Opcode, ProduceBatchRequest, ProduceBatchResponse, ProduceDelayedRequest, ProduceRequest,
    ProduceWithTtlRequest, RecordMetadata, Request, ResetOffsetRequest, Response, SeekToTimestampRequest,
    SubscribeRequest, TopicMetadata, TopicRequest,
};

use flymq_security::tls::TlsClient;

use crate::config::{ClientConfig, Credentials, check_address};
use crate::connection::Connection;
use crate::error::{Error, Result};

/// Attempts per request: the first try plus one retry after a broken
/// connection (read-only and idempotent requests only) or a leader redirect.
const MAX_ATTEMPTS: u32 = 3;
/// Most connections kept open to partition leaders learnt from redirects.
const MAX_LEADER_CONNECTIONS: usize = 64;
/// Most (topic, partition) -> leader hints remembered.
const MAX_LEADER_HINTS: usize = 16_384;
/// How long a leader address that refused a connection is avoided (requests
/// go to the bootstrap connection meanwhile, which forwards or redirects).
const UNREACHABLE_FOR: Duration = Duration::from_secs(2);

/// The (topic, partition) a request is about, for leader routing.
type Route<'a> = Option<(&'a str, i32)>;

/// Where a consumer starts reading a partition (SUBSCRIBE mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The first retained offset.
    Earliest,
    /// The log end: only records produced from now on.
    Latest,
    /// The group's committed offset, else the first retained offset.
    #[default]
    Committed,
}

impl StartFrom {
    /// The SUBSCRIBE mode string.
    pub fn mode(self) -> &'static str {
        match self {
            StartFrom::Earliest => flymq_proto::MODE_EARLIEST,
            StartFrom::Latest => flymq_proto::MODE_LATEST,
            StartFrom::Committed => flymq_proto::MODE_COMMIT,
        }
    }
}

/// Target of [`Client::reset_offset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The first retained offset.
    Earliest,
    /// The log end.
    Latest,
    /// An explicit offset.
    Offset(u64),
}

/// Async FlyMQ client. Cheap to clone: clones share one connection, on which
/// requests from all tasks are pipelined.
///
/// ```no_run
/// # async fn demo() -> flymq_client::Result<()> {
/// use flymq_client::{Client, ClientConfig};
///
/// let client = Client::connect(ClientConfig::new(["127.0.0.1:9092"])).await?;
/// client.create_topic("orders", 3).await?;
/// let meta = client.produce("orders", "hello").await?;
/// println!("written to partition {} at offset {}", meta.partition, meta.offset);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    /// The TLS connector built from `config.tls`.
    tls: Option<TlsClient>,
    /// The live connection, if any. A std mutex: only held to clone the Arc.
    current: Mutex<Option<Arc<Connection>>>,
    /// Serialises reconnects so that concurrent failures open one connection.
    connecting: tokio::sync::Mutex<()>,
    /// Index in the bootstrap list of the address to try first.
    next_addr: AtomicUsize,
    /// Connections to partition leaders (from metadata or "not leader" replies).
    leaders: tokio::sync::Mutex<HashMap<String, Arc<Connection>>>,
    /// Leader address per (topic, partition), learnt from CLUSTER_METADATA
    /// answers and from redirects.
    leader_hints: Mutex<HashMap<(String, i32), String>>,
    /// Leader addresses whose last connect attempt failed, with its time.
    unreachable: Mutex<HashMap<String, Instant>>,
    /// Incremented for every new connection.
    generation: AtomicU64,
    /// Requests sent (each attempt) and requests that ended in an error.
    requests_sent: AtomicU64,
    requests_failed: AtomicU64,
}

/// Counters of one [`Client`] since it was created (see [`Client::metrics`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientMetrics {
    /// Requests sent, counting each attempt (retries and redirects included).
    pub requests_sent: u64,
    /// Requests that returned an error to the caller.
    pub requests_failed: u64,
    /// Connections opened (the first one included).
    pub connections: u64,
}

impl Client {
    /// Validates `config` and connects to the first reachable bootstrap broker.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        config.validate()?;
        let tls = config
            .tls
            .as_ref()
            .map(TlsClient::new)
            .transpose()
            .map_err(|e| Error::Config(format!("TLS settings: {e}")))?;
        let client = Client {
            inner: Arc::new(Inner {
                config,
                tls,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                next_addr: AtomicUsize::new(0),
                leaders: tokio::sync::Mutex::new(HashMap::new()),
                leader_hints: Mutex::new(HashMap::new()),
                unreachable: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
                requests_sent: AtomicU64::new(0),
                requests_failed: AtomicU64::new(0),
            }),
        };
        client.connection().await?;
        if let Some(interval) = client.inner.config.keep_alive {
            spawn_keep_alive(Arc::downgrade(&client.inner), interval);
        }
        Ok(client)
    }

    /// The client's counters so far.
    pub fn metrics(&self) -> ClientMetrics {
        ClientMetrics {
            requests_sent: self.inner.requests_sent.load(Ordering::Relaxed),
            requests_failed: self.inner.requests_failed.load(Ordering::Relaxed),
            connections: self.inner.generation.load(Ordering::Acquire),
        }
    }

    /// A round trip to the broker (CLUSTER_STATUS, which needs no
    /// permission); returns how long it took. Reconnects if needed.
    pub async fn health_check(&self) -> Result<Duration> {
        let started = Instant::now();
        self.cluster_status().await?;
        Ok(started.elapsed())
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A number that changes whenever the client opens a new connection
    /// (consumers use it to re-register with their group).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Address of the broker currently connected to, if connected.
    pub fn connected_to(&self) -> Option<String> {
        self.current().filter(|c| !c.is_closed()).map(|c| c.addr().to_owned())
    }

    fn current(&self) -> Option<Arc<Connection>> {
        self.inner.current.lock().ok().and_then(|guard| guard.clone())
    }

    /// The live connection, reconnecting (with failover over the bootstrap
    /// list) when there is none.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>> {
        if let Some(conn) = self.current().filter(|c| !c.is_closed()) {
            return Ok(conn);
        }
        let _guard = self.inner.connecting.lock().await;
        // Another task may have reconnected while this one waited.
        if let Some(conn) = self.current().filter(|c| !c.is_closed()) {
            return Ok(conn);
        }
        let conn = Arc::new(self.open_connection().await?);
        if let Ok(mut current) = self.inner.current.lock() {
            *current = Some(conn.clone());
        }
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        Ok(conn)
    }

    async fn open_connection(&self) -> Result<Connection> {
        let cfg = &self.inner.config;
        let start = self.inner.next_addr.load(Ordering::Relaxed);
        let n = cfg.bootstrap.len();
        let mut last_error = String::from("no address tried");
        let mut last_tls_error = None;
        for round in 0..cfg.connect_rounds {
            if round > 0 {
                tokio::time::sleep(cfg.reconnect_backoff).await;
            }
            for idx in (0..n).map(|i| (start + i) % n) {
                let addr = cfg.bootstrap[idx].as_str();
                match self.open_to(addr).await {
                    Ok(conn) => {
                        self.inner.next_addr.store(idx, Ordering::Relaxed);
                        tracing::debug!(addr, "connected");
                        return Ok(conn);
                    }
                    // Wrong credentials are wrong on every broker.
                    Err(err @ Error::Authentication { .. }) => return Err(err),
                    Err(err) => {
                        tracing::debug!(addr, error = %err, "connect failed");
                        last_error = match &err {
                            Error::Io { source, .. } => format!("{addr}: {source}"),
                            other => format!("{addr}: {other}"),
                        };
                        last_tls_error = matches!(err, Error::Tls { .. }).then_some(err);
                    }
                }
            }
        }
        // A broker was reached but TLS failed: that error says more than
        // "no broker available".
        if let Some(err) = last_tls_error {
            return Err(err);
        }
        Err(Error::NoBrokerAvailable {
            addrs: cfg.bootstrap.clone(),
            rounds: cfg.connect_rounds,
            last_error,
        })
    }

    /// Connects to one address (TLS when configured) and authenticates
    /// when credentials are configured: every new connection, including a
    /// reconnect after a failure, sends AUTH before any other request.
    async fn open_to(&self, addr: &str) -> Result<Connection> {
        let cfg = &self.inner.config;
        let conn = Connection::connect(addr, self.inner.tls.as_ref(), cfg.connect_timeout, cfg.max_in_flight).await?;
        if let Some(credentials) = &cfg.credentials {
            authenticate(&conn, credentials, cfg.request_timeout).await?;
        }
        Ok(conn)
    }

    /// A connection to a partition leader (the main connection if it
    /// already goes there). The lock is not held while connecting, so a slow
    /// leader does not hold up requests to the others.
    async fn connection_to(&self, addr: &str) -> Result<Arc<Connection>> {
        if let Some(conn) = self.current().filter(|c| !c.is_closed() && c.addr() == addr) {
            return Ok(conn);
        }
        if let Some(conn) = self.inner.leaders.lock().await.get(addr).filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        let conn = match self.open_to(addr).await {
            Ok(conn) => Arc::new(conn),
            Err(err) => {
                if err.is_connection_error()
                    && let Ok(mut unreachable) = self.inner.unreachable.lock()
                {
                    unreachable.retain(|_, at| at.elapsed() < UNREACHABLE_FOR);
                    unreachable.insert(addr.to_owned(), Instant::now());
                }
                return Err(err);
            }
        };
        let mut leaders = self.inner.leaders.lock().await;
        // Another task may have connected meanwhile: keep one connection.
        if let Some(existing) = leaders.get(addr).filter(|c| !c.is_closed()) {
            return Ok(existing.clone());
        }
        leaders.retain(|_, c| !c.is_closed());
        if leaders.len() >= MAX_LEADER_CONNECTIONS {
            leaders.clear();
        }
        leaders.insert(addr.to_owned(), conn.clone());
        Ok(conn)
    }

    /// True when a connect to `addr` failed less than [`UNREACHABLE_FOR`] ago.
    fn is_unreachable(&self, addr: &str) -> bool {
        self.inner
            .unreachable
            .lock()
            .ok()
            .and_then(|u| u.get(addr).map(|at| at.elapsed() < UNREACHABLE_FOR))
            .unwrap_or(false)
    }

    /// The leader to send a partition's request to, unless it was just
    /// found unreachable (then the bootstrap connection is used).
    fn leader_hint(&self, route: Route<'_>) -> Option<String> {
        let (topic, partition) = route?;
        let leader = self.leader_for(topic, partition)?;
        (!self.is_unreachable(&leader)).then_some(leader)
    }

    /// The address requests about `topic`/`partition` are sent to, when the
    /// client knows the partition's leader (from CLUSTER_METADATA or a
    /// redirect); `None` means the bootstrap connection.
    pub fn leader_for(&self, topic: &str, partition: i32) -> Option<String> {
        let hints = self.inner.leader_hints.lock().ok()?;
        hints.get(&(topic.to_owned(), partition)).cloned()
    }

    /// Forgets the leader of `topic`/`partition` (after a failure), so the
    /// next request goes to the bootstrap connection until metadata or a
    /// redirect names the leader again.
    pub(crate) fn forget_leader(&self, topic: &str, partition: i32) {
        self.set_leader_hint(Some((topic, partition)), None);
    }

    /// Takes the partition leaders of a CLUSTER_METADATA answer as routing
    /// hints. A topic whose replicas all live on one node (a standalone
    /// broker) gets none: the bootstrap connection reaches that node
    /// already, and its advertised address may not be reachable from here
    /// (a pod IP behind a port-forward). Partitions without a usable leader
    /// address lose their hint.
    fn learn_leaders(&self, topic: &TopicMetadata) {
        let mut nodes: Vec<&str> = topic
            .partitions
            .iter()
            .flat_map(|p| std::iter::once(p.leader_id.as_str()).chain(p.replicas.iter().map(String::as_str)))
            .filter(|id| !id.is_empty())
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        let single_node = nodes.len() <= 1;
        for p in &topic.partitions {
            let leader = (!single_node
                && !p.leader_addr.is_empty()
                && !p.state.eq_ignore_ascii_case("offline")
                && check_address(&p.leader_addr).is_ok())
            .then(|| p.leader_addr.clone());
            self.set_leader_hint(Some((topic.topic.as_str(), p.partition)), leader);
        }
    }

    fn set_leader_hint(&self, route: Route<'_>, leader: Option<String>) {
        let Some((topic, partition)) = route else {
            return;
        };
        if let Ok(mut hints) = self.inner.leader_hints.lock() {
            match leader {
                Some(leader) => {
                    if hints.len() >= MAX_LEADER_HINTS {
                        hints.clear();
                    }
                    hints.insert((topic.to_owned(), partition), leader);
                }
                None => {
                    hints.remove(&(topic.to_owned(), partition));
                }
            }
        }
    }

    /// Sends any request and returns the broker's typed response. Error
    /// frames become [`Error::Server`] or [`Error::NotLeader`].
    pub async fn request(&self, request: &Request) -> Result<Response> {
        let opcode = request.opcode();
        let frame = request.to_frame_bytes().map_err(|source| Error::Encode {
            op: opcode.name(),
            source,
        })?;
        self.request_frame(opcode, frame.freeze()).await
    }

    /// Sends a pre-encoded request frame of `opcode` (see
    /// [`Request::to_frame_bytes`]). A broken connection is retried on a new
    /// one only for requests that are safe to repeat; "not leader" replies
    /// naming a leader are followed.
    pub async fn request_frame(&self, opcode: Opcode, frame: Bytes) -> Result<Response> {
        self.request_routed(opcode, frame, None).await
    }

    /// Counts a finished request for [`Client::metrics`].
    fn counted(&self, result: Result<Response>) -> Result<Response> {
        if result.is_err() {
            self.inner.requests_failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Like [`Client::request_frame`] for a request about one partition:
    /// it goes to the partition's leader when CLUSTER_METADATA or a redirect
    /// taught the client where that is, and a redirect updates that
    /// knowledge.
    pub(crate) async fn request_routed(&self, opcode: Opcode, frame: Bytes, route: Route<'_>) -> Result<Response> {
        let result = self.request_routed_uncounted(opcode, frame, route).await;
        self.counted(result)
    }

    async fn request_routed_uncounted(&self, opcode: Opcode, frame: Bytes, route: Route<'_>) -> Result<Response> {
        let op = opcode.name();
        let repeatable = is_repeatable(opcode);
        let mut target = self.leader_hint(route);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = match &target {
                Some(addr) => match self.connection_to(addr).await {
                    Ok(conn) => conn,
                    Err(err) => {
                        // The remembered leader is gone: ask the cluster again.
                        tracing::debug!(op, leader = %addr, error = %err, "leader unreachable");
                        self.set_leader_hint(route, None);
                        target = None;
                        if attempt < MAX_ATTEMPTS {
                            continue;
                        }
                        return Err(err);
                    }
                },
                None => self.connection().await?,
            };
            self.inner.requests_sent.fetch_add(1, Ordering::Relaxed);
            let reply = match conn.request(op, frame.clone(), self.inner.config.request_timeout).await {
                Ok(reply) => reply,
                Err(err) => {
                    if err.is_connection_error() {
                        conn.close();
                        if target.take().is_some() {
                            self.set_leader_hint(route, None);
                        }
                        if repeatable && attempt < MAX_ATTEMPTS {
                            tracing::debug!(op, error = %err, "retrying on a new connection");
                            continue;
                        }
                    }
                    return Err(err);
                }
            };
            match decode_reply(op, opcode, reply) {
                Err(Error::NotLeader {
                    leader_addr: Some(leader),
                    ..
                }) if attempt < MAX_ATTEMPTS && !self.is_unreachable(&leader) => {
                    tracing::debug!(op, from = conn.addr(), to = %leader, "following not-leader redirect");
                    self.set_leader_hint(route, Some(leader.clone()));
                    target = Some(leader);
                }
                other => return other,
            }
        }
    }

    /// Encodes `request` and sends it with [`Client::request_routed`].
    async fn request_partition(&self, request: &Request, topic: &str, partition: i32) -> Result<Response> {
        let opcode = request.opcode();
        let frame = request.to_frame_bytes().map_err(|source| Error::Encode {
            op: opcode.name(),
            source,
        })?;
        let route = (partition >= 0).then_some((topic, partition));
        self.request_routed(opcode, frame.freeze(), route).await
    }

    // ---- topics -------------------------------------------------------

    /// Creates a topic with `partitions` partitions (succeeds if it exists).
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        let partitions = i32::try_from(partitions)
            .map_err(|_| Error::InvalidArgument(format!("partition count {partitions} is too large")))?;
        let req = Request::CreateTopic(CreateTopicRequest {
            topic: topic.to_owned(),
            partitions,
        });
        match self.request(&req).await? {
            Response::CreateTopic => Ok(()),
            other => Err(unexpected("CREATE_TOPIC", &other)),
        }
    }

    /// Deletes a topic and its records (succeeds if it does not exist).
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let req = Request::DeleteTopic(TopicRequest {
            topic: topic.to_owned(),
        });
        match self.request(&req).await? {
            Response::DeleteTopic => Ok(()),
            other => Err(unexpected("DELETE_TOPIC", &other)),
        }
    }

    /// Topic names, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        match self.request(&Request::ListTopics).await? {
            Response::ListTopics(list) => Ok(list.topics),
            other => Err(unexpected("LIST_TOPICS", &other)),
        }
    }

    /// The topics an MQTT-style pattern matches now (`sensors/+/temp`,
    /// `logs/#`; MATCH_TOPICS, a FlyMQ extension), sorted.
    pub async fn match_topics(&self, pattern: &str) -> Result<Vec<String>> {
        let req = Request::MatchTopics(TopicRequest {
            topic: pattern.to_owned(),
        });
        match self.request(&req).await? {
            Response::MatchTopics(list) => Ok(list.topics),
            other => Err(unexpected("MATCH_TOPICS", &other)),
        }
    }

    /// Partitions, leaders and replicas of every topic (CLUSTER_METADATA).
    /// The leaders become the client's routing table (see
    /// [`Client::leader_for`]).
    pub async fn cluster_metadata(&self) -> Result<ClusterMetadata> {
        let req = Request::ClusterMetadata(ClusterMetadataRequest { topic: String::new() });
        match self.request(&req).await? {
            Response::ClusterMetadata(meta) => {
                for topic in &meta.topics {
                    self.learn_leaders(topic);
                }
                Ok(meta)
            }
            other => Err(unexpected("CLUSTER_METADATA", &other)),
        }
    }

    /// Partitions, leaders and replicas of one topic; its leaders become the
    /// client's routing table. A missing topic is [`Error::Server`] with
    /// "topic not found".
    pub async fn topic_metadata(&self, topic: &str) -> Result<TopicMetadata> {
        let req = Request::ClusterMetadata(ClusterMetadataRequest {
            topic: topic.to_owned(),
        });
        let meta = match self.request(&req).await? {
            Response::ClusterMetadata(meta) => meta,
            other => return Err(unexpected("CLUSTER_METADATA", &other)),
        };
        let topic_meta = meta
            .topics
            .into_iter()
            .find(|t| t.topic == topic)
            .ok_or_else(|| Error::Server {
                op: "CLUSTER_METADATA",
                message: format!("topic not found: {topic}"),
            })?;
        self.learn_leaders(&topic_meta);
        Ok(topic_meta)
    }

    /// The cluster's nodes and leader (FlyMQ extension CLUSTER_STATUS).
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        match self.request(&Request::ClusterStatus).await? {
            Response::ClusterStatus(status) => Ok(status),
            other => Err(unexpected("CLUSTER_STATUS", &other)),
        }
    }

    // ---- produce ------------------------------------------------------

    /// Appends `value` without a key; the broker picks the partition.
    pub async fn produce(&self, topic: &str, value: impl Into<Bytes>) -> Result<RecordMetadata> {
        self.produce_record(topic, Bytes::new(), value.into(), -1).await
    }

    /// Appends a keyed record; the partition is `FNV-1a(key) mod partitions`.
    pub async fn produce_with_key(
        &self,
        topic: &str,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<RecordMetadata> {
        self.produce_record(topic, key.into(), value.into(), -1).await
    }

    /// Appends a record to an explicit partition (`key` may be empty).
    pub async fn produce_to_partition(
        &self,
        topic: &str,
        partition: i32,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<RecordMetadata> {
        if partition < 0 {
            return Err(Error::InvalidArgument(format!(
                "partition {partition} is negative; use produce() to let the broker choose"
            )));
        }
        self.produce_record(topic, key.into(), value.into(), partition).await
    }

    async fn produce_record(&self, topic: &str, key: Bytes, value: Bytes, partition: i32) -> Result<RecordMetadata> {
        let req = Request::Produce(ProduceRequest {
            topic: topic.to_owned(),
            key,
            value,
            partition,
        });
        match self.request_partition(&req, topic, partition).await? {
            Response::Produce(meta) => Ok(meta),
            other => Err(unexpected("PRODUCE", &other)),
        }
    }

    /// Appends `value` (no key; the broker picks the partition) that
    /// expires `ttl` after it is written (PRODUCE_WITH_TTL): reads skip it
    /// from then on and retention removes it. The broker accepts 1 ms to
    /// 10 years.
    pub async fn produce_with_ttl(
        &self,
        topic: &str,
        value: impl Into<Bytes>,
        ttl: Duration,
    ) -> Result<RecordMetadata> {
        let req = Request::ProduceWithTtl(ProduceWithTtlRequest {
            topic: topic.to_owned(),
            data: value.into(),
            ttl_ms: whole_millis("TTL", ttl)?,
        });
        match self.request(&req).await? {
            Response::ProduceWithTtl(meta) => Ok(meta),
            other => Err(unexpected("PRODUCE_WITH_TTL", &other)),
        }
    }

    /// Schedules `value` (no key; the broker picks the partition) to become
    /// readable `delay` from now (PRODUCE_DELAYED). It is durable when this
    /// returns; it is delivered at the end of its partition when due, so the
    /// returned offset is 0 (the wire protocol's) and the partition is real.
    /// The broker accepts 1 ms to 30 days.
    pub async fn produce_delayed(
        &self,
        topic: &str,
        value: impl Into<Bytes>,
        delay: Duration,
    ) -> Result<RecordMetadata> {
        let req = Request::ProduceDelayed(ProduceDelayedRequest {
            topic: topic.to_owned(),
            data: value.into(),
            delay_ms: whole_millis("delay", delay)?,
        });
        match self.request(&req).await? {
            Response::ProduceDelayed(meta) => Ok(meta),
            other => Err(unexpected("PRODUCE_DELAYED", &other)),
        }
    }

    /// Appends several `(key, value)` records to one partition in one
    /// request (FlyMQ extension PRODUCE_BATCH); `None` lets the broker
    /// choose the partition. The records get consecutive offsets from the
    /// returned `base_offset`.
    pub async fn produce_batch(
        &self,
        topic: &str,
        partition: Option<i32>,
        records: Vec<(Bytes, Bytes)>,
    ) -> Result<ProduceBatchResponse> {
        let partition = partition.unwrap_or(-1);
        let req = batch_request(topic, partition, records);
        let frame = req.to_frame_bytes().map_err(|source| Error::Encode {
            op: "PRODUCE_BATCH",
            source,
        })?;
        self.produce_batch_frame(topic, partition, frame.freeze()).await
    }

    /// Sends a pre-encoded PRODUCE_BATCH frame for `topic`/`partition`
    /// (lets the producer retry without re-encoding).
    pub(crate) async fn produce_batch_frame(
        &self,
        topic: &str,
        partition: i32,
        frame: Bytes,
    ) -> Result<ProduceBatchResponse> {
        let route = (partition >= 0).then_some((topic, partition));
        match self.request_routed(Opcode::ProduceBatch, frame, route).await? {
            Response::ProduceBatch(resp) => Ok(resp),
            other => Err(unexpected("PRODUCE_BATCH", &other)),
        }
    }

    // ---- read ---------------------------------------------------------

    /// Reads the single record at `offset` (CONSUME). A missing offset is a
    /// server error (Go wording `EOF`).
    pub async fn consume(&self, topic: &str, partition: i32, offset: u64) -> Result<ConsumeResponse> {
        let req = Request::Consume(ConsumeRequest {
            topic: topic.to_owned(),
            partition,
            offset,
        });
        match self.request_partition(&req, topic, partition).await? {
            Response::Consume(record) => Ok(record),
            other => Err(unexpected("CONSUME", &other)),
        }
    }

    /// Reads up to `max_records` records from `offset` (FETCH). `filter`
    /// (may be empty) keeps records whose key or value matches it. An offset
    /// past the end gives an empty result.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: u64,
        max_records: u32,
        filter: &str,
    ) -> Result<FetchResponse> {
        let req = Request::Fetch(FetchRequest {
            topic: topic.to_owned(),
            partition,
            offset,
            max_messages: i32::try_from(max_records).unwrap_or(i32::MAX),
            filter: filter.to_owned(),
        });
        match self.request_partition(&req, topic, partition).await? {
            Response::Fetch(resp) => Ok(resp),
            other => Err(unexpected("FETCH", &other)),
        }
    }

    /// The first offset whose record has a timestamp at or after
    /// `timestamp_ms` (FlyMQ extension SEEK_TO_TIMESTAMP).
    pub async fn seek_to_timestamp(&self, topic: &str, partition: i32, timestamp_ms: i64) -> Result<u64> {
        let req = Request::SeekToTimestamp(SeekToTimestampRequest {
            topic: topic.to_owned(),
            partition,
            timestamp_ms,
        });
        match self.request_partition(&req, topic, partition).await? {
            Response::SeekToTimestamp(resp) => Ok(resp.offset),
            other => Err(unexpected("SEEK_TO_TIMESTAMP", &other)),
        }
    }

    // ---- consumer groups ----------------------------------------------

    /// Joins `group` for one partition and returns the offset to start
    /// reading from (SUBSCRIBE). An empty group id registers no membership.
    /// Sent where this client reads the partition from (its leader, when
    /// known): the broker counts a group's deliveries on the connection
    /// that is its member (dead-letter queues).
    pub async fn subscribe(&self, topic: &str, group: &str, partition: i32, from: StartFrom) -> Result<u64> {
        let req = Request::Subscribe(SubscribeRequest {
            topic: topic.to_owned(),
            group_id: group.to_owned(),
            partition,
            mode: from.mode().to_owned(),
        });
        match self.request_partition(&req, topic, partition).await? {
            Response::Subscribe(resp) => Ok(resp.offset),
            other => Err(unexpected("SUBSCRIBE", &other)),
        }
    }

    /// Stores `offset` (the next offset to read) as the group's committed
    /// offset for the partition.
    pub async fn commit(&self, topic: &str, group: &str, partition: i32, offset: u64) -> Result<()> {
        let req = Request::Commit(CommitRequest {
            topic: topic.to_owned(),
            group_id: group.to_owned(),
            partition,
            offset,
        });
        match self.request(&req).await? {
            Response::Commit => Ok(()),
            other => Err(unexpected("COMMIT", &other)),
        }
    }

    /// The group's committed offset for the partition (0 if none yet).
    pub async fn get_offset(&self, topic: &str, group: &str, partition: i32) -> Result<u64> {
        let req = Request::GetOffset(group_partition(topic, group, partition));
        match self.request(&req).await? {
            Response::GetOffset(resp) => Ok(resp.offset),
            other => Err(unexpected("GET_OFFSET", &other)),
        }
    }

    /// Sets the group's committed offset for the partition.
    pub async fn reset_offset(&self, topic: &str, group: &str, partition: i32, to: ResetTo) -> Result<()> {
        let (mode, offset) = match to {
            ResetTo::Earliest => (flymq_proto::MODE_EARLIEST, 0),
            ResetTo::Latest => (flymq_proto::MODE_LATEST, 0),
            ResetTo::Offset(offset) => (flymq_proto::MODE_OFFSET, offset),
        };
        let req = Request::ResetOffset(ResetOffsetRequest {
            topic: topic.to_owned(),
            group_id: group.to_owned(),
            partition,
            mode: mode.to_owned(),
            offset,
        });
        match self.request(&req).await? {
            Response::ResetOffset => Ok(()),
            other => Err(unexpected("RESET_OFFSET", &other)),
        }
    }

    /// Committed offset, log end and lag of the group on one partition.
    pub async fn get_lag(&self, topic: &str, group: &str, partition: i32) -> Result<LagInfo> {
        let req = Request::GetLag(group_partition(topic, group, partition));
        match self.request(&req).await? {
            Response::GetLag(lag) => Ok(lag),
            other => Err(unexpected("GET_LAG", &other)),
        }
    }

    /// Every consumer group with its committed offsets.
    pub async fn list_groups(&self) -> Result<Vec<GroupRecord>> {
        match self.request(&Request::ListGroups).await? {
            Response::ListGroups(list) => Ok(list.groups),
            other => Err(unexpected("LIST_GROUPS", &other)),
        }
    }

    /// One group's live member count and committed offsets.
    pub async fn describe_group(&self, topic: &str, group: &str) -> Result<GroupRecord> {
        let req = Request::DescribeGroup(GroupRequest {
            topic: topic.to_owned(),
            group_id: group.to_owned(),
        });
        match self.request(&req).await? {
            Response::DescribeGroup(record) => Ok(record),
            other => Err(unexpected("DESCRIBE_GROUP", &other)),
        }
    }

    /// Deletes a group and its committed offsets.
    pub async fn delete_group(&self, topic: &str, group: &str) -> Result<()> {
        let req = Request::DeleteGroup(GroupRequest {
            topic: topic.to_owned(),
            group_id: group.to_owned(),
        });
        match self.request(&req).await? {
            Response::DeleteGroup => Ok(()),
            other => Err(unexpected("DELETE_GROUP", &other)),
        }
    }
}

/// Sends AUTH on a fresh connection; the broker binds the user to it.
async fn authenticate(conn: &Connection, credentials: &Credentials, timeout: std::time::Duration) -> Result<()> {
    let request = Request::Auth(AuthRequest {
        username: credentials.username.clone(),
        password: credentials.password.clone(),
    });
    let frame = request
        .to_frame_bytes()
        .map_err(|source| Error::Encode { op: "AUTH", source })?;
    let reply = conn.request("AUTH", frame.freeze(), timeout).await?;
    match decode_reply("AUTH", Opcode::Auth, reply)? {
        Response::Auth(resp) if resp.success => Ok(()),
        Response::Auth(resp) => Err(Error::Authentication {
            username: credentials.username.clone(),
            reason: if resp.error.is_empty() {
                "credentials refused".into()
            } else {
                resp.error
            },
        }),
        other => Err(unexpected("AUTH", &other)),
    }
}

/// Builds a PRODUCE_BATCH request.
pub(crate) fn batch_request(topic: &str, partition: i32, records: Vec<(Bytes, Bytes)>) -> Request {
    Request::ProduceBatch(ProduceBatchRequest {
        topic: topic.to_owned(),
        partition,
        records: records
            .into_iter()
            .map(|(key, value)| BatchRecord { key, value })
            .collect(),
    })
}

fn group_partition(topic: &str, group: &str, partition: i32) -> GroupPartitionRequest {
    GroupPartitionRequest {
        topic: topic.to_owned(),
        group_id: group.to_owned(),
        partition,
    }
}

/// Requests that may be sent again after a broken connection without the
/// risk of writing twice, or of an earlier write overtaking a later one. A
/// COMMIT (or RESET_OFFSET) sent through a broker that then failed may still
/// take effect later, after a newer commit sent through another broker:
/// retried silently, the group's offset could move back behind the
/// caller's back, so the caller gets the connection error instead. Schema
/// registrations and deletions are writes too: a delayed first attempt could
/// land after a later registration, and a repeated delete would report
/// "not found" for a delete that succeeded. A repeated JOIN_GROUP would add
/// a second member, a repeated REJECT_RECORD a second dead letter, and a
/// repeated COMMIT_FENCED is a COMMIT.
fn is_repeatable(opcode: Opcode) -> bool {
    !matches!(
        opcode,
        Opcode::Produce
            | Opcode::Commit
            | Opcode::ResetOffset
            | Opcode::ProduceBatch
            | Opcode::ProduceDelayed
            | Opcode::ProduceWithTtl
            | Opcode::ProduceWithSchema
            | Opcode::RegisterSchema
            | Opcode::DeleteSchema
            | Opcode::ProduceTx
            | Opcode::BeginTx
            | Opcode::CommitTx
            | Opcode::AbortTx
            | Opcode::ReplayDlq
            | Opcode::RejectRecord
            | Opcode::JoinGroup
            | Opcode::CommitFenced
    )
}

/// Turns a response frame into a typed response or error.
pub(crate) fn decode_reply(op: &'static str, request: Opcode, frame: Frame) -> Result<Response> {
    let opcode = frame.opcode;
    let response = Response::decode_frame(&frame).map_err(|source| Error::Decode { op, source })?;
    if let Response::Error(err) = response {
        return Err(Error::from_server(op, err.message));
    }
    if opcode != response_opcode(request) {
        return Err(Error::UnexpectedResponse { op, got: opcode });
    }
    Ok(response)
}

/// The opcode a successful reply to `request` carries: the request's own,
/// except AUTH, which is answered with AUTH_RESPONSE.
fn response_opcode(request: Opcode) -> u8 {
    match request {
        Opcode::Auth => Opcode::AuthResponse.code(),
        other => other.code(),
    }
}

/// A duration as whole milliseconds for the wire; below 1 ms is refused
/// here (the broker would refuse 0).
fn whole_millis(what: &str, duration: Duration) -> Result<u64> {
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Err(Error::InvalidArgument(format!(
            "{what} {duration:?} is shorter than the 1 ms the broker accepts"
        )));
    }
    Ok(ms)
}

pub(crate) fn unexpected(op: &'static str, response: &Response) -> Error {
    Error::UnexpectedResponse {
        op,
        got: response.opcode(),
    }
}

/// Sends a health check every `interval` while the client exists, so an
/// idle connection is kept open (and a dead one noticed and replaced before
/// the next real request); stops when the last `Client` handle is dropped.
fn spawn_keep_alive(inner: std::sync::Weak<Inner>, interval: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            let client = Client { inner };
            if let Err(e) = client.health_check().await {
                tracing::debug!(error = %e, "keep-alive health check failed; the next request reconnects");
            }
        }
    });
}
