//! Topic records, partition states and committed offsets in the `meta` and
//! `offsets` column families, and the generic meta values (`c/<name>`:
//! cluster identity, counters, security state), which are encrypted at rest
//! when a key is configured (`storage::crypto`). Topic records, partition
//! states and offsets hold no user data and stay plaintext.

use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use super::crypto::{Domain, open_opt, seal_opt};
use super::{CF_META, CF_OFFSETS, StorageError, Store, keys, prefix_end};

/// Per-topic settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Delete batches whose newest record is older than this; `None` keeps forever.
    pub retention_ms: Option<u64>,
    /// Delete the oldest batches while a partition is larger than this.
    pub retention_bytes: Option<u64>,
}

/// A topic as stored in `meta` under `t/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: u32,
    pub name: String,
    pub partitions: u32,
    pub created_ms: i64,
    pub config: TopicConfig,
    /// Node ids holding each partition, preferred leader first; empty on a
    /// standalone broker (every partition is local).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Vec<u64>>,
    /// Per partition, the member that creates its Raft group (the first
    /// replica when the partition was made). Only it ever initialises the
    /// group, so a replica that lost its data (a new incarnation) or was
    /// added later can never start a second group beside the real one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initializers: Vec<u64>,
    /// Records produced without their own TTL expire this long after they
    /// were produced; `None` keeps them (until retention). Set by
    /// `Command::SetMessageTtl`, not part of `TopicConfig`, whose encoding
    /// in older Raft log entries must stay decodable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_ttl_ms: Option<u64>,
    /// Dead-letter queue: a record delivered this many times to a consumer
    /// group without the group committing past it moves to `<topic>.dlq`;
    /// `None`: never. Set by `Command::SetMaxDeliveries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deliveries: Option<u32>,
}

/// Position and size of one partition log, stored under `p/[topic id][partition]`
/// in the same WriteBatch as the records it describes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// Offset the next record gets (log end).
    pub next_offset: u64,
    /// First retained offset.
    pub start_offset: u64,
    /// Bytes of batch values retained.
    pub size_bytes: u64,
    /// Newest record timestamp; timestamps never go backwards within a partition.
    pub last_timestamp: i64,
}

impl PartitionState {
    const LEN: usize = 32;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0..8].copy_from_slice(&self.next_offset.to_be_bytes());
        out[8..16].copy_from_slice(&self.start_offset.to_be_bytes());
        out[16..24].copy_from_slice(&self.size_bytes.to_be_bytes());
        out[24..32].copy_from_slice(&self.last_timestamp.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN {
            return None;
        }
        let u = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(Self {
            next_offset: u(0),
            start_offset: u(8),
            size_bytes: u(16),
            last_timestamp: u(24) as i64,
        })
    }
}

/// Committed offsets of one consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsets {
    pub topic: String,
    pub group: String,
    /// `(partition, next offset to read)`, ascending by partition.
    pub offsets: Vec<(u32, u64)>,
}

fn corrupt(what: impl Into<String>) -> StorageError {
    StorageError::Corrupt { what: what.into() }
}

impl Store {
    /// Every topic with the state of each partition.
    pub fn load_topics(&self) -> Result<Vec<(TopicRecord, Vec<PartitionState>)>, StorageError> {
        let meta = self.cf(CF_META);
        let mut topics = Vec::new();
        let mode = IteratorMode::From(keys::TOPIC_META_PREFIX, Direction::Forward);
        for item in self.db().iterator_cf(&meta, mode) {
            let (key, value) = item?;
            if !key.starts_with(keys::TOPIC_META_PREFIX) {
                break;
            }
            let record: TopicRecord = serde_json::from_slice(&value)
                .map_err(|e| corrupt(format!("topic record {}: {e}", String::from_utf8_lossy(&key))))?;
            let mut states = Vec::with_capacity(record.partitions as usize);
            for partition in 0..record.partitions {
                let key = keys::partition_state_key(record.id, partition);
                let state = match self.db().get_pinned_cf(&meta, key)? {
                    Some(bytes) => PartitionState::decode(&bytes)
                        .ok_or_else(|| corrupt(format!("partition state {}/{partition}", record.name)))?,
                    None => PartitionState::default(),
                };
                states.push(state);
            }
            topics.push((record, states));
        }
        Ok(topics)
    }

    /// The stored state of one partition, if it has one.
    pub fn partition_state(&self, topic_id: u32, partition: u32) -> Result<Option<PartitionState>, StorageError> {
        match self
            .db()
            .get_pinned_cf(&self.cf(CF_META), keys::partition_state_key(topic_id, partition))?
        {
            Some(bytes) => Ok(Some(PartitionState::decode(&bytes).ok_or_else(|| {
                corrupt(format!("partition state of topic id {topic_id} partition {partition}"))
            })?)),
            None => Ok(None),
        }
    }

