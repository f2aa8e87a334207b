//! The producer's record accumulator: groups records per (topic, partition)
//! into batches that close when they reach a record count, a byte size or
//! their linger time. Pure bookkeeping, no I/O, so it is tested on its own.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Bytes a record costs in a PRODUCE_BATCH payload besides its key and value
/// (two u32 length prefixes); used for the batch size estimate.
pub const RECORD_OVERHEAD: usize = 8;

/// Records bound for one (topic, partition), each with its completion.
#[derive(Debug)]
pub struct Batch<C> {
    /// Target topic.
    pub topic: String,
    /// Target partition; `-1` lets the broker choose.
    pub partition: i32,
    /// `(key, value)` pairs in send order.
    pub records: Vec<(Bytes, Bytes)>,
    /// One completion per record, same order.
    pub completions: Vec<C>,
    /// Estimated payload size of the records.
    pub bytes: usize,
    /// When the first record was added.
    pub created: Instant,
}

impl<C> Batch<C> {
    fn new(topic: String, partition: i32, now: Instant) -> Self {
        Self {
            topic,
            partition,
            records: Vec::new(),
            completions: Vec::new(),
            bytes: 0,
            created: now,
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Limits that close a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Records per batch (at least 1).
    pub max_records: usize,
    /// Estimated bytes per batch (at least 1); a single larger record still
    /// forms a batch of its own.
    pub max_bytes: usize,
    /// How long the first record of a batch may wait for company.
    pub linger: Duration,
}

/// Open batches keyed by (topic, partition).
#[derive(Debug)]
pub struct Accumulator<C> {
    limits: BatchLimits,
    open: HashMap<(String, i32), Batch<C>>,
    records: usize,
}

impl<C> Accumulator<C> {
    /// An empty accumulator.
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits: BatchLimits {
                max_records: limits.max_records.max(1),
                max_bytes: limits.max_bytes.max(1),
                linger: limits.linger,
            },
            open: HashMap::new(),
            records: 0,
        }
    }

    /// Records currently held in open batches.
    #[cfg(test)]
    pub fn pending_records(&self) -> usize {
        self.records
    }

    /// Adds a record. Batches that became ready (the one this record would
    /// have overflowed, and/or the one it filled) are pushed to `ready`.
    pub fn append(
        &mut self,
        topic: &str,
        partition: i32,
        (key, value): (Bytes, Bytes),
        completion: C,
        now: Instant,
        ready: &mut Vec<Batch<C>>,
    ) {
        let size = key.len() + value.len() + RECORD_OVERHEAD;
        let map_key = (topic.to_owned(), partition);
        // A record that would push a non-empty batch over the byte limit
        // closes that batch first.
        if let Some(batch) = self.open.get(&map_key)
            && !batch.is_empty()
            && batch.bytes + size > self.limits.max_bytes
            && let Some(batch) = self.open.remove(&map_key)
        {
            self.records -= batch.len();
            ready.push(batch);
        }
        let batch = self
            .open
            .entry(map_key)
            .or_insert_with_key(|(topic, partition)| Batch::new(topic.clone(), *partition, now));
        batch.records.push((key, value));
        batch.completions.push(completion);
        batch.bytes += size;
        self.records += 1;
        if batch.len() >= self.limits.max_records || batch.bytes >= self.limits.max_bytes {
            let full_key = (batch.topic.clone(), batch.partition);
            if let Some(batch) = self.open.remove(&full_key) {
                self.records -= batch.len();
                ready.push(batch);
            }
        }
    }

