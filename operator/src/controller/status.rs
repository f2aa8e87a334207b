//! Pure computation of a FlyMQCluster's status from what was observed.
//!
//! Deterministic: the same inputs give the same status. The only timestamp,
//! a condition's `lastTransitionTime`, is carried over from the previous
//! status unless the condition's `status` flips.

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::admin::ClusterInfo;
use crate::crd::Condition;
use crate::crd::cluster::{FlyMQCluster, FlyMQClusterStatus};

/// Condition types.
pub const READY: &str = "Ready";
/// Condition types.
pub const PROGRESSING: &str = "Progressing";
/// Condition types.
pub const DEGRADED: &str = "Degraded";
/// Condition types: True while a member of the metadata group is a learner
/// (a new broker, or one whose volume was lost, copying the cluster's data).
pub const CATCHING_UP: &str = "CatchingUp";
/// Ready reason when every pod is ready but ClusterStatus did not answer.
pub const ADMIN_API_UNAVAILABLE: &str = "AdminApiUnavailable";

/// Something that keeps the cluster from converging to its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// PascalCase reason (`ScaleDownUnsupported`, `InvalidSpec`, ...).
    pub reason: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

/// What the reconciler saw and did, as input to the status.
#[derive(Debug, Clone, Default)]
pub struct Observation<'a> {
    /// The StatefulSet as returned by the last apply (or read).
    pub stateful_set: Option<&'a StatefulSet>,
    /// The reason the spec is not fully applied, if any.
    pub problem: Option<Problem>,
    /// The cluster is paused by annotation: nothing was applied.
    pub paused: bool,
    /// The spec asks for something the brokers cannot do yet, so nothing was
    /// applied; `problem` says what. `Ready` and `Progressing` are False
    /// with the problem's reason.
    pub refused: bool,
    /// The admin Secret name in use.
    pub admin_secret_name: Option<String>,
    /// The metadata group as the admin API reported it in this reconcile;
    /// `None` keeps the previous leader and members.
    pub membership: Option<&'a ClusterInfo>,
    /// Why ClusterStatus did not answer in this reconcile, if it was asked.
    pub admin_error: Option<String>,
    /// A step in progress (decommission, roll): `Progressing=True` with
    /// this reason and message.
    pub progress: Option<Problem>,
    /// The cluster id to record (the status keeps an earlier one).
    pub cluster_id: Option<String>,
    /// The admin Secret version the brokers have; `None` keeps the recorded one.
    pub admin_secret_version: Option<String>,
    /// Encryption key ids given to the brokers so far; `None` keeps the
    /// recorded ones.
    pub encryption_key_ids: Option<Vec<String>>,
}