    /// `(topic id, partition)` of every stored partition state, in key order:
    /// every partition this broker holds records of, including those of
    /// topics no longer in the catalog.
    pub fn stored_partitions(&self) -> Result<Vec<(u32, u32)>, StorageError> {
        let prefix = keys::PARTITION_STATE_PREFIX;
        let mut found = Vec::new();
        let mode = IteratorMode::From(prefix, Direction::Forward);
        for item in self.db().iterator_cf(&self.cf(CF_META), mode) {
            let (key, _) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            let ids = keys::split_partition_state_key(&key)
                .ok_or_else(|| corrupt(format!("partition state key of {} bytes", key.len())))?;
            found.push(ids);
        }
        Ok(found)
    }

    /// A generic meta value (`c/<name>`), decrypted when encryption at rest is on.
    pub fn get_cluster_value(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let key = keys::cluster_key(name);
        match self.db().get_pinned_cf(&self.cf(CF_META), &key)? {
            None => Ok(None),
            Some(stored) => Ok(Some(self.open_meta_value(&key, &stored)?)),
        }
    }

    /// Adds a generic meta value (`c/<name>`) to `batch`, encrypted when
    /// encryption at rest is on. Any state stored through it (for example the
    /// users and ACLs) is covered.
    pub fn put_cluster_value(&self, batch: &mut WriteBatch, name: &str, value: &[u8]) -> Result<(), StorageError> {
        let key = keys::cluster_key(name);
        let stored = self.seal_meta_value(&key, value)?;
        batch.put_cf(&self.cf(CF_META), key, stored);
        Ok(())
    }

    /// Every generic value whose name starts with `prefix`, in key order:
    /// `(the rest of the name, the value)`.
    pub(crate) fn cluster_values(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let key_prefix = keys::cluster_key(prefix);
        let mut found = Vec::new();
        let iter = self
            .db()
            .iterator_cf(&self.cf(CF_META), IteratorMode::From(&key_prefix, Direction::Forward));
        for item in iter {
            let (key, stored) = item?;
            if !key.starts_with(&key_prefix) {
                break;
            }
            let rest = String::from_utf8(key[key_prefix.len()..].to_vec()).map_err(|_| StorageError::Corrupt {
                what: format!("a key under 'c/{prefix}'"),
            })?;
            found.push((rest, self.open_meta_value(&key, &stored)?));
        }
        Ok(found)
    }

