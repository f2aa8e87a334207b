//! The deterministic state machine: the only code that changes broker state.
//!
//! `apply_all` turns an ordered list of commands into one RocksDB WriteBatch
//! plus the changes to publish to readers once that batch is durable. Appends
//! to the same partition within one call are coalesced into one stored batch.

use std::collections::HashMap;

use rocksdb::WriteBatch;

use super::catalog::Publish;
use super::command::{Applied, AutoCreate, Command, NewRecord};
use super::error::{BrokerError, BrokerResult};
use super::names::{MAX_PARTITIONS, validate_group_id, validate_topic_name};
use crate::storage::record_batch::BatchBuilder;
use crate::storage::{PartitionState, StorageError, Store, TopicConfig, TopicRecord};

const NEXT_TOPIC_ID: &str = "next_topic_id";

struct TopicEntry {
    record: TopicRecord,
    partitions: Vec<PartitionState>,
}

/// Records being coalesced for one partition within one `apply_all`.
struct PendingAppend {
    topic_id: u32,
    topic: String,
    partition: u32,
    first_offset: u64,
    builder: BatchBuilder,
}

/// The result of applying a list of commands: write `batch`, then publish.
pub struct ApplyOutput {
    pub batch: WriteBatch,
    pub results: Vec<BrokerResult<Applied>>,
    pub publish: Vec<Publish>,
}

pub struct StateMachine {
    store: Store,
    topics: HashMap<String, TopicEntry>,
    next_topic_id: u32,
}

impl StateMachine {
    /// Loads the state from the store.
    pub fn load(store: Store) -> Result<Self, StorageError> {
        let topics = store
            .load_topics()?
            .into_iter()
            .map(|(record, partitions)| (record.name.clone(), TopicEntry { record, partitions }))
            .collect::<HashMap<_, _>>();
        let stored_next = match store.get_cluster_value(NEXT_TOPIC_ID)? {
            Some(bytes) => u32::from_be_bytes(bytes.as_slice().try_into().map_err(|_| StorageError::Corrupt {
                what: "next topic id".into(),
            })?),
            None => 1,
        };
        let max_id = topics.values().map(|t| t.record.id).max().unwrap_or(0);
        Ok(Self {
            store,
            topics,
            next_topic_id: stored_next.max(max_id + 1),
        })
    }

    /// Applies `commands` in order. Nothing is visible until the caller writes
    /// `batch`; if that write fails the caller must `load` the state again.
    pub fn apply_all(&mut self, commands: impl IntoIterator<Item = Command>) -> ApplyOutput {
        let mut run = Run {
            batch: WriteBatch::default(),
            publish: Vec::new(),
            pending: Vec::new(),
            dirty: Vec::new(),
        };
        let results = commands
            .into_iter()
            .map(|command| self.apply(&mut run, command))
            .collect();
        self.flush(&mut run);
        ApplyOutput {
            batch: run.batch,
            results,
            publish: run.publish,
        }
    }

