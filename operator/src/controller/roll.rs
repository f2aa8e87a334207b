//! Rolls the operator drives. The StatefulSet uses `OnDelete`, so a changed
//! pod template replaces no pod by itself: each pass [`next`] decides whether
//! one outdated broker may be restarted now, which one, or why not.
//!
//! A broker is restarted only when every broker pod is ready and the admin
//! API's ClusterStatus shows every member a voter, up, and no partition
//! under-replicated (so the one that restarted last has caught up). Brokers
//! that lead nothing go first, highest ordinal first; the metadata leader
//! goes last. Before its pod is deleted the operator moves the broker's
//! leaderships away (TransferLeadership). A cluster that already has a voter
//! down is not rolled further if that would cost the metadata group its
//! majority: that is refused with a condition until the voter is back.

use crate::admin::ClusterInfo;

/// A broker pod as the roll sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Pod name (`<cluster>-<ordinal>`).
    pub name: String,
    /// StatefulSet ordinal = broker node id.
    pub ordinal: i32,
    /// `controller-revision-hash` label.
    pub revision: String,
    /// The pod's Ready condition is True.
    pub ready: bool,
    /// The pod has a deletion timestamp.
    pub deleting: bool,
    /// When the kubelet started the pod.
    pub started: Option<k8s_openapi::jiff::Timestamp>,
}

/// What the roll does in this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollStep {
    /// Every pod runs the current template.
    Idle,
    /// Outdated pods remain, but the cluster is not ready for the next
    /// restart yet (a broker is restarting or catching up).
    Wait {
        /// Condition reason.
        reason: &'static str,
        /// Who is waited for.
        message: String,
    },
    /// Restarting any broker now would lose the metadata group's quorum.
    Blocked {
        /// Why, and what brings it back.
        message: String,
    },
    /// Move this broker's leaderships away and delete its pod.
    Restart {
        /// Pod name.
        pod: String,
        /// Broker node id.
        node: i32,
        /// "1/3 brokers updated".
        message: String,
    },
}

/// Reason while a restarted broker (or any) is not ready.
pub const WAITING_FOR_BROKERS: &str = "WaitingForBrokers";
/// Reason while ClusterStatus did not answer.
pub const WAITING_FOR_CLUSTER_STATUS: &str = "WaitingForClusterStatus";
/// Reason while a member is a learner, down, or partitions under-replicated.
pub const WAITING_FOR_CATCH_UP: &str = "WaitingForCatchUp";
/// Reason (Degraded) of a roll that would lose quorum.
pub const ROLL_BLOCKED: &str = "RollBlocked";
/// Reason (Progressing) while a broker is being restarted.
pub const ROLLING: &str = "Rolling";

