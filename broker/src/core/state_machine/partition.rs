//! The state machine of one partition: appends and retention truncations.
//! In a cluster each partition Raft group applies its own `PartitionMachine`,
//! so partitions apply in parallel without a shared lock.
//!
//! Appends are coalesced into one stored batch per `end_entry` call. The
//! cluster calls it after each Raft entry, so every replica stores the same
//! batches (the same keys and values), whatever the grouping of entries into
//! apply calls: replicas are identical byte for byte, and a truncation cuts
//! them at the same place.

use rocksdb::WriteBatch;

use super::super::catalog::Publish;
use std::collections::{BTreeMap, BTreeSet};

use super::super::command::{Applied, Command, DueRecord, NewRecord};
use super::super::error::{BrokerError, BrokerResult};
use crate::storage::record_batch::{
    BatchBuilder, FLAG_DELAYED, FLAG_RELEASED, FLAG_TXN, insert_field, record_field, with_field,
};

/// How long a partition remembers that a transaction was delivered to it.
/// A second delivery of the same transaction comes from a retry or from a
/// broker finishing a commit, seconds later; a marker older than this is
/// dropped (at the next delivery, by the command's time, so every replica
/// drops the same ones).
pub const TXN_MARKER_KEEP_MS: i64 = 3_600_000;
use crate::storage::{PartitionState, StorageError, Store};

/// Records being coalesced into one stored batch.
struct PendingAppend {
    first_offset: u64,
    builder: BatchBuilder,
}

pub struct PartitionMachine {
    store: Store,
    topic_id: u32,
    partition: u32,
    topic: String,
    state: PartitionState,
    pending: Option<PendingAppend>,
    /// The state changed since the last `end_entry`.
    dirty: bool,
    /// `(due, offset)` of the scheduled records not yet delivered: the
    /// `d/` index as of the commands applied so far (also those not yet
    /// written), so a release decides the same on every replica.
    scheduled: BTreeSet<(i64, u64)>,
    /// Transactions delivered here (sequence number → time): the `x/`
    /// index as of the commands applied so far.
    txns: BTreeMap<u64, i64>,
}

impl PartitionMachine {
    /// Loads the partition's state from the store (default when absent).
    pub fn load(store: Store, topic_id: u32, partition: u32, topic: String) -> Result<Self, StorageError> {
        let state = store.partition_state(topic_id, partition)?.unwrap_or_default();
        let scheduled = store.all_delayed(topic_id, partition)?;
        let txns = store.txn_markers(topic_id, partition)?;
        Ok(Self {
            txns,
            store,
            topic_id,
            partition,
            topic,
            state,
            pending: None,
            dirty: false,
            scheduled,
        })
    }

    pub fn state(&self) -> PartitionState {
        self.state
    }

    pub fn topic_id(&self) -> u32 {
        self.topic_id
    }

    /// Applies an `Append` or a `Truncate` of this partition.
    pub fn apply(
        &mut self,
        batch: &mut WriteBatch,
        publish: &mut Vec<Publish>,
        command: &Command,
    ) -> BrokerResult<Applied> {
        match command {
            Command::Append {
                partition,
                timestamp_ms,
                records,
                ..
            } if *partition == self.partition => self.append(batch, *timestamp_ms, records),
            Command::Release {
                topic_id,
                partition,
                timestamp_ms,
                records,
                ..
            } if *topic_id == self.topic_id && *partition == self.partition => {
                self.release(batch, *timestamp_ms, records)
            }
            Command::DeliverTransaction {
                seq,
                topic_id,
                partition,
                timestamp_ms,
                records,
                ..
            } if *topic_id == self.topic_id && *partition == self.partition => {
                self.deliver_transaction(batch, *seq, *timestamp_ms, records)
            }
            Command::Truncate {
                topic_id,
                partition,
                new_start,
                removed_bytes,
                ..
            } if *topic_id == self.topic_id && *partition == self.partition => {
                // Keep the WriteBatch in command order around the delete.
                self.end_entry(batch, publish)?;
                self.truncate(batch, publish, *new_start, *removed_bytes)
            }
            other => Err(BrokerError::InvalidArgument(format!(
                "internal error: command for another partition reached partition {} of '{}': {other:?}",
                self.partition, self.topic
            ))),
        }
    }

