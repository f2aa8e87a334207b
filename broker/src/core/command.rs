//! Every change to broker state is a `Command`, applied in one place
//! (`StateMachine::apply`). A command carries every input its effect depends
//! on (timestamps, chosen partitions, computed truncation points), so applying
//! the same commands in the same order gives the same state on every replica.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::auth::{AuditRecord, SecurityChange};
use crate::storage::TopicConfig;

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRecord {
    /// Zero-copy when decoded within `shared_bytes::decode_within` (a
    /// follower's replication requests).
    #[serde(deserialize_with = "super::shared_bytes::bytes")]
    pub key: Bytes,
    #[serde(deserialize_with = "super::shared_bytes::bytes")]
    pub value: Bytes,
    /// Record flags (`storage::record_batch::FLAG_EXPIRES`); 0 for plain records.
    pub flags: u8,
}

impl NewRecord {
    pub fn new(key: Bytes, value: Bytes) -> Self {
        Self { key, value, flags: 0 }
    }

    /// Bytes this record takes in a stored batch (for limits and metrics).
    pub fn stored_size(&self) -> usize {
        crate::storage::record_batch::RECORD_OVERHEAD + self.key.len() + self.value.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Creates a topic; a topic that exists is left as it is (idempotent).
    CreateTopic {
        name: String,
        partitions: u32,
        config: TopicConfig,
        created_ms: i64,
        /// Node ids holding each partition, preferred leader first (cluster
        /// mode; empty on a standalone broker).
        replicas: Vec<Vec<u64>>,
    },
    /// A broker came back as a new incarnation (its volume was lost): every
    /// replica assignment naming member `old` names member `new` instead.
    ReplaceMember { old: u64, new: u64 },
    /// Moves one partition's replicas (cluster mode: decommission, repair).
    Reassign {
        topic: String,
        partition: u32,
        replicas: Vec<u64>,
    },
    /// Deletes a topic and all its records; a missing topic is not an error.
    DeleteTopic { name: String },
    /// Appends records to one partition at the log end.
    Append {
        topic: String,
        partition: u32,
        timestamp_ms: i64,
        records: Vec<NewRecord>,
    },
    /// Records that a consumer group exists (SUBSCRIBE with a group id).
    EnsureGroup { topic: String, group: String },
    /// Stores a group's next offset to read for a partition.
    CommitOffset {
        topic: String,
        group: String,
        partition: u32,
        offset: u64,
    },
    /// Deletes a group and all its committed offsets.
    DeleteGroup { topic: String, group: String },
    /// Retention: drops the batches before `new_start` (a batch boundary).
    Truncate {
        topic: String,
        topic_id: u32,
        partition: u32,
        new_start: u64,
        removed_bytes: u64,
    },
    /// Replaces a topic's retention settings.
    UpdateTopicConfig { name: String, config: TopicConfig },
    /// Grows a topic to `partitions` in total (never shrinks: keys would move).
    AddPartitions {
        name: String,
        partitions: u32,
        /// Replicas of each new partition (cluster mode; empty standalone).
        replicas: Vec<Vec<u64>>,
    },
    /// Changes users, roles or ACLs, and records `audit` (its result set
    /// by the apply) in the audit trail, which keeps the newest `keep` events.
    Security {
        change: Box<SecurityChange>,
        audit: Box<AuditRecord>,
        keep: u64,
    },
    /// Records an audit event; the trail keeps the newest `keep` events.
    Audit { record: Box<AuditRecord>, keep: u64 },
    /// Sets a topic's message TTL (`None`: records never expire).
    ///
    /// Commands are postcard-encoded in the Raft log, where a variant's
    /// fields cannot grow without breaking older entries: new settings get
    /// new variants, added at the end.
    SetMessageTtl { name: String, message_ttl_ms: Option<u64> },
    /// Delivers due scheduled records of one partition: each one still
    /// scheduled is appended as a copy (at the log end) and leaves the
    /// schedule; one already delivered is skipped, so a release proposed
    /// twice (by two leaders) delivers once.
    Release {
        topic: String,
        topic_id: u32,
        partition: u32,
        timestamp_ms: i64,
        records: Vec<DueRecord>,
    },
    /// Commits a transaction spanning several partitions: stores its
    /// records as a decision under the next transaction sequence number.
    /// From then on the transaction is committed; `DeliverTransaction`
    /// makes each partition's share readable.
    CommitTransaction { decision: Decision },
    /// Appends one partition's share of committed transaction `seq`, the
    /// first record marked with `seq`, unless the partition has it already:
    /// a delivery proposed twice (a retry, another broker finishing the
    /// commit) appends once.
    DeliverTransaction {
        seq: u64,
        topic: String,
        topic_id: u32,
        partition: u32,
        timestamp_ms: i64,
        records: Vec<NewRecord>,
    },
    /// Every partition has transaction `seq`: its decision is dropped.
    TransactionDelivered { seq: u64 },
    /// Sets a topic's dead-letter limit (`None`: no dead-lettering).
    SetMaxDeliveries { name: String, max_deliveries: Option<u32> },
    /// Registers the next version of schema `name`, if its latest version
    /// is still `previous` (0: none) — the proposer checked compatibility
    /// against that version. A definition equal to the latest version's
    /// registers nothing (idempotent).
    RegisterSchema {
        name: String,
        schema_type: String,
        definition: String,
        registered_ms: i64,
        previous: u32,
    },
    /// Deletes one version of a schema, or every version (`version` 0).
    DeleteSchema { name: String, version: u32 },
    /// A member joins a group's partition assignment (`core::membership`).
    JoinGroup {
        topic: String,
        group: String,
        member_id: String,
        session_timeout_ms: u32,
        now_ms: i64,
    },
    /// A group member is alive.
    GroupHeartbeat {
        topic: String,
        group: String,
        member_id: String,
        now_ms: i64,
    },
    /// A member leaves its group.
    LeaveGroup {
        topic: String,
        group: String,
        member_id: String,
        now_ms: i64,
    },
    /// Stores a group's offset if `generation` is current and the member
    /// owns the partition.
    CommitFenced {
        topic: String,
        group: String,
        partition: u32,
        offset: u64,
        member_id: String,
        generation: u64,
        now_ms: i64,
    },
}

/// A committed transaction's records, per partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub txn_id: String,
    pub committed_ms: i64,
    pub parts: Vec<TransactionPart>,
}

