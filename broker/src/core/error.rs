//! Errors the broker core returns to handlers. Their `Display` text is what
//! clients see in the error frame, so it follows WIRE.md §5.4 where the Go
//! server has a wording, and otherwise says what failed and what to do.

use thiserror::Error;

use crate::storage::StorageError;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BrokerError {
    #[error("topic not found: {0}")]
    TopicNotFound(String),
    #[error("partition {partition} not found (topic '{topic}' has {count} partitions)")]
    PartitionNotFound { topic: String, partition: i64, count: u32 },
    #[error("partition {partition} out of range (topic '{topic}' has {count} partitions)")]
    PartitionOutOfRange { topic: String, partition: i64, count: u32 },
    #[error(
        "EOF: offset {offset} is not stored in partition {partition} of '{topic}' (retained offsets {start}..{end})"
    )]
    OffsetNotFound {
        topic: String,
        partition: u32,
        offset: u64,
        start: u64,
        end: u64,
    },
    #[error("consumer group not found: {topic}:{group}")]
    GroupNotFound { topic: String, group: String },
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid topic pattern '{pattern}': {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("invalid group id '{group}': {reason}")]
    InvalidGroupId { group: String, reason: &'static str },
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error("unknown subscribe mode: {0}")]
    UnknownSubscribeMode(String),
    #[error("unknown reset mode: {0}")]
    UnknownResetMode(String),
    #[error("{0} is not supported yet by this broker (see the README's feature list)")]
    NotSupported(&'static str),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("the broker is shutting down; retry on another broker")]
    ShuttingDown,
    /// Cluster mode: this broker cannot serve the request; the text follows
    /// WIRE.md's redirect wording so SDKs reconnect to `leader_addr`.
    #[error("not leader: {0}")]
    NotLeader(String),
    /// Cluster mode: this broker's replica has not yet applied a write it
    /// acknowledged (it lags the leader); worded as a redirect so SDKs retry.
    #[error(
        "not leader: this broker's replica of {what} is catching up (applied {applied}, needs {needed}); \
         retry shortly or on another broker"
    )]
    CatchingUp { what: String, applied: u64, needed: u64 },
    /// CONSUME of a record whose TTL has passed.
    #[error("record at offset {offset} of '{topic}' partition {partition} has expired (its TTL passed)")]
    RecordExpired { topic: String, partition: u32, offset: u64 },
    /// CONSUME of a scheduled (delayed) record: its copy is delivered later.
    #[error(
        "record at offset {offset} of '{topic}' partition {partition} is a delayed record scheduled for {due_ms} \
         (ms since the epoch); it is delivered then as a new record at the end of the partition"
    )]
    RecordScheduled {
        topic: String,
        partition: u32,
        offset: u64,
        due_ms: i64,
    },
    /// A user, ACL or cluster member that does not exist (the text names it).
    #[error("{0}")]
    NotFound(String),
    /// A refused user, role or ACL change (the text says why).
    #[error("{0}")]
    Security(String),
    /// An authorization failure: exactly the WIRE.md §5.4 texts.
    #[error(transparent)]
    Denied(#[from] flymq_security::AuthzError),
    /// A refused transaction request (unknown, finished or foreign id, a
    /// failed commit); the text says which.
    #[error("{0}")]
    Transaction(String),
    /// A write whose fate is not known: it was handed on and the broker it
    /// went to failed before answering. Never worded as a redirect ("not
    /// leader"), which clients treat as safe to send again.
    #[error("the outcome of this write is unknown ({0}); it may still be applied: check before sending it again")]
    OutcomeUnknown(String),
    /// A schema name or version that is not registered (Go's wording).
    #[error("{0}")]
    SchemaNotFound(String),
    /// A refused schema registration (a definition that does not parse, an
    /// incompatible version); the text says why.
    #[error("{0}")]
    Schema(String),
    /// PRODUCE_WITH_SCHEMA of a message its schema rejects; nothing is written.
    #[error("schema validation failed: [{}] (schema '{schema}' version {version})", .problems.join("; "))]
    SchemaValidation {
        schema: String,
        version: u32,
        problems: Vec<String>,
    },
    /// A refused group membership request or fenced commit (unknown
    /// member, stale generation, a partition the member does not own).
    #[error("{0}")]
    Membership(String),
    /// An error another broker (or the Raft apply) reported, as its text.
    #[error("{0}")]
    Remote(String),
}

impl From<StorageError> for BrokerError {
    fn from(err: StorageError) -> Self {
        BrokerError::Storage(err.to_string())
    }
}

pub type BrokerResult<T> = Result<T, BrokerError>;
