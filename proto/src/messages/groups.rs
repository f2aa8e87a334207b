//! Consumer groups and offsets (WIRE.md §9.1–§9.8).

use bytes::{BufMut, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Wire, wire_struct, write_str8, write_str16};

/// SUBSCRIBE / RESET_OFFSET mode: first retained offset.
pub const MODE_EARLIEST: &str = "earliest";
/// SUBSCRIBE / RESET_OFFSET mode: log end.
pub const MODE_LATEST: &str = "latest";
/// SUBSCRIBE mode: the group's committed offset, else earliest.
pub const MODE_COMMIT: &str = "commit";
/// RESET_OFFSET mode: the explicit offset carried in the request.
pub const MODE_OFFSET: &str = "offset";

/// How a broker's refusals of group-assignment requests (JOIN_GROUP,
/// GROUP_HEARTBEAT, COMMIT_FENCED) start. Error frames carry only text, so
/// these words are part of the protocol: a client that sees one rejoins or
/// takes the new assignment.
pub const REFUSED_UNKNOWN_MEMBER: &str = "unknown member";
/// See [`REFUSED_UNKNOWN_MEMBER`]: the group rebalanced since the member's generation.
pub const REFUSED_STALE_GENERATION: &str = "stale generation";
/// See [`REFUSED_UNKNOWN_MEMBER`]: the committed partition is not the member's.
pub const REFUSED_NOT_ASSIGNED: &str = "is not assigned to member";

/// Whether an error message is a membership refusal that rejoining or a
/// fresh assignment fixes.
pub fn is_membership_refusal(message: &str) -> bool {
    [REFUSED_UNKNOWN_MEMBER, REFUSED_STALE_GENERATION, REFUSED_NOT_ASSIGNED]
        .iter()
        .any(|words| message.contains(words))
}

wire_struct! {
    /// SUBSCRIBE (0x05): `str16 topic | str16 group_id | i32 partition | str8 mode`.
    pub struct SubscribeRequest {
        /// Topic.
        pub topic: String => str16,
        /// Group id; may be empty (no membership).
        pub group_id: String => str16,
        /// Partition.
        pub partition: i32 => i32,
        /// `earliest`, `latest`, `commit`; empty = `latest`.
        pub mode: String => str8,
    }
}

wire_struct! {
    /// COMMIT (0x06): `str16 topic | str16 group_id | i32 partition | u64 offset`.
    pub struct CommitRequest {
        /// Topic.
        pub topic: String => str16,
        /// Group id.
        pub group_id: String => str16,
        /// Partition.
        pub partition: i32 => i32,
        /// Next offset to read.
        pub offset: u64 => u64,
    }
}

wire_struct! {
    /// GET_OFFSET (0x60) and GET_LAG (0x64): `str16 topic | str16 group_id | i32 partition`.
    pub struct GroupPartitionRequest {
        /// Topic.
        pub topic: String => str16,
        /// Group id.
        pub group_id: String => str16,
        /// Partition.
        pub partition: i32 => i32,
    }
}

/// RESET_OFFSET (0x61):
/// `str16 topic | str16 group_id | i32 partition | str8 mode | [u64 offset]`.
///
/// The offset is on the wire only when `mode == "offset"`; for other modes it
/// decodes as 0 and is not encoded (trailing bytes, as Java sends, are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResetOffsetRequest {
    /// Topic.
    pub topic: String,
    /// Group id.
    pub group_id: String,
    /// Partition.
    pub partition: i32,
    /// `earliest`, `latest` or `offset`.
    pub mode: String,
    /// Target offset for mode `offset`; 0 otherwise.
    pub offset: u64,
}

impl Wire for ResetOffsetRequest {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let topic = r.str16()?;
        let group_id = r.str16()?;
        let partition = r.i32()?;
        let mode = r.str8()?;
        let offset = if mode == MODE_OFFSET { r.u64()? } else { 0 };
        Ok(ResetOffsetRequest {
            topic,
            group_id,
            partition,
            mode,
            offset,
        })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_str16(out, &self.topic)?;
        write_str16(out, &self.group_id)?;
        out.put_i32(self.partition);
        write_str8(out, &self.mode)?;
        if self.mode == MODE_OFFSET {
            out.put_u64(self.offset);
        }
        Ok(())
    }
}