/// The next step of the roll to `update_revision` of a StatefulSet with
/// `replicas` pods.
pub fn next(update_revision: &str, replicas: i32, pods: &[PodView], info: Option<&ClusterInfo>) -> RollStep {
    let outdated: Vec<&PodView> = pods
        .iter()
        .filter(|p| p.revision != update_revision && p.ordinal < replicas)
        .collect();
    let count = usize::try_from(replicas).unwrap_or_default();
    let updated = pods
        .iter()
        .filter(|p| p.revision == update_revision && !p.deleting)
        .count();
    let progress = format!("{updated}/{replicas} brokers updated");
    if outdated.is_empty() {
        return RollStep::Idle;
    }
    // Every pod there and ready: the last one restarted is back.
    let mut not_ready: Vec<&str> = pods
        .iter()
        .filter(|p| p.deleting || !p.ready)
        .map(|p| p.name.as_str())
        .collect();
    not_ready.sort_unstable();
    if pods.len() < count || !not_ready.is_empty() {
        let who = if not_ready.is_empty() {
            format!("{} of {replicas} broker pods exist", pods.len())
        } else {
            format!("{} not ready", not_ready.join(", "))
        };
        return RollStep::Wait {
            reason: WAITING_FOR_BROKERS,
            message: format!("{progress}; waiting before the next restart: {who}"),
        };
    }
    let Some(info) = info else {
        return RollStep::Wait {
            reason: WAITING_FOR_CLUSTER_STATUS,
            message: format!("{progress}; waiting for the admin API's ClusterStatus before the next restart"),
        };
    };

    let voters: Vec<_> = info.members.iter().filter(|m| m.role == "voter").collect();
    let up = voters.iter().filter(|m| m.health == "up").count();
    let majority = voters.len() / 2 + 1;
    let down: Vec<String> = voters
        .iter()
        .filter(|m| m.health != "up")
        .map(|m| m.id.to_string())
        .collect();
    if !down.is_empty() && up <= majority {
        return RollStep::Blocked {
            message: format!(
                "{progress}; restarting another broker now would leave {} of {} voters up, below the quorum of \
                 {majority}: waiting for broker(s) {} to come back",
                up.saturating_sub(1),
                voters.len(),
                down.join(", ")
            ),
        };
    }
    let mut behind: Vec<String> = Vec::new();
    for p in pods {
        match info.member(i64::from(p.ordinal)) {
            None => behind.push(format!("broker {} is not a member yet", p.ordinal)),
            Some(m) if m.role != "voter" => behind.push(format!("broker {} is a {} (catching up)", m.id, m.role)),
            Some(m) if m.health != "up" => behind.push(format!("broker {} is {}", m.id, m.health)),
            Some(_) => {}
        }
    }
    if !info.under_replicated.is_empty() {
        let mut parts = info.under_replicated.clone();
        parts.sort();
        let shown: Vec<_> = parts.iter().take(5).cloned().collect();
        let more = parts.len().saturating_sub(shown.len());
        behind.push(format!(
            "under-replicated partitions {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if !behind.is_empty() {
        return RollStep::Wait {
            reason: WAITING_FOR_CATCH_UP,
            message: format!("{progress}; waiting for catch-up: {}", behind.join("; ")),
        };
    }

    // Brokers leading nothing of the metadata group first, highest ordinal
    // first; the metadata leader last.
    let leader = info.leader;
    let Some(pod) = outdated
        .iter()
        .max_by_key(|p| (Some(i64::from(p.ordinal)) != leader, p.ordinal))
    else {
        return RollStep::Idle;
    };
    RollStep::Restart {
        pod: pod.name.clone(),
        node: pod.ordinal,
        message: format!("{progress}; restarting {}", pod.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cluster::ClusterMember;

    fn pod(ordinal: i32, revision: &str, ready: bool) -> PodView {
        PodView {
            name: format!("demo-{ordinal}"),
            ordinal,
            revision: revision.into(),
            ready,
            deleting: false,
            started: None,
        }
    }

    fn member(id: i64, role: &str, health: &str) -> ClusterMember {
        ClusterMember {
            id,
            address: String::new(),
            role: role.into(),
            health: health.into(),
        }
    }

    fn healthy(n: i64, leader: i64) -> ClusterInfo {
        ClusterInfo {
            cluster_id: "c".into(),
            leader: Some(leader),
            members: (0..n).map(|i| member(i, "voter", "up")).collect(),
            under_replicated: Vec::new(),
        }
    }

    #[test]
    fn nothing_to_do_when_every_pod_is_current() {
        let pods = [pod(0, "new", true), pod(1, "new", true)];
        assert_eq!(next("new", 2, &pods, None), RollStep::Idle);
    }

    #[test]
    fn followers_go_first_highest_ordinal_first_and_the_leader_last() {
        let info = healthy(3, 2);
        let mut pods = vec![pod(0, "old", true), pod(1, "old", true), pod(2, "old", true)];
        let restart = |pods: &[PodView], info: &ClusterInfo| match next("new", 3, pods, Some(info)) {
            RollStep::Restart { node, .. } => node,
            other => panic!("expected a restart, got {other:?}"),
        };
        assert_eq!(restart(&pods, &info), 1, "2 leads the metadata group: it goes last");
        pods[1].revision = "new".into();
        assert_eq!(restart(&pods, &info), 0);
        pods[0].revision = "new".into();
        assert_eq!(restart(&pods, &info), 2);
        pods[2].revision = "new".into();
        assert_eq!(next("new", 3, &pods, Some(&info)), RollStep::Idle);
    }

    #[test]
    fn waits_while_the_restarted_broker_is_not_ready() {
        let pods = [pod(0, "old", true), pod(1, "old", true), pod(2, "new", false)];
        assert_eq!(
            next("new", 3, &pods, Some(&healthy(3, 0))),
            RollStep::Wait {
                reason: WAITING_FOR_BROKERS,
                message: "1/3 brokers updated; waiting before the next restart: demo-2 not ready".into()
            }
        );
        let missing = [pod(0, "old", true), pod(1, "old", true)];
        assert!(matches!(
            next("new", 3, &missing, Some(&healthy(3, 0))),
            RollStep::Wait {
                reason: WAITING_FOR_BROKERS,
                ..
            }
        ));
    }

    #[test]
    fn waits_for_a_learner_to_catch_up_and_for_under_replicated_partitions() {
        let pods = [pod(0, "old", true), pod(1, "old", true), pod(2, "new", true)];
        let mut info = healthy(3, 0);
        info.members[2].role = "learner".into();
        assert_eq!(
            next("new", 3, &pods, Some(&info)),
            RollStep::Wait {
                reason: WAITING_FOR_CATCH_UP,
                message: "1/3 brokers updated; waiting for catch-up: broker 2 is a learner (catching up)".into()
            }
        );
        let mut info = healthy(3, 0);
        info.under_replicated = vec!["orders/1".into(), "orders/0".into()];
        assert_eq!(
            next("new", 3, &pods, Some(&info)),
            RollStep::Wait {
                reason: WAITING_FOR_CATCH_UP,
                message: "1/3 brokers updated; waiting for catch-up: under-replicated partitions orders/0, orders/1"
                    .into()
            }
        );
        assert!(matches!(
            next("new", 3, &pods, None),
            RollStep::Wait {
                reason: WAITING_FOR_CLUSTER_STATUS,
                ..
            }
        ));
    }

    #[test]
    fn a_restart_that_would_lose_quorum_is_refused() {
        // Broker 2's pod is ready, but the metadata leader cannot reach it:
        // restarting either other broker leaves one voter of three.
        let pods = [pod(0, "old", true), pod(1, "old", true), pod(2, "old", true)];
        let mut info = healthy(3, 0);
        info.members[2].health = "down".into();
        assert_eq!(
            next("new", 3, &pods, Some(&info)),
            RollStep::Blocked {
                message: "0/3 brokers updated; restarting another broker now would leave 1 of 3 voters up, below \
                          the quorum of 2: waiting for broker(s) 2 to come back"
                    .into()
            }
        );
        // Five voters with one down keep a majority through one restart, but
        // the down one is still waited for.
        let pods: Vec<_> = (0..5).map(|i| pod(i, "old", true)).collect();
        let mut info = healthy(5, 0);
        info.members[4].health = "down".into();
        assert!(matches!(
            next("new", 5, &pods, Some(&info)),
            RollStep::Wait {
                reason: WAITING_FOR_CATCH_UP,
                ..
            }
        ));
    }

    #[test]
    fn a_single_broker_is_restarted_without_waiting_for_peers() {
        let pods = [pod(0, "old", true)];
        assert_eq!(
            next("new", 1, &pods, Some(&healthy(1, 0))),
            RollStep::Restart {
                pod: "demo-0".into(),
                node: 0,
                message: "0/1 brokers updated; restarting demo-0".into()
            }
        );
    }
}
