//! Dead-letter queues (WIRE.md §11). A topic with `max_deliveries` N sends
//! a record to its dead-letter queue, the ordinary topic `<topic>.dlq`
//! (partition 0), once a consumer group has been delivered it N times
//! without committing past it: a poison record then stops blocking the
//! group.
//!
//! A *delivery* is a FETCH, on a connection that SUBSCRIBEd to the topic
//! with a group, that starts at the group's committed offset of the
//! partition (its first retained offset when the group never committed): the consumer is (re)reading from where the group stands, so
//! it did not get past that record since the last commit. The next such
//! FETCH after N of them moves the record: it is appended to the DLQ with a
//! header (the record key of the DLQ record, JSON: where it came from, why,
//! how often it was delivered), the group's offset is committed past it,
//! and the FETCH is served from the next record.
//!
//! Counts are kept by the broker that serves the FETCHes, in memory: a
//! consumer that moves to another broker, or a broker restart, starts the
//! count again (a record is then delivered more than N times, never fewer).

use std::collections::HashMap;
use std::ops::ControlFlow;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::broker::{Broker, now_ms};
use super::command::NewRecord;
use super::error::{BrokerError, BrokerResult};
use super::names::validate_topic_name;
use super::read::FetchLimits;

/// Highest `max_deliveries` accepted.
pub const MAX_MAX_DELIVERIES: u32 = 1000;
/// The DLQ of topic `T` is the topic `T.dlq`.
pub const DLQ_SUFFIX: &str = ".dlq";
/// Groups × partitions whose count is kept; beyond it the counts restart
/// (a record may then be delivered more often, never less).
const MAX_TRACKED: usize = 100_000;
/// FETCH_DLQ's `max_messages` when the client sends 0 or less.
const DEFAULT_FETCH_DLQ: usize = 10;
/// Most entries one FETCH_DLQ returns.
const MAX_FETCH_DLQ: usize = 10_000;

/// The dead-letter queue topic of `topic`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}{DLQ_SUFFIX}")
}

/// Refuses 0 (use "off") and absurd limits.
pub fn validate_max_deliveries(n: u32) -> BrokerResult<u32> {
    if n == 0 || n > MAX_MAX_DELIVERIES {
        return Err(BrokerError::InvalidArgument(format!(
            "invalid max_deliveries {n}: must be between 1 and {MAX_MAX_DELIVERIES} (0 turns dead-lettering off)"
        )));
    }
    Ok(n)
}

/// The key of a record in a dead-letter queue: where it came from and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// `<partition>:<offset>` in the original topic.
    pub id: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// The original record's key.
    #[serde(default)]
    pub key: Vec<u8>,
    pub group: String,
    pub error: String,
    /// Deliveries before it was dead-lettered.
    pub retries: u32,
    pub dead_lettered_ms: i64,
}

impl DeadLetter {
    /// The header of record `partition:offset` of `topic`, dead-lettered now.
    fn new(topic: &str, partition: u32, offset: u64, key: &[u8], group: &str, error: String, retries: u32) -> Self {
        Self {
            id: format!("{partition}:{offset}"),
            topic: topic.to_owned(),
            partition,
            offset,
            key: key.to_vec(),
            group: group.to_owned(),
            error,
            retries,
            dead_lettered_ms: now_ms(),
        }
    }
}

/// One entry of a dead-letter queue as FETCH_DLQ / REPLAY_DLQ see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqEntry {
    /// Offset in the DLQ topic.
    pub dlq_offset: u64,
    /// The header, or `None` for a record produced to the DLQ by hand.
    pub header: Option<DeadLetter>,
    pub payload: Bytes,
}

impl DlqEntry {
    pub fn id(&self) -> String {
        match &self.header {
            Some(h) => h.id.clone(),
            None => format!("dlq:{}", self.dlq_offset),
        }
    }
}

/// (topic, group, partition).
type GroupPartition = (String, String, u32);

/// Deliveries of the record at each (topic, group, partition)'s committed
/// offset, counted on this broker: the offset and its count.
#[derive(Default)]
pub struct Deliveries {
    counts: Mutex<HashMap<GroupPartition, (u64, u32)>>,
}

impl Deliveries {
    /// One more delivery from `offset`; returns how many there were since
    /// the group's offset last moved.
    fn record(&self, topic: &str, group: &str, partition: u32, offset: u64) -> u32 {
        let mut counts = self.counts.lock();
        if counts.len() >= MAX_TRACKED {
            counts.clear();
        }
        let entry = counts
            .entry((topic.to_owned(), group.to_owned(), partition))
            .or_insert((offset, 0));
        if entry.0 != offset {
            *entry = (offset, 0);
        }
        entry.1 += 1;
        entry.1
    }

    /// Deliveries counted for the record at `offset` (0 when not tracked).
    fn count(&self, topic: &str, group: &str, partition: u32, offset: u64) -> u32 {
        match self.counts.lock().get(&(topic.to_owned(), group.to_owned(), partition)) {
            Some((at, n)) if *at == offset => *n,
            _ => 0,
        }
    }

