//! The batching producer.
//!
//! [`Producer::send`] queues a record (bounded queue) for a background task
//! that picks its partition exactly like the broker (explicit partition,
//! else FNV-1a-32(key) mod partitions, else round robin per topic, with
//! partition counts from CLUSTER_METADATA), groups records per (topic,
//! partition) and sends each group as one PRODUCE_BATCH when it is full or
//! its linger time has passed. Up to `max_in_flight` batches are pipelined.
//!
//! Routing: the CLUSTER_METADATA answer that gives the partition count also
//! names each partition's leader, and the [`Client`] sends a partition's
//! batches straight to that leader's address. Retriable failures (`not
//! leader`, `no leader elected`, broken connection, timeout) are retried with
//! exponential backoff; before each retry the partition's leader is
//! forgotten and the topic's metadata is read again, so a batch follows a
//! leader change. Retries stop after `retries` attempts or once
//! `retry_timeout` (10 s by default) has passed, whichever comes first.
//!
//! Delivery is at least once: a batch whose connection broke (or whose
//! response timed out) after the broker stored it is sent again, so it can
//! be stored twice. With `max_in_flight > 1`, a retried batch can land after
//! a later batch of the same partition.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flymq_proto::{MAX_PAYLOAD, RecordMetadata};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::accumulator::{Accumulator, Batch, BatchLimits};
use crate::client::{Client, batch_request};
use crate::error::{Error, Result};
use crate::partitioner::Partitioner;

/// Room left in a PRODUCE_BATCH frame for the topic name and counts.
const BATCH_HEADER_ROOM: usize = 70 * 1024;
/// How long a failed partition-count lookup is remembered before retrying.
const METADATA_NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Settings of a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Records per PRODUCE_BATCH request (1 = one record per request).
    pub batch_max_records: usize,
    /// Estimated bytes (keys + values) per request; capped below the 32 MiB
    /// frame limit.
    pub batch_max_bytes: usize,
    /// How long a record may wait for others to fill its batch.
    pub linger: Duration,
    /// Batch requests outstanding at once.
    pub max_in_flight: usize,
    /// Retries of a batch after a retriable error (at most; see also
    /// `retry_timeout`).
    pub retries: u32,
    /// Time after which a batch that keeps failing with retriable errors is
    /// given up (counted from its first attempt); no retry starts later.
    pub retry_timeout: Duration,
    /// Pause before the first retry; doubled for each further retry.
    pub retry_backoff: Duration,
    /// Longest pause between retries.
    pub max_retry_backoff: Duration,
    /// Records that may wait in the send queue; `send` waits when it is full.
    pub queue_capacity: usize,
    /// How long a topic's partition count is cached.
    pub metadata_max_age: Duration,
    /// Gzip (the wire's codec, flags 0x02) every PRODUCE_BATCH whose
    /// payload is at least this many bytes, when that makes it smaller;
    /// `None` (the default) never compresses.
    pub compression_threshold: Option<usize>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            batch_max_records: 500,
            batch_max_bytes: 1024 * 1024,
            linger: Duration::from_millis(5),
            max_in_flight: 8,
            retries: 20,
            retry_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
            max_retry_backoff: Duration::from_secs(1),
            queue_capacity: 10_000,
            metadata_max_age: Duration::from_secs(30),
            compression_threshold: None,
        }
    }
}

impl ProducerConfig {
    /// Records per PRODUCE_BATCH.
    pub fn with_batch_max_records(mut self, records: usize) -> Self {
        self.batch_max_records = records;
        self
    }

    /// How long a record may wait for others to fill its batch.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Retries of a failing batch, and how long they may go on.
    pub fn with_retries(mut self, retries: u32, timeout: Duration) -> Self {
        self.retries = retries;
        self.retry_timeout = timeout;
        self
    }

    /// Gzip batches of at least `bytes` bytes.
    pub fn with_gzip_above(mut self, bytes: usize) -> Self {
        self.compression_threshold = Some(bytes);
        self
    }
}

