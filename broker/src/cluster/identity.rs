//! Who this broker is in the cluster.
//!
//! A broker has a stable **broker id** (the StatefulSet ordinal,
//! `FLYMQ_NODE_ID`) and, per data directory, an **incarnation**: a random
//! 32-bit number stamped in the data directory the first time it is used.
//! Its id in every Raft group, the **member id**, combines both:
//! `broker id << 32 | incarnation`. A broker that lost its volume comes back
//! with the same broker id but a new incarnation, so Raft sees a new member
//! that has never voted nor acknowledged anything: it joins as a learner,
//! catches up, and only then replaces its old member (see `join.rs`). It can
//! never vote with a forgotten vote or count towards a commit with a
//! forgotten log.
//!
//! The **cluster id** is stamped when the broker creates, joins or is added
//! to a cluster. A cluster is created (bootstrapped) once, by broker 0, and
//! only when `cluster_bootstrap` is `auto`, its disk is empty and no seed
//! belongs to a cluster (see `join.rs`).

use serde::{Deserialize, Serialize};

use super::node::ClusterError;
use super::types::NodeId;
use crate::storage::{CF_RAFT_META, Store};

const CLUSTER_ID_KEY: &[u8] = b"cluster_id";
const INCARNATION_KEY: &[u8] = b"incarnation";

/// Whether this broker may create a new cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bootstrap {
    /// Broker 0 creates the cluster when its disk is empty and no seed
    /// belongs to a cluster (the first start of a new cluster).
    #[default]
    Auto,
    /// Never create a cluster; always join through the seeds (set once the
    /// cluster exists, e.g. by the operator after the first start).
    Never,
}

/// The member id of incarnation `incarnation` of broker `broker`.
pub fn member_id(broker: u32, incarnation: u32) -> NodeId {
    (u64::from(broker) << 32) | u64::from(incarnation)
}

/// The broker id of a member.
pub fn broker_of(member: NodeId) -> u32 {
    (member >> 32) as u32
}

/// The incarnation of a member.
pub fn incarnation_of(member: NodeId) -> u32 {
    member as u32
}

/// Member ids as the broker ids people and the operator use.
pub fn broker_ids(members: &[NodeId]) -> Vec<u64> {
    members.iter().map(|m| u64::from(broker_of(*m))).collect()
}

fn storage_err(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Storage(e.to_string())
}

/// This data directory's incarnation, stamped (synced) on first use.
/// `has_raft_state` says whether the directory already holds Raft data: such
/// a directory without an incarnation was written by an older FlyMQ.
pub fn load_or_stamp_incarnation(store: &Store, has_raft_state: bool) -> Result<u32, ClusterError> {
    let cf = store.cf(CF_RAFT_META);
    if let Some(bytes) = store.db().get_cf(&cf, INCARNATION_KEY).map_err(storage_err)? {
        let bytes: [u8; 4] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| ClusterError::Storage("the stored incarnation is corrupt".into()))?;
        return Ok(u32::from_be_bytes(bytes));
    }
    if has_raft_state {
        return Err(ClusterError::Storage(
            "this data directory holds Raft state from an older FlyMQ version without a broker incarnation; \
             move its data to a new cluster or wipe the directory"
                .into(),
        ));
    }
    let incarnation = loop {
        let candidate = rand::random::<u32>();
        if candidate != 0 {
            break candidate;
        }
    };
    let mut batch = rocksdb::WriteBatch::default();
    batch.put_cf(&cf, INCARNATION_KEY, incarnation.to_be_bytes());
    store.write(batch, true).map_err(storage_err)?;
    Ok(incarnation)
}

pub fn stored_cluster_id(store: &Store) -> Result<Option<String>, ClusterError> {
    let cf = store.cf(CF_RAFT_META);
    Ok(store
        .db()
        .get_cf(&cf, CLUSTER_ID_KEY)
        .map_err(storage_err)?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

pub fn stamp_cluster_id(store: &Store, id: &str) -> Result<(), ClusterError> {
    let cf = store.cf(CF_RAFT_META);
    let mut batch = rocksdb::WriteBatch::default();
    batch.put_cf(&cf, CLUSTER_ID_KEY, id.as_bytes());
    store.write(batch, true).map_err(storage_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_carry_broker_and_incarnation() {
        let m = member_id(7, 0xdead_beef);
        assert_eq!(broker_of(m), 7);
        assert_eq!(incarnation_of(m), 0xdead_beef);
        assert_ne!(member_id(7, 1), member_id(7, 2));
        assert_eq!(broker_ids(&[member_id(1, 5), member_id(2, 9)]), vec![1, 2]);
    }

    #[test]
    fn incarnation_is_stamped_once_and_refused_for_old_raft_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = load_or_stamp_incarnation(&store, false).unwrap();
        assert_ne!(first, 0);
        assert_eq!(load_or_stamp_incarnation(&store, true).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        let store = Store::open(other.path()).unwrap();
        let err = load_or_stamp_incarnation(&store, true).unwrap_err().to_string();
        assert!(err.contains("older FlyMQ"), "{err}");
    }
}