    fn reset(&self, topic: &str, group: &str, partition: u32) {
        self.counts
            .lock()
            .remove(&(topic.to_owned(), group.to_owned(), partition));
    }
}

impl Broker {
    /// Before a FETCH of `topic`/`partition` from `offset` on connection
    /// `session`: counts the delivery and, past the topic's limit, moves
    /// the record to the DLQ. Returns the offset to read from.
    pub async fn dead_letter_if_exhausted(
        &self,
        session: u64,
        topic: &str,
        partition: i32,
        offset: u64,
    ) -> BrokerResult<u64> {
        let (Some(view), Ok(p)) = (self.catalog.topic(topic), u32::try_from(partition)) else {
            return Ok(offset);
        };
        let Some(max) = view.record.max_deliveries else {
            return Ok(offset);
        };
        let Some(group) = self.members.group_of(session, topic) else {
            return Ok(offset);
        };
        let committed = self.read_committed_offset(topic, &group, p).await?;
        // A group without a commit for the partition stands at its start.
        let stands_at = committed.unwrap_or_else(|| view.partition(p).map_or(0, |s| s.start_offset()));
        if stands_at != offset {
            return Ok(offset);
        }
        let deliveries = self.deliveries.record(topic, &group, p, offset);
        if deliveries <= max {
            return Ok(offset);
        }
        let Some((at, key, payload)) = self.first_visible(view.record.id, p, offset).await? else {
            return Ok(offset);
        };
        let error = format!(
            "delivered {max} times to consumer group '{group}' without a commit past it (max_deliveries {max})"
        );
        let header = DeadLetter::new(topic, p, at, &key, &group, error, max);
        self.append_dead_letter(&header, payload).await?;
        self.commit(topic, &group, partition, at + 1).await?;
        self.deliveries.reset(topic, &group, p);
        tracing::info!(topic, partition = p, offset = at, group = %group, deliveries = max,
            "record moved to the dead-letter queue");
        Ok(at + 1)
    }

    /// REJECT_RECORD: a consumer of `group` gives up on the record at
    /// `offset`: it goes to the DLQ now, whatever the delivery count, and
    /// a group standing at that offset moves past it. Returns the entry's id.
    pub async fn reject_record(
        &self,
        topic: &str,
        group: &str,
        partition: i32,
        offset: u64,
        reason: &str,
    ) -> BrokerResult<String> {
        super::names::validate_group_id(group)?;
        let view = self.topic(topic)?;
        let p = Broker::checked_partition(&view, partition)?;
        self.replicator.check_readable(&view, p)?;
        let found = self.first_visible(view.record.id, p, offset).await?;
        let Some((at, key, payload)) = found.filter(|(at, _, _)| *at == offset) else {
            return Err(BrokerError::InvalidArgument(format!(
                "no readable record at offset {offset} of '{topic}' partition {p} to reject"
            )));
        };
        let reason: String = reason.chars().filter(|c| !c.is_control()).take(1000).collect();
        let error = if reason.is_empty() {
            format!("rejected by consumer group '{group}'")
        } else {
            format!("rejected by consumer group '{group}': {reason}")
        };
        let retries = self.deliveries.count(topic, group, p, at);
        let header = DeadLetter::new(topic, p, at, &key, group, error, retries);
        self.append_dead_letter(&header, payload).await?;
        self.metadata_barrier().await?;
        if self.read_committed_offset(topic, group, p).await? == Some(at) {
            self.commit(topic, group, partition, at + 1).await?;
        }
        self.deliveries.reset(topic, group, p);
        tracing::info!(
            topic,
            partition = p,
            offset = at,
            group,
            "record rejected into the dead-letter queue"
        );
        Ok(header.id)
    }

    /// The first record readers can see at or after `offset`.
    async fn first_visible(
        &self,
        topic_id: u32,
        partition: u32,
        offset: u64,
    ) -> BrokerResult<Option<(u64, Bytes, Bytes)>> {
        self.read_store("a record to dead-letter", move |store| {
            let now = now_ms();
            let mut found = None;
            store.read_records(topic_id, partition, offset, u64::MAX, |o, r| {
                if r.is_expired(now) || r.is_scheduled() {
                    return ControlFlow::Continue(());
                }
                found = Some((o, Bytes::copy_from_slice(r.key), Bytes::copy_from_slice(r.payload())));
                ControlFlow::Break(())
            })?;
            Ok(found)
        })
        .await
    }

    /// Appends a dead letter to the topic's DLQ (created, 1 partition, when
    /// missing).
    async fn append_dead_letter(&self, header: &DeadLetter, payload: Bytes) -> BrokerResult<()> {
        let dlq = dlq_topic(&header.topic);
        if self.catalog.topic(&dlq).is_none() {
            self.create_topic_with(&dlq, 1, 0, Default::default()).await?;
        }
        // A struct of strings and numbers: serialising cannot fail.
        let key = Bytes::from(serde_json::to_vec(header).unwrap_or_default());
        self.submit_produce(&dlq, 0, vec![NewRecord::new(key, payload)])?
            .await
            .map(|_| ())
    }

