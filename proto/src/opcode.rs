//! Opcode catalogue (WIRE.md §4) plus the FlyMQ extensions.
//!
//! FlyMQ extensions (no SDK but ours sends them; layouts in the crate README):
//! [`Opcode::ClusterStatus`] (0x52), [`Opcode::SeekToTimestamp`] (0x66) and
//! [`Opcode::ProduceBatch`] (0x90).

macro_rules! opcodes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $name:literal; )*) => {
        /// Every opcode of the protocol.
        #[repr(u8)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Opcode {
            $( $(#[$doc])* $variant = $code, )*
        }

        impl Opcode {
            /// Every opcode, in code order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$variant),*];

            /// The opcode for a wire byte, or `None` if the code is unknown.
            pub fn from_u8(code: u8) -> Option<Opcode> {
                match code {
                    $( $code => Some(Opcode::$variant), )*
                    _ => None,
                }
            }

            /// The protocol name, e.g. `PRODUCE`.
            pub fn name(self) -> &'static str {
                match self {
                    $( Opcode::$variant => $name, )*
                }
            }
        }
    };
}

opcodes! {
    /// Append one record (§8.1).
    Produce = 0x01, "PRODUCE";
    /// Read one record by offset (§8.2).
    Consume = 0x02, "CONSUME";
    /// Create a topic (§8.3).
    CreateTopic = 0x03, "CREATE_TOPIC";
    /// Reserved; Go's unused topic-metadata codec (§8.8).
    Metadata = 0x04, "METADATA";
    /// Join a consumer group and get a start offset (§9.1).
    Subscribe = 0x05, "SUBSCRIBE";
    /// Commit a consumer-group offset (§9.2).
    Commit = 0x06, "COMMIT";
    /// Read a batch of records (§8.6).
    Fetch = 0x07, "FETCH";
    /// List topic names (§8.5).
    ListTopics = 0x08, "LIST_TOPICS";
    /// Delete a topic (§8.4).
    DeleteTopic = 0x09, "DELETE_TOPIC";
    /// CONSUME layout under another code (§8.7).
    ConsumeZeroCopy = 0x0A, "CONSUME_ZERO_COPY";
    /// FETCH layout under another code (§8.7).
    FetchBinary = 0x0B, "FETCH_BINARY";
    /// Register a schema version (§10.1).
    RegisterSchema = 0x10, "REGISTER_SCHEMA";
    /// Get one schema version (§10.2).
    GetSchema = 0x11, "GET_SCHEMA";
    /// List schemas (§10.3).
    ListSchemas = 0x12, "LIST_SCHEMAS";
    /// Validate a message against a schema (§10.4).
    ValidateSchema = 0x13, "VALIDATE_SCHEMA";
    /// Produce with schema validation (§10.5).
    ProduceWithSchema = 0x14, "PRODUCE_WITH_SCHEMA";
    /// Delete schema versions (§10.6).
    DeleteSchema = 0x15, "DELETE_SCHEMA";
    /// Read dead-letter entries (§11.1).
    FetchDlq = 0x20, "FETCH_DLQ";
    /// Re-publish a dead-letter entry (§11.2).
    ReplayDlq = 0x21, "REPLAY_DLQ";
    /// Delete a topic's dead-letter queue (§11.3).
    PurgeDlq = 0x22, "PURGE_DLQ";
    /// Produce after a delay (§9.9).
    ProduceDelayed = 0x30, "PRODUCE_DELAYED";
    /// Reserved, no layout (§8.8).
    CancelDelayed = 0x31, "CANCEL_DELAYED";
    /// Produce with a time-to-live (§9.10).
    ProduceWithTtl = 0x35, "PRODUCE_WITH_TTL";
    /// Begin a transaction (§9.11).
    BeginTx = 0x40, "BEGIN_TX";
    /// Commit a transaction (§9.11).
    CommitTx = 0x41, "COMMIT_TX";
    /// Abort a transaction (§9.11).
    AbortTx = 0x42, "ABORT_TX";
    /// Produce inside a transaction (§9.11).
    ProduceTx = 0x43, "PRODUCE_TX";
    /// Ask the server to join a peer (§11.4).
    ClusterJoin = 0x50, "CLUSTER_JOIN";
    /// Ask the server to leave its cluster (§11.4).
    ClusterLeave = 0x51, "CLUSTER_LEAVE";
    /// FlyMQ extension: cluster membership and roles.
    ClusterStatus = 0x52, "CLUSTER_STATUS";
    /// Topic/partition leadership (§11.5).
    ClusterMetadata = 0x53, "CLUSTER_METADATA";
    /// Read a committed offset (§9.3).
    GetOffset = 0x60, "GET_OFFSET";
    /// Reset a committed offset (§9.4).
    ResetOffset = 0x61, "RESET_OFFSET";
    /// List consumer groups (§9.5).
    ListGroups = 0x62, "LIST_GROUPS";
    /// Describe one consumer group (§9.5).
    DescribeGroup = 0x63, "DESCRIBE_GROUP";
    /// Consumer lag for one partition (§9.7).
    GetLag = 0x64, "GET_LAG";
    /// Delete a consumer group (§9.8).
    DeleteGroup = 0x65, "DELETE_GROUP";
    /// FlyMQ extension (reserved code in WIRE.md): offset for a timestamp.
    SeekToTimestamp = 0x66, "SEEK_TO_TIMESTAMP";
    /// Authenticate the connection (§6.2); answered with [`Opcode::AuthResponse`].
    Auth = 0x70, "AUTH";
    /// Response to AUTH (§6.2), response only.
    AuthResponse = 0x71, "AUTH_RESPONSE";
    /// Who is this connection (§6.3).
    Whoami = 0x72, "WHOAMI";
    /// Create a user (§12.2).
    UserCreate = 0x73, "USER_CREATE";
    /// Delete a user (§12.2).
    UserDelete = 0x74, "USER_DELETE";
    /// Update a user's roles / enabled flag (§12.2).
    UserUpdate = 0x75, "USER_UPDATE";
    /// List users (§12.2).
    UserList = 0x76, "USER_LIST";
    /// Get one user (§12.2).
    UserGet = 0x77, "USER_GET";
    /// Set a topic ACL (§12.2).
    AclSet = 0x78, "ACL_SET";
    /// Get a topic ACL (§12.2).
    AclGet = 0x79, "ACL_GET";
    /// Delete a topic ACL (§12.2).
    AclDelete = 0x7A, "ACL_DELETE";
    /// List topic ACLs (§12.2).
    AclList = 0x7B, "ACL_LIST";
    /// Change a password (§12.2).
    PasswordChange = 0x7C, "PASSWORD_CHANGE";
    /// List roles (§12.2).
    RoleList = 0x7D, "ROLE_LIST";
    /// Query the audit log, Go numbering (§12.3).
    AuditQuery = 0x80, "AUDIT_QUERY";
    /// Export the audit log, Go numbering (§12.3).
    AuditExport = 0x81, "AUDIT_EXPORT";
    /// FlyMQ extension: produce many records to one partition in one request.
    ProduceBatch = 0x90, "PRODUCE_BATCH";
    /// FlyMQ extension: the topics an MQTT-style pattern matches.
    MatchTopics = 0x91, "MATCH_TOPICS";
    /// FlyMQ extension: join a consumer group's partition assignment.
    JoinGroup = 0x92, "JOIN_GROUP";
    /// FlyMQ extension: a group member's heartbeat (answers its assignment).
    GroupHeartbeat = 0x93, "GROUP_HEARTBEAT";
    /// FlyMQ extension: leave a consumer group's assignment.
    LeaveGroup = 0x94, "LEAVE_GROUP";
    /// FlyMQ extension: an offset commit fenced by the member's generation.
    CommitFenced = 0x95, "COMMIT_FENCED";
    /// FlyMQ extension: a consumer rejects a record into the dead-letter queue.
    RejectRecord = 0x96, "REJECT_RECORD";
    /// AUDIT_QUERY under the pyflymq/Java code; Go layout (§12.3).
    AuditQueryAlt = 0xA0, "AUDIT_QUERY";
    /// AUDIT_EXPORT under the pyflymq/Java code; Go layout (§12.3).
    AuditExportAlt = 0xA1, "AUDIT_EXPORT";
    /// Error response (§5), response only.
    Error = 0xFF, "ERROR";
}

impl Opcode {
    /// The wire byte.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for Opcode {
    type Error = crate::DecodeError;

    fn try_from(code: u8) -> Result<Self, crate::DecodeError> {
        Opcode::from_u8(code).ok_or(crate::DecodeError::UnknownOpcode(code))
    }
}

impl std::fmt::Display for Opcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (0x{:02X})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for &op in Opcode::ALL {
            assert_eq!(Opcode::from_u8(op as u8), Some(op));
        }
        let known = (0..=255u8).filter(|c| Opcode::from_u8(*c).is_some()).count();
        assert_eq!(known, Opcode::ALL.len());
    }

    #[test]
    fn names_and_unknowns() {
        assert_eq!(Opcode::Produce.name(), "PRODUCE");
        assert_eq!(Opcode::from_u8(0x71), Some(Opcode::AuthResponse));
        assert_eq!(Opcode::from_u8(0x0C), None);
        assert_eq!(Opcode::from_u8(0x9F), None);
        assert_eq!(Opcode::try_from(0x0C).unwrap_err().to_string(), "unknown opcode: 12");
    }
}
