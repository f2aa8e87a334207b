//! Consumer-group partition assignment (FlyMQ extension opcodes JOIN_GROUP,
//! GROUP_HEARTBEAT, LEAVE_GROUP, COMMIT_FENCED): the members of a group,
//! its generation and which partitions each member owns. Pure state
//! transitions, applied by the metadata state machine: every input (the
//! time included) comes with the command, so replicas agree.
//!
//! - A membership change (a member joins, leaves or misses its session
//!   timeout, or the topic grows) starts a new **generation** and a new
//!   assignment.
//! - The assignment is **sticky**: members keep the partitions they own up
//!   to their fair share; only the surplus and the unowned partitions move.
//! - A commit carries the member's generation and is refused unless it is
//!   the current one and the member owns the partition: a member that was
//!   replaced (paused, partitioned away) cannot move offsets back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Shortest and longest session timeout a member may ask for.
pub const MIN_SESSION_TIMEOUT_MS: u32 = 1_000;
pub const MAX_SESSION_TIMEOUT_MS: u32 = 300_000;
/// Most members one group may have.
pub const MAX_MEMBERS: usize = 1_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub generation: u64,
    pub members: BTreeMap<String, Member>,
    /// The newest time any command of this group carried: time never goes
    /// back for the group, even when brokers' clocks differ a little.
    pub clock_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub session_timeout_ms: u32,
    pub last_seen_ms: i64,
    /// Owned partitions, ascending.
    pub partitions: Vec<u32>,
}

/// Why a member's request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    UnknownMember,
    StaleGeneration { current: u64 },
    NotOwner { partition: u32 },
    TooManyMembers,
}

impl Membership {
    /// Advances the group's clock and removes members whose session ran
    /// out. Returns whether any was removed.
    fn expire(&mut self, now_ms: i64) -> bool {
        self.clock_ms = self.clock_ms.max(now_ms);
        let clock = self.clock_ms;
        let before = self.members.len();
        self.members
            .retain(|_, m| m.last_seen_ms + i64::from(m.session_timeout_ms) >= clock);
        self.members.len() != before
    }

    /// Starts a new generation with a fresh assignment if membership or
    /// the partition count changed.
    fn settle(&mut self, changed: bool, partitions: u32) {
        let owned: BTreeSet<u32> = self
            .members
            .values()
            .flat_map(|m| m.partitions.iter().copied())
            .collect();
        let complete = owned.len() == partitions as usize && owned.iter().all(|p| *p < partitions);
        if changed || (!self.members.is_empty() && !complete) {
            assign(&mut self.members, partitions);
            self.generation += 1;
        }
    }

    /// When `self` differs from `before` only in the group's clock and
    /// members' last-seen times (a heartbeat, a fenced commit): the members
    /// whose time moved. `None` when members, partitions, session timeouts
    /// or the generation changed.
    pub fn times_moved_since(&self, before: &Membership) -> Option<Vec<(&str, i64)>> {
        if self.generation != before.generation || self.members.len() != before.members.len() {
            return None;
        }
        let mut moved = Vec::new();
        for ((id, now), (old_id, old)) in self.members.iter().zip(&before.members) {
            if id != old_id || now.session_timeout_ms != old.session_timeout_ms || now.partitions != old.partitions {
                return None;
            }
            if now.last_seen_ms != old.last_seen_ms {
                moved.push((id.as_str(), now.last_seen_ms));
            }
        }
        Some(moved)
    }

    /// A member joins (or rejoins with its id). Returns its partitions.
    pub fn join(
        &mut self,
        member_id: &str,
        session_timeout_ms: u32,
        now_ms: i64,
        partitions: u32,
    ) -> Result<Vec<u32>, Refusal> {
        let mut changed = self.expire(now_ms);
        let clock = self.clock_ms;
        match self.members.get_mut(member_id) {
            Some(member) => {
                member.session_timeout_ms = session_timeout_ms;
                member.last_seen_ms = clock;
            }
            None => {
                if self.members.len() >= MAX_MEMBERS {
                    self.settle(changed, partitions);
                    return Err(Refusal::TooManyMembers);
                }
                self.members.insert(
                    member_id.to_owned(),
                    Member {
                        session_timeout_ms,
                        last_seen_ms: clock,
                        partitions: Vec::new(),
                    },
                );
                changed = true;
            }
        }
        self.settle(changed, partitions);
        Ok(self.members[member_id].partitions.clone())
    }