/// Computes the status. `now` (RFC 3339) is used only for conditions whose
/// status changed.
pub fn compute(cluster: &FlyMQCluster, obs: &Observation<'_>, now: &str) -> FlyMQClusterStatus {
    let previous = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;
    let desired = cluster.spec.replicas;

    let sts_status = obs.stateful_set.and_then(|s| s.status.clone());
    let replicas = sts_status.as_ref().map_or(0, |s| s.replicas);
    let ready = sts_status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = sts_status.as_ref().and_then(|s| s.updated_replicas).unwrap_or(0);
    let sts_generation = obs.stateful_set.and_then(|s| s.metadata.generation);
    let sts_observed = sts_status.as_ref().and_then(|s| s.observed_generation);
    let sts_replicas = obs
        .stateful_set
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(desired);
    let rolled_out = obs.stateful_set.is_some()
        && sts_generation.is_some()
        && sts_observed >= sts_generation
        && updated >= sts_replicas
        && replicas == sts_replicas;
    // Measured against the StatefulSet, which may keep more brokers than
    // the spec asks for (a refused scale-down).
    let all_ready = ready >= sts_replicas && rolled_out;

    let cond = |type_: &str, ok: bool, reason: &str, message: String| {
        make_condition(&previous.conditions, type_, ok, reason, message, generation, now)
    };

    let refusal = obs.problem.as_ref().filter(|_| obs.refused && !obs.paused);

    let ready_cond = if obs.paused {
        cond(
            READY,
            all_ready,
            "Paused",
            format!("reconciliation paused; {ready}/{sts_replicas} brokers ready"),
        )
    } else if let Some(p) = refusal {
        cond(READY, false, p.reason, p.message.clone())
    } else if all_ready && obs.membership.is_none() {
        // Pods pass their readiness probe, but nobody has confirmed the
        // brokers form a cluster: not Ready until the admin API answers.
        cond(
            READY,
            false,
            ADMIN_API_UNAVAILABLE,
            format!(
                "{ready}/{sts_replicas} brokers ready, but the admin API has not answered ClusterStatus: {}; retrying",
                obs.admin_error.as_deref().unwrap_or("not asked yet")
            ),
        )
    } else if all_ready {
        cond(
            READY,
            true,
            "AllBrokersReady",
            format!("{ready}/{sts_replicas} brokers ready"),
        )
    } else {
        cond(
            READY,
            false,
            "BrokersNotReady",
            format!("{ready}/{sts_replicas} brokers ready"),
        )
    };
    let progressing = if obs.paused {
        cond(
            PROGRESSING,
            false,
            "Paused",
            "remove the flymq.io/paused annotation to resume".into(),
        )
    } else if let Some(p) = refusal {
        cond(
            PROGRESSING,
            false,
            p.reason,
            "nothing is applied until the spec is changed".into(),
        )
    } else if let Some(p) = &obs.progress {
        cond(PROGRESSING, true, p.reason, p.message.clone())
    } else if !rolled_out {
        cond(
            PROGRESSING,
            true,
            "RollingOut",
            format!("{updated}/{sts_replicas} brokers updated"),
        )
    } else {
        cond(PROGRESSING, false, "RolloutComplete", String::new())
    };
    let degraded = match &obs.problem {
        Some(p) => cond(DEGRADED, true, p.reason, p.message.clone()),
        None => cond(DEGRADED, false, "AsExpected", String::new()),
    };

    let catching_up = match obs.membership {
        Some(m) => {
            let learners: Vec<String> = m
                .members
                .iter()
                .filter(|m| m.role != "voter")
                .map(|m| format!("{}-{} (node {}, {})", name_of(cluster), m.id, m.id, m.role))
                .collect();
            if learners.is_empty() {
                cond(CATCHING_UP, false, "AllCaughtUp", "every member is a voter".into())
            } else {
                cond(
                    CATCHING_UP,
                    true,
                    "CatchingUp",
                    format!(
                        "catching up: {}; a new broker, or one that came back with an empty volume, joins as a \
                         learner and becomes a voter once it has the cluster's data",
                        learners.join(", ")
                    ),
                )
            }
        }
        None => previous
            .conditions
            .iter()
            .find(|c| c.type_ == CATCHING_UP)
            .cloned()
            .unwrap_or_else(|| {
                cond(
                    CATCHING_UP,
                    false,
                    "Unknown",
                    "the admin API has not reported the members yet".into(),
                )
            }),
    };

    let phase = if obs.paused {
        "Paused"
    } else if obs.problem.is_some() {
        "Degraded"
    } else if all_ready && obs.membership.is_some() {
        "Running"
    } else {
        "Pending"
    };

    FlyMQClusterStatus {
        // A paused cluster's spec was not acted on: a later pass must still
        // see the generation as new (orphan sweep, rolls).
        observed_generation: if obs.paused {
            previous.observed_generation
        } else {
            generation
        },
        phase: Some(phase.into()),
        replicas,
        ready_replicas: ready,
        version: Some(cluster.spec.image.version()),
        leader: match obs.membership {
            Some(m) => m
                .leader
                .map(|id| format!("{}-{id}", cluster.metadata.name.as_deref().unwrap_or_default())),
            None => previous.leader,
        },
        members: match obs.membership {
            Some(m) => m.members.clone(),
            None => previous.members,
        },
        admin_secret_name: obs.admin_secret_name.clone().or(previous.admin_secret_name),
        cluster_id: previous.cluster_id.or_else(|| obs.cluster_id.clone()),
        admin_secret_version: obs.admin_secret_version.clone().or(previous.admin_secret_version),
        encryption_key_ids: obs.encryption_key_ids.clone().unwrap_or(previous.encryption_key_ids),
        selector: Some(selector(name_of(cluster))),
        conditions: vec![ready_cond, progressing, degraded, catching_up],
    }
}

fn name_of(cluster: &FlyMQCluster) -> &str {
    cluster.metadata.name.as_deref().unwrap_or_default()
}

/// The broker pods' label selector, as the scale subresource reports it.
pub fn selector(name: &str) -> String {
    crate::builders::selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Builds a condition, keeping the previous `lastTransitionTime` unless the
/// status flips.
pub fn make_condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &str,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_)
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Some(last),
    }
}

