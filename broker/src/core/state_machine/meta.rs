//! The metadata state machine: topics (records, partition counts,
//! configuration, replica assignment), the topic id counter and consumer
//! groups with their committed offsets. In a cluster this is what the
//! metadata Raft group applies on every broker.

use std::collections::{BTreeMap, HashMap};

use rocksdb::WriteBatch;

use super::super::catalog::Publish;
use super::super::command::{Applied, Command};
use super::super::error::{BrokerError, BrokerResult};
use super::super::membership::{MAX_MEMBERS, Membership, Refusal};
use super::super::names::{MAX_PARTITIONS, validate_group_id, validate_schema_name, validate_topic_name};
use crate::auth::{AuditRecord, SecurityChange};
use crate::storage::schemas::StoredSchema;
use crate::storage::{PartitionState, StorageError, Store, TopicConfig, TopicRecord};
use flymq_proto::{REFUSED_NOT_ASSIGNED, REFUSED_STALE_GENERATION, REFUSED_UNKNOWN_MEMBER};
use flymq_security::SecurityState;

const NEXT_TOPIC_ID: &str = "next_topic_id";
const NEXT_TXN_SEQ: &str = "next_txn_seq";

pub struct MetaMachine {
    store: Store,
    topics: HashMap<String, TopicRecord>,
    next_topic_id: u32,
    security: SecurityState,
    audit_next: u64,
    /// Sequence number of the next committed multi-partition transaction.
    next_txn_seq: u64,
    /// Registered schema versions: name → version → fingerprint of the
    /// type and definition (the definitions stay in the store).
    schemas: HashMap<String, BTreeMap<u32, Fingerprint>>,
    /// Groups using partition assignment, by (topic, group).
    memberships: HashMap<(String, String), Membership>,
}

type Fingerprint = [u8; 32];

/// Most versions one schema name may have.
pub const MAX_SCHEMA_VERSIONS: usize = 1000;

