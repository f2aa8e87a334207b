//! What transactions leave in the `meta` column family:
//!
//! - the *decisions*: a committed multi-partition transaction, with its
//!   records, from the moment it commits until every partition has it
//!   (`c/txn/<seq>`, sealed like every generic value: it holds payloads);
//! - the *markers*: per partition, the transactions already delivered there
//!   (`x/[topic][partition][seq]` → delivery time), so a delivery proposed
//!   twice (a retry, a second broker finishing the commit) appends once.
//!   Markers are an index of the partition's records (the first record of
//!   each delivery carries the sequence number, `FLAG_TXN`), rebuilt from
//!   them when a snapshot is installed (`markers_in_batch`).

use std::collections::BTreeMap;

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::record_batch::BatchReader;
use super::{CF_META, StorageError, Store, keys, prefix_end};

impl Store {
    pub fn put_txn_marker(&self, batch: &mut WriteBatch, topic_id: u32, partition: u32, seq: u64, at_ms: i64) {
        batch.put_cf(
            &self.cf(CF_META),
            keys::txn_marker_key(topic_id, partition, seq),
            at_ms.to_be_bytes(),
        );
    }

    pub fn delete_txn_marker(&self, batch: &mut WriteBatch, topic_id: u32, partition: u32, seq: u64) {
        batch.delete_cf(&self.cf(CF_META), keys::txn_marker_key(topic_id, partition, seq));
    }

    /// Deletes every marker of a partition.
    pub fn delete_partition_txn_markers(&self, batch: &mut WriteBatch, topic_id: u32, partition: u32) {
        let prefix = keys::txn_marker_prefix(topic_id, partition);
        batch.delete_range_cf(&self.cf(CF_META), prefix.as_slice(), prefix_end(&prefix).as_slice());
    }

    /// Deletes every marker of a topic.
    pub fn delete_topic_txn_markers(&self, batch: &mut WriteBatch, topic_id: u32) {
        let prefix = keys::txn_marker_topic_prefix(topic_id);
        batch.delete_range_cf(&self.cf(CF_META), prefix.as_slice(), prefix_end(&prefix).as_slice());
    }

    /// The transactions delivered to a partition: sequence number → time.
    pub fn txn_markers(&self, topic_id: u32, partition: u32) -> Result<BTreeMap<u64, i64>, StorageError> {
        let prefix = keys::txn_marker_prefix(topic_id, partition);
        let mut markers = BTreeMap::new();
        let iter = self
            .db()
            .iterator_cf(&self.cf(CF_META), IteratorMode::From(&prefix, Direction::Forward));
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let corrupt = || StorageError::Corrupt {
                what: "transaction marker".into(),
            };
            let seq = u64::from_be_bytes(key.get(10..18).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?);
            let at = i64::from_be_bytes(value.as_ref().try_into().map_err(|_| corrupt())?);
            markers.insert(seq, at);
        }
        Ok(markers)
    }

    /// Stores a committed transaction's decision (an encoded `Decision`).
    pub fn put_txn_decision(&self, batch: &mut WriteBatch, seq: u64, decision: &[u8]) -> Result<(), StorageError> {
        self.put_cluster_value(batch, &keys::txn_decision_name(seq), decision)
    }

    pub fn delete_txn_decision(&self, batch: &mut WriteBatch, seq: u64) {
        batch.delete_cf(&self.cf(CF_META), keys::cluster_key(&keys::txn_decision_name(seq)));
    }

    /// Every stored decision, oldest first: `(seq, encoded decision)`.
    pub fn txn_decisions(&self) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        self.cluster_values(keys::TXN_DECISION_NAME_PREFIX)?
            .into_iter()
            .map(|(seq, decision)| {
                let seq = seq.parse().map_err(|_| StorageError::Corrupt {
                    what: "transaction decision key".into(),
                })?;
                Ok((seq, decision))
            })
            .collect()
    }
}

/// Adds the transactions delivered in one plaintext batch to `markers`
/// (sequence number → the record's time). Used to rebuild the markers from
/// a partition's records (a snapshot install).
pub fn markers_in_batch(markers: &mut BTreeMap<u64, i64>, first_offset: u64, value: &[u8]) -> Result<(), StorageError> {
    let corrupt = |e: super::record_batch::BatchError| StorageError::Corrupt {
        what: format!("batch at offset {first_offset} in a snapshot: {e}"),
    };
    let (_, reader) = BatchReader::new(value).map_err(corrupt)?;
    for record in reader {
        let record = record.map_err(corrupt)?;
        if let Some(seq) = record.txn_seq() {
            markers.insert(seq, record.timestamp);
        }
    }
    Ok(())
}
