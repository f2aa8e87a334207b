//! Reading and writing record batches of one partition in the `log` column family.

use std::borrow::Cow;
use std::ops::ControlFlow;

use rocksdb::{DBRawIteratorWithThreadMode, ReadOptions, WriteBatch};

use super::crypto::plain_batch_len;
use super::record_batch::{BatchReader, RecordRef, read_header};
use super::{CF_LOG, Db, StorageError, Store, keys};

/// Summary of one stored batch, used by retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub first_offset: u64,
    pub count: u32,
    pub max_timestamp: i64,
    pub size_bytes: u64,
}

impl BatchInfo {
    pub fn end_offset(&self) -> u64 {
        self.first_offset + u64::from(self.count)
    }
}

fn corrupt(topic_id: u32, partition: u32, offset: u64, err: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        what: format!("batch at topic id {topic_id} partition {partition} offset {offset}: {err}"),
    }
}

impl Store {
    /// Adds a plaintext batch value (format 1) to `batch`, sealed when
    /// encryption at rest is on: one seal per stored batch.
    pub fn put_batch(
        &self,
        batch: &mut WriteBatch,
        topic_id: u32,
        partition: u32,
        first_offset: u64,
        value: &[u8],
    ) -> Result<(), StorageError> {
        let key = keys::log_key(topic_id, partition, first_offset);
        batch.put_cf(&self.cf(CF_LOG), key, self.stored_batch(&key, value)?);
        Ok(())
    }