pub fn schema_fingerprint(schema_type: &str, definition: &str) -> Fingerprint {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(schema_type.as_bytes());
    hasher.update([0]);
    hasher.update(definition.as_bytes());
    hasher.finalize().into()
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
        let next_txn_seq = match store.get_cluster_value(NEXT_TXN_SEQ)? {
            Some(bytes) => u64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| StorageError::Corrupt {
                what: "next transaction sequence number".into(),
            })?),
            None => 1,
        };
        let mut schemas: HashMap<String, BTreeMap<u32, Fingerprint>> = HashMap::new();
        for stored in store.schemas(None)? {
            schemas.entry(stored.name.clone()).or_default().insert(
                stored.version,
                schema_fingerprint(&stored.schema_type, &stored.definition),
            );
        }
        let memberships = store
            .memberships()?
            .into_iter()
            .map(|(topic, group, membership)| ((topic, group), membership))
            .collect();
        Ok(Self {
            memberships,
            schemas,
            next_txn_seq,
            security: store.load_security_state()?,
            audit_next: store.audit_next()?,
            store,
            topics,
            next_topic_id: stored_next.max(max_id + 1),
        })
    }

    /// Whether topic `id` was created and has since been deleted (ids are
    /// never reused). False for an id not allocated yet, which may belong
    /// to a topic this broker has not applied yet.
    pub fn is_deleted_topic(&self, id: u32) -> bool {
        id < self.next_topic_id && !self.topics.values().any(|t| t.id == id)
    }

    /// Users, roles and ACLs as applied.
    pub fn security_state(&self) -> &SecurityState {
        &self.security
    }

    /// Applies a security change; the audit record is stored whether the
    /// change succeeded or was refused.
    fn apply_security(
        &mut self,
        batch: &mut WriteBatch,
        publish: &mut Vec<Publish>,
        change: SecurityChange,
        mut audit: AuditRecord,
        keep: u64,
    ) -> BrokerResult<Applied> {
        let mut next = self.security.clone();
        let result = change.apply(&mut next);
        match &result {
            Ok(_) => audit.result = "success".into(),
            Err(err) => {
                audit.result = "failure".into();
                audit.details.push(("error".into(), err.to_string()));
            }
        }
        self.record_audit(batch, &audit, keep)?;
        let changed = result.map_err(|e| BrokerError::Security(e.to_string()))?;
        if changed {
            self.store.put_security_state(batch, &next)?;
            publish.push(Publish::Security {
                state: Box::new(next.clone()),
            });
            self.security = next;
        }
        Ok(Applied::SecurityChanged { changed })
    }

    fn record_audit(&mut self, batch: &mut WriteBatch, record: &AuditRecord, keep: u64) -> BrokerResult<()> {
        let seq = self.audit_next;
        let keep_from = (seq + 1).saturating_sub(keep.max(1));
        // A struct of strings and numbers: serialising cannot fail.
        let json = serde_json::to_vec(record).unwrap_or_default();
        self.store.put_audit(batch, seq, &json, keep_from)?;
        self.audit_next += 1;
        Ok(())
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
                if self.memberships.remove(&(topic.clone(), group.clone())).is_some() {
                    self.store.delete_membership(batch, &topic, &group);
                }
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
                self.update_topic(batch, publish, &name, |record| record.config = config)
            }
            Command::SetMessageTtl { name, message_ttl_ms } => {
                self.update_topic(batch, publish, &name, |record| record.message_ttl_ms = message_ttl_ms)
            }
            Command::AddPartitions {
                name,
                partitions,
                replicas,
            } => self.add_partitions(batch, publish, name, partitions, replicas),
            Command::Security { change, audit, keep } => self.apply_security(batch, publish, *change, *audit, keep),
            Command::Audit { record, keep } => {
                self.record_audit(batch, &record, keep)?;
                Ok(Applied::AuditRecorded)
            }
            Command::CommitTransaction { decision } => {
                let seq = self.next_txn_seq;
                let encoded = postcard::to_stdvec(&decision).map_err(|e| {
                    BrokerError::Storage(format!("encoding the decision of transaction {}: {e}", decision.txn_id))
                })?;
                self.store.put_txn_decision(batch, seq, &encoded)?;
                self.store
                    .put_cluster_value(batch, NEXT_TXN_SEQ, &(seq + 1).to_be_bytes())?;
                self.next_txn_seq = seq + 1;
                Ok(Applied::TransactionCommitted { seq })
            }
            Command::SetMaxDeliveries { name, max_deliveries } => {
                self.update_topic(batch, publish, &name, |record| record.max_deliveries = max_deliveries)
            }
            Command::RegisterSchema {
                name,
                schema_type,
                definition,
                registered_ms,
                previous,
            } => self.register_schema(
                batch,
                publish,
                StoredSchema {
                    name,
                    version: 0,
                    schema_type,
                    definition,
                    registered_ms,
                },
                previous,
            ),
            Command::DeleteSchema { name, version } => self.delete_schema(batch, publish, &name, version),
            Command::JoinGroup {
                topic,
                group,
                member_id,
                session_timeout_ms,
                now_ms,
            } => self.change_membership(batch, &topic, &group, &member_id, |m, partitions| {
                let owned = m.join(&member_id, session_timeout_ms, now_ms, partitions)?;
                Ok(Applied::GroupAssignment {
                    generation: m.generation,
                    partitions: owned,
                })
            }),
            Command::GroupHeartbeat {
                topic,
                group,
                member_id,
                now_ms,
            } => self.change_membership(batch, &topic, &group, &member_id, |m, partitions| {
                let owned = m.heartbeat(&member_id, now_ms, partitions)?;
                Ok(Applied::GroupAssignment {
                    generation: m.generation,
                    partitions: owned,
                })
            }),
            Command::LeaveGroup {
                topic,
                group,
                member_id,
                now_ms,
            } => self.change_membership(batch, &topic, &group, &member_id, |m, partitions| {
                Ok(Applied::GroupLeft {
                    was_member: m.leave(&member_id, now_ms, partitions),
                })
            }),
            Command::CommitFenced {
                topic,
                group,
                partition,
                offset,
                member_id,
                generation,
                now_ms,
            } => {
                let applied = self.change_membership(batch, &topic, &group, &member_id, |m, partitions| {
                    m.check_commit(&member_id, generation, partition, now_ms, partitions)
                        .map(|()| Applied::OffsetCommitted)
                })?;
                self.store
                    .put_committed_offset(batch, &topic, &group, partition, offset);
                Ok(applied)
            }
            Command::TransactionDelivered { seq } => {
                self.store.delete_txn_decision(batch, seq);
                Ok(Applied::DecisionDropped)
            }
            Command::Append { .. }
            | Command::Truncate { .. }
            | Command::Release { .. }
            | Command::DeliverTransaction { .. } => Err(BrokerError::InvalidArgument(
                "internal error: a partition command reached the metadata state machine".into(),
            )),
        }
    }

    /// Applies `change` to a group's membership (created on first use) with
    /// the topic's partition count, stores the result (also when the
    /// change is refused: expiries it made still count) and maps a refusal
    /// to its error.
    fn change_membership(
        &mut self,
        batch: &mut WriteBatch,
        topic: &str,
        group: &str,
        member_id: &str,
        change: impl FnOnce(&mut Membership, u32) -> Result<Applied, Refusal>,
    ) -> BrokerResult<Applied> {
        validate_group_id(group)?;
        let partitions = self
            .topics
            .get(topic)
            .ok_or_else(|| BrokerError::TopicNotFound(topic.to_owned()))?
            .partitions;
        let key = (topic.to_owned(), group.to_owned());
        let membership = self.memberships.entry(key.clone()).or_default();
        let before = membership.clone();
        let result = change(membership, partitions);
        if membership.members.is_empty() && membership.generation == 0 {
            self.memberships.remove(&key);
        } else {
            // A heartbeat moves only times: write those, not every member.
            match membership.times_moved_since(&before) {
                Some(moved) => self
                    .store
                    .put_membership_times(batch, topic, group, membership.clock_ms, &moved)?,
                None => self.store.put_membership(batch, topic, group, membership)?,
            }
            self.store.put_group_marker(batch, topic, group);
        }
        let generation = self.memberships.get(&key).map_or(0, |m| m.generation);
        result.map_err(|refusal| {
            BrokerError::Membership(match refusal {
                Refusal::UnknownMember => format!(
                    "{REFUSED_UNKNOWN_MEMBER} '{member_id}' of group {topic}:{group} (its session expired or it left): join again"
                ),
                Refusal::StaleGeneration { current } => format!(
                    "{REFUSED_STALE_GENERATION} of member '{member_id}' in group {topic}:{group} (current generation \
                     {current}): the group rebalanced; take the new assignment before committing"
                ),
                Refusal::NotOwner { partition } => format!(
                    "partition {partition} of '{topic}' {REFUSED_NOT_ASSIGNED} '{member_id}' of group {group} in \
                     generation {generation}"
                ),
                Refusal::TooManyMembers => format!("group {topic}:{group} has {MAX_MEMBERS} members, the most allowed"),
            })
        })
    }

    /// Stores the next version of a schema (the proposer validated the
    /// definition and checked compatibility with version `previous`).
    fn register_schema(
        &mut self,
        batch: &mut WriteBatch,
        publish: &mut Vec<Publish>,
        mut schema: StoredSchema,
        previous: u32,
    ) -> BrokerResult<Applied> {
        validate_schema_name(&schema.name)?;
        let fingerprint = schema_fingerprint(&schema.schema_type, &schema.definition);
        let versions = self.schemas.entry(schema.name.clone()).or_default();
        let latest = versions.last_key_value().map(|(v, f)| (*v, *f));
        if let Some((version, existing)) = latest
            && existing == fingerprint
        {
            return Ok(Applied::SchemaRegistered {
                version,
                created: false,
            });
        }
        let latest_version = latest.map_or(0, |(v, _)| v);
        if latest_version != previous {
            return Ok(Applied::SchemaConflict { latest: latest_version });
        }
        if versions.len() >= MAX_SCHEMA_VERSIONS {
            return Err(BrokerError::Schema(format!(
                "schema '{}' has {MAX_SCHEMA_VERSIONS} versions, the most allowed: delete old versions first",
                schema.name
            )));
        }
        schema.version = latest_version + 1;
        self.store.put_schema(batch, &schema)?;
        versions.insert(schema.version, fingerprint);
        publish.push(Publish::SchemasChanged);
        Ok(Applied::SchemaRegistered {
            version: schema.version,
            created: true,
        })
    }

    fn delete_schema(
        &mut self,
        batch: &mut WriteBatch,
        publish: &mut Vec<Publish>,
        name: &str,
        version: u32,
    ) -> BrokerResult<Applied> {
        let Some(versions) = self.schemas.get_mut(name) else {
            return Err(BrokerError::SchemaNotFound(format!(
                "no schema found for topic: {name}"
            )));
        };
        let doomed: Vec<u32> = match version {
            0 => versions.keys().copied().collect(),
            v if versions.contains_key(&v) => vec![v],
            v => return Err(BrokerError::SchemaNotFound(format!("schema not found: {name} v{v}"))),
        };
        for v in &doomed {
            self.store.delete_schema(batch, name, *v);
            versions.remove(v);
        }
        if versions.is_empty() {
            self.schemas.remove(name);
        }
        publish.push(Publish::SchemasChanged);
        Ok(Applied::SchemaDeleted {
            versions: doomed.len() as u32,
        })
    }

    /// Changes one setting of a topic's record, stores and publishes it.
    fn update_topic(
        &mut self,
        batch: &mut WriteBatch,
        publish: &mut Vec<Publish>,
        name: &str,
        change: impl FnOnce(&mut TopicRecord),
    ) -> BrokerResult<Applied> {
        let record = self
            .topics
            .get_mut(name)
            .ok_or_else(|| BrokerError::TopicNotFound(name.to_owned()))?;
        change(record);
        self.store.put_topic(batch, record);
        publish.push(Publish::TopicUpserted { record: record.clone() });
        Ok(Applied::TopicUpdated)
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
            message_ttl_ms: None,
            max_deliveries: None,
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
