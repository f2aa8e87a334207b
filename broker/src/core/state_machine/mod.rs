//! The deterministic state machines: the only code that changes broker state.
//!
//! - `meta::MetaMachine`: topics, assignments, consumer groups and offsets.
//! - `partition::PartitionMachine`: one partition's appends and truncations.
//!
//! A cluster applies the metadata group with a `MetaMachine` and each
//! partition group with its own `PartitionMachine`. A standalone broker's
//! writer applies every command through `StateMachine`, which routes them to
//! the same machines. Applying turns commands into one RocksDB WriteBatch
//! plus the changes to publish to readers once that batch is durable.

pub mod meta;
pub mod partition;

use std::collections::HashMap;

use rocksdb::WriteBatch;

pub use meta::MetaMachine;
pub use partition::PartitionMachine;

use super::catalog::Publish;
use super::command::{Applied, Command};
use super::error::{BrokerError, BrokerResult};
use crate::storage::{StorageError, Store};

/// The result of applying a list of commands: write `batch`, then publish.
pub struct ApplyOutput {
    pub batch: WriteBatch,
    pub results: Vec<BrokerResult<Applied>>,
    pub publish: Vec<Publish>,
}

/// Every machine of a standalone broker, applied by its single writer.
pub struct StateMachine {
    store: Store,
    meta: MetaMachine,
    partitions: HashMap<(u32, u32), PartitionMachine>,
}

impl StateMachine {
    /// Loads the state from the store.
    pub fn load(store: Store) -> Result<Self, StorageError> {
        Ok(Self {
            meta: MetaMachine::load(store.clone())?,
            store,
            partitions: HashMap::new(),
        })
    }

    /// Applies `commands` in order. Appends to one partition within one call
    /// are coalesced into one stored batch. Nothing is visible until the
    /// caller writes `batch`; if that write fails, or this returns an error
    /// (a batch could not be encrypted), the caller must `load` the state
    /// again and fail every command.
    pub fn apply_all(&mut self, commands: impl IntoIterator<Item = Command>) -> Result<ApplyOutput, StorageError> {
        let mut batch = WriteBatch::default();
        let mut publish = Vec::new();
        let mut failed = None;
        let results = commands
            .into_iter()
            .map(|command| self.apply(&mut batch, &mut publish, &mut failed, command))
            .collect();
        if let Err(err) = self.end_all(&mut batch, &mut publish) {
            failed.get_or_insert(err);
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(ApplyOutput {
                batch,
                results,
                publish,
            }),
        }
    }

    /// Whether applying `command` reads nothing from RocksDB: an append to
    /// a partition whose state is loaded. (The writer commits only such
    /// commands on an async worker.)
    pub fn applies_from_memory(&self, command: &Command) -> bool {
        match command {
            Command::Append { topic, partition, .. } => self
                .meta
                .topic(topic)
                .is_some_and(|record| self.partitions.contains_key(&(record.id, *partition))),
            _ => false,
        }
    }

