//! The group consumer: reads every partition of one topic as a member of a
//! consumer group, round robin, with FETCH; commits positions automatically
//! (on an interval) or on demand.
//!
//! Positions are "next offset to read", the value COMMIT stores. A consumer
//! created with [`StartFrom::Committed`] resumes where the group's last
//! commit left off. After a lost connection the consumer re-registers with
//! the group (SUBSCRIBE) and carries on from its in-memory positions, so
//! records it already returned are not delivered twice.

use std::time::{Duration, Instant};

use bytes::Bytes;
use flymq_proto::LagInfo;

use crate::client::{Client, StartFrom};
use crate::error::{Error, Result};

/// Settings of a [`Consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Consumer group id.
    pub group: String,
    /// Where to start on each partition.
    pub from: StartFrom,
    /// Commit positions this often during `poll`; `None` = manual commits only.
    pub auto_commit_interval: Option<Duration>,
    /// Most records asked for in one FETCH.
    pub fetch_max_records: u32,
    /// Pause between two rounds over the partitions that found nothing.
    pub poll_interval: Duration,
    /// Broker-side filter applied to every FETCH (empty = none).
    pub filter: String,
}

impl ConsumerConfig {
    /// Settings for `group` with defaults: resume from the committed offset,
    /// auto-commit every 5 s.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            from: StartFrom::Committed,
            auto_commit_interval: Some(Duration::from_secs(5)),
            fetch_max_records: 500,
            poll_interval: Duration::from_millis(100),
            filter: String::new(),
        }
    }

    /// Where to start on each partition.
    pub fn with_from(mut self, from: StartFrom) -> Self {
        self.from = from;
        self
    }

    /// Auto-commit interval (`None`: manual commits only).
    pub fn with_auto_commit(mut self, interval: Option<Duration>) -> Self {
        self.auto_commit_interval = interval;
        self
    }

    /// Broker-side filter on every FETCH.
    pub fn with_filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = filter.into();
        self
    }
}

/// One record returned by [`Consumer::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: u64,
    /// Key (empty when the record has none).
    pub key: Bytes,
    /// Value.
    pub value: Bytes,
}

/// The membership a [`crate::GroupConsumer`] commits under: its commits are
/// COMMIT_FENCED with this member id and generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    pub member_id: String,
    pub generation: u64,
}

#[derive(Debug, Clone)]
struct PartitionState {
    id: i32,
    /// Next offset to read.
    position: u64,
    /// Last position committed by this consumer.
    committed: Option<u64>,
    /// Skipped by `poll` until resumed.
    paused: bool,
}

/// Where [`Consumer::seek_all`] moves every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The first retained offset.
    Beginning,
    /// The log end (only records produced from now on).
    End,
    /// This offset.
    Offset(u64),
    /// The first record at or after this time (ms since the epoch), or the
    /// log end.
    Timestamp(i64),
}

/// A consumer-group member reading all partitions of one topic.
///
/// ```no_run
/// # async fn demo(client: flymq_client::Client) -> flymq_client::Result<()> {
/// use std::time::Duration;
/// use flymq_client::{Consumer, ConsumerConfig};
///
/// let mut consumer = Consumer::subscribe(client, "orders", ConsumerConfig::new("billing")).await?;
/// loop {
///     for record in consumer.poll(100, Duration::from_secs(1)).await? {
///         println!("{}/{}: {:?}", record.partition, record.offset, record.value);
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Consumer {
    client: Client,
    topic: String,
    config: ConsumerConfig,
    partitions: Vec<PartitionState>,
    /// Partition index the next poll starts at.
    cursor: usize,
    last_commit: Instant,
    /// Client connection generation the group membership was registered on.
    generation: u64,
    /// Set for an assigned (group-coordinated) consumer: commits are fenced.
    fence: Option<Fence>,
}