    fn apply(&mut self, run: &mut Run, command: Command) -> BrokerResult<Applied> {
        if !matches!(command, Command::Append { .. }) {
            // Keep WriteBatch order equal to command order around deletes.
            self.flush(run);
        }
        match command {
            Command::CreateTopic {
                name,
                partitions,
                config,
                created_ms,
                replicas,
            } => {
                let created = self.create_topic(run, &name, partitions, config, created_ms, replicas)?;
                Ok(Applied::TopicCreated { created })
            }
            Command::DeleteTopic { name } => {
                let Some(entry) = self.topics.remove(&name) else {
                    return Ok(Applied::TopicDeleted { existed: false });
                };
                self.store.delete_topic(&mut run.batch, &entry.record);
                run.publish.push(Publish::TopicRemoved { name });
                Ok(Applied::TopicDeleted { existed: true })
            }
            Command::Append {
                topic,
                partition,
                timestamp_ms,
                records,
                auto_create,
            } => self.append(run, topic, partition, timestamp_ms, records, auto_create),
            Command::EnsureGroup { topic, group } => {
                validate_group_id(&group)?;
                self.store.put_group_marker(&mut run.batch, &topic, &group);
                Ok(Applied::GroupEnsured)
            }
            Command::CommitOffset {
                topic,
                group,
                partition,
                offset,
            } => {
                validate_group_id(&group)?;
                self.store
                    .put_committed_offset(&mut run.batch, &topic, &group, partition, offset);
                Ok(Applied::OffsetCommitted)
            }
            Command::DeleteGroup { topic, group } => {
                self.store.delete_group(&mut run.batch, &topic, &group);
                Ok(Applied::GroupDeleted)
            }
            Command::Reassign {
                topic,
                partition,
                replicas,
            } => {
                let Some(entry) = self.topics.get_mut(&topic) else {
                    return Err(BrokerError::TopicNotFound(topic));
                };
                let slot = entry.record.replicas.get_mut(partition as usize).ok_or_else(|| {
                    BrokerError::InvalidArgument(format!(
                        "partition {partition} of '{topic}' has no replica assignment"
                    ))
                })?;
                *slot = replicas;
                self.store.put_topic(&mut run.batch, &entry.record);
                run.publish.push(Publish::TopicUpserted {
                    record: entry.record.clone(),
                    states: entry.partitions.clone(),
                });
                Ok(Applied::Reassigned)
            }
            Command::UpdateTopicConfig { name, config } => {
                let Some(entry) = self.topics.get_mut(&name) else {
                    return Err(BrokerError::TopicNotFound(name));
                };
                entry.record.config = config;
                self.store.put_topic(&mut run.batch, &entry.record);
                run.publish.push(Publish::TopicUpserted {
                    record: entry.record.clone(),
                    states: entry.partitions.clone(),
                });
                Ok(Applied::TopicUpdated)
            }
            Command::AddPartitions {
                name,
                partitions,
                replicas,
            } => self.add_partitions(run, name, partitions, replicas),
            Command::Truncate {
                topic,
                topic_id,
                partition,
                new_start,
                removed_bytes,
            } => {
                let Some(entry) = self.topics.get_mut(&topic).filter(|t| t.record.id == topic_id) else {
                    return Err(BrokerError::TopicNotFound(topic));
                };
                let Some(state) = entry.partitions.get_mut(partition as usize) else {
                    return Err(BrokerError::PartitionNotFound {
                        topic,
                        partition: partition.into(),
                        count: entry.record.partitions,
                    });
                };
                if new_start <= state.start_offset || new_start > state.next_offset {
                    return Ok(Applied::Truncated {
                        new_start: state.start_offset,
                    });
                }
                self.store
                    .delete_batches(&mut run.batch, topic_id, partition, state.start_offset, new_start);
                state.start_offset = new_start;
                state.size_bytes = state.size_bytes.saturating_sub(removed_bytes);
                let state = *state;
                self.store
                    .put_partition_state(&mut run.batch, topic_id, partition, &state);
                run.publish.push(Publish::Partition {
                    topic_id,
                    name: topic,
                    partition,
                    state,
                });
                Ok(Applied::Truncated { new_start })
            }
        }
    }

    fn add_partitions(
        &mut self,
        run: &mut Run,
        name: String,
        partitions: u32,
        replicas: Vec<Vec<u64>>,
    ) -> BrokerResult<Applied> {
        let Some(entry) = self.topics.get_mut(&name) else {
            return Err(BrokerError::TopicNotFound(name));
        };
        let previous = entry.record.partitions;
        if partitions <= previous || partitions > MAX_PARTITIONS {
            return Err(BrokerError::InvalidArgument(format!(
                "topic '{name}' has {previous} partitions: the new count must be larger, and at most \
                 {MAX_PARTITIONS} (partitions are never removed, keys would move)"
            )));
        }
        let added = (partitions - previous) as usize;
        let clustered = !entry.record.replicas.is_empty();
        if clustered == replicas.is_empty() || (clustered && replicas.len() != added) {
            return Err(BrokerError::InvalidArgument(format!(
                "adding {added} partitions to '{name}' needs a replica assignment for each of them"
            )));
        }
        entry.record.partitions = partitions;
        entry.record.replicas.extend(replicas);
        for p in previous..partitions {
            let state = PartitionState::default();
            self.store
                .put_partition_state(&mut run.batch, entry.record.id, p, &state);
            entry.partitions.push(state);
        }
        self.store.put_topic(&mut run.batch, &entry.record);
        run.publish.push(Publish::TopicUpserted {
            record: entry.record.clone(),
            states: entry.partitions.clone(),
        });
        Ok(Applied::PartitionsAdded { previous })
    }