    fn apply(
        &mut self,
        batch: &mut WriteBatch,
        publish: &mut Vec<Publish>,
        failed: &mut Option<StorageError>,
        command: Command,
    ) -> BrokerResult<Applied> {
        let (topic_id, partition) = match &command {
            Command::Append { topic, partition, .. } => {
                let record = self
                    .meta
                    .topic(topic)
                    .ok_or_else(|| BrokerError::TopicNotFound(topic.clone()))?;
                if *partition >= record.partitions {
                    return Err(BrokerError::PartitionNotFound {
                        topic: topic.clone(),
                        partition: (*partition).into(),
                        count: record.partitions,
                    });
                }
                (record.id, *partition)
            }
            Command::Truncate {
                topic,
                topic_id,
                partition,
                ..
            }
            | Command::Release {
                topic,
                topic_id,
                partition,
                ..
            }
            | Command::DeliverTransaction {
                topic,
                topic_id,
                partition,
                ..
            } => match self.meta.topic(topic) {
                Some(record) if record.id == *topic_id && *partition < record.partitions => (*topic_id, *partition),
                _ => return Err(BrokerError::TopicNotFound(topic.clone())),
            },
            _ => {
                // Keep the WriteBatch in command order around topic deletes.
                if let Err(err) = self.end_all(batch, publish) {
                    let result = Err(BrokerError::from(StorageError::Corrupt {
                        what: format!("encrypting the records before this command failed: {err}"),
                    }));
                    failed.get_or_insert(err);
                    return result;
                }
                let deleted = match &command {
                    Command::DeleteTopic { name } => self.meta.topic(name).map(|t| t.id),
                    _ => None,
                };
                let result = self.meta.apply(batch, publish, command);
                if let Some(id) = deleted {
                    self.partitions.retain(|(topic_id, _), _| *topic_id != id);
                }
                return result;
            }
        };
        let machine = match self.partitions.entry((topic_id, partition)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let name = match &command {
                    Command::Append { topic, .. }
                    | Command::Truncate { topic, .. }
                    | Command::Release { topic, .. }
                    | Command::DeliverTransaction { topic, .. } => topic.clone(),
                    _ => String::new(),
                };
                e.insert(PartitionMachine::load(self.store.clone(), topic_id, partition, name)?)
            }
        };
        machine.apply(batch, publish, &command)
    }

    fn end_all(&mut self, batch: &mut WriteBatch, publish: &mut Vec<Publish>) -> Result<(), StorageError> {
        for machine in self.partitions.values_mut() {
            machine.end_entry(batch, publish)?;
        }
        Ok(())
    }

    #[cfg(test)]
    fn meta(&self) -> &MetaMachine {
        &self.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::command::NewRecord;
    use crate::storage::TopicConfig;
    use bytes::Bytes;

    fn append(topic: &str, partition: u32, ts: i64, values: &[&str]) -> Command {
        Command::Append {
            topic: topic.into(),
            partition,
            timestamp_ms: ts,
            records: values
                .iter()
                .map(|v| NewRecord::new(Bytes::new(), Bytes::from(v.to_string())))
                .collect(),
        }
    }

    fn create(name: &str, partitions: u32) -> Command {
        Command::CreateTopic {
            name: name.into(),
            partitions,
            config: TopicConfig::default(),
            replicas: vec![],
            created_ms: 1,
        }
    }

    fn read_all(store: &Store, topic_id: u32, partition: u32, end: u64) -> Vec<(u64, String)> {
        let mut seen = Vec::new();
        store
            .read_records(topic_id, partition, 0, end, |o, r| {
                seen.push((o, String::from_utf8(r.value.to_vec()).unwrap()));
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        seen
    }

    /// A scheduled record and its release in one apply call (a replica
    /// groups entries differently from the leader), then the same release
    /// again (proposed by a second leader): delivered once, and the
    /// schedule rebuilt from the records matches the index.
    #[test]
    fn a_release_delivers_each_scheduled_record_once() {
        use crate::core::command::DueRecord;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut sm = StateMachine::load(store.clone()).unwrap();
        let scheduled = Command::Append {
            topic: "t".into(),
            partition: 0,
            timestamp_ms: 10,
            records: vec![
                NewRecord::new(Bytes::new(), Bytes::from_static(b"now")),
                NewRecord::scheduled(Bytes::from_static(b"k"), b"later", 10, 90),
            ],
        };
        let release = Command::Release {
            topic: "t".into(),
            topic_id: 1,
            partition: 0,
            timestamp_ms: 100,
            records: vec![DueRecord {
                offset: 1,
                due_ms: 100,
                key: Bytes::from_static(b"k"),
                payload: Bytes::from_static(b"later"),
            }],
        };
        let out = sm.apply_all(vec![create("t", 1), scheduled, release.clone()]).unwrap();
        assert_eq!(out.results[2], Ok(Applied::Released { count: 1 }));
        store.write(out.batch, true).unwrap();
        assert!(store.all_delayed(1, 0).unwrap().is_empty());
        let again = sm.apply_all(vec![release]).unwrap();
        assert_eq!(again.results[0], Ok(Applied::Released { count: 0 }));
        store.write(again.batch, true).unwrap();

        let mut readable = Vec::new();
        let mut rebuilt = std::collections::BTreeMap::new();
        store
            .for_each_batch(1, 0, 0, u64::MAX, |first, value| {
                crate::storage::delayed::pending_in_batch(&mut rebuilt, first, value)?;
                Ok::<bool, StorageError>(true)
            })
            .unwrap();
        store
            .read_records(1, 0, 0, 3, |o, r| {
                if !r.is_scheduled() {
                    readable.push((o, r.key.to_vec(), String::from_utf8(r.payload().to_vec()).unwrap()));
                }
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(
            readable,
            [(0, vec![], "now".into()), (2, b"k".to_vec(), "later".into())]
        );
        assert!(rebuilt.is_empty(), "the delivered copy cancels the scheduled record");
    }

    /// Retention stops before a scheduled record and counts the bytes it
    /// really removed (not the proposer's figure for a longer cut).
    #[test]
    fn a_truncation_stops_before_a_scheduled_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut sm = StateMachine::load(store.clone()).unwrap();
        let scheduled = Command::Append {
            topic: "t".into(),
            partition: 0,
            timestamp_ms: 10,
            records: vec![NewRecord::scheduled(Bytes::new(), b"later", 10, 1_000_000)],
        };
        for commands in [
            vec![create("t", 1), append("t", 0, 10, &["first"])],
            vec![scheduled],
            vec![append("t", 0, 10, &["third"])],
        ] {
            let out = sm.apply_all(commands).unwrap();
            store.write(out.batch, true).unwrap();
        }
        let sizes: Vec<u64> = store
            .batch_infos(1, 0, 0, u64::MAX, 10)
            .unwrap()
            .iter()
            .map(|b| b.size_bytes)
            .collect();
        assert_eq!(sizes.len(), 3);
        let out = sm
            .apply_all(vec![Command::Truncate {
                topic: "t".into(),
                topic_id: 1,
                partition: 0,
                new_start: 3,
                removed_bytes: 999_999,
            }])
            .unwrap();
        assert_eq!(out.results[0], Ok(Applied::Truncated { new_start: 1 }));
        store.write(out.batch, true).unwrap();
        let state = store.partition_state(1, 0).unwrap().unwrap();
        assert_eq!(state.start_offset, 1);
        assert_eq!(state.size_bytes, sizes[1] + sizes[2]);
    }

    #[test]
    fn offsets_are_assigned_in_command_order_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut sm = StateMachine::load(store.clone()).unwrap();
        let out = sm
            .apply_all(vec![
                create("t", 2),
                append("t", 0, 10, &["a", "b"]),
                append("t", 1, 10, &["c"]),
                append("t", 0, 5, &["d"]),
            ])
            .unwrap();
        assert_eq!(
            out.results[1],
            Ok(Applied::Appended {
                partition: 0,
                base_offset: 0,
                count: 2,
                timestamp_ms: 10
            })
        );
        assert_eq!(
            out.results[2],
            Ok(Applied::Appended {
                partition: 1,
                base_offset: 0,
                count: 1,
                timestamp_ms: 10
            })
        );
        // An older timestamp is raised to the partition's last one.
        assert_eq!(
            out.results[3],
            Ok(Applied::Appended {
                partition: 0,
                base_offset: 2,
                count: 1,
                timestamp_ms: 10
            })
        );
        store.write(out.batch, true).unwrap();

        let mut sm = StateMachine::load(store.clone()).unwrap();
        let out = sm.apply_all(vec![append("t", 0, 20, &["e"])]).unwrap();
        assert_eq!(
            out.results[0],
            Ok(Applied::Appended {
                partition: 0,
                base_offset: 3,
                count: 1,
                timestamp_ms: 20
            })
        );
        store.write(out.batch, true).unwrap();
        assert_eq!(
            read_all(&store, 1, 0, 4),
            vec![(0, "a".into()), (1, "b".into()), (2, "d".into()), (3, "e".into())]
        );
    }

    #[test]
    fn bad_commands_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut sm = StateMachine::load(store).unwrap();
        let out = sm
            .apply_all(vec![
                create("t", 1),
                append("missing", 0, 1, &["x"]),
                append("t", 3, 1, &["x"]),
                create("bad name", 1),
                create("zero", 0),
                append("t", 0, 1, &["ok"]),
            ])
            .unwrap();
        assert_eq!(out.results[1], Err(BrokerError::TopicNotFound("missing".into())));
        assert!(matches!(
            out.results[2],
            Err(BrokerError::PartitionNotFound { partition: 3, .. })
        ));
        assert!(matches!(out.results[3], Err(BrokerError::InvalidTopicName { .. })));
        assert!(matches!(out.results[4], Err(BrokerError::InvalidArgument(_))));
        assert_eq!(
            out.results[5],
            Ok(Applied::Appended {
                partition: 0,
                base_offset: 0,
                count: 1,
                timestamp_ms: 1
            })
        );
    }

    #[test]
    fn deleted_topic_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut sm = StateMachine::load(store.clone()).unwrap();
        let out = sm
            .apply_all(vec![
                create("t", 1),
                append("t", 0, 1, &["old"]),
                Command::DeleteTopic { name: "t".into() },
                create("t", 1),
                append("t", 0, 1, &["new"]),
            ])
            .unwrap();
        assert!(out.results.iter().all(Result::is_ok), "{:?}", out.results);
        store.write(out.batch, true).unwrap();
        let topics = store.load_topics().unwrap();
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].0.id, 2);
        assert_eq!(topics[0].1[0].next_offset, 1);
        assert!(store.batch_infos(1, 0, 0, u64::MAX, 10).unwrap().is_empty());
        assert_eq!(StateMachine::load(store).unwrap().meta().next_topic_id(), 3);
    }

    /// Two replicas that grouped the same appends into different stored
    /// batches read exactly the same records after the same truncation.
    #[test]
    fn truncation_inside_a_batch_keeps_the_rest_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut sm = StateMachine::load(store.clone()).unwrap();
        let out = sm
            .apply_all(vec![create("t", 1), append("t", 0, 1, &["a", "b", "c", "d", "e"])])
            .unwrap();
        store.write(out.batch, true).unwrap();
        let out = sm.apply_all(vec![append("t", 0, 2, &["f"])]).unwrap();
        store.write(out.batch, true).unwrap();
        // Offsets 0..5 are one batch, 5 another: cut at 2, inside the first.
        let out = sm
            .apply_all(vec![Command::Truncate {
                topic: "t".into(),
                topic_id: 1,
                partition: 0,
                new_start: 2,
                removed_bytes: 0,
            }])
            .unwrap();
        assert_eq!(out.results[0], Ok(Applied::Truncated { new_start: 2 }));
        store.write(out.batch, true).unwrap();
        let state = store.partition_state(1, 0).unwrap().unwrap();
        assert_eq!((state.start_offset, state.next_offset), (2, 6));
        // The straddling batch is kept whole on disk...
        assert_eq!(read_all(&store, 1, 0, 6).len(), 6);
        // ...and a cut at a batch end removes it.
        let out = sm
            .apply_all(vec![Command::Truncate {
                topic: "t".into(),
                topic_id: 1,
                partition: 0,
                new_start: 5,
                removed_bytes: 0,
            }])
            .unwrap();
        store.write(out.batch, true).unwrap();
        assert_eq!(read_all(&store, 1, 0, 6), vec![(5, "f".into())]);
    }

    fn deliver(seq: u64, partition: u32, ts: i64, values: &[&str]) -> Command {
        Command::DeliverTransaction {
            seq,
            topic: "t".into(),
            topic_id: 1,
            partition,
            timestamp_ms: ts,
            records: values
                .iter()
                .map(|v| NewRecord::new(Bytes::new(), Bytes::from(v.to_string())))
                .collect(),
        }
    }

    /// A committed transaction's share delivered twice in one apply call,
    /// and again after a restart, is appended once; its first record
    /// carries the sequence number the markers are rebuilt from.
    #[test]
    fn a_transaction_share_is_delivered_once() {
        use crate::core::command::{Decision, TransactionPart};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut sm = StateMachine::load(store.clone()).unwrap();
        let decision = Decision {
            txn_id: "txn-1".into(),
            committed_ms: 5,
            parts: vec![TransactionPart {
                topic: "t".into(),
                topic_id: 1,
                partition: 0,
                records: vec![],
            }],
        };
        let out = sm
            .apply_all(vec![
                create("t", 2),
                Command::CommitTransaction { decision },
                deliver(1, 0, 10, &["a", "b"]),
                deliver(1, 0, 11, &["a", "b"]),
            ])
            .unwrap();
        assert_eq!(out.results[1], Ok(Applied::TransactionCommitted { seq: 1 }));
        assert!(matches!(
            out.results[2],
            Ok(Applied::Appended {
                base_offset: 0,
                count: 2,
                ..
            })
        ));
        assert_eq!(out.results[3], Ok(Applied::AlreadyDelivered));
        store.write(out.batch, true).unwrap();
        assert_eq!(store.txn_decisions().unwrap().len(), 1);

        let mut sm = StateMachine::load(store.clone()).unwrap();
        let out = sm
            .apply_all(vec![
                deliver(1, 0, 12, &["a", "b"]),
                deliver(1, 1, 12, &["c"]),
                Command::TransactionDelivered { seq: 1 },
            ])
            .unwrap();
        assert_eq!(out.results[0], Ok(Applied::AlreadyDelivered));
        assert!(matches!(
            out.results[1],
            Ok(Applied::Appended {
                base_offset: 0,
                count: 1,
                ..
            })
        ));
        assert_eq!(out.results[2], Ok(Applied::DecisionDropped));
        store.write(out.batch, true).unwrap();
        assert!(store.txn_decisions().unwrap().is_empty());
        let mut payloads = Vec::new();
        store
            .read_records(1, 0, 0, 10, |o, r| {
                payloads.push((o, r.txn_seq(), r.payload().to_vec()));
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(payloads, vec![(0, Some(1), b"a".to_vec()), (1, None, b"b".to_vec())]);

        // The markers are what the records say.
        let mut rebuilt = std::collections::BTreeMap::new();
        store
            .for_each_batch(1, 0, 0, u64::MAX, |first, value| {
                crate::storage::transactions::markers_in_batch(&mut rebuilt, first, value)?;
                Ok::<bool, StorageError>(true)
            })
            .unwrap();
        assert_eq!(rebuilt, store.txn_markers(1, 0).unwrap());
        assert_eq!(rebuilt.keys().copied().collect::<Vec<_>>(), vec![1]);
    }

    /// Markers older than an hour are dropped at the next delivery, by the
    /// command's time (the same on every replica).
    #[test]
    fn old_transaction_markers_are_dropped() {
        use crate::core::state_machine::partition::TXN_MARKER_KEEP_MS;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut sm = StateMachine::load(store.clone()).unwrap();
        let later = 100 + TXN_MARKER_KEEP_MS + 1;
        let out = sm
            .apply_all(vec![
                create("t", 1),
                deliver(7, 0, 100, &["old"]),
                deliver(8, 0, later, &["new"]),
            ])
            .unwrap();
        store.write(out.batch, true).unwrap();
        assert_eq!(
            store.txn_markers(1, 0).unwrap().keys().copied().collect::<Vec<_>>(),
            vec![8]
        );
    }
}