/// Counters of one [`Producer`] (see [`Producer::metrics`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerMetrics {
    /// Records the brokers acknowledged.
    pub records_sent: u64,
    /// Records given up (their `Delivery` resolved to an error).
    pub records_failed: u64,
    /// PRODUCE_BATCH requests acknowledged.
    pub batches_sent: u64,
    /// Of those, sent gzip-compressed.
    pub batches_compressed: u64,
    /// Retries of a batch or record after a retriable error.
    pub retries: u64,
    /// Largest batch acknowledged, in records (`records_sent /
    /// batches_sent` gives the mean).
    pub max_batch_records: u64,
}

#[derive(Debug, Default)]
struct Counters {
    records_sent: AtomicU64,
    records_failed: AtomicU64,
    batches_sent: AtomicU64,
    batches_compressed: AtomicU64,
    retries: AtomicU64,
    max_batch_records: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ProducerMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProducerMetrics {
            records_sent: get(&self.records_sent),
            records_failed: get(&self.records_failed),
            batches_sent: get(&self.batches_sent),
            batches_compressed: get(&self.batches_compressed),
            retries: get(&self.retries),
            max_batch_records: get(&self.max_batch_records),
        }
    }

    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Target topic.
    pub topic: String,
    /// Key (empty = no key).
    pub key: Bytes,
    /// Value.
    pub value: Bytes,
    /// Explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
}

impl ProducerRecord {
    /// A keyless record for `topic`.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            key: Bytes::new(),
            value: value.into(),
            partition: None,
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = key.into();
        self
    }

    /// Sets an explicit partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// A callback invoked with a record's result (from the producer's task: keep
/// it short and non-blocking).
pub type Callback = Box<dyn FnOnce(Result<RecordMetadata>) + Send + 'static>;

/// How a record's result is delivered.
enum Completion {
    Future(oneshot::Sender<Result<RecordMetadata>>),
    Callback(Callback),
}

impl Completion {
    fn complete(self, result: Result<RecordMetadata>) {
        match self {
            // The caller may have dropped its future; nothing to do then.
            Completion::Future(tx) => {
                let _ = tx.send(result);
            }
            Completion::Callback(cb) => cb(result),
        }
    }
}

enum Command {
    Send(ProducerRecord, Completion),
    Flush(oneshot::Sender<()>),
}

/// The result of one queued record; resolves once the broker acknowledged
/// (or finally refused) it.
#[derive(Debug)]
pub struct Delivery {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for Delivery {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed("producer"))))
    }
}

/// Batching producer. Cheap to clone; the background task stops (after
/// sending what is queued) when the last clone is dropped.
///
/// ```no_run
/// # async fn demo(client: flymq_client::Client) -> flymq_client::Result<()> {
/// use flymq_client::{Producer, ProducerConfig, ProducerRecord};
///
/// let producer = Producer::new(client, ProducerConfig::default());
/// let pending: Vec<_> = (0..100)
///     .map(|i| producer.send(ProducerRecord::new("orders", format!("order {i}")).with_key("customer-7")))
///     .collect();
/// for result in futures::future::join_all(pending).await {
///     let meta = result?;
///     println!("partition {} offset {}", meta.partition, meta.offset);
/// }
/// producer.flush().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    commands: mpsc::Sender<Command>,
    counters: Arc<Counters>,
}

impl Producer {
    /// Starts a producer on `client` (spawns its task on the current Tokio runtime).
    pub fn new(client: Client, config: ProducerConfig) -> Self {
        let (commands, rx) = mpsc::channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let worker = Worker::new(client, config, counters.clone());
        tokio::spawn(worker.run(rx));
        Self { commands, counters }
    }

    /// The producer's counters so far.
    pub fn metrics(&self) -> ProducerMetrics {
        self.counters.snapshot()
    }