/// The records of a transaction for one partition, in produce order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionPart {
    pub topic: String,
    pub topic_id: u32,
    pub partition: u32,
    pub records: Vec<NewRecord>,
}

/// A scheduled record to deliver (read from the partition log when due).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueRecord {
    /// Offset of the scheduled record.
    pub offset: u64,
    pub due_ms: i64,
    pub key: Bytes,
    /// The value the producer sent.
    pub payload: Bytes,
}

impl Command {
    /// Approximate payload size, used to bound one group commit.
    pub fn size_hint(&self) -> usize {
        match self {
            Command::Append { records, .. } | Command::DeliverTransaction { records, .. } => {
                records.iter().map(NewRecord::stored_size).sum()
            }
            Command::CommitTransaction { decision } => decision
                .parts
                .iter()
                .flat_map(|p| &p.records)
                .map(NewRecord::stored_size)
                .sum(),
            _ => 64,
        }
    }
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    TopicCreated {
        created: bool,
    },
    TopicDeleted {
        existed: bool,
    },
    Appended {
        partition: u32,
        base_offset: u64,
        count: u32,
        timestamp_ms: i64,
    },
    GroupEnsured,
    OffsetCommitted,
    GroupDeleted,
    Truncated {
        new_start: u64,
    },
    Reassigned,
    MemberReplaced {
        /// Topics whose assignment changed.
        topics: u32,
    },
    TopicUpdated,
    PartitionsAdded {
        /// The partition count before the change.
        previous: u32,
    },
    SecurityChanged {
        /// False when the change was a no-op (a bootstrap user that exists).
        changed: bool,
    },
    AuditRecorded,
    Released {
        /// Records delivered (skipped ones not counted).
        count: u32,
    },
    TransactionCommitted {
        seq: u64,
    },
    /// The partition had this transaction already; nothing appended.
    AlreadyDelivered,
    DecisionDropped,
    SchemaRegistered {
        version: u32,
        /// False when the latest version already had this definition.
        created: bool,
    },
    /// The schema's latest version is no longer the one the proposer
    /// checked against (a concurrent registration or deletion): nothing changed.
    SchemaConflict {
        latest: u32,
    },
    SchemaDeleted {
        versions: u32,
    },
    /// A member's generation and partitions.
    GroupAssignment {
        generation: u64,
        partitions: Vec<u32>,
    },
    GroupLeft {
        was_member: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Raft log entries hold postcard-encoded commands, which are not
    /// self-describing: a variant whose fields change makes entries written
    /// by an older broker undecodable. These bytes must never change; add a
    /// new variant at the end of `Command` instead.
    #[test]
    fn the_encoding_of_existing_commands_never_changes() {
        let create = Command::CreateTopic {
            name: "orders".into(),
            partitions: 3,
            config: TopicConfig {
                retention_ms: Some(1000),
                retention_bytes: None,
            },
            created_ms: 5,
            replicas: vec![vec![1, 2]],
        };
        let append = Command::Append {
            topic: "t".into(),
            partition: 1,
            timestamp_ms: 7,
            records: vec![NewRecord::new(Bytes::from_static(b"k"), Bytes::from_static(b"v"))],
        };
        let update = Command::UpdateTopicConfig {
            name: "t".into(),
            config: TopicConfig::default(),
        };
        let ttl = Command::SetMessageTtl {
            name: "t".into(),
            message_ttl_ms: Some(60_000),
        };
        let encoded: Vec<String> = [create, append, update, ttl]
            .iter()
            .map(|c| hex(&postcard::to_stdvec(c).expect("encodes")))
            .collect();
        assert_eq!(
            encoded,
            [
                "00066f72646572730301e807000a01020102",
                "040174010e01016b017600",
                "0901740000",
                "0d017401e0d403",
            ]
        );
    }
}
