//! The [`Response`] enum: one variant per response layout, with
//! decode/encode dispatch, and the error frame payload [`ErrorResponse`].

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::frame::{FLAG_BINARY, Frame, begin_frame, finish_frame};
use crate::messages::audit::{AuditExportResponse, AuditQueryResponse};
use crate::messages::auth::{
    AclAck, AclInfo, AclListResponse, AuthResponse, RoleListResponse, UserInfo, UserListResponse, WhoamiResponse,
};
use crate::messages::cluster::{ClusterMetadata, ClusterStatus};
use crate::messages::common::OkMessage;
use crate::messages::core::{
    ConsumeResponse, FetchResponse, ListTopicsResponse, MetadataResponse, OffsetResponse, ProduceBatchResponse,
    RecordMetadata,
};
use crate::messages::dlq::{FetchDlqResponse, ReplayDlqResponse};
use crate::messages::groups::{GroupAssignment, GroupRecord, LagInfo, ListGroupsResponse};
use crate::messages::schema::{SchemaEntry, SchemaListResponse, ValidateSchemaResponse};
use crate::messages::tx::TxResponse;
use crate::opcode::Opcode;
use crate::wire::{Reader, Wire, write_str16};

/// Payload of an error frame (opcode 0xFF, §5.1): `i32 code | str16 message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// Always 1 when FlyMQ sends it; no client interprets it.
    pub code: i32,
    /// Human-readable error text.
    pub message: String,
}

impl ErrorResponse {
    /// An error with code 1 and `message`.
    pub fn new(message: impl Into<String>) -> Self {
        ErrorResponse {
            code: 1,
            message: message.into(),
        }
    }
}

impl Wire for ErrorResponse {
    /// Never fails, following pyflymq's fallbacks (§5.1): a payload under 6
    /// bytes is plain text (code 1); a length that overruns the payload means
    /// "everything after byte 6". Invalid UTF-8 is replaced, not rejected.
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let payload = r.rest();
        if payload.len() < 6 {
            return Ok(ErrorResponse::new(String::from_utf8_lossy(&payload)));
        }
        let code = i32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        let len = u16::from_be_bytes([payload[4], payload[5]]) as usize;
        let text = payload.get(6..6 + len).unwrap_or(&payload[6..]);
        Ok(ErrorResponse {
            code,
            message: String::from_utf8_lossy(text).into_owned(),
        })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_i32(self.code);
        write_str16(out, &self.message)
    }
}

impl From<&DecodeError> for ErrorResponse {
    fn from(e: &DecodeError) -> Self {
        ErrorResponse::new(e.to_string())
    }
}

