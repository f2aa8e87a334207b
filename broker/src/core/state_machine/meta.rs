//! The metadata state machine: topics (records, partition counts,
//! configuration, replica assignment), the topic id counter and consumer
//! groups with their committed offsets. In a cluster this is what the
//! metadata Raft group applies on every broker.

use std::collections::HashMap;

use rocksdb::WriteBatch;

use super::super::catalog::Publish;
use super::super::command::{Applied, Command};
use super::super::error::{BrokerError, BrokerResult};
use super::super::names::{MAX_PARTITIONS, validate_group_id, validate_topic_name};
use crate::storage::{PartitionState, StorageError, Store, TopicConfig, TopicRecord};

const NEXT_TOPIC_ID: &str = "next_topic_id";

pub struct MetaMachine {
    store: Store,
    topics: HashMap<String, TopicRecord>,
    next_topic_id: u32,
}

impl MetaMachine {
    /// Loads topics and the id counter from the store.
    pub fn load(store: Store) -> Result<Self, StorageError> {
        let topics = store
            .load_topics()?
            .into_iter()
            .map(|(record, _)| (record.name.clone(), record))
            .collect::<HashMap<_, _>>();
        let stored_next = match store.get_cluster_value(NEXT_TOPIC_ID)? {
            Some(bytes) => u32::from_be_bytes(bytes.as_slice().try_into().map_err(|_| StorageError::Corrupt {
                what: "next topic id".into(),
            })?),
            None => 1,
        };
        let max_id = topics.values().map(|t| t.id).max().unwrap_or(0);
        Ok(Self {
            store,
            topics,
            next_topic_id: stored_next.max(max_id + 1),
        })
    }

    pub fn topic(&self, name: &str) -> Option<&TopicRecord> {
        self.topics.get(name)
    }

    #[cfg(test)]
    pub fn next_topic_id(&self) -> u32 {
        self.next_topic_id
    }

    /// Applies one metadata command into `batch`; `publish` collects what
    /// readers see once the batch is written.
    pub fn apply(
        &mut self,
        batch: &mut WriteBatch,
        publish: &mut Vec<Publish>,
        command: Command,
    ) -> BrokerResult<Applied> {
        match command {
            Command::CreateTopic {
                name,
                partitions,
                config,
                created_ms,
                replicas,
            } => {
                let created = self.create_topic(batch, publish, &name, partitions, config, created_ms, replicas)?;
                Ok(Applied::TopicCreated { created })
            }
            Command::DeleteTopic { name } => {
                let Some(record) = self.topics.remove(&name) else {
                    return Ok(Applied::TopicDeleted { existed: false });
                };
                self.store.delete_topic(batch, &record);
                publish.push(Publish::TopicRemoved { name });
                Ok(Applied::TopicDeleted { existed: true })
            }
            Command::EnsureGroup { topic, group } => {
                validate_group_id(&group)?;
                self.store.put_group_marker(batch, &topic, &group);
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
                    .put_committed_offset(batch, &topic, &group, partition, offset);
                Ok(Applied::OffsetCommitted)
            }
            Command::DeleteGroup { topic, group } => {
                self.store.delete_group(batch, &topic, &group);
                Ok(Applied::GroupDeleted)
            }
            Command::Reassign {
                topic,
                partition,
                replicas,
            } => {
                let record = self
                    .topics
                    .get_mut(&topic)
                    .ok_or(BrokerError::TopicNotFound(topic.clone()))?;
                let slot = record.replicas.get_mut(partition as usize).ok_or_else(|| {
                    BrokerError::InvalidArgument(format!(
                        "partition {partition} of '{topic}' has no replica assignment"
                    ))
                })?;
                *slot = replicas;
                self.store.put_topic(batch, record);
                publish.push(Publish::TopicUpserted { record: record.clone() });
                Ok(Applied::Reassigned)
            }
            Command::ReplaceMember { old, new } => {
                let mut changed = 0;
                for record in self.topics.values_mut() {
                    let mut touched = false;
                    for replicas in &mut record.replicas {
                        for r in replicas.iter_mut().filter(|r| **r == old) {
                            *r = new;
                            touched = true;
                        }
                    }
                    if touched {
                        changed += 1;
                        self.store.put_topic(batch, record);
                        publish.push(Publish::TopicUpserted { record: record.clone() });
                    }
                }
                Ok(Applied::MemberReplaced { topics: changed })
            }
            Command::UpdateTopicConfig { name, config } => {
                let record = self
                    .topics
                    .get_mut(&name)
                    .ok_or(BrokerError::TopicNotFound(name.clone()))?;
                record.config = config;
                self.store.put_topic(batch, record);
                publish.push(Publish::TopicUpserted { record: record.clone() });
                Ok(Applied::TopicUpdated)
            }
            Command::AddPartitions {
                name,
                partitions,
                replicas,
            } => self.add_partitions(batch, publish, name, partitions, replicas),
            Command::Append { .. } | Command::Truncate { .. } => Err(BrokerError::InvalidArgument(
                "internal error: a partition command reached the metadata state machine".into(),
            )),
        }
    }

    fn add_partitions(
        &mut self,
        batch: &mut WriteBatch,
        publish: &mut Vec<Publish>,
        name: String,
        partitions: u32,
        replicas: Vec<Vec<u64>>,
    ) -> BrokerResult<Applied> {
        let Some(record) = self.topics.get_mut(&name) else {
            return Err(BrokerError::TopicNotFound(name));
        };
        let previous = record.partitions;
        if partitions <= previous || partitions > MAX_PARTITIONS {
            return Err(BrokerError::InvalidArgument(format!(
                "topic '{name}' has {previous} partitions: the new count must be larger, and at most \
                 {MAX_PARTITIONS} (partitions are never removed, keys would move)"
            )));
        }
        let added = (partitions - previous) as usize;
        let clustered = !record.replicas.is_empty();
        if clustered == replicas.is_empty() || (clustered && replicas.len() != added) {
            return Err(BrokerError::InvalidArgument(format!(
                "adding {added} partitions to '{name}' needs a replica assignment for each of them"
            )));
        }
        record.partitions = partitions;
        record
            .initializers
            .extend(replicas.iter().map(|r| r.first().copied().unwrap_or_default()));
        record.replicas.extend(replicas);
        for p in previous..partitions {
            self.store
                .put_partition_state(batch, record.id, p, &PartitionState::default());
        }
        self.store.put_topic(batch, record);
        publish.push(Publish::TopicUpserted { record: record.clone() });
        Ok(Applied::PartitionsAdded { previous })
    }

    #[allow(clippy::too_many_arguments)]
    fn create_topic(
        &mut self,
        batch: &mut WriteBatch,
        publish: &mut Vec<Publish>,
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
            initializers: replicas
                .iter()
                .map(|r| r.first().copied().unwrap_or_default())
                .collect(),
            replicas,
        };
        let next_topic_id = self.next_topic_id + 1;
        self.store
            .put_cluster_value(batch, NEXT_TOPIC_ID, &next_topic_id.to_be_bytes())?;
        self.next_topic_id = next_topic_id;
        self.store.put_topic(batch, &record);
        for p in 0..partitions {
            self.store
                .put_partition_state(batch, record.id, p, &PartitionState::default());
        }
        publish.push(Publish::TopicUpserted { record: record.clone() });
        self.topics.insert(name.to_owned(), record);
        Ok(true)
    }
}