    /// Queues `record` (waiting while the queue is full) and returns a
    /// handle that resolves to its metadata.
    pub async fn enqueue(&self, record: ProducerRecord) -> Result<Delivery> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Send(record, Completion::Future(tx)))
            .await
            .map_err(|_| Error::Closed("producer"))?;
        Ok(Delivery { rx })
    }

    /// Queues `record` and resolves to its metadata once acknowledged. The
    /// record is queued when the future is first polled.
    pub fn send(&self, record: ProducerRecord) -> impl Future<Output = Result<RecordMetadata>> + Send + 'static {
        let producer = self.clone();
        async move { producer.enqueue(record).await?.await }
    }

    /// Queues `record`; `callback` receives its result.
    pub async fn send_with_callback(
        &self,
        record: ProducerRecord,
        callback: impl FnOnce(Result<RecordMetadata>) + Send + 'static,
    ) -> Result<()> {
        self.commands
            .send(Command::Send(record, Completion::Callback(Box::new(callback))))
            .await
            .map_err(|_| Error::Closed("producer"))
    }

    /// Sends every queued record now and waits until all of them are
    /// acknowledged or failed.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Flush(tx))
            .await
            .map_err(|_| Error::Closed("producer"))?;
        rx.await.map_err(|_| Error::Closed("producer"))
    }
}

/// The background task: partitioning, batching and dispatch.
struct Worker {
    client: Client,
    config: ProducerConfig,
    accumulator: Accumulator<Completion>,
    partitioner: Partitioner,
    /// Partition count per topic (`None` = lookup failed), with its time.
    partitions: HashMap<String, (Option<u32>, Instant)>,
    in_flight: Arc<Semaphore>,
    counters: Arc<Counters>,
}

impl Worker {
    fn new(client: Client, config: ProducerConfig, counters: Arc<Counters>) -> Self {
        let limits = BatchLimits {
            max_records: config.batch_max_records.max(1),
            max_bytes: config.batch_max_bytes.clamp(1, MAX_PAYLOAD - BATCH_HEADER_ROOM),
            linger: config.linger,
        };
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        Self {
            client,
            config,
            accumulator: Accumulator::new(limits),
            partitioner: Partitioner::new(),
            partitions: HashMap::new(),
            in_flight,
            counters,
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut ready = Vec::new();
        loop {
            let deadline = self.accumulator.next_deadline();
            let linger = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Send(record, completion)) => {
                        self.add(record, completion, &mut ready).await;
                        for batch in ready.drain(..) {
                            self.dispatch(batch).await;
                        }
                    }
                    Some(Command::Flush(done)) => {
                        self.flush().await;
                        let _ = done.send(());
                    }
                    None => {
                        self.flush().await;
                        return;
                    }
                },
                () = linger => {
                    for batch in self.accumulator.drain_expired(Instant::now()) {
                        self.dispatch(batch).await;
                    }
                }
            }
        }
    }

    async fn add(&mut self, record: ProducerRecord, completion: Completion, ready: &mut Vec<Batch<Completion>>) {
        let ProducerRecord {
            topic,
            key,
            value,
            partition,
        } = record;
        let partition = match partition {
            Some(p) if p < 0 => {
                completion.complete(Err(Error::InvalidArgument(format!(
                    "partition {p} is negative; leave it unset to let the partitioner choose"
                ))));
                return;
            }
            Some(p) => p,
            None => match self.partition_count(&topic).await {
                Some(count) => self.partitioner.choose(&topic, &key, None, count),
                // Unknown topic (the broker creates it on first produce):
                // let the broker choose, with the same rule.
                None => -1,
            },
        };
        self.accumulator
            .append(&topic, partition, (key, value), completion, Instant::now(), ready);
    }

    /// The topic's partition count from CLUSTER_METADATA (cached).
    async fn partition_count(&mut self, topic: &str) -> Option<u32> {
        if let Some((count, at)) = self.partitions.get(topic) {
            let ttl = if count.is_some() {
                self.config.metadata_max_age
            } else {
                METADATA_NEGATIVE_TTL
            };
            if at.elapsed() < ttl {
                return *count;
            }
        }
        let count = match self.client.topic_metadata(topic).await {
            Ok(meta) if !meta.partitions.is_empty() => u32::try_from(meta.partitions.len()).ok(),
            Ok(_) => None,
            Err(err) => {
                tracing::debug!(topic, error = %err, "no partition count; the broker will choose partitions");
                None
            }
        };
        self.partitions.insert(topic.to_owned(), (count, Instant::now()));
        count
    }

    /// Sends a batch on its own task once an in-flight slot is free.
    async fn dispatch(&mut self, batch: Batch<Completion>) {
        let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
            // The semaphore is never closed; fail the records rather than panic.
            fail_all(batch.completions, &Error::Closed("producer"));
            return;
        };
        let client = self.client.clone();
        let retry = RetryPolicy::from(&self.config);
        let settings = Deliver {
            retry,
            compression_threshold: self.config.compression_threshold,
            counters: self.counters.clone(),
        };
        if batch.partition < 0 {
            // The broker's choice will change once the topic exists.
            self.partitions.remove(&batch.topic);
        }
        tokio::spawn(async move {
            deliver(&client, batch, &settings).await;
            drop(permit);
        });
    }

    /// Sends everything open and waits for all in-flight batches.
    async fn flush(&mut self) {
        for batch in self.accumulator.drain_all() {
            self.dispatch(batch).await;
        }
        let max = u32::try_from(self.config.max_in_flight.max(1)).unwrap_or(u32::MAX);
        if let Ok(all) = self.in_flight.acquire_many(max).await {
            drop(all);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    retries: u32,
    timeout: Duration,
    backoff: Duration,
    max_backoff: Duration,
}

impl From<&ProducerConfig> for RetryPolicy {
    fn from(c: &ProducerConfig) -> Self {
        Self {
            retries: c.retries,
            timeout: c.retry_timeout,
            backoff: c.retry_backoff,
            max_backoff: c.max_retry_backoff,
        }
    }
}

impl RetryPolicy {
    /// Pause before retry number `attempt` (1-based).
    fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }

    /// The pause before retry number `attempt` after `err`, or `None` when
    /// the batch must be given up (not retriable, out of retries, or the
    /// retry would start after `timeout` since the first attempt).
    fn next_retry(&self, err: &Error, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if !err.is_retriable() || attempt > self.retries {
            return None;
        }
        let delay = self.delay(attempt);
        (elapsed.saturating_add(delay) <= self.timeout).then_some(delay)
    }
}