    fn create_topic(
        &mut self,
        run: &mut Run,
        name: &str,
        partitions: u32,
        config: TopicConfig,
        created_ms: i64,
        replicas: Vec<Vec<u64>>,
    ) -> BrokerResult<bool> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(BrokerError::InvalidArgument(format!(
                "partition count {partitions} for topic '{name}' must be between 1 and {MAX_PARTITIONS}"
            )));
        }
        if self.topics.contains_key(name) {
            return Ok(false);
        }
        let record = TopicRecord {
            id: self.next_topic_id,
            name: name.to_owned(),
            partitions,
            created_ms,
            config,
            replicas,
        };
        self.next_topic_id += 1;
        self.store
            .put_cluster_value(&mut run.batch, NEXT_TOPIC_ID, &self.next_topic_id.to_be_bytes());
        self.store.put_topic(&mut run.batch, &record);
        let states = vec![PartitionState::default(); partitions as usize];
        for (p, state) in states.iter().enumerate() {
            self.store
                .put_partition_state(&mut run.batch, record.id, p as u32, state);
        }
        run.publish.push(Publish::TopicUpserted {
            record: record.clone(),
            states: states.clone(),
        });
        self.topics.insert(
            name.to_owned(),
            TopicEntry {
                record,
                partitions: states,
            },
        );
        Ok(true)
    }

    fn append(
        &mut self,
        run: &mut Run,
        topic: String,
        partition: u32,
        timestamp_ms: i64,
        records: Vec<NewRecord>,
        auto_create: Option<AutoCreate>,
    ) -> BrokerResult<Applied> {
        if records.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "a produce must carry at least one record".into(),
            ));
        }
        if !self.topics.contains_key(&topic) {
            match auto_create {
                Some(auto) => {
                    self.flush(run);
                    self.create_topic(run, &topic, auto.partitions, auto.config, timestamp_ms, Vec::new())?;
                }
                None => return Err(BrokerError::TopicNotFound(topic)),
            }
        }
        let Some(entry) = self.topics.get_mut(&topic) else {
            return Err(BrokerError::TopicNotFound(topic));
        };
        let count = entry.record.partitions;
        let topic_id = entry.record.id;
        let Some(state) = entry.partitions.get_mut(partition as usize) else {
            return Err(BrokerError::PartitionNotFound {
                topic,
                partition: partition.into(),
                count,
            });
        };
        // Timestamps never go backwards within a partition (seek by time relies on it).
        let timestamp_ms = timestamp_ms.max(state.last_timestamp);
        let base_offset = state.next_offset;
        let pending = match run
            .pending
            .iter()
            .position(|p| p.topic_id == topic_id && p.partition == partition)
        {
            Some(i) => &mut run.pending[i],
            None => {
                run.pending.push(PendingAppend {
                    topic_id,
                    topic: topic.clone(),
                    partition,
                    first_offset: base_offset,
                    builder: BatchBuilder::new(),
                });
                let last = run.pending.len() - 1;
                &mut run.pending[last]
            }
        };
        for record in &records {
            pending
                .builder
                .push(timestamp_ms, record.flags, &record.key, &record.value);
        }
        let n = records.len() as u32;
        state.next_offset += u64::from(n);
        state.last_timestamp = timestamp_ms;
        Ok(Applied::Appended {
            partition,
            base_offset,
            count: n,
            timestamp_ms,
        })
    }

    /// Writes coalesced appends and their partition states into the batch.
    fn flush(&mut self, run: &mut Run) {
        for pending in run.pending.drain(..) {
            let value = pending.builder.finish();
            self.store.put_batch(
                &mut run.batch,
                pending.topic_id,
                pending.partition,
                pending.first_offset,
                &value,
            );
            if let Some(entry) = self
                .topics
                .get_mut(&pending.topic)
                .filter(|t| t.record.id == pending.topic_id)
                && let Some(state) = entry.partitions.get_mut(pending.partition as usize)
            {
                state.size_bytes += value.len() as u64;
                run.dirty
                    .push((pending.topic, pending.topic_id, pending.partition, *state));
            }
        }
        for (name, topic_id, partition, state) in run.dirty.drain(..) {
            self.store
                .put_partition_state(&mut run.batch, topic_id, partition, &state);
            run.publish.push(Publish::Partition {
                topic_id,
                name,
                partition,
                state,
            });
        }
    }
}

struct Run {
    batch: WriteBatch,
    publish: Vec<Publish>,
    pending: Vec<PendingAppend>,
    dirty: Vec<(String, u32, u32, PartitionState)>,
}

#[cfg(test)]
mod tests {
    use super::*;
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
            auto_create: None,
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

    #[test]
    fn offsets_are_assigned_in_command_order_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut sm = StateMachine::load(store.clone()).unwrap();
        let out = sm.apply_all(vec![
            create("t", 2),
            append("t", 0, 10, &["a", "b"]),
            append("t", 1, 10, &["c"]),
            append("t", 0, 5, &["d"]),
        ]);
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
        let out = sm.apply_all(vec![append("t", 0, 20, &["e"])]);
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
        let mut seen = Vec::new();
        store
            .read_records(1, 0, 0, 4, |o, r| {
                seen.push((o, String::from_utf8(r.value.to_vec()).unwrap()));
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(
            seen,
            vec![(0, "a".into()), (1, "b".into()), (2, "d".into()), (3, "e".into())]
        );
    }

    #[test]
    fn bad_commands_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut sm = StateMachine::load(store).unwrap();
        let out = sm.apply_all(vec![
            create("t", 1),
            append("missing", 0, 1, &["x"]),
            append("t", 3, 1, &["x"]),
            create("bad name", 1),
            create("zero", 0),
            append("t", 0, 1, &["ok"]),
        ]);
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
        let out = sm.apply_all(vec![
            create("t", 1),
            append("t", 0, 1, &["old"]),
            Command::DeleteTopic { name: "t".into() },
            create("t", 1),
            append("t", 0, 1, &["new"]),
        ]);
        assert!(out.results.iter().all(Result::is_ok));
        store.write(out.batch, true).unwrap();
        let topics = store.load_topics().unwrap();
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].0.id, 2);
        assert_eq!(topics[0].1[0].next_offset, 1);
        assert!(store.batch_infos(1, 0, 0, u64::MAX, 10).unwrap().is_empty());
        assert_eq!(StateMachine::load(store).unwrap().next_topic_id, 3);
    }
}