impl Consumer {
    /// Joins `config.group` on every partition of `topic` (partitions from
    /// CLUSTER_METADATA) and positions each at `config.from`.
    pub async fn subscribe(client: Client, topic: &str, config: ConsumerConfig) -> Result<Self> {
        let meta = client.topic_metadata(topic).await?;
        let mut ids: Vec<i32> = meta.partitions.iter().map(|p| p.partition).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Err(Error::Server {
                op: "CLUSTER_METADATA",
                message: format!("topic '{topic}' has no partitions"),
            });
        }
        Self::with_partitions(client, topic, config, ids, None).await
    }

    /// A consumer of exactly `ids` (a group member's assignment), each
    /// positioned at `config.from`; commits are fenced when `fence` is set.
    pub(crate) async fn with_partitions(
        client: Client,
        topic: &str,
        config: ConsumerConfig,
        ids: Vec<i32>,
        fence: Option<Fence>,
    ) -> Result<Self> {
        let generation = client.generation();
        let mut consumer = Self {
            client,
            topic: topic.to_owned(),
            config,
            partitions: Vec::new(),
            cursor: 0,
            last_commit: Instant::now(),
            generation,
            fence,
        };
        consumer.reassign(ids, None).await?;
        Ok(consumer)
    }

    /// Switches to the partitions `ids`: partitions kept keep their
    /// positions, new ones start at `config.from` (the group's committed
    /// offset by default), the others are dropped. Returns (revoked, added).
    pub(crate) async fn reassign(&mut self, ids: Vec<i32>, fence: Option<Fence>) -> Result<(Vec<i32>, Vec<i32>)> {
        if fence.is_some() {
            self.fence = fence;
        }
        let revoked: Vec<i32> = self.assignment().into_iter().filter(|id| !ids.contains(id)).collect();
        let added: Vec<i32> = ids.iter().copied().filter(|id| self.state(*id).is_none()).collect();
        let (client, topic, group, from) = (&self.client, &self.topic, &self.config.group, self.config.from);
        let starts =
            futures::future::try_join_all(added.iter().map(|&p| client.subscribe(topic, group, p, from))).await?;
        self.partitions.retain(|p| ids.contains(&p.id));
        self.partitions
            .extend(added.iter().zip(starts).map(|(&id, position)| PartitionState {
                id,
                position,
                committed: None,
                paused: false,
            }));
        self.partitions.sort_by_key(|p| p.id);
        self.cursor = 0;
        Ok((revoked, added))
    }

    /// The topic consumed.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The group id.
    pub fn group(&self) -> &str {
        &self.config.group
    }

    /// The partitions read, ascending.
    pub fn assignment(&self) -> Vec<i32> {
        self.partitions.iter().map(|p| p.id).collect()
    }

    /// The next offset `poll` will read from `partition`.
    pub fn position(&self, partition: i32) -> Option<u64> {
        self.state(partition).map(|p| p.position)
    }

    /// Stops reading `partitions` until [`Consumer::resume`]; their positions
    /// are kept (and committed as they are).
    pub fn pause(&mut self, partitions: &[i32]) -> Result<()> {
        self.set_paused(partitions, true)
    }

    /// Reads `partitions` again.
    pub fn resume(&mut self, partitions: &[i32]) -> Result<()> {
        self.set_paused(partitions, false)
    }

    /// The paused partitions, ascending.
    pub fn paused(&self) -> Vec<i32> {
        self.partitions.iter().filter(|p| p.paused).map(|p| p.id).collect()
    }

    fn set_paused(&mut self, partitions: &[i32], paused: bool) -> Result<()> {
        if let Some(missing) = partitions.iter().find(|id| self.state(**id).is_none()) {
            return Err(Error::InvalidArgument(format!(
                "partition {missing} is not assigned (topic '{}')",
                self.topic
            )));
        }
        for p in self.partitions.iter_mut().filter(|p| partitions.contains(&p.id)) {
            p.paused = paused;
        }
        Ok(())
    }

    /// Moves `partition` to its first record at or after `timestamp_ms`
    /// (SEEK_TO_TIMESTAMP), or its log end; returns the new position.
    pub async fn seek_to_timestamp(&mut self, partition: i32, timestamp_ms: i64) -> Result<u64> {
        if self.state(partition).is_none() {
            return Err(Error::InvalidArgument(format!(
                "partition {partition} is not assigned (topic '{}')",
                self.topic
            )));
        }
        let offset = self
            .client
            .seek_to_timestamp(&self.topic, partition, timestamp_ms)
            .await?;
        self.seek(partition, offset)?;
        Ok(offset)
    }

    /// Moves every partition (paused ones too).
    pub async fn seek_all(&mut self, to: SeekTo) -> Result<()> {
        for id in self.assignment() {
            match to {
                SeekTo::Offset(offset) => self.seek(id, offset)?,
                // The first record at or after time 0 is the first retained one.
                SeekTo::Beginning => {
                    self.seek_to_timestamp(id, 0).await?;
                }
                SeekTo::End => {
                    self.seek_to_timestamp(id, i64::MAX).await?;
                }
                SeekTo::Timestamp(ts) => {
                    self.seek_to_timestamp(id, ts).await?;
                }
            }
        }
        Ok(())
    }

    /// The records as a `futures::Stream`, polled `max` at a time (waiting up
    /// to a second per poll); ends at the first error, after yielding it.
    pub fn stream(self, max: usize) -> impl futures::Stream<Item = Result<ConsumerRecord>> {
        records_stream(self, max, |c, max| Box::pin(c.poll(max, Duration::from_secs(1))))
    }

    /// Moves the read position of `partition` (committed on the next commit).
    pub fn seek(&mut self, partition: i32, offset: u64) -> Result<()> {
        let topic = self.topic.clone();
        let state = self.partitions.iter_mut().find(|p| p.id == partition).ok_or_else(|| {
            Error::InvalidArgument(format!("partition {partition} is not assigned (topic '{topic}')"))
        })?;
        state.position = offset;
        Ok(())
    }

    /// Waits up to `timeout` for records and returns at most `max` of them,
    /// reading partitions round robin. Returns an empty list when nothing
    /// arrived in time. Commits positions when the auto-commit interval has
    /// passed.
    pub async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        let max = max.max(1);
        loop {
            self.ensure_member().await?;
            self.maybe_auto_commit().await?;
            let records = self.fetch_round(max).await?;
            let now = Instant::now();
            if !records.is_empty() || now >= deadline {
                return Ok(records);
            }
            tokio::time::sleep(self.config.poll_interval.min(deadline - now)).await;
        }
    }

    /// One pass over the partitions starting at the cursor, stopping once
    /// `max` records are collected.
    async fn fetch_round(&mut self, max: usize) -> Result<Vec<ConsumerRecord>> {
        let n = self.partitions.len();
        let mut out = Vec::new();
        if n == 0 {
            // A group member with no partitions (more members than partitions).
            return Ok(out);
        }
        for step in 0..n {
            let remaining = max - out.len();
            if remaining == 0 {
                break;
            }
            let idx = (self.cursor + step) % n;
            if self.partitions[idx].paused {
                continue;
            }
            let (id, position) = (self.partitions[idx].id, self.partitions[idx].position);
            let ask = u32::try_from(remaining)
                .unwrap_or(u32::MAX)
                .min(self.config.fetch_max_records.max(1));
            let resp = self
                .client
                .fetch(&self.topic, id, position, ask, &self.config.filter)
                .await?;
            let mut next = position;
            for record in resp.records {
                if record.offset < position || out.len() >= max {
                    continue;
                }
                next = next.max(record.offset + 1);
                out.push(ConsumerRecord {
                    topic: self.topic.clone(),
                    partition: id,
                    offset: record.offset,
                    key: record.key,
                    value: record.value,
                });
            }
            // With a filter the broker skips non-matching records and
            // reports how far it scanned.
            if out.len() < max {
                next = next.max(resp.next_offset);
            }
            self.partitions[idx].position = next;
        }
        self.cursor = (self.cursor + 1) % n;
        Ok(out)
    }

    /// Re-registers with the group after the client reconnected.
    async fn ensure_member(&mut self) -> Result<()> {
        let generation = self.client.generation();
        if generation == self.generation {
            return Ok(());
        }
        let (client, topic, group) = (&self.client, &self.topic, &self.config.group);
        let starts = futures::future::try_join_all(
            self.partitions
                .iter()
                .map(|p| client.subscribe(topic, group, p.id, StartFrom::Committed)),
        )
        .await?;
        tracing::debug!(topic, group, ?starts, "re-registered with the group after reconnect");
        self.generation = generation;
        Ok(())
    }

    async fn maybe_auto_commit(&mut self) -> Result<()> {
        match self.config.auto_commit_interval {
            Some(interval) if self.last_commit.elapsed() >= interval => self.commit().await,
            _ => Ok(()),
        }
    }

    /// Commits the current position of every partition that moved since
    /// its last commit.
    pub async fn commit(&mut self) -> Result<()> {
        let (client, topic, group) = (&self.client, &self.topic, &self.config.group);
        let dirty: Vec<(usize, i32, u64)> = self
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.committed != Some(p.position))
            .map(|(i, p)| (i, p.id, p.position))
            .collect();
        let fence = self.fence.as_ref();
        futures::future::try_join_all(
            dirty
                .iter()
                .map(|&(_, id, position)| commit_to(client, topic, group, id, position, fence)),
        )
        .await?;
        for (i, _, position) in dirty {
            self.partitions[i].committed = Some(position);
        }
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Commits `offset` (the next offset to read) for one partition.
    pub async fn commit_offset(&mut self, partition: i32, offset: u64) -> Result<()> {
        if self.state(partition).is_none() {
            return Err(Error::InvalidArgument(format!(
                "partition {partition} is not assigned (topic '{}')",
                self.topic
            )));
        }
        commit_to(
            &self.client,
            &self.topic,
            &self.config.group,
            partition,
            offset,
            self.fence.as_ref(),
        )
        .await?;
        if let Some(state) = self.partitions.iter_mut().find(|p| p.id == partition) {
            state.committed = Some(offset);
        }
        Ok(())
    }

    /// The group's committed offset for `partition`, as stored by the broker.
    pub async fn committed(&self, partition: i32) -> Result<u64> {
        self.client.get_offset(&self.topic, &self.config.group, partition).await
    }

    /// The group's lag on every partition.
    pub async fn lag(&self) -> Result<Vec<(i32, LagInfo)>> {
        let lags = futures::future::try_join_all(
            self.partitions
                .iter()
                .map(|p| self.client.get_lag(&self.topic, &self.config.group, p.id)),
        )
        .await?;
        Ok(self.assignment().into_iter().zip(lags).collect())
    }

    /// Commits (when auto-commit is on) and ends the consumer.
    pub async fn close(mut self) -> Result<()> {
        if self.config.auto_commit_interval.is_some() {
            self.commit().await?;
        }
        Ok(())
    }

    fn state(&self, partition: i32) -> Option<&PartitionState> {
        self.partitions.iter().find(|p| p.id == partition)
    }
}