wire_struct! {
    /// DESCRIBE_GROUP (0x63) and DELETE_GROUP (0x65): `str16 topic | str16 group_id`.
    pub struct GroupRequest {
        /// Topic.
        pub topic: String => str16,
        /// Group id.
        pub group_id: String => str16,
    }
}

wire_struct! {
    /// One committed offset in a group record: `i32 partition | u64 offset`.
    pub struct PartitionOffset {
        /// Partition.
        pub partition: i32 => i32,
        /// Committed (next-to-read) offset.
        pub offset: u64 => u64,
    }
}

wire_struct! {
    /// Group record (§9.5): `str16 topic | str16 group_id | u32 members |
    /// u32 n × (i32 partition | u64 offset)`. DESCRIBE_GROUP reply; element of LIST_GROUPS.
    pub struct GroupRecord {
        /// Topic.
        pub topic: String => str16,
        /// Group id.
        pub group_id: String => str16,
        /// Live member count.
        pub members: u32 => u32,
        /// Committed offsets, sorted by partition.
        pub offsets: Vec<PartitionOffset> => list,
    }
}

wire_struct! {
    /// LIST_GROUPS (0x62) reply: `list32<group record>`.
    pub struct ListGroupsResponse {
        /// Groups, sorted by topic then group id.
        pub groups: Vec<GroupRecord> => list,
    }
}

wire_struct! {
    /// GET_LAG (0x64) reply: `u64 current | u64 committed | u64 latest | u64 lag`.
    pub struct LagInfo {
        /// Committed offset (same as `committed`).
        pub current: u64 => u64,
        /// Committed offset, 0 if none.
        pub committed: u64 => u64,
        /// Log end (next offset to be written).
        pub latest: u64 => u64,
        /// `latest - committed`, floored at 0.
        pub lag: u64 => u64,
    }
}

wire_struct! {
    /// JOIN_GROUP (0x92, FlyMQ extension): `str16 topic | str16 group_id |
    /// str16 member_id (empty: a new member) | u32 session_timeout_ms`.
    pub struct JoinGroupRequest {
        /// Topic whose partitions the group shares.
        pub topic: String => str16,
        /// Group id.
        pub group_id: String => str16,
        /// The member's id from an earlier JOIN_GROUP, or empty.
        pub member_id: String => str16,
        /// The member is removed when no heartbeat arrives for this long.
        pub session_timeout_ms: u32 => u32,
    }
}

wire_struct! {
    /// GROUP_HEARTBEAT (0x93) and LEAVE_GROUP (0x94), FlyMQ extensions:
    /// `str16 topic | str16 group_id | str16 member_id`.
    pub struct GroupMemberRequest {
        /// Topic.
        pub topic: String => str16,
        /// Group id.
        pub group_id: String => str16,
        /// Member id (from JOIN_GROUP).
        pub member_id: String => str16,
    }
}

wire_struct! {
    /// JOIN_GROUP and GROUP_HEARTBEAT reply: `str16 member_id | u64
    /// generation | list32<i32> partitions`. A generation different from
    /// the member's last one means a rebalance: the partitions are its new
    /// assignment.
    pub struct GroupAssignment {
        /// The member's id.
        pub member_id: String => str16,
        /// The group's generation (grows at every membership change).
        pub generation: u64 => u64,
        /// Partitions assigned to this member, ascending.
        pub partitions: Vec<i32> => i32_list,
    }
}

wire_struct! {
    /// COMMIT_FENCED (0x95, FlyMQ extension): `str16 topic | str16 group_id |
    /// i32 partition | u64 offset | str16 member_id | u64 generation`.
    /// Stored only if `generation` is the group's current one and the
    /// partition is assigned to the member.
    pub struct CommitFencedRequest {
        /// Topic.
        pub topic: String => str16,
        /// Group id.
        pub group_id: String => str16,
        /// Partition.
        pub partition: i32 => i32,
        /// Next offset to read.
        pub offset: u64 => u64,
        /// Member id.
        pub member_id: String => str16,
        /// The generation the member's assignment came with.
        pub generation: u64 => u64,
    }
}