/// Generates the enum and its `opcode` / `decode_bytes` / `encode` methods
/// from one table.
macro_rules! responses {
    (
        with_payload { $( $(#[$doc:meta])* $variant:ident($ty:ty) = $op:ident, )* }
        ack { $( $(#[$adoc:meta])* $avariant:ident, )* }
    ) => {
        /// A response: one variant per response layout, named after the
        /// request opcode it answers.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Response {
            $( $(#[$doc])* $variant($ty), )*
            $( $(#[$adoc])* $avariant, )*
        }

        impl Response {
            /// The response opcode (the request's, except AUTH -> 0x71 and errors -> 0xFF).
            pub fn opcode(&self) -> u8 {
                match self {
                    $( Response::$variant(_) => Opcode::$op.code(), )*
                    $( Response::$avariant => Opcode::$avariant.code(), )*
                }
            }

            /// Decode a response payload without copying byte fields
            /// (client side). 0xFF decodes as [`Response::Error`] and never
            /// fails; acknowledgements (`u8 1`) ignore their body.
            pub fn decode_bytes(opcode: u8, payload: Bytes) -> Result<Response, DecodeError> {
                let mut r = Reader::new(payload);
                let op = Opcode::from_u8(opcode).ok_or(DecodeError::UnknownOpcode(opcode))?;
                match op {
                    $( Opcode::$op => Ok(Response::$variant(<$ty>::read(&mut r)?)), )*
                    $( Opcode::$avariant => Ok(Response::$avariant), )*
                    _ => Err(DecodeError::UnknownOpcode(opcode)),
                }
            }

            /// Append the payload (no header) to `out`.
            pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
                match self {
                    $( Response::$variant(v) => v.write(out), )*
                    $( Response::$avariant => {
                        out.put_u8(1);
                        Ok(())
                    } )*
                }
            }
        }
    };
}

responses! {
    with_payload {
        /// 0x01 PRODUCE reply.
        Produce(RecordMetadata) = Produce,
        /// 0x02 CONSUME reply.
        Consume(ConsumeResponse) = Consume,
        /// 0x04 METADATA reply (Go's unused codec).
        Metadata(MetadataResponse) = Metadata,
        /// 0x05 SUBSCRIBE reply: start offset.
        Subscribe(OffsetResponse) = Subscribe,
        /// 0x07 FETCH reply.
        Fetch(FetchResponse) = Fetch,
        /// 0x08 LIST_TOPICS reply.
        ListTopics(ListTopicsResponse) = ListTopics,
        /// 0x0A CONSUME_ZERO_COPY reply.
        ConsumeZeroCopy(ConsumeResponse) = ConsumeZeroCopy,
        /// 0x0B FETCH_BINARY reply.
        FetchBinary(FetchResponse) = FetchBinary,
        /// 0x10 REGISTER_SCHEMA reply.
        RegisterSchema(SchemaEntry) = RegisterSchema,
        /// 0x11 GET_SCHEMA reply (list layout, one entry).
        GetSchema(SchemaListResponse) = GetSchema,
        /// 0x12 LIST_SCHEMAS reply.
        ListSchemas(SchemaListResponse) = ListSchemas,
        /// 0x13 VALIDATE_SCHEMA reply.
        ValidateSchema(ValidateSchemaResponse) = ValidateSchema,
        /// 0x14 PRODUCE_WITH_SCHEMA reply.
        ProduceWithSchema(RecordMetadata) = ProduceWithSchema,
        /// 0x15 DELETE_SCHEMA reply.
        DeleteSchema(OkMessage) = DeleteSchema,
        /// 0x20 FETCH_DLQ reply.
        FetchDlq(FetchDlqResponse) = FetchDlq,
        /// 0x21 REPLAY_DLQ reply (u32 message length).
        ReplayDlq(ReplayDlqResponse) = ReplayDlq,
        /// 0x22 PURGE_DLQ reply.
        PurgeDlq(OkMessage) = PurgeDlq,
        /// 0x30 PRODUCE_DELAYED reply.
        ProduceDelayed(RecordMetadata) = ProduceDelayed,
        /// 0x35 PRODUCE_WITH_TTL reply.
        ProduceWithTtl(RecordMetadata) = ProduceWithTtl,
        /// 0x40 BEGIN_TX reply.
        BeginTx(TxResponse) = BeginTx,
        /// 0x41 COMMIT_TX reply.
        CommitTx(TxResponse) = CommitTx,
        /// 0x42 ABORT_TX reply.
        AbortTx(TxResponse) = AbortTx,
        /// 0x43 PRODUCE_TX reply.
        ProduceTx(RecordMetadata) = ProduceTx,
        /// 0x52 CLUSTER_STATUS reply (FlyMQ extension).
        ClusterStatus(ClusterStatus) = ClusterStatus,
        /// 0x53 CLUSTER_METADATA reply.
        ClusterMetadata(ClusterMetadata) = ClusterMetadata,
        /// 0x60 GET_OFFSET reply: committed offset.
        GetOffset(OffsetResponse) = GetOffset,
        /// 0x62 LIST_GROUPS reply.
        ListGroups(ListGroupsResponse) = ListGroups,
        /// 0x63 DESCRIBE_GROUP reply.
        DescribeGroup(GroupRecord) = DescribeGroup,
        /// 0x64 GET_LAG reply.
        GetLag(LagInfo) = GetLag,
        /// 0x66 SEEK_TO_TIMESTAMP reply (FlyMQ extension).
        SeekToTimestamp(OffsetResponse) = SeekToTimestamp,
        /// AUTH reply, opcode 0x71.
        Auth(AuthResponse) = AuthResponse,
        /// 0x72 WHOAMI reply (pyflymq layout).
        Whoami(WhoamiResponse) = Whoami,
        /// 0x73 USER_CREATE reply.
        UserCreate(UserInfo) = UserCreate,
        /// 0x74 USER_DELETE reply.
        UserDelete(OkMessage) = UserDelete,
        /// 0x75 USER_UPDATE reply.
        UserUpdate(OkMessage) = UserUpdate,
        /// 0x76 USER_LIST reply.
        UserList(UserListResponse) = UserList,
        /// 0x77 USER_GET reply.
        UserGet(UserInfo) = UserGet,
        /// 0x78 ACL_SET reply.
        AclSet(AclAck) = AclSet,
        /// 0x79 ACL_GET reply.
        AclGet(AclInfo) = AclGet,
        /// 0x7A ACL_DELETE reply.
        AclDelete(AclAck) = AclDelete,
        /// 0x7B ACL_LIST reply.
        AclList(AclListResponse) = AclList,
        /// 0x7C PASSWORD_CHANGE reply.
        PasswordChange(OkMessage) = PasswordChange,
        /// 0x7D ROLE_LIST reply.
        RoleList(RoleListResponse) = RoleList,
        /// 0x80 AUDIT_QUERY reply.
        AuditQuery(AuditQueryResponse) = AuditQuery,
        /// 0x81 AUDIT_EXPORT reply.
        AuditExport(AuditExportResponse) = AuditExport,
        /// 0x90 PRODUCE_BATCH reply (FlyMQ extension).
        ProduceBatch(ProduceBatchResponse) = ProduceBatch,
        /// 0x91 MATCH_TOPICS reply (FlyMQ extension): the matching topics, sorted.
        MatchTopics(ListTopicsResponse) = MatchTopics,
        /// 0x92 JOIN_GROUP reply (FlyMQ extension).
        JoinGroup(GroupAssignment) = JoinGroup,
        /// 0x93 GROUP_HEARTBEAT reply (FlyMQ extension).
        GroupHeartbeat(GroupAssignment) = GroupHeartbeat,
        /// 0x96 REJECT_RECORD reply (FlyMQ extension): `u8 success | str16 message`.
        RejectRecord(OkMessage) = RejectRecord,
        /// 0xA0 AUDIT_QUERY reply (Go layout).
        AuditQueryAlt(AuditQueryResponse) = AuditQueryAlt,
        /// 0xA1 AUDIT_EXPORT reply (Go layout).
        AuditExportAlt(AuditExportResponse) = AuditExportAlt,
        /// 0xFF error frame.
        Error(ErrorResponse) = Error,
    }
    ack {
        /// 0x03 CREATE_TOPIC reply: `u8 1`.
        CreateTopic,
        /// 0x06 COMMIT reply: `u8 1`.
        Commit,
        /// 0x94 LEAVE_GROUP reply (FlyMQ extension): `u8 1`.
        LeaveGroup,
        /// 0x95 COMMIT_FENCED reply (FlyMQ extension): `u8 1`.
        CommitFenced,
        /// 0x09 DELETE_TOPIC reply: `u8 1`.
        DeleteTopic,
        /// 0x50 CLUSTER_JOIN reply: `u8 1`.
        ClusterJoin,
        /// 0x51 CLUSTER_LEAVE reply: `u8 1`.
        ClusterLeave,
        /// 0x61 RESET_OFFSET reply: `u8 1`.
        ResetOffset,
        /// 0x65 DELETE_GROUP reply: `u8 1`.
        DeleteGroup,
    }
}

impl Response {
    /// An error response with code 1.
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error(ErrorResponse::new(message))
    }

    /// Whether this is an error frame.
    pub fn is_error(&self) -> bool {
        matches!(self, Response::Error(_))
    }

    /// Decode a payload given as a slice (copies it once).
    pub fn decode(opcode: u8, payload: &[u8]) -> Result<Response, DecodeError> {
        Response::decode_bytes(opcode, Bytes::copy_from_slice(payload))
    }

    /// Decode a received frame (responses are never compressed, but a
    /// gzip payload is accepted anyway).
    pub fn decode_frame(frame: &Frame) -> Result<Response, DecodeError> {
        Response::decode_bytes(frame.opcode, frame.decompressed_payload()?)
    }

    /// Append a whole frame (header with flags 0x01 + payload) to `out`.
    ///
    /// The payload is encoded in place (no intermediate buffer). If it
    /// cannot be encoded (a string longer than its prefix, a payload above
    /// 32 MiB), the partial frame is removed and replaced by an error frame
    /// describing the failure, and the original error is returned. So `out`
    /// always ends with exactly one valid frame: send it either way, and log
    /// the error.
    pub fn encode_frame(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = begin_frame(out, self.opcode(), FLAG_BINARY);
        let result = self.encode(out).and_then(|()| finish_frame(out, start));
        if let Err(err) = &result {
            out.truncate(start);
            write_fallback_error_frame(out, self.opcode(), err);
        }
        result
    }
}

/// Write an error frame that cannot itself fail to encode.
fn write_fallback_error_frame(out: &mut BytesMut, opcode: u8, err: &EncodeError) {
    let mut message = format!("internal error: the response to opcode 0x{opcode:02x} could not be encoded: {err}");
    // EncodeError texts are short; the cut only guards the invariant.
    const MAX_MESSAGE: usize = 1024;
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    let start = begin_frame(out, Opcode::Error.code(), FLAG_BINARY);
    out.put_i32(1);
    out.put_u16(message.len() as u16);
    out.put_slice(message.as_bytes());
    let len = (out.len() - start - crate::HEADER_LEN) as u32;
    out[start + 4..start + crate::HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}
