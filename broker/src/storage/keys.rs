//! Big-endian key encodings, so RocksDB's byte order is offset order.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `log` | `[topic id u32][partition u32][first offset u64]` | a record batch |
//! | `meta` | `t/<topic name>` | topic record (JSON) |
//! | `meta` | `p/[topic id u32][partition u32]` | partition state |
//! | `meta` | `c/<name>` | cluster identity and counters |
//! | `offsets` | `[u16 len][topic][u16 len][group]` | group marker (empty) |
//! | `offsets` | group marker + `[partition u32]` | committed offset u64 |
//! | `meta` | `d/[topic id u32][partition u32][due ms u64][offset u64]` | scheduled record (empty) |
//! | `meta` | `x/[topic id u32][partition u32][txn seq u64]` | transaction delivered here: its time (i64 ms) |
//! | `meta` | `c/txn/<seq, 20 digits>` | a committed transaction not yet delivered everywhere (sealed) |
//! | `meta` | `c/schema/<name>:<version, 10 digits>` | a schema version (JSON, sealed) |
//! | `meta` | `c/members/<topic>:<group>` | a group's members, generation and assignment (JSON, sealed) |

/// Length of a `log` key.
pub const LOG_KEY_LEN: usize = 16;

/// Key of the batch whose first record has `offset`.
pub fn log_key(topic_id: u32, partition: u32, offset: u64) -> [u8; LOG_KEY_LEN] {
    let mut key = [0u8; LOG_KEY_LEN];
    key[0..4].copy_from_slice(&topic_id.to_be_bytes());
    key[4..8].copy_from_slice(&partition.to_be_bytes());
    key[8..16].copy_from_slice(&offset.to_be_bytes());
    key
}

/// The first offset encoded in a `log` key, if the key has the right shape.
pub fn log_key_offset(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(8..16)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Start and end (exclusive) of every `log` key of one topic.
pub fn topic_log_range(topic_id: u32) -> ([u8; LOG_KEY_LEN], [u8; LOG_KEY_LEN]) {
    (log_key(topic_id, 0, 0), log_key(topic_id.saturating_add(1), 0, 0))
}

pub fn topic_meta_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + name.len());
    key.extend_from_slice(b"t/");
    key.extend_from_slice(name.as_bytes());
    key
}

pub const TOPIC_META_PREFIX: &[u8] = b"t/";

/// Key of a scheduled record of a partition, in due-time order.
pub fn delayed_key(topic_id: u32, partition: u32, due_ms: i64, offset: u64) -> [u8; 26] {
    let mut key = [0u8; 26];
    key[..10].copy_from_slice(&delayed_prefix(topic_id, partition));
    // Due times are after the epoch; clamp so the order is numeric.
    key[10..18].copy_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    key[18..26].copy_from_slice(&offset.to_be_bytes());
    key
}

/// Prefix of every scheduled-record key.
pub const DELAYED_PREFIX: &[u8] = b"d/";

/// Prefix of every scheduled-record key of a partition.
pub fn delayed_prefix(topic_id: u32, partition: u32) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[0..2].copy_from_slice(DELAYED_PREFIX);
    key[2..6].copy_from_slice(&topic_id.to_be_bytes());
    key[6..10].copy_from_slice(&partition.to_be_bytes());
    key
}

/// Prefix of every scheduled-record key of a topic.
pub fn delayed_topic_prefix(topic_id: u32) -> [u8; 6] {
    let mut key = [0u8; 6];
    key[0..2].copy_from_slice(b"d/");
    key[2..6].copy_from_slice(&topic_id.to_be_bytes());
    key
}

/// `(topic id, partition)` of a scheduled-record key; `None` for any other key.
pub fn parse_delayed_partition(key: &[u8]) -> Option<(u32, u32)> {
    if !key.starts_with(DELAYED_PREFIX) {
        return None;
    }
    let topic_id = u32::from_be_bytes(key.get(2..6)?.try_into().ok()?);
    let partition = u32::from_be_bytes(key.get(6..10)?.try_into().ok()?);
    Some((topic_id, partition))
}

/// `(due ms, offset)` of a scheduled-record key.
pub fn parse_delayed_key(key: &[u8]) -> Option<(i64, u64)> {
    let due = u64::from_be_bytes(key.get(10..18)?.try_into().ok()?);
    let offset = u64::from_be_bytes(key.get(18..26)?.try_into().ok()?);
    Some((due as i64, offset))
}

/// Key recording that transaction `seq` was delivered to a partition.
pub fn txn_marker_key(topic_id: u32, partition: u32, seq: u64) -> [u8; 18] {
    let mut key = [0u8; 18];
    key[..10].copy_from_slice(&txn_marker_prefix(topic_id, partition));
    key[10..18].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Prefix of every transaction marker of a partition.
pub fn txn_marker_prefix(topic_id: u32, partition: u32) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[0..2].copy_from_slice(b"x/");
    key[2..6].copy_from_slice(&topic_id.to_be_bytes());
    key[6..10].copy_from_slice(&partition.to_be_bytes());
    key
}