    /// The value stored for a plaintext batch under `key`: sealed when
    /// encryption at rest is on (borrowed when not).
    pub fn stored_batch<'a>(&self, key: &[u8], value: &'a [u8]) -> Result<Cow<'a, [u8]>, StorageError> {
        match &self.at_rest {
            None => Ok(Cow::Borrowed(value)),
            Some(at_rest) => Ok(Cow::Owned(at_rest.seal_batch(key, value)?)),
        }
    }

    /// The plaintext batch of a stored value (borrowed when not encrypted).
    fn plain_batch<'a>(&self, key: &[u8], stored: &'a [u8]) -> Result<Cow<'a, [u8]>, StorageError> {
        match &self.at_rest {
            None => Ok(Cow::Borrowed(stored)),
            Some(at_rest) => at_rest.open_batch(key, stored).map(Cow::Owned),
        }
    }

    /// Deletes the batches whose first offset is in `[from, to)`.
    pub fn delete_batches(&self, batch: &mut WriteBatch, topic_id: u32, partition: u32, from: u64, to: u64) {
        batch.delete_range_cf(
            &self.cf(CF_LOG),
            keys::log_key(topic_id, partition, from),
            keys::log_key(topic_id, partition, to),
        );
    }

    /// An iterator bounded to batches of one partition starting before `end`.
    fn partition_iter(&self, topic_id: u32, partition: u32, end: u64) -> DBRawIteratorWithThreadMode<'_, Db> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(keys::log_key(topic_id, partition, 0).to_vec());
        opts.set_iterate_upper_bound(keys::log_key(topic_id, partition, end).to_vec());
        self.db().raw_iterator_cf_opt(&self.cf(CF_LOG), opts)
    }

    /// Calls `visit` for every record with offset in `[from, end)` in order until
    /// it returns `Break`. `end` must be the committed log end, so only whole,
    /// durable batches are read. Returns the offset after the last record visited
    /// (or `from` when none was).
    pub fn read_records<F>(
        &self,
        topic_id: u32,
        partition: u32,
        from: u64,
        end: u64,
        mut visit: F,
    ) -> Result<u64, StorageError>
    where
        F: FnMut(u64, RecordRef<'_>) -> ControlFlow<()>,
    {
        if from >= end {
            return Ok(from);
        }
        let mut iter = self.partition_iter(topic_id, partition, end);
        iter.seek_for_prev(keys::log_key(topic_id, partition, from));
        if !iter.valid() {
            // `from` is before the first retained batch: start at the first one.
            iter.seek(keys::log_key(topic_id, partition, from));
        }
        let mut next = from;
        while iter.valid() {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            let first = keys::log_key_offset(key).ok_or_else(|| corrupt(topic_id, partition, from, "bad key"))?;
            let value = self.plain_batch(key, value)?;
            let (_, reader) = BatchReader::new(&value).map_err(|e| corrupt(topic_id, partition, first, e))?;
            for (i, record) in reader.enumerate() {
                let record = record.map_err(|e| corrupt(topic_id, partition, first, e))?;
                let offset = first + i as u64;
                if offset < from {
                    continue;
                }
                if offset >= end {
                    return Ok(next);
                }
                next = offset + 1;
                if visit(offset, record).is_break() {
                    return Ok(next);
                }
            }
            iter.next();
        }
        iter.status()?;
        Ok(next)
    }

    /// Calls `visit(first offset, plaintext batch value)` for every stored
    /// batch whose first offset is in `[from, end)`, in order, until it
    /// returns `Ok(false)`.
    pub fn for_each_batch<E: From<StorageError>>(
        &self,
        topic_id: u32,
        partition: u32,
        from: u64,
        end: u64,
        mut visit: impl FnMut(u64, &[u8]) -> Result<bool, E>,
    ) -> Result<(), E> {
        let mut iter = self.partition_iter(topic_id, partition, end);
        iter.seek(keys::log_key(topic_id, partition, from));
        while iter.valid() {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            let first = keys::log_key_offset(key).ok_or_else(|| corrupt(topic_id, partition, from, "bad key"))?;
            let value = self.plain_batch(key, value)?;
            if !visit(first, &value)? {
                return Ok(());
            }
            iter.next();
        }
        iter.status().map_err(StorageError::from)?;
        Ok(())
    }

    /// The stored batch holding `offset` (its first offset and record count),
    /// if one does.
    pub fn batch_holding(&self, topic_id: u32, partition: u32, offset: u64) -> Result<Option<BatchInfo>, StorageError> {
        let mut iter = self.partition_iter(topic_id, partition, offset.saturating_add(1));
        iter.seek_for_prev(keys::log_key(topic_id, partition, offset));
        if !iter.valid() {
            iter.status()?;
            return Ok(None);
        }
        let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
            return Ok(None);
        };
        let first = keys::log_key_offset(key).ok_or_else(|| corrupt(topic_id, partition, offset, "bad key"))?;
        let header = read_header(value).map_err(|e| corrupt(topic_id, partition, first, e))?;
        let info = BatchInfo {
            first_offset: first,
            count: header.count,
            max_timestamp: header.max_timestamp,
            size_bytes: plain_batch_len(value),
        };
        Ok((info.end_offset() > offset).then_some(info))
    }

    /// The first `limit` batches of a partition starting at or after `from`.
    pub fn batch_infos(
        &self,
        topic_id: u32,
        partition: u32,
        from: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<BatchInfo>, StorageError> {
        let mut iter = self.partition_iter(topic_id, partition, end);
        iter.seek(keys::log_key(topic_id, partition, from));
        let mut infos = Vec::new();
        while iter.valid() && infos.len() < limit {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            let first = keys::log_key_offset(key).ok_or_else(|| corrupt(topic_id, partition, from, "bad key"))?;
            let header = read_header(value).map_err(|e| corrupt(topic_id, partition, first, e))?;
            infos.push(BatchInfo {
                first_offset: first,
                count: header.count,
                max_timestamp: header.max_timestamp,
                size_bytes: plain_batch_len(value),
            });
            iter.next();
        }
        iter.status()?;
        Ok(infos)
    }

    /// The first offset in `[start, end)` whose record timestamp is at least
    /// `timestamp_ms`, or `end` if none. Timestamps never decrease within a
    /// partition, so this is a binary search over batches.
    pub fn offset_for_timestamp(
        &self,
        topic_id: u32,
        partition: u32,
        start: u64,
        end: u64,
        timestamp_ms: i64,
    ) -> Result<u64, StorageError> {
        let mut iter = self.partition_iter(topic_id, partition, end);
        let (mut lo, mut hi) = (start, end);
        let mut candidate: Option<u64> = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            iter.seek_for_prev(keys::log_key(topic_id, partition, mid));
            if !iter.valid() {
                iter.seek(keys::log_key(topic_id, partition, mid));
            }
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            let first = keys::log_key_offset(key).ok_or_else(|| corrupt(topic_id, partition, mid, "bad key"))?;
            let header = read_header(value).map_err(|e| corrupt(topic_id, partition, first, e))?;
            if header.max_timestamp < timestamp_ms {
                lo = first + u64::from(header.count);
            } else {
                candidate = Some(first);
                hi = first;
            }
        }
        iter.status()?;
        let Some(first) = candidate else { return Ok(end) };
        let mut found = end;
        self.read_records(topic_id, partition, first.max(start), end, |offset, record| {
            if record.timestamp >= timestamp_ms {
                found = offset;
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record_batch::BatchBuilder;

    fn store_with_batches() -> (tempfile::TempDir, Store) {
        store_with_batches_keyed(None)
    }

    fn store_with_batches_keyed(
        keyring: Option<std::sync::Arc<flymq_security::Keyring>>,
    ) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_keys(dir.path(), crate::storage::StoreOptions::default(), keyring).unwrap();
        let mut wb = WriteBatch::default();
        // Offsets 0..3 at ts 100..102, 3..5 at ts 200..201, 5 at ts 300; another partition too.
        for (first, stamps) in [(0u64, vec![100, 101, 102]), (3, vec![200, 201]), (5, vec![300])] {
            let mut b = BatchBuilder::new();
            for (i, ts) in stamps.iter().enumerate() {
                b.push(*ts, 0, b"", format!("v{}", first + i as u64).as_bytes());
            }
            store.put_batch(&mut wb, 1, 0, first, &b.finish()).unwrap();
        }
        let mut other = BatchBuilder::new();
        other.push(1, 0, b"", b"other");
        store.put_batch(&mut wb, 1, 1, 0, &other.finish()).unwrap();
        store.write(wb, true).unwrap();
        (dir, store)
    }

    fn values(store: &Store, from: u64, end: u64, max: usize) -> (Vec<String>, u64) {
        let mut out = Vec::new();
        let next = store
            .read_records(1, 0, from, end, |_, r| {
                out.push(String::from_utf8(r.value.to_vec()).unwrap());
                if out.len() == max {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        (out, next)
    }

    #[test]
    fn reads_from_the_middle_of_a_batch_and_stops_at_end() {
        let (_dir, store) = store_with_batches();
        assert_eq!(
            values(&store, 1, 6, 100),
            (
                vec!["v1", "v2", "v3", "v4", "v5"]
                    .into_iter()
                    .map(String::from)
                    .collect(),
                6
            )
        );
        assert_eq!(values(&store, 4, 5, 100).0, vec!["v4"]);
        assert_eq!(values(&store, 2, 6, 2), (vec!["v2".to_string(), "v3".to_string()], 4));
        assert_eq!(values(&store, 6, 6, 10), (vec![], 6));
    }

    #[test]
    fn reads_after_truncation_start_at_first_retained_batch() {
        let (_dir, store) = store_with_batches();
        let mut wb = WriteBatch::default();
        store.delete_batches(&mut wb, 1, 0, 0, 3);
        store.write(wb, true).unwrap();
        assert_eq!(values(&store, 0, 6, 100).0, vec!["v3", "v4", "v5"]);
        let infos = store.batch_infos(1, 0, 0, 6, 10).unwrap();
        assert_eq!(infos.iter().map(|b| b.first_offset).collect::<Vec<_>>(), vec![3, 5]);
    }

    #[test]
    fn finds_offsets_by_timestamp() {
        let (_dir, store) = store_with_batches();
        assert_eq!(store.offset_for_timestamp(1, 0, 0, 6, 0).unwrap(), 0);
        assert_eq!(store.offset_for_timestamp(1, 0, 0, 6, 101).unwrap(), 1);
        assert_eq!(store.offset_for_timestamp(1, 0, 0, 6, 150).unwrap(), 3);
        assert_eq!(store.offset_for_timestamp(1, 0, 0, 6, 201).unwrap(), 4);
        assert_eq!(store.offset_for_timestamp(1, 0, 0, 6, 300).unwrap(), 5);
        assert_eq!(store.offset_for_timestamp(1, 0, 0, 6, 301).unwrap(), 6);
    }

    #[test]
    fn an_encrypted_store_reads_sizes_and_seeks_like_a_plain_one() {
        let key = flymq_security::Keyring::generate_key_hex();
        let keyring = std::sync::Arc::new(flymq_security::Keyring::parse(&key).unwrap());
        let (_plain_dir, plain) = store_with_batches();
        let (_dir, store) = store_with_batches_keyed(Some(keyring));
        assert_eq!(values(&store, 1, 6, 100), values(&plain, 1, 6, 100));
        assert_eq!(
            store.batch_infos(1, 0, 0, 6, 10).unwrap(),
            plain.batch_infos(1, 0, 0, 6, 10).unwrap(),
            "sizes count plaintext bytes"
        );
        assert_eq!(
            store.batch_holding(1, 0, 4).unwrap(),
            plain.batch_holding(1, 0, 4).unwrap()
        );
        assert_eq!(store.offset_for_timestamp(1, 0, 0, 6, 201).unwrap(), 4);
        let mut seen = Vec::new();
        store
            .for_each_batch(1, 0, 0, 6, |first, value| {
                seen.push((first, value.to_vec()));
                Ok::<bool, StorageError>(true)
            })
            .unwrap();
        assert_eq!(seen.len(), 3);
        assert!(
            seen.iter()
                .all(|(_, v)| v[0] == crate::storage::record_batch::FORMAT_PLAIN)
        );
        let raw = store
            .db()
            .get_cf(&store.cf(CF_LOG), keys::log_key(1, 0, 0))
            .unwrap()
            .unwrap();
        assert_eq!(raw[0], crate::storage::record_batch::FORMAT_SEALED);
        let plain_raw = plain
            .db()
            .get_cf(&plain.cf(CF_LOG), keys::log_key(1, 0, 0))
            .unwrap()
            .unwrap();
        let records = &plain_raw[13..];
        assert!(
            !raw.windows(records.len()).any(|w| w == records),
            "records are not stored in plaintext"
        );
    }
}
