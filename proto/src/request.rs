//! The [`Request`] enum: one variant per request opcode, with decode/encode dispatch.

use bytes::{Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::frame::{FLAG_BINARY, Frame, begin_frame, finish_frame};
use crate::messages::audit::{AuditExportRequest, AuditQuery};
use crate::messages::auth::{AclSetRequest, AuthRequest, UserRequest, UsernameRequest};
use crate::messages::cluster::{ClusterJoinRequest, ClusterMetadataRequest};
use crate::messages::common::{RawPayload, TopicRequest};
use crate::messages::core::{
    ConsumeRequest, CreateTopicRequest, FetchRequest, ProduceBatchRequest, ProduceDelayedRequest, ProduceRequest,
    ProduceWithTtlRequest, SeekToTimestampRequest,
};
use crate::messages::dlq::{FetchDlqRequest, RejectRecordRequest, ReplayDlqRequest};
use crate::messages::groups::{
    CommitFencedRequest, CommitRequest, GroupMemberRequest, GroupPartitionRequest, GroupRequest, JoinGroupRequest,
    ResetOffsetRequest, SubscribeRequest,
};
use crate::messages::schema::{
    ListSchemasRequest, ProduceWithSchemaRequest, RegisterSchemaRequest, SchemaVersionRequest, ValidateSchemaRequest,
};
use crate::messages::tx::{ProduceTxRequest, TxRequest};
use crate::opcode::Opcode;
use crate::wire::{Reader, Wire};

/// Generates the enum and its `opcode` / `decode_bytes` / `encode` methods
/// from one table, so a variant's opcode and layout are stated exactly once.
macro_rules! requests {
    (
        with_payload { $( $(#[$doc:meta])* $variant:ident($ty:ty), )* }
        empty { $( $(#[$edoc:meta])* $evariant:ident, )* }
    ) => {
        /// A decoded request: one variant per request opcode. Variant names
        /// match [`Opcode`] names.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Request {
            $( $(#[$doc])* $variant($ty), )*
            $( $(#[$edoc])* $evariant, )*
        }

        impl Request {
            /// The request's opcode.
            pub fn opcode(&self) -> Opcode {
                match self {
                    $( Request::$variant(_) => Opcode::$variant, )*
                    $( Request::$evariant => Opcode::$evariant, )*
                }
            }

            /// Decode a (decompressed) payload without copying: key, value and
            /// data fields are slices of `payload`.
            ///
            /// Unknown opcodes (and the response-only 0x71 / 0xFF) give
            /// [`DecodeError::UnknownOpcode`]; a short payload gives
            /// [`DecodeError::BufferTooSmall`]; trailing bytes are ignored
            /// (except for PRODUCE_BATCH, whose count must match exactly).
            /// Requests with no fields ignore their payload.
            pub fn decode_bytes(opcode: u8, payload: Bytes) -> Result<Request, DecodeError> {
                let mut r = Reader::new(payload);
                let op = Opcode::from_u8(opcode).ok_or(DecodeError::UnknownOpcode(opcode))?;
                match op {
                    $( Opcode::$variant => Ok(Request::$variant(<$ty>::read(&mut r)?)), )*
                    $( Opcode::$evariant => Ok(Request::$evariant), )*
                    _ => Err(DecodeError::UnknownOpcode(opcode)),
                }
            }

            /// Append the payload (no header) to `out`.
            pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
                match self {
                    $( Request::$variant(v) => v.write(out), )*
                    $( Request::$evariant => Ok(()), )*
                }
            }
        }
    };
}

requests! {
    with_payload {
        /// 0x01 PRODUCE.
        Produce(ProduceRequest),
        /// 0x02 CONSUME.
        Consume(ConsumeRequest),
        /// 0x03 CREATE_TOPIC.
        CreateTopic(CreateTopicRequest),
        /// 0x04 METADATA (reserved; Go's unused codec layout).
        Metadata(TopicRequest),
        /// 0x05 SUBSCRIBE.
        Subscribe(SubscribeRequest),
        /// 0x06 COMMIT.
        Commit(CommitRequest),
        /// 0x07 FETCH.
        Fetch(FetchRequest),
        /// 0x09 DELETE_TOPIC.
        DeleteTopic(TopicRequest),
        /// 0x0A CONSUME_ZERO_COPY (CONSUME layout).
        ConsumeZeroCopy(ConsumeRequest),
        /// 0x0B FETCH_BINARY (FETCH layout).
        FetchBinary(FetchRequest),
        /// 0x10 REGISTER_SCHEMA.
        RegisterSchema(RegisterSchemaRequest),
        /// 0x11 GET_SCHEMA.
        GetSchema(SchemaVersionRequest),
        /// 0x12 LIST_SCHEMAS.
        ListSchemas(ListSchemasRequest),
        /// 0x13 VALIDATE_SCHEMA.
        ValidateSchema(ValidateSchemaRequest),
        /// 0x14 PRODUCE_WITH_SCHEMA (both layouts accepted).
        ProduceWithSchema(ProduceWithSchemaRequest),
        /// 0x15 DELETE_SCHEMA.
        DeleteSchema(SchemaVersionRequest),
        /// 0x20 FETCH_DLQ.
        FetchDlq(FetchDlqRequest),
        /// 0x21 REPLAY_DLQ (id or offset form).
        ReplayDlq(ReplayDlqRequest),
        /// 0x22 PURGE_DLQ.
        PurgeDlq(TopicRequest),
        /// 0x30 PRODUCE_DELAYED.
        ProduceDelayed(ProduceDelayedRequest),
        /// 0x31 CANCEL_DELAYED (reserved, no layout: the raw payload).
        CancelDelayed(RawPayload),
        /// 0x35 PRODUCE_WITH_TTL.
        ProduceWithTtl(ProduceWithTtlRequest),
        /// 0x41 COMMIT_TX.
        CommitTx(TxRequest),
        /// 0x42 ABORT_TX.
        AbortTx(TxRequest),
        /// 0x43 PRODUCE_TX.
        ProduceTx(ProduceTxRequest),
        /// 0x50 CLUSTER_JOIN.
        ClusterJoin(ClusterJoinRequest),
        /// 0x53 CLUSTER_METADATA.
        ClusterMetadata(ClusterMetadataRequest),
        /// 0x60 GET_OFFSET.
        GetOffset(GroupPartitionRequest),
        /// 0x61 RESET_OFFSET.
        ResetOffset(ResetOffsetRequest),
        /// 0x63 DESCRIBE_GROUP.
        DescribeGroup(GroupRequest),
        /// 0x64 GET_LAG.
        GetLag(GroupPartitionRequest),
        /// 0x65 DELETE_GROUP.
        DeleteGroup(GroupRequest),
        /// 0x66 SEEK_TO_TIMESTAMP (FlyMQ extension).
        SeekToTimestamp(SeekToTimestampRequest),
        /// 0x70 AUTH (answered with opcode 0x71).
        Auth(AuthRequest),
        /// 0x73 USER_CREATE.
        UserCreate(UserRequest),
        /// 0x74 USER_DELETE.
        UserDelete(UsernameRequest),
        /// 0x75 USER_UPDATE.
        UserUpdate(UserRequest),
        /// 0x77 USER_GET.
        UserGet(UsernameRequest),
        /// 0x78 ACL_SET.
        AclSet(AclSetRequest),
        /// 0x79 ACL_GET.
        AclGet(TopicRequest),
        /// 0x7A ACL_DELETE.
        AclDelete(TopicRequest),
        /// 0x7C PASSWORD_CHANGE.
        PasswordChange(UserRequest),
        /// 0x80 AUDIT_QUERY (Go numbering).
        AuditQuery(AuditQuery),
        /// 0x81 AUDIT_EXPORT (Go numbering).
        AuditExport(AuditExportRequest),
        /// 0x90 PRODUCE_BATCH (FlyMQ extension).
        ProduceBatch(ProduceBatchRequest),
        /// 0x91 MATCH_TOPICS (FlyMQ extension): `str16 pattern`.
        MatchTopics(TopicRequest),
        /// 0x92 JOIN_GROUP (FlyMQ extension).
        JoinGroup(JoinGroupRequest),
        /// 0x93 GROUP_HEARTBEAT (FlyMQ extension).
        GroupHeartbeat(GroupMemberRequest),
        /// 0x94 LEAVE_GROUP (FlyMQ extension).
        LeaveGroup(GroupMemberRequest),
        /// 0x95 COMMIT_FENCED (FlyMQ extension).
        CommitFenced(CommitFencedRequest),
        /// 0x96 REJECT_RECORD (FlyMQ extension).
        RejectRecord(RejectRecordRequest),
        /// 0xA0 AUDIT_QUERY (pyflymq/Java numbering, Go layout).
        AuditQueryAlt(AuditQuery),
        /// 0xA1 AUDIT_EXPORT (pyflymq/Java numbering, Go layout).
        AuditExportAlt(AuditExportRequest),
    }
    empty {
        /// 0x08 LIST_TOPICS.
        ListTopics,
        /// 0x40 BEGIN_TX.
        BeginTx,
        /// 0x51 CLUSTER_LEAVE.
        ClusterLeave,
        /// 0x52 CLUSTER_STATUS (FlyMQ extension).
        ClusterStatus,
        /// 0x62 LIST_GROUPS.
        ListGroups,
        /// 0x72 WHOAMI.
        Whoami,
        /// 0x76 USER_LIST.
        UserList,
        /// 0x7B ACL_LIST.
        AclList,
        /// 0x7D ROLE_LIST.
        RoleList,
    }
}

impl Request {
    /// Decode a payload given as a slice (copies it once, then [`Request::decode_bytes`]).
    pub fn decode(opcode: u8, payload: &[u8]) -> Result<Request, DecodeError> {
        Request::decode_bytes(opcode, Bytes::copy_from_slice(payload))
    }

    /// Decompress (gzip) and decode a received frame. Every error is
    /// per-request: answer it with an error frame.
    pub fn decode_frame(frame: &Frame) -> Result<Request, DecodeError> {
        Request::decode_bytes(frame.opcode, frame.decompressed_payload()?)
    }

    /// Append a whole frame (header with flags 0x01 + payload) to `out`.
    /// On error `out` is left as it was.
    pub fn encode_frame(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = begin_frame(out, self.opcode().code(), FLAG_BINARY);
        let result = self.encode(out).and_then(|()| finish_frame(out, start));
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// The whole frame (header with flags 0x01 + payload) in a new buffer.
    pub fn to_frame_bytes(&self) -> Result<BytesMut, EncodeError> {
        let mut out = BytesMut::new();
        self.encode_frame(&mut out)?;
        Ok(out)
    }
}
