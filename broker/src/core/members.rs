//! Live consumer-group members: connections that SUBSCRIBEd with a group.
//! As in Go, a connection belongs to the last (topic, group) it subscribed to
//! and leaves it when it disconnects. Counts are informational.

use std::collections::{HashMap, HashSet};

use parking_lot::Mutex;

type GroupId = (String, String);

#[derive(Default)]
pub struct Members {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    groups: HashMap<GroupId, HashSet<u64>>,
    by_connection: HashMap<u64, GroupId>,
}

impl Members {
    pub fn join(&self, connection: u64, topic: &str, group: &str) {
        let mut inner = self.inner.lock();
        let id = (topic.to_owned(), group.to_owned());
        if let Some(previous) = inner.by_connection.insert(connection, id.clone())
            && previous != id
        {
            Self::remove(&mut inner, &previous, connection);
        }
        inner.groups.entry(id).or_default().insert(connection);
    }

    pub fn leave(&self, connection: u64) {
        let mut inner = self.inner.lock();
        if let Some(id) = inner.by_connection.remove(&connection) {
            Self::remove(&mut inner, &id, connection);
        }
    }

    /// The group `connection` is a member of for `topic`, if any.
    pub fn group_of(&self, connection: u64, topic: &str) -> Option<String> {
        let inner = self.inner.lock();
        inner
            .by_connection
            .get(&connection)
            .filter(|(t, _)| t == topic)
            .map(|(_, group)| group.clone())
    }

    pub fn count(&self, topic: &str, group: &str) -> u32 {
        let inner = self.inner.lock();
        inner
            .groups
            .get(&(topic.to_owned(), group.to_owned()))
            .map_or(0, |m| m.len() as u32)
    }

    fn remove(inner: &mut Inner, id: &GroupId, connection: u64) {
        if let Some(set) = inner.groups.get_mut(id) {
            set.remove(&connection);
            if set.is_empty() {
                inner.groups.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_counts_in_its_latest_group_only() {
        let members = Members::default();
        members.join(1, "t", "a");
        members.join(2, "t", "a");
        assert_eq!(members.count("t", "a"), 2);
        members.join(1, "t", "b");
        assert_eq!((members.count("t", "a"), members.count("t", "b")), (1, 1));
        members.leave(1);
        members.leave(2);
        assert_eq!((members.count("t", "a"), members.count("t", "b")), (0, 0));
    }
}