/// The condition of `type_` in a status, if present.
pub fn condition<'a>(status: &'a FlyMQClusterStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};

    fn sts(replicas: i32, ready: i32, updated: i32) -> StatefulSet {
        let mut s = StatefulSet {
            spec: Some(StatefulSetSpec {
                replicas: Some(3),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                replicas,
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                observed_generation: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        s.metadata.generation = Some(2);
        s
    }

    fn voters(n: i64) -> ClusterInfo {
        ClusterInfo {
            cluster_id: "c-1".into(),
            leader: Some(0),
            members: (0..n)
                .map(|id| crate::crd::cluster::ClusterMember {
                    id,
                    address: String::new(),
                    role: "voter".into(),
                    health: "up".into(),
                })
                .collect(),
            under_replicated: Vec::new(),
        }
    }

    #[test]
    fn all_ready() {
        let c = cluster(serde_json::json!({}));
        let s = sts(3, 3, 3);
        let info = voters(3);
        let st = compute(
            &c,
            &Observation {
                stateful_set: Some(&s),
                membership: Some(&info),
                ..Default::default()
            },
            "T1",
        );
        assert_eq!(
            st.selector.as_deref(),
            Some("app.kubernetes.io/component=broker,app.kubernetes.io/instance=demo,app.kubernetes.io/name=flymq")
        );
        assert_eq!(condition(&st, CATCHING_UP).map(|c| c.status.as_str()), Some("False"));
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&st, READY).map(|c| c.status.as_str()), Some("True"));
        assert_eq!(
            condition(&st, PROGRESSING).map(|c| c.reason.as_str()),
            Some("RolloutComplete")
        );
        assert_eq!(st.ready_replicas, 3);
        assert_eq!(st.observed_generation, Some(1));
    }

    #[test]
    fn transition_time_only_changes_on_flip() {
        let mut c = cluster(serde_json::json!({}));
        let s = sts(3, 1, 3);
        let first = compute(
            &c,
            &Observation {
                stateful_set: Some(&s),
                ..Default::default()
            },
            "T1",
        );
        c.status = Some(first.clone());
        let again = compute(
            &c,
            &Observation {
                stateful_set: Some(&s),
                ..Default::default()
            },
            "T2",
        );
        assert_eq!(first, again, "an unchanged world gives an identical status");
        let s = sts(3, 3, 3);
        let info = voters(3);
        let flipped = compute(
            &c,
            &Observation {
                stateful_set: Some(&s),
                membership: Some(&info),
                ..Default::default()
            },
            "T3",
        );
        assert_eq!(
            condition(&flipped, READY).and_then(|c| c.last_transition_time.as_deref()),
            Some("T3")
        );
        assert_eq!(
            condition(&flipped, DEGRADED).and_then(|c| c.last_transition_time.as_deref()),
            Some("T1")
        );
    }

    #[test]
    fn refused_scale_down_counts_the_brokers_that_stay() {
        let c = cluster(serde_json::json!({"replicas": 1}));
        let s = sts(3, 3, 3);
        let info = voters(3);
        let st = compute(
            &c,
            &Observation {
                stateful_set: Some(&s),
                membership: Some(&info),
                ..Default::default()
            },
            "T1",
        );
        let ready = condition(&st, READY).expect("ready");
        assert_eq!(
            (ready.status.as_str(), ready.message.as_str()),
            ("True", "3/3 brokers ready")
        );
    }

    #[test]
    fn leader_and_members_come_from_the_admin_api_and_are_kept_when_it_is_silent() {
        use crate::crd::cluster::ClusterMember;
        let mut c = cluster(serde_json::json!({}));
        let s = sts(3, 3, 3);
        let member = |id: i64| ClusterMember {
            id,
            address: format!("demo-{id}.demo-headless.prod.svc:9092"),
            role: "voter".into(),
            health: "up".into(),
        };
        let info = ClusterInfo {
            leader: Some(1),
            members: vec![member(0), member(1), member(2)],
            ..Default::default()
        };
        let st = compute(
            &c,
            &Observation {
                stateful_set: Some(&s),
                membership: Some(&info),
                ..Default::default()
            },
            "T1",
        );
        assert_eq!(st.leader.as_deref(), Some("demo-1"));
        assert_eq!(st.members, info.members);

        c.status = Some(st.clone());
        let silent = compute(
            &c,
            &Observation {
                stateful_set: Some(&s),
                ..Default::default()
            },
            "T2",
        );
        assert_eq!((silent.leader, silent.members), (st.leader, st.members));

        let leaderless = ClusterInfo {
            leader: None,
            members: vec![member(0)],
            ..Default::default()
        };
        let st = compute(
            &c,
            &Observation {
                stateful_set: Some(&s),
                membership: Some(&leaderless),
                ..Default::default()
            },
            "T3",
        );
        assert_eq!(st.leader, None, "no leader elected right now");
    }

    #[test]
    fn ready_pods_without_an_answer_from_the_admin_api_are_not_ready() {
        let c = cluster(serde_json::json!({}));
        let s = sts(3, 3, 3);
        let st = compute(
            &c,
            &Observation {
                stateful_set: Some(&s),
                admin_error: Some("cannot reach the broker admin API for ClusterStatus: connection refused".into()),
                ..Default::default()
            },
            "T1",
        );
        let ready = condition(&st, READY).expect("ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str(), ready.message.as_str()),
            (
                "False",
                "AdminApiUnavailable",
                "3/3 brokers ready, but the admin API has not answered ClusterStatus: cannot reach the broker \
                 admin API for ClusterStatus: connection refused; retrying"
            )
        );
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        assert_eq!(st.leader, None);
    }

    #[test]
    fn a_learner_is_shown_catching_up_and_the_cluster_id_is_kept() {
        let mut c = cluster(serde_json::json!({}));
        let s = sts(3, 2, 3);
        let mut info = voters(3);
        info.members[1].role = "learner".into();
        let st = compute(
            &c,
            &Observation {
                stateful_set: Some(&s),
                membership: Some(&info),
                cluster_id: Some("c-1".into()),
                ..Default::default()
            },
            "T1",
        );
        let catching_up = condition(&st, CATCHING_UP).expect("condition");
        assert_eq!(
            (catching_up.status.as_str(), catching_up.reason.as_str()),
            ("True", "CatchingUp")
        );
        assert!(
            catching_up
                .message
                .starts_with("catching up: demo-1 (node 1, learner);"),
            "{}",
            catching_up.message
        );
        assert_eq!(st.cluster_id.as_deref(), Some("c-1"));
        c.status = Some(st);
        let later = compute(
            &c,
            &Observation {
                stateful_set: Some(&s),
                cluster_id: Some("other".into()),
                ..Default::default()
            },
            "T2",
        );
        assert_eq!(later.cluster_id.as_deref(), Some("c-1"), "the first id recorded stays");
        assert_eq!(
            condition(&later, CATCHING_UP).map(|c| c.status.as_str()),
            Some("True"),
            "kept while the admin API is silent"
        );
    }

    #[test]
    fn a_paused_cluster_does_not_claim_to_have_observed_its_generation() {
        let mut c = cluster(serde_json::json!({}));
        c.status = Some(FlyMQClusterStatus {
            observed_generation: Some(1),
            ..Default::default()
        });
        c.metadata.generation = Some(2);
        let s = sts(3, 3, 3);
        let st = compute(
            &c,
            &Observation {
                stateful_set: Some(&s),
                paused: true,
                ..Default::default()
            },
            "T1",
        );
        assert_eq!(st.observed_generation, Some(1));
        assert_eq!(st.phase.as_deref(), Some("Paused"));
    }

    #[test]
    fn problem_degrades() {
        let c = cluster(serde_json::json!({}));
        let s = sts(3, 3, 3);
        let obs = Observation {
            stateful_set: Some(&s),
            problem: Some(Problem {
                reason: "ScaleDownUnsupported",
                message: "no".into(),
            }),
            ..Default::default()
        };
        let st = compute(&c, &obs, "T1");
        assert_eq!(st.phase.as_deref(), Some("Degraded"));
        let d = condition(&st, DEGRADED).expect("degraded");
        assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "ScaleDownUnsupported"));
    }

    #[test]
    fn a_refused_spec_is_not_ready_not_progressing_and_degraded() {
        let c = cluster(serde_json::json!({}));
        let s = sts(3, 3, 3);
        let obs = Observation {
            stateful_set: Some(&s),
            problem: Some(Problem {
                reason: "NotSupported",
                message: "spec.tls is set".into(),
            }),
            refused: true,
            ..Default::default()
        };
        let st = compute(&c, &obs, "T1");
        assert_eq!(st.phase.as_deref(), Some("Degraded"));
        assert_eq!(st.ready_replicas, 3, "the brokers that run are still counted");
        for (type_, status) in [(READY, "False"), (PROGRESSING, "False"), (DEGRADED, "True")] {
            let c = condition(&st, type_).expect("condition");
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                (status, "NotSupported"),
                "{type_}"
            );
        }
        assert_eq!(
            condition(&st, READY).map(|c| c.message.as_str()),
            Some("spec.tls is set")
        );
    }
}