    /// FETCH_DLQ: the first `max` entries of the topic's DLQ (none when it
    /// has no DLQ).
    pub fn fetch_dlq(&self, topic: &str, max: i32) -> BrokerResult<Vec<DlqEntry>> {
        let dlq = dlq_topic(topic);
        if self.catalog.topic(&dlq).is_none() {
            return Ok(Vec::new());
        }
        let max = match usize::try_from(max) {
            Ok(0) | Err(_) => DEFAULT_FETCH_DLQ,
            Ok(n) => n.min(MAX_FETCH_DLQ),
        };
        let mut entries = Vec::new();
        self.fetch(
            &dlq,
            0,
            0,
            FetchLimits {
                max_records: max,
                max_scanned: max.max(1000),
            },
            None,
            |offset, key, value| {
                entries.push(DlqEntry {
                    dlq_offset: offset,
                    header: serde_json::from_slice(key).ok(),
                    payload: Bytes::copy_from_slice(value),
                });
                true
            },
        )?;
        Ok(entries)
    }

    /// The DLQ entry with `id` (as FETCH_DLQ shows it) or at DLQ offset.
    fn find_dead_letter(&self, topic: &str, target: &DlqTarget) -> BrokerResult<Option<DlqEntry>> {
        let dlq = dlq_topic(topic);
        if self.catalog.topic(&dlq).is_none() {
            return Ok(None);
        }
        let from = match target {
            DlqTarget::Offset(o) => *o,
            DlqTarget::Id(_) => 0,
        };
        let mut found = None;
        let mut next = from;
        loop {
            let before = next;
            next = self.fetch(
                &dlq,
                0,
                next,
                FetchLimits {
                    max_records: 1000,
                    max_scanned: 1000,
                },
                None,
                |offset, key, value| {
                    let entry = DlqEntry {
                        dlq_offset: offset,
                        header: serde_json::from_slice(key).ok(),
                        payload: Bytes::copy_from_slice(value),
                    };
                    let hit = match target {
                        DlqTarget::Offset(o) => offset == *o,
                        DlqTarget::Id(id) => entry.id() == *id,
                    };
                    if hit {
                        found = Some(entry);
                        return false;
                    }
                    // Looking for one offset: stop past it.
                    !matches!(target, DlqTarget::Offset(_))
                },
            )?;
            if found.is_some() || next == before || matches!(target, DlqTarget::Offset(_)) {
                return Ok(found);
            }
        }
    }

    /// REPLAY_DLQ: produces a dead letter again to its topic (its original
    /// partition when that still exists). Ok(None) when there is no such
    /// entry. The entry stays in the DLQ (PURGE_DLQ clears it).
    pub async fn replay_dead_letter(&self, topic: &str, target: DlqTarget) -> BrokerResult<Option<String>> {
        let Some(entry) = self.find_dead_letter(topic, &target)? else {
            return Ok(None);
        };
        let (key, partition) = match &entry.header {
            Some(h) => (Bytes::from(h.key.clone()), i32::try_from(h.partition).unwrap_or(-1)),
            None => (Bytes::new(), -1),
        };
        let partition = match self.catalog.topic(topic) {
            Some(view) if partition >= 0 && (partition as u32) < view.partition_count() => partition,
            Some(_) => -1,
            None => return Err(BrokerError::TopicNotFound(topic.to_owned())),
        };
        let id = entry.id();
        let ack = self
            .submit_produce(topic, partition, vec![NewRecord::new(key, entry.payload)])?
            .await?;
        Ok(Some(format!(
            "replayed {id} to '{topic}' partition {} offset {}",
            ack.partition, ack.base_offset
        )))
    }

    /// PURGE_DLQ: deletes the topic's DLQ; whether there was one.
    pub async fn purge_dlq(&self, topic: &str) -> BrokerResult<bool> {
        validate_topic_name(topic)?;
        self.delete_topic(&dlq_topic(topic)).await
    }
}

/// Which DLQ entry REPLAY_DLQ means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqTarget {
    /// As FETCH_DLQ shows it.
    Id(String),
    /// Offset in the DLQ topic.
    Offset(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_count_per_committed_offset_and_restart_when_it_moves() {
        let d = Deliveries::default();
        assert_eq!(d.record("t", "g", 0, 5), 1);
        assert_eq!(d.record("t", "g", 0, 5), 2);
        assert_eq!(d.record("t", "g", 1, 5), 1, "another partition");
        assert_eq!(d.record("t", "h", 0, 5), 1, "another group");
        assert_eq!(d.record("t", "g", 0, 6), 1, "the group moved on");
        d.reset("t", "g", 0);
        assert_eq!(d.record("t", "g", 0, 6), 1);
    }

    #[test]
    fn limits_are_checked() {
        assert!(validate_max_deliveries(0).is_err());
        assert!(
            validate_max_deliveries(1001)
                .unwrap_err()
                .to_string()
                .contains("between 1 and 1000")
        );
        assert_eq!(validate_max_deliveries(3).unwrap(), 3);
        assert_eq!(dlq_topic("orders"), "orders.dlq");
    }
}