/// How batches are sent, and where they are counted.
struct Deliver {
    retry: RetryPolicy,
    compression_threshold: Option<usize>,
    counters: Arc<Counters>,
}

/// Sends one batch (with retries) and completes its records.
async fn deliver(client: &Client, batch: Batch<Completion>, settings: &Deliver) {
    let (retry, counters) = (settings.retry, &settings.counters);
    let Batch {
        topic,
        partition,
        records,
        completions,
        ..
    } = batch;
    // Keyed records whose partition the broker chooses must be hashed one
    // by one, so they go as single PRODUCE requests (pipelined).
    if partition < 0 && records.iter().any(|(key, _)| !key.is_empty()) {
        let sends = records.into_iter().zip(completions).map(|((key, value), completion)| {
            let topic = topic.as_str();
            async move {
                let result = with_retries(client, topic, -1, retry, counters, || {
                    client.produce_with_key(topic, key.clone(), value.clone())
                })
                .await;
                let counter = if result.is_ok() {
                    &counters.records_sent
                } else {
                    &counters.records_failed
                };
                Counters::add(counter, 1);
                completion.complete(result);
            }
        });
        futures::future::join_all(sends).await;
        return;
    }

    let sizes: Vec<(i32, i32)> = records
        .iter()
        .map(|(key, value)| (key_size(key), value.len() as i32))
        .collect();
    let encoded = batch_request(&topic, partition, records)
        .to_frame_bytes()
        .and_then(|frame| match settings.compression_threshold {
            Some(threshold) => flymq_proto::gzip_frame(frame, threshold),
            None => Ok(frame),
        });
    let frame = match encoded {
        Ok(frame) => frame.freeze(),
        Err(source) => {
            fail_all(
                completions,
                &Error::Encode {
                    op: "PRODUCE_BATCH",
                    source,
                },
            );
            return;
        }
    };
    let compressed = frame
        .get(3)
        .is_some_and(|flags| flags & flymq_proto::COMPRESSION_MASK != 0);
    let result = with_retries(client, &topic, partition, retry, counters, || {
        client.produce_batch_frame(&topic, partition, frame.clone())
    })
    .await;
    match result {
        Ok(resp) => {
            let n = completions.len() as u64;
            Counters::add(&counters.records_sent, n);
            Counters::add(&counters.batches_sent, 1);
            if compressed {
                Counters::add(&counters.batches_compressed, 1);
            }
            counters.max_batch_records.fetch_max(n, Ordering::Relaxed);
            for (i, (completion, (key_size, value_size))) in completions.into_iter().zip(sizes).enumerate() {
                completion.complete(Ok(RecordMetadata {
                    topic: resp.topic.clone(),
                    partition: resp.partition,
                    offset: resp.base_offset + i as u64,
                    timestamp: resp.timestamp,
                    key_size,
                    value_size,
                }));
            }
        }
        Err(err) => {
            Counters::add(&counters.records_failed, completions.len() as u64);
            fail_all(completions, &err)
        }
    }
}