    /// The stored form of the meta value under `key` (the metadata snapshot
    /// carries plaintext; each broker seals with its own key).
    pub(crate) fn seal_meta_value<'a>(
        &self,
        key: &[u8],
        value: &'a [u8],
    ) -> Result<std::borrow::Cow<'a, [u8]>, StorageError> {
        seal_opt(self.at_rest(), Domain::Meta, key, value)
    }

    /// The plaintext of the meta value stored under `key`.
    pub(crate) fn open_meta_value(&self, key: &[u8], stored: &[u8]) -> Result<Vec<u8>, StorageError> {
        open_opt(self.at_rest(), Domain::Meta, key, stored).map(|v| v.into_owned())
    }

    pub fn put_topic(&self, batch: &mut WriteBatch, record: &TopicRecord) {
        // Serialising a plain struct of strings and numbers cannot fail.
        let json = serde_json::to_vec(record).unwrap_or_default();
        batch.put_cf(&self.cf(CF_META), keys::topic_meta_key(&record.name), json);
    }

    /// Removes a topic's record, partition states and every record batch.
    pub fn delete_topic(&self, batch: &mut WriteBatch, record: &TopicRecord) {
        let meta = self.cf(CF_META);
        batch.delete_cf(&meta, keys::topic_meta_key(&record.name));
        for partition in 0..record.partitions {
            batch.delete_cf(&meta, keys::partition_state_key(record.id, partition));
        }
        let (start, end) = keys::topic_log_range(record.id);
        batch.delete_range_cf(&self.cf(super::CF_LOG), start, end);
        self.delete_topic_delayed(batch, record.id);
        self.delete_topic_txn_markers(batch, record.id);
    }

    pub fn put_partition_state(&self, batch: &mut WriteBatch, topic_id: u32, partition: u32, state: &PartitionState) {
        batch.put_cf(
            &self.cf(CF_META),
            keys::partition_state_key(topic_id, partition),
            state.encode(),
        );
    }

    pub fn put_group_marker(&self, batch: &mut WriteBatch, topic: &str, group: &str) {
        batch.put_cf(&self.cf(CF_OFFSETS), keys::group_key(topic, group), []);
    }

    pub fn put_committed_offset(&self, batch: &mut WriteBatch, topic: &str, group: &str, partition: u32, offset: u64) {
        let cf = self.cf(CF_OFFSETS);
        batch.put_cf(&cf, keys::group_key(topic, group), []);
        batch.put_cf(
            &cf,
            keys::group_offset_key(topic, group, partition),
            offset.to_be_bytes(),
        );
    }

    pub fn delete_group(&self, batch: &mut WriteBatch, topic: &str, group: &str) {
        let marker = keys::group_key(topic, group);
        let end = prefix_end(&marker);
        batch.delete_range_cf(&self.cf(CF_OFFSETS), marker, end);
    }

    pub fn group_exists(&self, topic: &str, group: &str) -> Result<bool, StorageError> {
        Ok(self
            .db()
            .get_pinned_cf(&self.cf(CF_OFFSETS), keys::group_key(topic, group))?
            .is_some())
    }

    pub fn committed_offset(&self, topic: &str, group: &str, partition: u32) -> Result<Option<u64>, StorageError> {
        let key = keys::group_offset_key(topic, group, partition);
        match self.db().get_pinned_cf(&self.cf(CF_OFFSETS), key)? {
            None => Ok(None),
            Some(bytes) => {
                let raw: [u8; 8] = bytes.as_ref().try_into().map_err(|_| corrupt("committed offset"))?;
                Ok(Some(u64::from_be_bytes(raw)))
            }
        }
    }

    /// Every consumer group with its committed offsets, sorted by topic, group, partition.
    pub fn list_groups(&self) -> Result<Vec<GroupOffsets>, StorageError> {
        let mut groups: Vec<GroupOffsets> = Vec::new();
        for item in self.db().iterator_cf(&self.cf(CF_OFFSETS), IteratorMode::Start) {
            let (key, value) = item?;
            let parsed = keys::parse_group_key(&key).ok_or_else(|| corrupt("offsets key"))?;
            let same = groups
                .last()
                .is_some_and(|g| g.topic == parsed.topic && g.group == parsed.group);
            if !same {
                groups.push(GroupOffsets {
                    topic: parsed.topic,
                    group: parsed.group,
                    offsets: Vec::new(),
                });
            }
            if let (Some(partition), Some(group)) = (parsed.partition, groups.last_mut()) {
                let raw: [u8; 8] = value.as_ref().try_into().map_err(|_| corrupt("committed offset"))?;
                group.offsets.push((partition, u64::from_be_bytes(raw)));
            }
        }
        // Keys order by length prefix first; callers want names in order.
        groups.sort_by(|a, b| (&a.topic, &a.group).cmp(&(&b.topic, &b.group)));
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_state_round_trips() {
        let state = PartitionState {
            next_offset: 10,
            start_offset: 2,
            size_bytes: 999,
            last_timestamp: -5,
        };
        assert_eq!(PartitionState::decode(&state.encode()), Some(state));
        assert_eq!(PartitionState::decode(&[0; 5]), None);
    }

    #[test]
    fn topics_and_groups_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut batch = WriteBatch::default();
            let record = TopicRecord {
                id: 1,
                name: "orders".into(),
                partitions: 2,
                created_ms: 5,
                config: TopicConfig::default(),
                replicas: vec![],
                initializers: vec![],
                message_ttl_ms: Some(60_000),
                max_deliveries: Some(3),
            };
            store.put_topic(&mut batch, &record);
            let state = PartitionState {
                next_offset: 3,
                ..Default::default()
            };
            store.put_partition_state(&mut batch, 1, 1, &state);
            store.put_committed_offset(&mut batch, "orders", "billing", 1, 42);
            store.put_group_marker(&mut batch, "orders", "empty");
            store.write(batch, true).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let topics = store.load_topics().unwrap();
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].0.name, "orders");
        assert_eq!(topics[0].1[1].next_offset, 3);
        assert_eq!(store.committed_offset("orders", "billing", 1).unwrap(), Some(42));
        let groups = store.list_groups().unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].offsets, vec![(1, 42)]);
        assert!(groups[1].offsets.is_empty());

        let mut batch = WriteBatch::default();
        store.delete_group(&mut batch, "orders", "billing");
        store.write(batch, true).unwrap();
        assert!(!store.group_exists("orders", "billing").unwrap());
        assert!(store.group_exists("orders", "empty").unwrap());
    }

    #[test]
    fn generic_meta_values_are_sealed_and_bound_to_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let keyring =
            std::sync::Arc::new(flymq_security::Keyring::parse(&flymq_security::Keyring::generate_key_hex()).unwrap());
        let store = Store::open_with_keys(dir.path(), crate::storage::StoreOptions::default(), Some(keyring)).unwrap();
        let secret = b"users: alice argon2id$MARKER-CREDENTIALS";
        let mut batch = WriteBatch::default();
        store.put_cluster_value(&mut batch, "security_state", secret).unwrap();
        store.put_cluster_value(&mut batch, "other", b"x").unwrap();
        store.write(batch, true).unwrap();
        assert_eq!(
            store.get_cluster_value("security_state").unwrap().as_deref(),
            Some(&secret[..])
        );
        let meta = store.cf(CF_META);
        let raw = store
            .db()
            .get_cf(&meta, keys::cluster_key("security_state"))
            .unwrap()
            .unwrap();
        assert!(!raw.windows(6).any(|w| w == b"MARKER"), "stored in plaintext");
        // The sealed value copied under another key does not open.
        store.db().put_cf(&meta, keys::cluster_key("other"), &raw).unwrap();
        assert!(store.get_cluster_value("other").is_err());
    }
}