/// COMMIT, or COMMIT_FENCED for a group member.
async fn commit_to(
    client: &Client,
    topic: &str,
    group: &str,
    partition: i32,
    offset: u64,
    fence: Option<&Fence>,
) -> Result<()> {
    let Some(fence) = fence else {
        return client.commit(topic, group, partition, offset).await;
    };
    let request = flymq_proto::Request::CommitFenced(flymq_proto::CommitFencedRequest {
        topic: topic.to_owned(),
        group_id: group.to_owned(),
        partition,
        offset,
        member_id: fence.member_id.clone(),
        generation: fence.generation,
    });
    client.request(&request).await.map(|_| ())
}

/// One poll of a consumer, boxed so [`records_stream`] can hold it.
pub(crate) type PollFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<ConsumerRecord>>> + Send + 'a>>;

/// A stream over `poll`: buffered records first, then the next poll; the
/// first error is yielded and ends the stream.
pub(crate) fn records_stream<C: Send + 'static>(
    consumer: C,
    max: usize,
    poll: for<'a> fn(&'a mut C, usize) -> PollFuture<'a>,
) -> impl futures::Stream<Item = Result<ConsumerRecord>> {
    let state = (Some(consumer), std::collections::VecDeque::<ConsumerRecord>::new());
    futures::stream::unfold(state, move |(mut consumer, mut buffered)| async move {
        loop {
            if let Some(record) = buffered.pop_front() {
                return Some((Ok(record), (consumer, buffered)));
            }
            let c = consumer.as_mut()?;
            match poll(c, max).await {
                Ok(records) => buffered.extend(records),
                // Yield the error, then end.
                Err(e) => return Some((Err(e), (None, buffered))),
            }
        }
    })
}