    /// When the oldest open batch's linger expires, if any batch is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().map(|b| b.created + self.limits.linger).min()
    }

    /// Removes and returns the batches whose linger has expired at `now`.
    pub fn drain_expired(&mut self, now: Instant) -> Vec<Batch<C>> {
        let linger = self.limits.linger;
        let expired: Vec<(String, i32)> = self
            .open
            .iter()
            .filter(|(_, b)| b.created + linger <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let batches: Vec<Batch<C>> = expired.into_iter().filter_map(|k| self.open.remove(&k)).collect();
        self.records -= batches.iter().map(Batch::len).sum::<usize>();
        batches
    }

    /// Removes and returns every open batch (for flush and close).
    pub fn drain_all(&mut self) -> Vec<Batch<C>> {
        self.records = 0;
        self.open.drain().map(|(_, b)| b).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_records: usize, max_bytes: usize, linger_ms: u64) -> BatchLimits {
        BatchLimits {
            max_records,
            max_bytes,
            linger: Duration::from_millis(linger_ms),
        }
    }

    fn value(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn closes_batch_at_record_limit() {
        let mut acc = Accumulator::new(limits(3, 1 << 20, 1000));
        let now = Instant::now();
        let mut ready = Vec::new();
        for i in 0..7u32 {
            acc.append("t", 0, (Bytes::new(), value(1)), i, now, &mut ready);
        }
        assert_eq!(ready.len(), 2);
        assert_eq!(ready[0].completions, vec![0, 1, 2]);
        assert_eq!(ready[1].completions, vec![3, 4, 5]);
        assert_eq!(acc.pending_records(), 1);
    }

    #[test]
    fn closes_batch_before_byte_overflow() {
        // Each record costs 10 + 8 = 18 bytes; two fit in 40, a third does not.
        let mut acc = Accumulator::new(limits(100, 40, 1000));
        let now = Instant::now();
        let mut ready = Vec::new();
        for i in 0..3u32 {
            acc.append("t", 0, (Bytes::new(), value(10)), i, now, &mut ready);
        }
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].completions, vec![0, 1]);
        assert_eq!(ready[0].bytes, 36);
        assert_eq!(acc.pending_records(), 1);
    }

    #[test]
    fn oversized_record_forms_its_own_batch() {
        let mut acc = Accumulator::new(limits(100, 40, 1000));
        let now = Instant::now();
        let mut ready = Vec::new();
        acc.append("t", 0, (Bytes::new(), value(1)), 0u32, now, &mut ready);
        acc.append("t", 0, (Bytes::new(), value(100)), 1u32, now, &mut ready);
        assert_eq!(ready.len(), 2);
        assert_eq!(ready[0].completions, vec![0]);
        assert_eq!(ready[1].completions, vec![1]);
        assert_eq!(acc.pending_records(), 0);
    }

    #[test]
    fn groups_by_topic_and_partition() {
        let mut acc = Accumulator::new(limits(100, 1 << 20, 1000));
        let now = Instant::now();
        let mut ready = Vec::new();
        acc.append("a", 0, (Bytes::new(), value(1)), 0u32, now, &mut ready);
        acc.append("a", 1, (Bytes::new(), value(1)), 1u32, now, &mut ready);
        acc.append("b", 0, (Bytes::new(), value(1)), 2u32, now, &mut ready);
        acc.append("a", 0, (Bytes::new(), value(1)), 3u32, now, &mut ready);
        assert!(ready.is_empty());
        let mut all = acc.drain_all();
        all.sort_by(|x, y| (&x.topic, x.partition).cmp(&(&y.topic, y.partition)));
        let groups: Vec<(String, i32, Vec<u32>)> =
            all.into_iter().map(|b| (b.topic, b.partition, b.completions)).collect();
        assert_eq!(
            groups,
            vec![
                ("a".into(), 0, vec![0, 3]),
                ("a".into(), 1, vec![1]),
                ("b".into(), 0, vec![2]),
            ]
        );
        assert_eq!(acc.pending_records(), 0);
    }

    #[test]
    fn linger_expiry() {
        let mut acc = Accumulator::new(limits(100, 1 << 20, 10));
        let t0 = Instant::now();
        let mut ready = Vec::new();
        assert_eq!(acc.next_deadline(), None);
        acc.append("a", 0, (Bytes::new(), value(1)), 0u32, t0, &mut ready);
        let t1 = t0 + Duration::from_millis(5);
        acc.append("b", 0, (Bytes::new(), value(1)), 1u32, t1, &mut ready);
        assert_eq!(acc.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert!(acc.drain_expired(t0 + Duration::from_millis(9)).is_empty());
        let expired = acc.drain_expired(t0 + Duration::from_millis(10));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].topic, "a");
        assert_eq!(acc.next_deadline(), Some(t1 + Duration::from_millis(10)));
        assert_eq!(acc.pending_records(), 1);
    }
}