/// Runs `attempt_fn` until it succeeds, fails for good, or `retry` is
/// exhausted. Before each retry the partition's leader is forgotten and the
/// topic's metadata is read again, so the retry goes to the current leader.
async fn with_retries<T, F, Fut>(
    client: &Client,
    topic: &str,
    partition: i32,
    retry: RetryPolicy,
    counters: &Counters,
    mut attempt_fn: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        let err = match attempt_fn().await {
            Err(err) => err,
            ok => return ok,
        };
        attempt += 1;
        let Some(delay) = retry.next_retry(&err, attempt, started.elapsed()) else {
            return Err(err);
        };
        tracing::debug!(topic, partition, error = %err, attempt, ?delay, "retrying produce");
        Counters::add(&counters.retries, 1);
        tokio::time::sleep(delay).await;
        if partition >= 0 {
            client.forget_leader(topic, partition);
        }
        // Best effort: when metadata cannot be read either, the retry goes to
        // the bootstrap connection, which forwards or redirects.
        if let Err(err) = client.topic_metadata(topic).await {
            tracing::debug!(topic, error = %err, "metadata refresh before retry failed");
        }
    }
}

fn key_size(key: &Bytes) -> i32 {
    if key.is_empty() { -1 } else { key.len() as i32 }
}

fn fail_all(completions: Vec<Completion>, err: &Error) {
    for completion in completions {
        completion.complete(Err(err.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            retries: 10,
            timeout: Duration::from_secs(10),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(400));
        assert_eq!(p.delay(4), Duration::from_millis(700));
        assert_eq!(p.delay(40), Duration::from_millis(700));
    }

    #[test]
    fn retries_stop_at_count_time_or_fatal_error() {
        let p = RetryPolicy {
            retries: 3,
            timeout: Duration::from_secs(1),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
        };
        let not_leader = Error::from_server("PRODUCE_BATCH", "not leader: no leader elected".into());
        assert_eq!(
            p.next_retry(&not_leader, 1, Duration::ZERO),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            p.next_retry(&not_leader, 3, Duration::from_millis(300)),
            Some(Duration::from_millis(400))
        );
        assert_eq!(p.next_retry(&not_leader, 4, Duration::ZERO), None, "out of retries");
        assert_eq!(
            p.next_retry(&not_leader, 2, Duration::from_millis(850)),
            None,
            "past the retry timeout"
        );
        let fatal = Error::from_server("PRODUCE_BATCH", "topic not found: t".into());
        assert_eq!(p.next_retry(&fatal, 1, Duration::ZERO), None);
    }

    #[test]
    fn default_retry_budget_is_about_ten_seconds() {
        let c = ProducerConfig::default();
        let p = RetryPolicy::from(&c);
        let sleeping: Duration = (1..=c.retries).map(|a| p.delay(a)).sum();
        assert!(
            sleeping >= c.retry_timeout,
            "the timeout, not the count, bounds the defaults"
        );
        assert_eq!(c.retry_timeout, Duration::from_secs(10));
    }

    #[test]
    fn record_builder() {
        let r = ProducerRecord::new("t", "v").with_key("k").with_partition(3);
        assert_eq!(r.topic, "t");
        assert_eq!(&r.key[..], b"k");
        assert_eq!(&r.value[..], b"v");
        assert_eq!(r.partition, Some(3));
    }

    #[test]
    fn key_size_is_minus_one_for_empty_keys() {
        assert_eq!(key_size(&Bytes::new()), -1);
        assert_eq!(key_size(&Bytes::from_static(b"abc")), 3);
    }
}
