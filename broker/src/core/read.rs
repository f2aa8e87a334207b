//! Reads: CONSUME, FETCH and seek by timestamp (expired TTL records are
//! never returned), straight from the local
//! replica's RocksDB up to the published (committed and applied) log end.
//! These do blocking RocksDB I/O: callers on async threads run them with
//! `spawn_blocking`.

use std::ops::ControlFlow;

use bytes::Bytes;

use super::broker::{Broker, now_ms};
use super::error::{BrokerError, BrokerResult};

/// How much one FETCH may return and examine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Most records returned.
    pub max_records: usize,
    /// Most records examined (matters with a filter).
    pub max_scanned: usize,
}

impl Broker {
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
        self.replicator.check_readable(&view, p)?;
        let state = view
            .partition(p)
            .ok_or_else(|| BrokerError::TopicNotFound(topic.to_owned()))?;
        let (start, end) = (state.start_offset(), state.next_offset());
        let mut found = None;
        let mut expired = false;
        let mut scheduled = None;
        if offset >= start && offset < end {
            let now = now_ms();
            self.store.read_records(view.record.id, p, offset, end, |_, r| {
                expired = r.is_expired(now);
                scheduled = r.due_at();
                found = Some((Bytes::copy_from_slice(r.key), Bytes::copy_from_slice(r.payload())));
                ControlFlow::Break(())
            })?;
        }
        if let Some(due_ms) = scheduled {
            return Err(BrokerError::RecordScheduled {
                topic: topic.to_owned(),
                partition: p,
                offset,
                due_ms,
            });
        }
        if expired {
            return Err(BrokerError::RecordExpired {
                topic: topic.to_owned(),
                partition: p,
                offset,
            });
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
    /// that pass `filter`, within `limits`, until `emit` returns false.
    /// Returns the next offset to read. Records below the partition's start
    /// offset (removed by retention) are never returned, even where a stored
    /// batch still holds them.
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
        let from = offset.max(pos.start);
        let (mut emitted, mut scanned, mut bytes) = (0usize, 0usize, 0u64);
        let mut did_not_fit = None;
        let now = now_ms();
        let next = self
            .store
            .read_records(pos.topic_id, pos.partition, from, pos.end, |off, r| {
                scanned += 1;
                let value = r.payload();
                // Expired and scheduled records are skipped like filtered ones.
                if !r.is_expired(now) && !r.is_scheduled() && filter.is_none_or(|f| f.matches(r.key, value)) {
                    if !emit(off, r.key, value) {
                        did_not_fit = Some(off);
                        return ControlFlow::Break(());
                    }
                    emitted += 1;
                    bytes += (r.key.len() + value.len()) as u64;
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
}
