//! Brokers removed from the cluster while their pods stayed. A scale-down
//! reverted mid-way (`replicas` raised again while a broker was being
//! decommissioned) leaves one: the operator stops following the
//! decommission, but the brokers finish it. A running broker never hears of
//! its removal, so it stays up without being a member, and not ready; it
//! joins again (on its volume, as the same member) only when it restarts.
//! The operator restarts it: one pod per pass, and only once the pod has run
//! long enough that its broker is not simply still joining.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::roll::PodView;
use crate::admin::ClusterInfo;

/// A broker pod that has run this long without its broker being a member
/// is not joining any more (a join makes it a member, as a learner, within
/// seconds).
pub const REJOIN_GRACE: Duration = Duration::from_secs(120);
/// Progressing reason while such a broker's pod is restarted.
pub const RESTARTING_REMOVED_BROKER: &str = "RestartingRemovedBroker";

/// The pod to restart, if any: one the StatefulSet keeps (`ordinal <
/// replicas`), not being deleted, not ready, started at least `grace`
/// before `now`, whose broker is not a member. Nothing when `info` names no
/// metadata leader or no members (a broker that cannot see the membership
/// is no evidence that anyone left it).
pub fn removed_broker<'a>(
    replicas: i32,
    pods: &'a [PodView],
    info: &ClusterInfo,
    now: Timestamp,
    grace: Duration,
) -> Option<&'a PodView> {
    if info.leader.is_none() || info.members.is_empty() {
        return None;
    }
    pods.iter()
        .filter(|p| p.ordinal < replicas && !p.deleting && !p.ready)
        .filter(|p| info.member(i64::from(p.ordinal)).is_none())
        .filter(|p| {
            p.started
                .is_some_and(|s| now.as_second() - s.as_second() >= grace.as_secs() as i64)
        })
        .min_by_key(|p| p.ordinal)
}

/// The condition message while `pod` is restarted.
pub fn message(pod: &PodView) -> String {
    format!(
        "broker {} runs but is not a member of the cluster (removed while its pod stayed, e.g. a scale-down \
         reverted before it finished): restarting {} so it joins again",
        pod.ordinal, pod.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cluster::ClusterMember;

    const NOW: i64 = 1_000_000;

    fn pod(ordinal: i32, ready: bool, started_secs_ago: Option<i64>) -> PodView {
        PodView {
            name: format!("demo-{ordinal}"),
            ordinal,
            revision: "r1".into(),
            ready,
            deleting: false,
            started: started_secs_ago.map(|ago| Timestamp::from_second(NOW - ago).expect("time")),
        }
    }

    fn info(members: &[i64]) -> ClusterInfo {
        ClusterInfo {
            cluster_id: "c".into(),
            leader: members.first().copied(),
            members: members
                .iter()
                .map(|id| ClusterMember {
                    id: *id,
                    address: String::new(),
                    role: "voter".into(),
                    health: "up".into(),
                })
                .collect(),
            under_replicated: Vec::new(),
        }
    }

    fn pick(replicas: i32, pods: &[PodView], info: &ClusterInfo) -> Option<i32> {
        let now = Timestamp::from_second(NOW).expect("time");
        removed_broker(replicas, pods, info, now, REJOIN_GRACE).map(|p| p.ordinal)
    }

    #[test]
    fn a_long_running_unready_pod_whose_broker_left_is_restarted() {
        let pods = [
            pod(0, true, Some(900)),
            pod(1, false, Some(300)),
            pod(2, true, Some(900)),
        ];
        assert_eq!(pick(3, &pods, &info(&[0, 2])), Some(1));
    }

    #[test]
    fn a_pod_still_joining_or_ready_or_a_member_is_left_alone() {
        let members = info(&[0, 2]);
        assert_eq!(pick(3, &[pod(1, false, Some(30))], &members), None, "still joining");
        assert_eq!(pick(3, &[pod(1, false, None)], &members), None, "not started");
        assert_eq!(pick(3, &[pod(1, true, Some(300))], &members), None, "ready");
        assert_eq!(pick(3, &[pod(2, false, Some(300))], &members), None, "a member");
        let mut deleting = pod(1, false, Some(300));
        deleting.deleting = true;
        assert_eq!(pick(3, &[deleting], &members), None, "already going");
        assert_eq!(pick(1, &[pod(1, false, Some(300))], &members), None, "beyond replicas");
    }

    #[test]
    fn nothing_is_restarted_without_a_known_membership() {
        let pods = [pod(1, false, Some(300))];
        assert_eq!(pick(3, &pods, &info(&[])), None, "no members seen");
        let mut leaderless = info(&[0, 2]);
        leaderless.leader = None;
        assert_eq!(pick(3, &pods, &leaderless), None, "no metadata leader");
    }

    #[test]
    fn one_pod_per_pass_lowest_ordinal_first() {
        let pods = [pod(2, false, Some(300)), pod(1, false, Some(300))];
        assert_eq!(pick(3, &pods, &info(&[0])), Some(1));
    }
}