    /// A member is alive. Returns its partitions (a new generation means a
    /// rebalance happened).
    pub fn heartbeat(&mut self, member_id: &str, now_ms: i64, partitions: u32) -> Result<Vec<u32>, Refusal> {
        let changed = self.expire(now_ms);
        let clock = self.clock_ms;
        let known = match self.members.get_mut(member_id) {
            Some(member) => {
                member.last_seen_ms = clock;
                true
            }
            None => false,
        };
        self.settle(changed, partitions);
        if known {
            Ok(self.members[member_id].partitions.clone())
        } else {
            Err(Refusal::UnknownMember)
        }
    }

    /// A member leaves; its partitions go to the others.
    pub fn leave(&mut self, member_id: &str, now_ms: i64, partitions: u32) -> bool {
        let expired = self.expire(now_ms);
        let left = self.members.remove(member_id).is_some();
        self.settle(expired || left, partitions);
        left
    }

    /// Whether `member_id` of `generation` may commit `partition` (and, if
    /// so, counts as its heartbeat).
    pub fn check_commit(
        &mut self,
        member_id: &str,
        generation: u64,
        partition: u32,
        now_ms: i64,
        partitions: u32,
    ) -> Result<(), Refusal> {
        let changed = self.expire(now_ms);
        self.settle(changed, partitions);
        let clock = self.clock_ms;
        let current = self.generation;
        let member = self.members.get_mut(member_id).ok_or(Refusal::UnknownMember)?;
        if generation != current {
            return Err(Refusal::StaleGeneration { current });
        }
        if !member.partitions.contains(&partition) {
            return Err(Refusal::NotOwner { partition });
        }
        member.last_seen_ms = clock;
        Ok(())
    }
}