/// Prefix of every transaction marker of a topic.
pub fn txn_marker_topic_prefix(topic_id: u32) -> [u8; 6] {
    let mut key = [0u8; 6];
    key[0..2].copy_from_slice(b"x/");
    key[2..6].copy_from_slice(&topic_id.to_be_bytes());
    key
}

/// Name (under `c/`) of a committed transaction's decision; zero-padded so
/// decisions sort by sequence number.
pub fn txn_decision_name(seq: u64) -> String {
    format!("{TXN_DECISION_NAME_PREFIX}{seq:020}")
}

pub const TXN_DECISION_NAME_PREFIX: &str = "txn/";

/// Prefix of every partition state key (`p/<topic id><partition>`).
pub const PARTITION_STATE_PREFIX: &[u8] = b"p/";

pub fn partition_state_key(topic_id: u32, partition: u32) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[0..2].copy_from_slice(PARTITION_STATE_PREFIX);
    key[2..6].copy_from_slice(&topic_id.to_be_bytes());
    key[6..10].copy_from_slice(&partition.to_be_bytes());
    key
}

/// `(topic id, partition)` of a partition state key; `None` for another key.
pub fn split_partition_state_key(key: &[u8]) -> Option<(u32, u32)> {
    let rest = key.strip_prefix(PARTITION_STATE_PREFIX)?;
    let ids: [u8; 8] = rest.try_into().ok()?;
    let (topic, partition) = ids.split_at(4);
    Some((
        u32::from_be_bytes(topic.try_into().ok()?),
        u32::from_be_bytes(partition.try_into().ok()?),
    ))
}

pub fn cluster_key(name: &str) -> Vec<u8> {
    let mut key = b"c/".to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// Marker key of a consumer group; offsets of the group extend it with a partition.
pub fn group_key(topic: &str, group: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + topic.len() + group.len() + 4);
    push_str16(&mut key, topic);
    push_str16(&mut key, group);
    key
}

pub fn group_offset_key(topic: &str, group: &str, partition: u32) -> Vec<u8> {
    let mut key = group_key(topic, group);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

fn push_str16(out: &mut Vec<u8>, s: &str) {
    // Names are validated to at most 249 bytes, so the length always fits.
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

/// A decoded `offsets` key: a group marker (partition `None`) or a committed offset.
#[derive(Debug, PartialEq, Eq)]
pub struct GroupKey {
    pub topic: String,
    pub group: String,
    pub partition: Option<u32>,
}

pub fn parse_group_key(key: &[u8]) -> Option<GroupKey> {
    let (topic, rest) = take_str16(key)?;
    let (group, rest) = take_str16(rest)?;
    let partition = match rest.len() {
        0 => None,
        4 => Some(u32::from_be_bytes(rest.try_into().ok()?)),
        _ => return None,
    };
    Some(GroupKey {
        topic,
        group,
        partition,
    })
}

fn take_str16(buf: &[u8]) -> Option<(String, &[u8])> {
    let len = usize::from(u16::from_be_bytes(buf.get(0..2)?.try_into().ok()?));
    let s = std::str::from_utf8(buf.get(2..2 + len)?).ok()?.to_owned();
    Some((s, &buf[2 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_topic_partition_offset() {
        let mut keys = vec![log_key(2, 0, 0), log_key(1, 1, 0), log_key(1, 0, 300), log_key(1, 0, 2)];
        keys.sort();
        assert_eq!(
            keys,
            vec![log_key(1, 0, 2), log_key(1, 0, 300), log_key(1, 1, 0), log_key(2, 0, 0)]
        );
        assert_eq!(log_key_offset(&log_key(7, 3, 99)), Some(99));
    }

    #[test]
    fn partition_state_keys_round_trip() {
        assert_eq!(split_partition_state_key(&partition_state_key(7, 3)), Some((7, 3)));
        assert_eq!(split_partition_state_key(&partition_state_key(7, 3)[..9]), None);
        assert_eq!(split_partition_state_key(b"t/orders"), None);
    }

    #[test]
    fn group_keys_round_trip() {
        let marker = group_key("orders", "billing");
        assert_eq!(
            parse_group_key(&marker),
            Some(GroupKey {
                topic: "orders".into(),
                group: "billing".into(),
                partition: None
            })
        );
        let offset = group_offset_key("orders", "billing", 5);
        assert!(offset.starts_with(&marker));
        assert_eq!(parse_group_key(&offset).and_then(|k| k.partition), Some(5));
        assert_eq!(parse_group_key(&offset[..offset.len() - 1]), None);
    }
}