    fn append(&mut self, batch: &mut WriteBatch, timestamp_ms: i64, records: &[NewRecord]) -> BrokerResult<Applied> {
        if records.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "a produce must carry at least one record".into(),
            ));
        }
        // Timestamps never go backwards within a partition (seek by time relies on it).
        let timestamp_ms = timestamp_ms.max(self.state.last_timestamp);
        let base_offset = self.state.next_offset;
        let pending = self.pending.get_or_insert_with(|| PendingAppend {
            first_offset: base_offset,
            builder: BatchBuilder::new(),
        });
        // One allocation for this command's records, not one per doubling.
        pending
            .builder
            .reserve(records.iter().map(NewRecord::stored_size).sum());
        for (i, record) in records.iter().enumerate() {
            pending
                .builder
                .push(timestamp_ms, record.flags, &record.key, &record.value);
            // A scheduled record joins the schedule (delivered by a `Release`).
            if let Some(due) = record_field(record.flags, &record.value, FLAG_DELAYED) {
                let (due, offset) = (i64::from_be_bytes(due), base_offset + i as u64);
                self.store
                    .put_delayed(batch, self.topic_id, self.partition, due, offset);
                self.scheduled.insert((due, offset));
            }
        }
        let count = records.len() as u32;
        self.state.next_offset += u64::from(count);
        self.state.last_timestamp = timestamp_ms;
        self.dirty = true;
        Ok(Applied::Appended {
            partition: self.partition,
            base_offset,
            count,
            timestamp_ms,
        })
    }

    /// Delivers scheduled records: each one still scheduled is appended as a
    /// copy marked with its offset (`FLAG_RELEASED`) and leaves the
    /// schedule; others were delivered already and are skipped.
    fn release(&mut self, batch: &mut WriteBatch, timestamp_ms: i64, records: &[DueRecord]) -> BrokerResult<Applied> {
        let copies: Vec<NewRecord> = records
            .iter()
            .filter(|r| self.scheduled.remove(&(r.due_ms, r.offset)))
            .map(|r| {
                self.store
                    .delete_delayed(batch, self.topic_id, self.partition, r.due_ms, r.offset);
                NewRecord {
                    key: r.key.clone(),
                    value: with_field(r.offset.to_be_bytes(), &r.payload).into(),
                    flags: FLAG_RELEASED,
                }
            })
            .collect();
        let count = copies.len() as u32;
        if count > 0 {
            self.append(batch, timestamp_ms, &copies)?;
        }
        Ok(Applied::Released { count })
    }

    /// Appends this partition's share of committed transaction `seq`, its
    /// first record marked with `seq`, unless it was delivered already.
    fn deliver_transaction(
        &mut self,
        batch: &mut WriteBatch,
        seq: u64,
        timestamp_ms: i64,
        records: &[NewRecord],
    ) -> BrokerResult<Applied> {
        if self.txns.contains_key(&seq) {
            return Ok(Applied::AlreadyDelivered);
        }
        let cutoff = timestamp_ms.saturating_sub(TXN_MARKER_KEEP_MS);
        let expired: Vec<u64> = self
            .txns
            .iter()
            .filter(|(_, at)| **at < cutoff)
            .map(|(seq, _)| *seq)
            .collect();
        for old in expired {
            self.txns.remove(&old);
            self.store.delete_txn_marker(batch, self.topic_id, self.partition, old);
        }
        let mut records = records.to_vec();
        if let Some(first) = records.first_mut() {
            let (flags, value) = insert_field(first.flags, &first.value, FLAG_TXN, seq.to_be_bytes());
            first.flags = flags;
            first.value = value.into();
        }
        let applied = self.append(batch, timestamp_ms, &records)?;
        if let Applied::Appended { timestamp_ms, .. } = applied {
            self.txns.insert(seq, timestamp_ms);
            self.store
                .put_txn_marker(batch, self.topic_id, self.partition, seq, timestamp_ms);
        }
        Ok(applied)
    }

    /// The oldest scheduled record's offset: retention keeps it (its copy
    /// is made from it).
    pub fn first_scheduled_offset(&self) -> Option<u64> {
        self.scheduled.iter().map(|(_, offset)| *offset).min()
    }

    /// Retention: records before `new_start` are no longer readable. Stored
    /// batches that end at or before it are deleted; a batch that straddles
    /// it stays until a later truncation passes its end (reads never return
    /// records below the start offset).
    fn truncate(
        &mut self,
        batch: &mut WriteBatch,
        publish: &mut Vec<Publish>,
        new_start: u64,
        removed_bytes: u64,
    ) -> BrokerResult<Applied> {
        // A scheduled record stays until it is delivered (its copy is made
        // from it): the cut stops before it, and the bytes removed are then
        // counted here (the proposer counted up to its own cut).
        let clamped = self.first_scheduled_offset().filter(|first| *first < new_start);
        let new_start = clamped.unwrap_or(new_start);
        let state = &mut self.state;
        if new_start <= state.start_offset || new_start > state.next_offset {
            return Ok(Applied::Truncated {
                new_start: state.start_offset,
            });
        }
        let cut = match self.store.batch_holding(self.topic_id, self.partition, new_start)? {
            Some(straddling) if straddling.first_offset < new_start => straddling.first_offset,
            _ => new_start,
        };
        let removed_bytes = match clamped {
            None => removed_bytes,
            Some(_) => self
                .store
                .batch_infos(self.topic_id, self.partition, 0, cut, usize::MAX)?
                .iter()
                .map(|b| b.size_bytes)
                .sum(),
        };
        self.store.delete_batches(batch, self.topic_id, self.partition, 0, cut);
        state.start_offset = new_start;
        state.size_bytes = state.size_bytes.saturating_sub(removed_bytes);
        self.dirty = true;
        self.end_entry(batch, publish)?;
        Ok(Applied::Truncated { new_start })
    }

    /// Ends a Raft entry (or a group commit): writes the coalesced batch and
    /// the partition state into `batch`. Fails only if the batch cannot be
    /// encrypted; the caller then reloads the machine.
    pub fn end_entry(&mut self, batch: &mut WriteBatch, publish: &mut Vec<Publish>) -> Result<(), StorageError> {
        if let Some(pending) = self.pending.take() {
            let value = pending.builder.finish();
            self.store
                .put_batch(batch, self.topic_id, self.partition, pending.first_offset, &value)?;
            // Plaintext bytes: the same on every replica, whatever its key.
            self.state.size_bytes += value.len() as u64;
        }
        if std::mem::take(&mut self.dirty) {
            self.store
                .put_partition_state(batch, self.topic_id, self.partition, &self.state);
            publish.push(Publish::Partition {
                topic_id: self.topic_id,
                name: self.topic.clone(),
                partition: self.partition,
                state: self.state,
            });
        }
        Ok(())
    }
}
