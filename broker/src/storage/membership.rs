//! Consumer-group membership (`core::membership`), in `meta` values
//! (sealed like every `c/` value, carried by metadata snapshots):
//!
//! - `c/members/<topic>:<group>` → JSON of the whole membership, written
//!   when members, their partitions or the generation change;
//! - `c/seen/<topic>:<group>` → the group's clock and
//!   `c/seen/<topic>:<group>\n<member>` → a member's last-seen time
//!   (8 bytes each, big-endian), written when only those moved, which is
//!   what a heartbeat or a fenced commit does. A group of 1,000 members
//!   would otherwise rewrite some 100 KB per heartbeat.
//!
//! Loading applies the newer `seen` values over the JSON; a full write
//! drops them. Topic names exclude `:`, so the first `:` separates topic
//! and group; group and member ids exclude control characters, so `\n`
//! separates group and member.

use rocksdb::WriteBatch;

use super::{CF_META, StorageError, Store, keys, prefix_end};
use crate::core::membership::Membership;

const PREFIX: &str = "members/";
const SEEN_PREFIX: &str = "seen/";

fn name(topic: &str, group: &str) -> String {
    format!("{PREFIX}{topic}:{group}")
}

fn clock_name(topic: &str, group: &str) -> String {
    format!("{SEEN_PREFIX}{topic}:{group}")
}

fn seen_name(topic: &str, group: &str, member: &str) -> String {
    format!("{SEEN_PREFIX}{topic}:{group}\n{member}")
}

fn decode_time(value: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(value.try_into().ok()?))
}

impl Store {
    /// Writes the whole membership and drops the group's `seen` values.
    pub fn put_membership(
        &self,
        batch: &mut WriteBatch,
        topic: &str,
        group: &str,
        membership: &Membership,
    ) -> Result<(), StorageError> {
        self.delete_seen(batch, topic, group);
        // Strings and numbers: serialising cannot fail.
        let json = serde_json::to_vec(membership).unwrap_or_default();
        self.put_cluster_value(batch, &name(topic, group), &json)
    }

    /// Records that only the group's clock and these members' last-seen
    /// times moved since the last `put_membership`.
    pub fn put_membership_times(
        &self,
        batch: &mut WriteBatch,
        topic: &str,
        group: &str,
        clock_ms: i64,
        seen: &[(&str, i64)],
    ) -> Result<(), StorageError> {
        self.put_cluster_value(batch, &clock_name(topic, group), &clock_ms.to_be_bytes())?;
        for (member, last_seen_ms) in seen {
            self.put_cluster_value(batch, &seen_name(topic, group, member), &last_seen_ms.to_be_bytes())?;
        }
        Ok(())
    }

    pub fn delete_membership(&self, batch: &mut WriteBatch, topic: &str, group: &str) {
        batch.delete_cf(&self.cf(CF_META), keys::cluster_key(&name(topic, group)));
        self.delete_seen(batch, topic, group);
    }

    fn delete_seen(&self, batch: &mut WriteBatch, topic: &str, group: &str) {
        let cf = self.cf(CF_META);
        batch.delete_cf(&cf, keys::cluster_key(&clock_name(topic, group)));
        let members = keys::cluster_key(&seen_name(topic, group, ""));
        batch.delete_range_cf(&cf, members.as_slice(), prefix_end(&members).as_slice());
    }

    /// Every stored membership, `seen` times applied: `(topic, group, membership)`.
    pub fn memberships(&self) -> Result<Vec<(String, String, Membership)>, StorageError> {
        let corrupt = |what: String| StorageError::Corrupt { what };
        let mut found = self
            .cluster_values(PREFIX)?
            .into_iter()
            .map(|(name, value)| {
                let (topic, group) = name
                    .split_once(':')
                    .ok_or_else(|| corrupt(format!("membership key '{name}'")))?;
                let membership = serde_json::from_slice(&value)
                    .map_err(|e| corrupt(format!("membership of {topic}:{group}: {e}")))?;
                Ok((
                    format!("{topic}:{group}"),
                    (topic.to_owned(), group.to_owned(), membership),
                ))
            })
            .collect::<Result<std::collections::BTreeMap<String, (String, String, Membership)>, StorageError>>()?;
        for (name, value) in self.cluster_values(SEEN_PREFIX)? {
            let time = decode_time(&value).ok_or_else(|| corrupt(format!("membership time '{name}'")))?;
            let (group_name, member) = match name.split_once('\n') {
                Some((group_name, member)) => (group_name, Some(member)),
                None => (name.as_str(), None),
            };
            // Times of a group without a membership are left over: ignored.
            let Some((_, _, membership)) = found.get_mut(group_name) else {
                continue;
            };
            match member {
                None => membership.clock_ms = membership.clock_ms.max(time),
                Some(member) => {
                    if let Some(m) = membership.members.get_mut(member) {
                        m.last_seen_ms = m.last_seen_ms.max(time);
                    }
                }
            }
        }
        Ok(found.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::membership::Member;

    fn membership(members: &[(&str, i64)], clock_ms: i64) -> Membership {
        Membership {
            generation: 3,
            members: members
                .iter()
                .map(|(id, seen)| {
                    (
                        id.to_string(),
                        Member {
                            session_timeout_ms: 10_000,
                            last_seen_ms: *seen,
                            partitions: vec![0],
                        },
                    )
                })
                .collect(),
            clock_ms,
        }
    }

    fn write(store: &Store, f: impl FnOnce(&mut WriteBatch)) {
        let mut batch = WriteBatch::default();
        f(&mut batch);
        store.db().write(batch).unwrap();
    }

    #[test]
    fn times_written_alone_apply_over_the_whole_membership_until_the_next_full_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        write(&store, |b| {
            store
                .put_membership(b, "t", "g", &membership(&[("a", 10), ("b", 10)], 10))
                .unwrap();
            store.put_membership(b, "t", "g2", &membership(&[("a", 5)], 5)).unwrap();
        });
        write(&store, |b| {
            store.put_membership_times(b, "t", "g", 40, &[("b", 40)]).unwrap()
        });
        // A member the membership does not have, and a group without one.
        write(&store, |b| {
            store.put_membership_times(b, "t", "g", 45, &[("gone", 45)]).unwrap();
            store.put_membership_times(b, "t", "nothing", 30, &[("a", 30)]).unwrap();
        });
        let loaded = store.memberships().unwrap();
        assert_eq!(
            loaded,
            vec![
                ("t".into(), "g".into(), membership(&[("a", 10), ("b", 40)], 45)),
                ("t".into(), "g2".into(), membership(&[("a", 5)], 5)),
            ]
        );
        // A full write replaces the times; the other group keeps its own.
        write(&store, |b| {
            store
                .put_membership(b, "t", "g", &membership(&[("a", 50)], 50))
                .unwrap()
        });
        write(&store, |b| {
            store.put_membership_times(b, "t", "g2", 7, &[("a", 7)]).unwrap()
        });
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.memberships().unwrap(),
            vec![
                ("t".into(), "g".into(), membership(&[("a", 50)], 50)),
                ("t".into(), "g2".into(), membership(&[("a", 7)], 7)),
            ]
        );
        let stale = keys::cluster_key(&seen_name("t", "g", "b"));
        assert!(store.db().get_cf(&store.cf(CF_META), stale).unwrap().is_none());
        write(&store, |b| store.delete_membership(b, "t", "g2"));
        assert_eq!(store.memberships().unwrap().len(), 1);
        assert!(
            store
                .cluster_values(SEEN_PREFIX)
                .unwrap()
                .iter()
                .all(|(n, _)| !n.contains("g2"))
        );
    }
}
