//! The index of scheduled (delayed) records in the `meta` column family:
//! one key per record not yet delivered, ordered by due time, so finding
//! what is due is a seek. The records themselves are in the partition log
//! (`FLAG_DELAYED`); this index can be rebuilt from it (`pending_in_batch`).

use std::collections::BTreeSet;

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::record_batch::BatchReader;
use super::{CF_META, StorageError, Store, keys, prefix_end};

impl Store {
    pub fn put_delayed(&self, batch: &mut WriteBatch, topic_id: u32, partition: u32, due_ms: i64, offset: u64) {
        batch.put_cf(
            &self.cf(CF_META),
            keys::delayed_key(topic_id, partition, due_ms, offset),
            [],
        );
    }

    pub fn delete_delayed(&self, batch: &mut WriteBatch, topic_id: u32, partition: u32, due_ms: i64, offset: u64) {
        batch.delete_cf(
            &self.cf(CF_META),
            keys::delayed_key(topic_id, partition, due_ms, offset),
        );
    }

    /// Deletes the whole index of a partition.
    pub fn delete_partition_delayed(&self, batch: &mut WriteBatch, topic_id: u32, partition: u32) {
        let prefix = keys::delayed_prefix(topic_id, partition);
        batch.delete_range_cf(&self.cf(CF_META), prefix.as_slice(), prefix_end(&prefix).as_slice());
    }

    /// Deletes the whole index of a topic.
    pub fn delete_topic_delayed(&self, batch: &mut WriteBatch, topic_id: u32) {
        let prefix = keys::delayed_topic_prefix(topic_id);
        batch.delete_range_cf(&self.cf(CF_META), prefix.as_slice(), prefix_end(&prefix).as_slice());
    }

    /// `(due, offset)` of a partition's scheduled records due at `now_ms`,
    /// earliest first, at most `limit`.
    pub fn due_delayed(
        &self,
        topic_id: u32,
        partition: u32,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, u64)>, StorageError> {
        let mut due = Vec::new();
        for (d, offset) in self.scan_delayed(topic_id, partition)? {
            if d > now_ms || due.len() >= limit {
                break;
            }
            due.push((d, offset));
        }
        Ok(due)
    }

    /// `(topic id, partition)` of every partition with scheduled records,
    /// in key order: one seek per such partition, one when there is none.
    pub fn delayed_partitions(&self) -> Result<Vec<(u32, u32)>, StorageError> {
        let mut found = Vec::new();
        let mut iter = self.db().raw_iterator_cf(&self.cf(CF_META));
        iter.seek(keys::DELAYED_PREFIX);
        while let Some(key) = iter.key() {
            let Some((topic_id, partition)) = keys::parse_delayed_partition(key) else {
                break;
            };
            found.push((topic_id, partition));
            iter.seek(prefix_end(&keys::delayed_prefix(topic_id, partition)));
        }
        iter.status()?;
        Ok(found)
    }

    /// Every `(due, offset)` in a partition's index.
    pub fn all_delayed(&self, topic_id: u32, partition: u32) -> Result<BTreeSet<(i64, u64)>, StorageError> {
        self.scan_delayed(topic_id, partition).map(|it| it.collect())
    }

    fn scan_delayed(
        &self,
        topic_id: u32,
        partition: u32,
    ) -> Result<impl Iterator<Item = (i64, u64)> + '_, StorageError> {
        let prefix = keys::delayed_prefix(topic_id, partition);
        let iter = self
            .db()
            .iterator_cf(&self.cf(CF_META), IteratorMode::From(&prefix, Direction::Forward));
        Ok(iter
            .map_while(Result::ok)
            .take_while(move |(key, _)| key.starts_with(&prefix))
            .filter_map(|(key, _)| keys::parse_delayed_key(&key)))
    }
}

/// Updates `pending` (offset → due) with one plaintext batch starting at
/// `first_offset`: scheduled records are added, delivered copies remove
/// the record they deliver. Used to rebuild the index from a partition's
/// records (a snapshot install).
pub fn pending_in_batch(
    pending: &mut std::collections::BTreeMap<u64, i64>,
    first_offset: u64,
    value: &[u8],
) -> Result<(), StorageError> {
    let corrupt = |e: super::record_batch::BatchError| StorageError::Corrupt {
        what: format!("batch at offset {first_offset} in a snapshot: {e}"),
    };
    let (_, reader) = BatchReader::new(value).map_err(corrupt)?;
    for (i, record) in reader.enumerate() {
        let record = record.map_err(corrupt)?;
        if let Some(due) = record.due_at() {
            pending.insert(first_offset + i as u64, due);
        }
        if let Some(origin) = record.released_from() {
            pending.remove(&origin);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_with_scheduled_records_are_found_by_seeking() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.delayed_partitions().unwrap(), vec![]);
        let mut batch = WriteBatch::default();
        for (topic, partition, due, offset) in [(1, 3, 50, 7), (1, 0, 10, 1), (1, 0, 20, 2), (2, 1, 5, 0)] {
            store.put_delayed(&mut batch, topic, partition, due, offset);
        }
        // Keys on either side of the index.
        store.put_cluster_value(&mut batch, "x", b"1").unwrap();
        batch.put_cf(&store.cf(CF_META), b"e/after", b"");
        store.db().write(batch).unwrap();
        assert_eq!(store.delayed_partitions().unwrap(), vec![(1, 0), (1, 3), (2, 1)]);

        let mut batch = WriteBatch::default();
        store.delete_topic_delayed(&mut batch, 1);
        store.db().write(batch).unwrap();
        assert_eq!(store.delayed_partitions().unwrap(), vec![(2, 1)]);
    }
}