/// Sticky, balanced assignment of partitions `0..partitions`: every member
/// gets ⌊n/m⌋ or ⌈n/m⌉ partitions; members keep what they own up to that
/// share (those owning most get the larger shares), and only surplus and
/// unowned partitions move. Deterministic: members in id order, partitions
/// ascending.
pub fn assign(members: &mut BTreeMap<String, Member>, partitions: u32) {
    if members.is_empty() {
        return;
    }
    let count = members.len() as u32;
    let (base, extra) = (partitions / count, partitions % count);
    // Drop partitions that no longer exist and double owners.
    let mut owned = BTreeSet::new();
    for member in members.values_mut() {
        member.partitions.retain(|p| *p < partitions && owned.insert(*p));
    }
    // Larger shares to the members owning most (ties: by id).
    let mut order: Vec<(usize, String)> = members.iter().map(|(id, m)| (m.partitions.len(), id.clone())).collect();
    order.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let quota: BTreeMap<String, usize> = order
        .into_iter()
        .enumerate()
        .map(|(i, (_, id))| (id, (base + u32::from((i as u32) < extra)) as usize))
        .collect();
    let mut free: BTreeSet<u32> = (0..partitions).filter(|p| !owned.contains(p)).collect();
    for (id, member) in members.iter_mut() {
        member.partitions.sort_unstable();
        while member.partitions.len() > quota[id] {
            if let Some(p) = member.partitions.pop() {
                free.insert(p);
            }
        }
    }
    for (id, member) in members.iter_mut() {
        while member.partitions.len() < quota[id] {
            let Some(p) = free.pop_first() else { break };
            member.partitions.push(p);
        }
        member.partitions.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_and_fenced_commits_move_only_times() {
        let mut g = Membership::default();
        g.join("a", 10_000, 100, 4).unwrap();
        g.join("b", 10_000, 100, 4).unwrap();
        let before = g.clone();
        g.heartbeat("a", 200, 4).unwrap();
        assert_eq!(g.times_moved_since(&before), Some(vec![("a", 200)]));
        let before = g.clone();
        let generation = g.generation;
        let owned = g.members["b"].partitions[0];
        g.check_commit("b", generation, owned, 300, 4).unwrap();
        assert_eq!(g.times_moved_since(&before), Some(vec![("b", 300)]));
        // A stale heartbeat moves only the group's clock, if anything.
        let before = g.clone();
        g.heartbeat("a", 50, 4).unwrap();
        assert!(g.times_moved_since(&before).is_some());
        // A rejoin with another session timeout, a new member, a leave, an
        // expiry and new partitions all need the whole membership.
        let changes: [fn(&mut Membership); 5] = [
            |g| {
                let _ = g.join("a", 20_000, 400, 4);
            },
            |g| {
                let _ = g.join("c", 10_000, 400, 4);
            },
            |g| {
                g.leave("b", 400, 4);
            },
            |g| {
                let _ = g.heartbeat("a", 10_350, 4);
            },
            |g| {
                let _ = g.heartbeat("a", 400, 6);
            },
        ];
        for change in changes {
            let mut changed = g.clone();
            change(&mut changed);
            assert_eq!(changed.times_moved_since(&g), None);
        }
    }

    fn owned(group: &Membership) -> Vec<(&str, Vec<u32>)> {
        group
            .members
            .iter()
            .map(|(id, m)| (id.as_str(), m.partitions.clone()))
            .collect()
    }

    #[test]
    fn members_split_the_partitions_and_a_joiner_takes_only_a_share() {
        let mut g = Membership::default();
        assert_eq!(g.join("a", 10_000, 0, 6).unwrap(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(g.generation, 1);
        g.join("b", 10_000, 10, 6).unwrap();
        assert_eq!(g.generation, 2);
        assert_eq!(owned(&g), [("a", vec![0, 1, 2]), ("b", vec![3, 4, 5])]);
        g.join("c", 10_000, 20, 6).unwrap();
        // Sticky: a and b each give up one partition, nothing else moves.
        assert_eq!(owned(&g), [("a", vec![0, 1]), ("b", vec![3, 4]), ("c", vec![2, 5])]);
        // A rejoin with a known id is not a membership change.
        g.join("c", 10_000, 30, 6).unwrap();
        assert_eq!(g.generation, 3);
    }

    #[test]
    fn a_member_that_misses_its_session_timeout_is_replaced() {
        let mut g = Membership::default();
        g.join("a", 1_000, 0, 4).unwrap();
        g.join("b", 1_000, 0, 4).unwrap();
        assert_eq!(g.heartbeat("a", 900, 4).unwrap(), [0, 1]);
        assert_eq!(g.generation, 2);
        // b's last sign of life was at 0: at 1001 it is gone, a gets everything.
        assert_eq!(g.heartbeat("a", 1_001, 4).unwrap(), [0, 1, 2, 3]);
        assert_eq!(g.generation, 3);
        assert_eq!(g.heartbeat("b", 1_002, 4), Err(Refusal::UnknownMember));
        // A clock that goes back does not bring b back nor expire a early.
        assert_eq!(g.heartbeat("a", 500, 4).unwrap(), [0, 1, 2, 3]);
    }

    #[test]
    fn commits_are_fenced_by_generation_and_ownership() {
        let mut g = Membership::default();
        g.join("a", 10_000, 0, 2).unwrap();
        let first = g.generation;
        assert_eq!(g.check_commit("a", first, 1, 1, 2), Ok(()));
        g.join("b", 10_000, 2, 2).unwrap();
        // a's old generation is refused, even for a partition it still owns.
        assert_eq!(
            g.check_commit("a", first, 0, 3, 2),
            Err(Refusal::StaleGeneration { current: first + 1 })
        );
        assert_eq!(g.check_commit("a", first + 1, 0, 3, 2), Ok(()));
        assert_eq!(
            g.check_commit("a", first + 1, 1, 3, 2),
            Err(Refusal::NotOwner { partition: 1 })
        );
        assert_eq!(g.check_commit("z", first + 1, 1, 3, 2), Err(Refusal::UnknownMember));
    }

    #[test]
    fn leaving_and_growing_the_topic_rebalance() {
        let mut g = Membership::default();
        g.join("a", 10_000, 0, 3).unwrap();
        g.join("b", 10_000, 0, 3).unwrap();
        assert!(g.leave("b", 1, 3));
        assert_eq!(owned(&g), [("a", vec![0, 1, 2])]);
        let generation = g.generation;
        // Two partitions added: the next heartbeat hands them out.
        assert_eq!(g.heartbeat("a", 2, 5).unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(g.generation, generation + 1);
        assert!(!g.leave("nobody", 3, 5));
    }

    #[test]
    fn assignment_is_balanced_and_complete_for_many_shapes() {
        for partitions in [0u32, 1, 2, 5, 16, 33] {
            for members in 1..7usize {
                let mut g = Membership::default();
                for m in 0..members {
                    g.join(&format!("m{m}"), 10_000, m as i64, partitions).unwrap();
                }
                let mut all: Vec<u32> = g.members.values().flat_map(|m| m.partitions.clone()).collect();
                all.sort_unstable();
                assert_eq!(all, (0..partitions).collect::<Vec<_>>(), "{partitions} over {members}");
                let sizes: Vec<usize> = g.members.values().map(|m| m.partitions.len()).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{partitions} over {members}: {sizes:?}");
            }
        }
    }
}
