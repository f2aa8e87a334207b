//! The FlyMQCluster reconciler, in stages (no side effect before the spec
//! has passed validation):
//!
//! 1. **fetch**: the StatefulSet and the stored admin password;
//! 2. **validate**: every refusal (a setting the brokers cannot run, a spec
//!    the builders refuse, an optional API the spec needs but the cluster
//!    does not serve) ends the pass with a condition, before anything is
//!    applied or decommissioned;
//! 3. **plan**: the StatefulSet's replicas for this pass (one broker
//!    decommissioned at a time, [`super::decommission`]);
//! 4. **build and apply** every desired object (server-side apply);
//! 5. **sweep** optional objects this cluster owns but no longer wants, by
//!    label and owner, on every pass;
//! 6. **observe** the brokers (admin ClusterStatus), record the cluster id,
//!    and take the next step of a roll ([`super::roll`]);
//! 7. **status**.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::backoff::Backoff;
use super::decommission::{DecommissionState, Decommissions};
use super::discovery::{OptionalApis, Served, unserved};
use super::error::Error;
use super::roll::{self, PodView, RollStep};
use super::status::{self, DEGRADED, Observation, Problem, READY};
use super::{admin_users, encryption, rejoin, tls};
use crate::admin::{AdminError, BrokerAdmin, ClusterEndpoint, ClusterInfo};
use crate::builders::{self, Desired, Inputs, MANAGER, Randomness, admin_secret_name, ns_name, selector_labels};
use crate::crd::cluster::{FlyMQCluster, FlyMQClusterStatus};
use crate::metrics::Metrics;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "flymq-operator";

/// Requeue interval while brokers are not ready yet.
pub const REQUEUE_NOT_READY: Duration = Duration::from_secs(15);
/// Requeue interval while a step (decommission, roll) is in progress.
pub const REQUEUE_PROGRESS: Duration = Duration::from_secs(5);
/// Periodic resync of a healthy cluster.
pub const REQUEUE_READY: Duration = Duration::from_secs(300);
/// Resync of a cluster whose spec asks for something the brokers do not
/// support: only a spec change helps, and that triggers a reconcile anyway.
pub const REQUEUE_NOT_SUPPORTED: Duration = Duration::from_secs(300);

/// Condition reason (Ready and Degraded) of a spec the brokers cannot run.
pub const NOT_SUPPORTED: &str = "NotSupported";
/// Progressing reason while brokers are decommissioned.
pub const DECOMMISSIONING: &str = "Decommissioning";

/// A clock returning RFC 3339 timestamps (injected so tests are deterministic).
pub type Clock = Arc<dyn Fn() -> String + Send + Sync>;

/// The system clock, to the second.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    })
}

/// Everything a reconcile needs besides the object.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Kubernetes events.
    pub recorder: Recorder,
    /// The broker admin API.
    pub admin: Arc<dyn BrokerAdmin>,
    /// Source of generated secret values.
    pub random: Arc<dyn Randomness>,
    /// Time source for condition transitions.
    pub clock: Clock,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// The optional APIs the API server serves (discovered, never assumed).
    pub apis: Arc<OptionalApis>,
    /// Decommissions in flight.
    pub decommissions: Decommissions,
    /// How long a pass waits for a decommission before reporting progress.
    pub decommission_wait: Duration,
    /// Per-object retry delays (failed reconciles, silent admin API).
    pub backoff: Backoff,
    /// The admin API for the operator's own user and admin password
    /// rotation ([`super::admin_users`]); `None` leaves both alone.
    pub admin_users: Option<Arc<crate::admin::GrpcAdmin>>,
}

/// What validation hands to the rest of the pass.
struct Validated {
    desired: Desired,
    /// Problems that do not stop the rest from being applied.
    warnings: Vec<Problem>,
    /// Encryption key ids to record in the status (`None`: no encryption).
    encryption_key_ids: Option<Vec<String>>,
    /// When the TLS certificates need another look (renewal).
    tls_recheck: Duration,
}

/// What stops a spec from being applied at all.
struct Refusal {
    problem: Problem,
    /// Returned from the reconcile (for its metrics category), if any.
    error: Option<Box<Error>>,
    requeue: Duration,
}

/// Reconciles one FlyMQCluster.
pub async fn reconcile(cluster: Arc<FlyMQCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start_reconcile("FlyMQCluster");
    let (ns, name) = ns_name(&cluster)?;
    let endpoint = ClusterEndpoint {
        namespace: ns.clone(),
        name: name.clone(),
    };
    let key = format!("{ns}/{name}");
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references let Kubernetes delete the children.
        ctx.decommissions.forget(&endpoint);
        return Ok(Action::await_change());
    }

    // 1. Fetch.
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let current = sts_api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("reading StatefulSet {ns}/{name}")))?;

    if cluster.is_paused() {
        ctx.decommissions.forget(&endpoint);
        let obs = Observation {
            stateful_set: current.as_ref(),
            paused: true,
            ..Default::default()
        };
        publish_status(&cluster, &ctx, &obs).await?;
        return Ok(Action::await_change());
    }

    // 2. Validate. Every refusal (a spec the builders refuse, key or
    // certificate Secrets that are missing or unusable) ends the pass with
    // a condition before anything is applied or decommissioned, and says why.
    let served = ctx.apis.get();
    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let read_secret = |secret: String| {
        let api = secrets_api.clone();
        let what = format!("reading Secret {ns}/{secret}");
        async move { api.get_opt(&secret).await.map_err(Error::kube(what)) }
    };
    let admin_secret = admin_secret_name(&cluster, &name);
    let existing_admin_password = if cluster.spec.auth.admin_secret_name.is_none() {
        read_secret(admin_secret.clone())
            .await?
            .as_ref()
            .and_then(builders::secret::stored_password)
    } else {
        None
    };
    // Generated once, then kept: brokers with different secrets refuse each other.
    let existing_cluster_secret = read_secret(builders::cluster_secret_name(&name))
        .await?
        .as_ref()
        .and_then(builders::secret::stored_cluster_secret);
    let key_source = match &cluster.spec.encryption {
        Some(enc) => read_secret(enc.key_secret_ref.name.clone()).await?,
        None => None,
    };
    let recorded_keys = cluster
        .status
        .as_ref()
        .map(|s| s.encryption_key_ids.clone())
        .unwrap_or_default();
    let brokers = cluster.spec.replicas.max(
        current
            .as_ref()
            .and_then(|s| s.spec.as_ref()?.replicas)
            .unwrap_or_default(),
    );
    let tls_observed = if cluster.spec.tls.is_some() {
        let own_ca = builders::tls::source_secret_name(&cluster).is_none();
        tls::Observed {
            ca: match own_ca {
                true => read_secret(builders::tls::ca_secret_name(&name)).await?,
                false => None,
            },
            brokers: read_secret(builders::tls::broker_secret_name(&name)).await?,
            source: match builders::tls::source_secret_name(&cluster) {
                Some(source) => read_secret(source).await?,
                None => None,
            },
        }
    } else {
        tls::Observed::default()
    };
    let refused = |problem: Problem| Refusal {
        problem,
        error: None,
        requeue: REQUEUE_NOT_SUPPORTED,
    };
    let validated = encryption::plan(&cluster, key_source.as_ref(), &recorded_keys)
        .map_err(refused)
        .and_then(|keys| {
            let inputs = Inputs {
                existing_admin_password,
                cluster_id: cluster.status.as_ref().and_then(|s| s.cluster_id.clone()),
                existing_cluster_secret,
                encryption_key_ids: keys.as_ref().map(|k| k.key_ids.clone()).unwrap_or_default(),
            };
            let (mut desired, warnings) = validate(&cluster, &inputs, served, ctx.random.as_ref())?;
            let recorded = keys.map(|k| {
                desired.secrets.push(k.secret);
                k.recorded
            });
            Ok((desired, warnings, recorded))
        })
        .and_then(|(mut desired, warnings, recorded)| {
            match tls::plan(&cluster, &tls_observed, brokers, SystemTime::now()) {
                tls::Plan::Apply { secrets, recheck } => {
                    desired.secrets.extend(secrets);
                    Ok(Validated {
                        desired,
                        warnings,
                        encryption_key_ids: recorded,
                        tls_recheck: recheck,
                    })
                }
                tls::Plan::Refuse(problem) => Err(refused(problem)),
                tls::Plan::Wait(problem) => Err(Refusal {
                    problem,
                    error: None,
                    requeue: REQUEUE_PROGRESS,
                }),
            }
        });
    let Validated {
        mut desired,
        warnings,
        encryption_key_ids,
        tls_recheck,
    } = match validated {
        Ok(v) => v,
        Err(refusal) => {
            ctx.decommissions.forget(&endpoint);
            // Waiting for cert-manager: its Certificate is the one object
            // that must exist for the wait to end.
            let waiting = refusal.problem.reason == tls::WAITING;
            if waiting && let Ok(Some(cert)) = builders::tls::certificate(&cluster) {
                apply_dynamic(&ctx.client, &ns, &cert, &builders::tls::certificate_resource()).await?;
            }
            let obs = Observation {
                stateful_set: current.as_ref(),
                progress: waiting.then(|| refusal.problem.clone()),
                problem: (!waiting).then_some(refusal.problem),
                refused: !waiting,
                ..Default::default()
            };
            publish_status(&cluster, &ctx, &obs).await?;
            return match refusal.error {
                Some(e) => Err(*e),
                None => Ok(Action::requeue(refusal.requeue)),
            };
        }
    };
    let mut problems = warnings;

    // 3. Plan: how many brokers the StatefulSet keeps in this pass.
    let wanted = cluster.spec.replicas;
    let current_replicas = current.as_ref().and_then(|s| s.spec.as_ref()?.replicas);
    let mut progress = None;
    let planned = match current_replicas {
        Some(cur) if cur > wanted => {
            let node = cur - 1;
            let step = ctx
                .decommissions
                .step(ctx.admin.clone(), &endpoint, node, ctx.decommission_wait)
                .await;
            match step {
                DecommissionState::Done => {
                    if node > wanted {
                        progress = Some(Problem {
                            reason: DECOMMISSIONING,
                            message: format!(
                                "scaling from {cur} to {wanted} brokers: broker {name}-{node} decommissioned, \
                                 {} more to go",
                                node - wanted
                            ),
                        });
                    }
                    node
                }
                DecommissionState::Running => {
                    progress = Some(Problem {
                        reason: DECOMMISSIONING,
                        message: format!(
                            "scaling from {cur} to {wanted} brokers: decommissioning broker {name}-{node} (moving its \
                             replicas to the other brokers; {} of {} to go)",
                            cur - wanted,
                            cur - wanted
                        ),
                    });
                    cur
                }
                DecommissionState::Failed(e) => {
                    let reason = match e {
                        AdminError::NotSupported { .. } => "ScaleDownUnsupported",
                        _ => "DecommissionFailed",
                    };
                    problems.push(Problem {
                        reason,
                        message: format!(
                            "cannot scale from {cur} to {wanted} brokers: decommissioning broker {node} failed: {e}; \
                             keeping {cur}"
                        ),
                    });
                    cur
                }
            }
        }
        _ => {
            // Scaled up again: stop following a decommission of a broker
            // the spec keeps. One of a broker beyond the spec (a member
            // without a pod, below) is followed to its end.
            if ctx.decommissions.in_flight(&endpoint).is_some_and(|node| node < wanted) {
                ctx.decommissions.forget(&endpoint);
            }
            wanted
        }
    };
    if let Some(spec) = desired.stateful_set.spec.as_mut() {
        spec.replicas = Some(planned);
    }

    // 4. Apply.
    let applied = apply_all(&ctx.client, &ns, &desired, served).await?;
    if current.is_none() {
        info!(cluster = %key, "created broker StatefulSet");
    }

    // 5. Sweep what this cluster owns but no longer wants.
    sweep(&ctx.client, &cluster, &desired, served).await?;

    // 6. Observe the brokers; record the cluster id; roll.
    let (membership, admin_error) = observe(ctx.admin.as_ref(), &endpoint, &applied).await;
    let recorded = cluster.status.as_ref().and_then(|s| s.cluster_id.clone());
    let mut cluster_id = None;
    if let Some(info) = membership.as_ref().filter(|i| !i.cluster_id.is_empty()) {
        match &recorded {
            None => {
                info!(cluster = %key, cluster_id = %info.cluster_id, "cluster bootstrapped; brokers now join it and never bootstrap again");
                desired.identity = builders::identity::config_map(&cluster, Some(&info.cluster_id))?;
                apply(&ctx.client, &ns, &desired.identity).await?;
                cluster_id = Some(info.cluster_id.clone());
            }
            Some(id) if *id != info.cluster_id => problems.push(Problem {
                reason: "ClusterIdMismatch",
                message: format!(
                    "the brokers report cluster id '{}', but this FlyMQCluster recorded '{id}' at its first \
                     bootstrap: they formed a different cluster (were all volumes replaced?); the brokers keep \
                     '{id}' as the expected id",
                    info.cluster_id
                ),
            }),
            Some(_) => {}
        }
    }
    // The operator's own user and the admin Secret, once the admin API answers.
    let mut admin_secret_version = None;
    if let (Some(users), Some(_)) = (&ctx.admin_users, &membership) {
        match admin_users::sync(&ctx.client, users, ctx.random.as_ref(), &cluster, &endpoint).await {
            Ok(version) => admin_secret_version = version,
            Err(e) => problems.push(Problem {
                reason: "AdminUserSyncFailed",
                message: format!("cannot apply the admin Secret to the brokers: {e}"),
            }),
        }
    }
    // A member beyond `spec.replicas` while the StatefulSet is at that size
    // has no pod: a broker that restarted and rejoined while it was being
    // scaled down (between its decommission and its pod's removal). Remove
    // it from the cluster as a scale-down does, whatever led there.
    let beyond = membership.as_ref().and_then(|m| {
        m.members
            .iter()
            .map(|m| m.id)
            .filter(|id| *id >= i64::from(wanted))
            .max()
    });
    if let Some(node) = beyond.filter(|_| progress.is_none() && current_replicas == Some(wanted)) {
        match ctx
            .decommissions
            .step(ctx.admin.clone(), &endpoint, node as i32, ctx.decommission_wait)
            .await
        {
            DecommissionState::Done => {}
            DecommissionState::Running => {
                progress = Some(Problem {
                    reason: DECOMMISSIONING,
                    message: format!(
                        "broker {name}-{node} is a member of the cluster but beyond spec.replicas ({wanted}) and has \
                         no pod: decommissioning it"
                    ),
                })
            }
            DecommissionState::Failed(e) => problems.push(Problem {
                reason: "DecommissionFailed",
                message: format!(
                    "broker {node} is a member of the cluster but beyond spec.replicas ({wanted}) and has no pod; \
                     decommissioning it failed: {e}"
                ),
            }),
        }
    }
    // Listed at most once per pass, by the first step that needs them.
    let mut pods = BrokerPods::new(&ctx.client, &endpoint);
    if let Some(info) = membership
        .as_ref()
        .filter(|_| progress.is_none() && current_replicas == Some(wanted))
    {
        progress = restart_removed_broker(&ctx, &endpoint, &mut pods, wanted, info).await?;
    }
    if progress.is_none() && planned == wanted {
        match roll_step(&ctx, &endpoint, &mut pods, &applied, membership.as_ref()).await? {
            RollStep::Idle => {}
            RollStep::Wait { reason, message } => progress = Some(Problem { reason, message }),
            RollStep::Restart { message, .. } => {
                progress = Some(Problem {
                    reason: roll::ROLLING,
                    message,
                })
            }
            RollStep::Blocked { message } => {
                problems.push(Problem {
                    reason: roll::ROLL_BLOCKED,
                    message: message.clone(),
                });
                progress = Some(Problem {
                    reason: roll::ROLL_BLOCKED,
                    message,
                });
            }
        }
    }

    // 7. Status.
    let ready_pods = applied.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    let silent = admin_error.is_some() && ready_pods > 0;
    let obs = Observation {
        stateful_set: Some(&applied),
        problem: combine(problems),
        paused: false,
        refused: false,
        admin_secret_name: Some(admin_secret_name(&cluster, &name)),
        membership: membership.as_ref(),
        admin_error: admin_error.map(|e| e.to_string()),
        progress: progress.clone(),
        cluster_id,
        admin_secret_version,
        encryption_key_ids,
    };
    let new_status = publish_status(&cluster, &ctx, &obs).await?;
    let ready = status::condition(&new_status, READY).is_some_and(|c| c.status == "True");
    ctx.backoff.reset(&reconcile_key(&cluster));
    let status_key = format!("cluster-status:{key}");
    Ok(Action::requeue(tls_recheck.min(if silent {
        // A normal race right after the pods became ready (the Service does
        // not answer yet): ask again soon, a little later each time.
        ctx.backoff.failed(&status_key)
    } else {
        ctx.backoff.reset(&status_key);
        if progress.is_some() {
            REQUEUE_PROGRESS
        } else if ready {
            REQUEUE_READY
        } else {
            REQUEUE_NOT_READY
        }
    })))
}

/// Stage 2: every refusal, then the desired objects. Returns them with the
/// problems that do not stop the rest from being applied (an optional
/// object the cluster cannot hold).
fn validate(
    cluster: &FlyMQCluster,
    inputs: &Inputs,
    served: Served,
    random: &dyn Randomness,
) -> Result<(Desired, Vec<Problem>), Refusal> {
    let desired = builders::build(cluster, inputs, random).map_err(|e| Refusal {
        problem: Problem {
            reason: "InvalidSpec",
            message: e.to_string(),
        },
        error: Some(Box::new(e.into())),
        requeue: REQUEUE_READY,
    })?;
    if desired.certificate.is_some() && !served.certificate {
        return Err(Refusal {
            problem: Problem {
                reason: "CertificateApiUnavailable",
                message: "spec.tls.certManager needs cert-manager's Certificate API (cert-manager.io/v1), which \
                          this cluster does not serve; install cert-manager or use spec.tls.secretName"
                    .into(),
            },
            error: None,
            requeue: REQUEUE_NOT_SUPPORTED,
        });
    }
    let mut warnings = Vec::new();
    if desired.service_monitor.is_some() && !served.service_monitor {
        warnings.push(Problem {
            reason: "ServiceMonitorUnavailable",
            message: "metrics.serviceMonitor.enabled is set, but this cluster does not serve the Prometheus \
                      Operator's ServiceMonitor API (monitoring.coreos.com/v1); no ServiceMonitor is created: install \
                      the Prometheus Operator or set metrics.serviceMonitor.enabled: false"
                .into(),
        });
    }
    Ok((desired, warnings))
}

/// The first problem's reason with every message (none: `None`).
fn combine(problems: Vec<Problem>) -> Option<Problem> {
    let reason = problems.first()?.reason;
    let message = problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Some(Problem { reason, message })
}

/// The metadata group as the brokers report it, once at least one broker is
/// ready (before that there is nobody to ask), or why it is not known.
async fn observe(
    admin: &dyn BrokerAdmin,
    endpoint: &ClusterEndpoint,
    sts: &StatefulSet,
) -> (Option<ClusterInfo>, Option<AdminError>) {
    let ready = sts.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    if ready == 0 {
        return (None, None);
    }
    match admin.cluster_status(endpoint).await {
        Ok(info) => (Some(info), None),
        Err(e) => {
            warn!(cluster = %format!("{}/{}", endpoint.namespace, endpoint.name), error = %e, "ClusterStatus did not answer; retrying soon");
            (None, Some(e))
        }
    }
}

/// One step of a roll the operator drives: nothing to do, a wait, or a
/// broker restarted (its leaderships moved away first, then its pod deleted).
async fn roll_step(
    ctx: &Context,
    endpoint: &ClusterEndpoint,
    pods: &mut BrokerPods,
    sts: &StatefulSet,
    info: Option<&ClusterInfo>,
) -> Result<RollStep, Error> {
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let status = sts.status.clone().unwrap_or_default();
    let Some(update_revision) = status.update_revision.clone() else {
        return Ok(RollStep::Idle);
    };
    // The StatefulSet controller's own count says when nothing is outdated;
    // only then are the pods not listed.
    if status.current_revision.as_ref() == Some(&update_revision) && status.updated_replicas == Some(replicas) {
        return Ok(RollStep::Idle);
    }
    let step = roll::next(&update_revision, replicas, pods.views().await?, info);
    if let RollStep::Restart { pod, node, .. } = &step {
        match ctx.admin.transfer_leadership(endpoint, *node).await {
            Ok(moved) => info!(pod = %pod, moved, "leaderships moved off the broker before its restart"),
            // The broker also hands its leaderships over on SIGTERM: a
            // failed transfer slows the failover, it does not lose data.
            Err(e) => warn!(pod = %pod, error = %e, "cannot move leaderships off the broker; restarting it anyway"),
        }
        if pods.delete(pod).await? {
            info!(pod = %format!("{}/{pod}", endpoint.namespace), "restarted a broker to roll out the new pod template");
        }
    }
    Ok(step)
}

/// Restarts the pod of a broker the StatefulSet keeps but the cluster no
/// longer has as a member ([`rejoin`]); the progress to report while it does.
async fn restart_removed_broker(
    ctx: &Context,
    endpoint: &ClusterEndpoint,
    pods: &mut BrokerPods,
    replicas: i32,
    info: &ClusterInfo,
) -> Result<Option<Problem>, Error> {
    // Pods are listed only when some broker the StatefulSet keeps is missing.
    if (0..replicas).all(|n| info.member(i64::from(n)).is_some()) {
        return Ok(None);
    }
    let Ok(now) = (ctx.clock)().parse::<k8s_openapi::jiff::Timestamp>() else {
        return Ok(None);
    };
    let Some(pod) = rejoin::removed_broker(replicas, pods.views().await?, info, now, rejoin::REJOIN_GRACE).cloned()
    else {
        return Ok(None);
    };
    let message = rejoin::message(&pod);
    if pods.delete(&pod.name).await? {
        warn!(pod = %format!("{}/{}", endpoint.namespace, pod.name), "{message}");
    }
    Ok(Some(Problem {
        reason: rejoin::RESTARTING_REMOVED_BROKER,
        message,
    }))
}

/// The broker pods of one cluster, listed on first use and at most once
/// per reconcile pass (the roll and the removed-broker rule both read them).
struct BrokerPods {
    api: Api<Pod>,
    namespace: String,
    name: String,
    listed: Option<Vec<PodView>>,
}

impl BrokerPods {
    fn new(client: &Client, endpoint: &ClusterEndpoint) -> Self {
        Self {
            api: Api::namespaced(client.clone(), &endpoint.namespace),
            namespace: endpoint.namespace.clone(),
            name: endpoint.name.clone(),
            listed: None,
        }
    }

    async fn views(&mut self) -> Result<&[PodView], Error> {
        if self.listed.is_none() {
            let (ns, name) = (&self.namespace, &self.name);
            let pods = self
                .api
                .list(&ListParams::default().labels(&status::selector(name)))
                .await
                .map_err(Error::kube(format!("listing the broker pods of {ns}/{name}")))?;
            self.listed = Some(pods.items.iter().filter_map(|p| pod_view(name, p)).collect());
        }
        Ok(self.listed.as_deref().unwrap_or_default())
    }

    /// Deletes pod `pod`; false when it was already gone.
    async fn delete(&self, pod: &str) -> Result<bool, Error> {
        match self.api.delete(pod, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(false),
            Err(e) => Err(Error::kube(format!("deleting pod {}/{pod}", self.namespace))(e)),
        }
    }
}

/// A broker pod of cluster `name` as the roll sees it (`None` for a pod
/// whose name has no ordinal).
fn pod_view(name: &str, pod: &Pod) -> Option<PodView> {
    let pod_name = pod.name_any();
    let ordinal = pod_name.strip_prefix(&format!("{name}-"))?.parse().ok()?;
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(PodView {
        revision: pod
            .labels()
            .get("controller-revision-hash")
            .cloned()
            .unwrap_or_default(),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        started: pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        name: pod_name,
        ordinal,
        ready,
    })
}

/// Server-side applies every desired object, configuration and Secrets
/// first; returns the StatefulSet as the API server stored it. Optional
/// objects whose API is not served are not sent.
async fn apply_all(client: &Client, ns: &str, d: &Desired, served: Served) -> Result<StatefulSet, Error> {
    apply(client, ns, &d.config_map).await?;
    apply(client, ns, &d.identity).await?;
    for s in &d.secrets {
        apply(client, ns, s).await?;
    }
    if let Some(cert) = d.certificate.as_ref().filter(|_| served.certificate) {
        apply_dynamic(client, ns, cert, &builders::tls::certificate_resource()).await?;
    }
    apply(client, ns, &d.headless_service).await?;
    apply(client, ns, &d.client_service).await?;
    let sts = apply(client, ns, &d.stateful_set).await?;
    apply(client, ns, &d.pdb).await?;
    match &d.network_policy {
        Some(np) => {
            apply(client, ns, np).await?;
        }
        None => remove_network_policy(client, ns, &d.pdb.name_any()).await?,
    }
    if let Some(sm) = d.service_monitor.as_ref().filter(|_| served.service_monitor) {
        apply_dynamic(client, ns, sm, &builders::monitoring::service_monitor_resource()).await?;
    }
    Ok(sts)
}

/// Deletes the NetworkPolicy `name` when the spec switched it off (a
/// NetworkPolicy that does not exist is fine).
async fn remove_network_policy(client: &Client, ns: &str, name: &str) -> Result<(), Error> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            info!(policy = %format!("{ns}/{name}"), "NetworkPolicy deleted: spec.networkPolicy.enabled is false");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(Error::kube(format!("deleting NetworkPolicy {ns}/{name}"))(e)),
    }
}

async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.name_any();
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj))
        .await
        .map_err(Error::kube(format!("applying {} {ns}/{name}", K::kind(&()))))
}

/// Deletes the optional objects (ServiceMonitor, Certificate) of this
/// FlyMQCluster that the spec no longer asks for, on every pass: every
/// object of a served kind carrying the cluster's labels and controlled by
/// it, whose name is not desired. Kinds the API server does not serve hold
/// nothing to sweep and are not asked for.
async fn sweep(client: &Client, cluster: &FlyMQCluster, d: &Desired, served: Served) -> Result<(), Error> {
    let (ns, name) = ns_name(cluster)?;
    let kinds: [(bool, ApiResource, Option<String>); 2] = [
        (
            served.service_monitor,
            builders::monitoring::service_monitor_resource(),
            d.service_monitor.as_ref().map(ResourceExt::name_any),
        ),
        (
            served.certificate,
            builders::tls::certificate_resource(),
            d.certificate.as_ref().map(ResourceExt::name_any),
        ),
    ];
    let mut labels = selector_labels(&name);
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let uid = cluster.metadata.uid.as_deref();
    for (is_served, resource, keep) in kinds {
        if !is_served {
            continue;
        }
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
        let list = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(l) => l,
            // Not allowed to manage this kind (e.g. the chart's
            // rbac.certManager is off), or the CRD went away since the last
            // discovery: then there is nothing of ours to remove.
            Err(kube::Error::Api(s)) if s.is_forbidden() => continue,
            Err(e) if unserved(&e) => continue,
            Err(e) => return Err(Error::kube(format!("listing {} in {ns}", resource.plural))(e)),
        };
        for obj in list.items {
            let object = obj.name_any();
            let ours = obj
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid);
            if !ours || keep.as_deref() == Some(object.as_str()) {
                continue;
            }
            let what = format!("{} {ns}/{object}", resource.kind);
            match api.delete(&object, &DeleteParams::default()).await {
                Ok(_) => info!(object = %what, "deleted: no longer in the spec"),
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(Error::kube(format!("deleting {what}"))(e)),
            }
        }
    }
    Ok(())
}

async fn apply_dynamic(
    client: &Client,
    ns: &str,
    obj: &DynamicObject,
    resource: &kube::api::ApiResource,
) -> Result<DynamicObject, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
    let name = obj.name_any();
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj))
        .await
        .map_err(Error::kube(format!("applying {} {ns}/{name}", resource.kind)))
}

/// Computes the status, writes it when it changed, and publishes events for
/// condition transitions. Returns the new status.
async fn publish_status(
    cluster: &FlyMQCluster,
    ctx: &Context,
    obs: &Observation<'_>,
) -> Result<FlyMQClusterStatus, Error> {
    let (ns, name) = ns_name(cluster)?;
    let new = status::compute(cluster, obs, &(ctx.clock)());
    let old = cluster.status.clone().unwrap_or_default();
    if new != old {
        let api: Api<FlyMQCluster> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({
            "apiVersion": FlyMQCluster::api_version(&()),
            "kind": FlyMQCluster::kind(&()),
            "status": new,
        });
        api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(Error::kube(format!("updating status of FlyMQCluster {ns}/{name}")))?;
    }
    for event in transition_events(&old, &new) {
        if let Err(e) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
            // Events are best effort: never fail a reconcile for one.
            warn!(cluster = %format!("{ns}/{name}"), error = %e, "cannot publish event");
        }
    }
    Ok(new)
}

/// Events for notable condition changes: a problem appears (or changes), the
/// cluster becomes ready, or stops being ready.
pub fn transition_events(old: &FlyMQClusterStatus, new: &FlyMQClusterStatus) -> Vec<Event> {
    let mut events = Vec::new();
    let old_degraded = status::condition(old, DEGRADED);
    if let Some(d) = status::condition(new, DEGRADED).filter(|d| d.status == "True")
        && old_degraded.is_none_or(|o| o.status != "True" || o.reason != d.reason)
    {
        events.push(Event {
            type_: EventType::Warning,
            reason: d.reason.clone(),
            note: Some(d.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    let was_ready = status::condition(old, READY).is_some_and(|c| c.status == "True");
    let ready = status::condition(new, READY);
    let is_ready = ready.is_some_and(|c| c.status == "True");
    let note = ready.map(|c| c.message.clone());
    if is_ready && !was_ready {
        events.push(Event {
            type_: EventType::Normal,
            reason: "ClusterReady".into(),
            note,
            action: "Reconcile".into(),
            secondary: None,
        });
    } else if was_ready && !is_ready {
        events.push(Event {
            type_: EventType::Warning,
            reason: "ClusterNotReady".into(),
            note,
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    events
}

/// [`reconcile`] behind a [`DeserializeGuard`]: a FlyMQCluster that does not
/// decode is reported on itself instead of stopping the controller.
pub async fn reconcile_guarded(
    obj: Arc<kube::core::DeserializeGuard<FlyMQCluster>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    match (&obj.0, super::guard::decoded(&obj)) {
        (_, Some(cluster)) => reconcile(cluster, ctx).await,
        (Err(invalid), None) => super::guard::report_invalid::<FlyMQCluster>(&ctx.client, invalid, &ctx.clock).await,
        (Ok(_), None) => Ok(Action::await_change()),
    }
}

/// [`error_policy`] behind a [`DeserializeGuard`](kube::core::DeserializeGuard).
pub fn error_policy_guarded(
    obj: Arc<kube::core::DeserializeGuard<FlyMQCluster>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    match super::guard::decoded(&obj) {
        Some(cluster) => error_policy(cluster, error, ctx),
        None => {
            ctx.metrics.failed("FlyMQCluster", error.category());
            Action::requeue(REQUEUE_NOT_READY)
        }
    }
}

/// Decides when a failed reconcile is retried, and counts the failure.
pub fn error_policy(cluster: Arc<FlyMQCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed("FlyMQCluster", error.category());
    warn!(
        cluster = %format!("{}/{}", cluster.namespace().unwrap_or_default(), cluster.name_any()),
        category = error.category(),
        error = %error,
        "reconcile failed"
    );
    match error {
        // Retrying cannot help until the spec changes (which triggers a reconcile anyway).
        Error::InvalidSpec(_) => Action::requeue(REQUEUE_READY),
        // Each object backs off on its own: one failing cluster is retried
        // later and later, the others keep their pace.
        _ => Action::requeue(ctx.backoff.failed(&reconcile_key(&cluster))),
    }
}

/// The backoff key of an object's failed reconciles.
fn reconcile_key(cluster: &FlyMQCluster) -> String {
    format!(
        "reconcile:{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

#[cfg(test)]
mod tests {
    //! Reconcile sequences against a scripted fake API server
    //! (kube-rs's tower-test mock-service pattern) and a fake broker admin
    //! API (real gRPC on loopback).
    use super::*;
    use crate::admin::GrpcAdmin;
    use crate::admin::fake_broker::{self, FakeBroker};
    use crate::builders::test_support::{Fixed, cluster};
    use crate::controller::mock::{Handle, Reply, Seen, Step, client, serve, step};
    use crate::crd::cluster::PAUSED_ANNOTATION;
    use kube::runtime::events::Reporter;
    use serde_json::{Value, json};

    const NOW: &str = "2026-01-01T00:00:00Z";
    const STS: &str = "/apis/apps/v1/namespaces/prod/statefulsets/demo";
    const ADMIN_SECRET: &str = "/api/v1/namespaces/prod/secrets/demo-admin";
    const CLUSTER_SECRET: &str = "/api/v1/namespaces/prod/secrets/demo-cluster-secret";
    const CONFIG_MAP: &str = "/api/v1/namespaces/prod/configmaps/demo-config";
    const IDENTITY: &str = "/api/v1/namespaces/prod/configmaps/demo-identity";
    const HEADLESS: &str = "/api/v1/namespaces/prod/services/demo-headless";
    const CLIENT: &str = "/api/v1/namespaces/prod/services/demo";
    const PDB: &str = "/apis/policy/v1/namespaces/prod/poddisruptionbudgets/demo";
    const NETPOL: &str = "/apis/networking.k8s.io/v1/namespaces/prod/networkpolicies/demo";
    const STATUS: &str = "/apis/flymq.io/v1alpha1/namespaces/prod/flymqclusters/demo/status";
    const MONITORS: &str = "/apis/monitoring.coreos.com/v1/namespaces/prod/servicemonitors";
    const MONITOR: &str = "/apis/monitoring.coreos.com/v1/namespaces/prod/servicemonitors/demo";
    const CERTIFICATES: &str = "/apis/cert-manager.io/v1/namespaces/prod/certificates";
    const PODS: &str = "/api/v1/namespaces/prod/pods";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/prod/events";

    /// A fake broker admin API with `n` members, node 0 leading.
    fn broker(n: u64) -> Arc<FakeBroker> {
        let fake = Arc::new(FakeBroker::default());
        *fake.members.lock().expect("lock") = (0..n).map(|id| FakeBroker::member(id, id == 0)).collect();
        fake
    }

    fn context_serving(fake: &Arc<FakeBroker>, served: Served) -> (Arc<Context>, Handle) {
        let (client, handle) = client();
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: None,
        };
        let ctx = Context {
            client: client.clone(),
            recorder: Recorder::new(client, reporter),
            admin: Arc::new(GrpcAdmin::new(fake_broker::serve(fake.clone()))),
            random: Arc::new(Fixed),
            clock: Arc::new(|| NOW.to_string()),
            metrics: Arc::new(Metrics::new()),
            apis: Arc::new(OptionalApis::new(served)),
            decommissions: Decommissions::default(),
            decommission_wait: Duration::from_secs(5),
            backoff: Backoff::default(),
            admin_users: None,
        };
        (Arc::new(ctx), handle)
    }

    fn context(fake: &Arc<FakeBroker>) -> (Arc<Context>, Handle) {
        context_serving(fake, Served::default())
    }

    /// Runs one reconcile against the scripted steps; fails if the
    /// reconciler makes a request that is not scripted.
    async fn run(c: FlyMQCluster, steps: Vec<Step>) -> (Result<Action, Error>, Vec<Seen>) {
        run_with(&broker(3), c, steps).await
    }

    /// [`run`] against the given fake broker.
    async fn run_with(fake: &Arc<FakeBroker>, c: FlyMQCluster, steps: Vec<Step>) -> (Result<Action, Error>, Vec<Seen>) {
        let (ctx, handle) = context(fake);
        run_ctx(ctx, handle, c, steps).await
    }

    /// [`run`] with a given context (its state carries over between passes).
    async fn run_ctx(
        ctx: Arc<Context>,
        handle: Handle,
        c: FlyMQCluster,
        steps: Vec<Step>,
    ) -> (Result<Action, Error>, Vec<Seen>) {
        let server = tokio::spawn(serve(handle, steps));
        let result = tokio::time::timeout(Duration::from_secs(20), reconcile(Arc::new(c), ctx))
            .await
            .expect("reconcile hung: it made a request the test did not script");
        let seen = server.await.expect("fake API server failed");
        (result, seen)
    }

    /// The applies of every object, in order; the StatefulSet's reply is
    /// `sts` (the request body when `None`).
    fn applies_with(admin_secret: bool, sts: Option<Value>) -> Vec<Step> {
        let mut s = vec![
            step("PATCH", CONFIG_MAP, Reply::Echo),
            step("PATCH", IDENTITY, Reply::Echo),
        ];
        if admin_secret {
            s.push(step("PATCH", ADMIN_SECRET, Reply::Echo));
        }
        s.push(step("PATCH", CLUSTER_SECRET, Reply::Echo));
        s.extend([
            step("PATCH", HEADLESS, Reply::Echo),
            step("PATCH", CLIENT, Reply::Echo),
            step(
                "PATCH",
                STS,
                match sts {
                    Some(v) => Reply::Json(v),
                    None => Reply::Echo,
                },
            ),
            step("PATCH", PDB, Reply::Echo),
            step("PATCH", NETPOL, Reply::Echo),
        ]);
        s
    }

    /// The requests of a pass over an existing cluster up to the applies:
    /// the StatefulSet is found as `found` and stored as `stored`; no admin
    /// or cluster Secret exists yet.
    fn pass_on(found: Value, stored: Value) -> Vec<Step> {
        let mut steps = vec![
            step("GET", STS, Reply::Json(found)),
            step("GET", ADMIN_SECRET, Reply::NotFound),
            step("GET", CLUSTER_SECRET, Reply::NotFound),
        ];
        steps.extend(applies_with(true, Some(stored)));
        steps
    }

    fn applies(admin_secret: bool) -> Vec<Step> {
        applies_with(admin_secret, None)
    }

    fn status_step(c: &FlyMQCluster) -> Step {
        step(
            "PATCH",
            STATUS,
            Reply::WithStatus(serde_json::to_value(c).expect("json")),
        )
    }

    fn cond<'a>(status: &'a Value, type_: &str) -> &'a Value {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
            .unwrap_or(&Value::Null)
    }

    /// The one request of `method` to `path`.
    fn sent<'a>(seen: &'a [Seen], method: &str, path: &str) -> &'a Seen {
        let found: Vec<&Seen> = seen.iter().filter(|s| s.method == method && s.path == path).collect();
        assert_eq!(found.len(), 1, "{method} {path} sent {} times", found.len());
        found[0]
    }

    fn existing_sts(replicas: i32, ready: i32) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "demo", "namespace": "prod", "generation": 4},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
            "status": {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas,
                       "observedGeneration": 4, "currentRevision": "demo-r1", "updateRevision": "demo-r1"}
        })
    }

    /// A StatefulSet of 3 ready pods whose template changed: `updated` pods
    /// run revision `demo-r2`.
    fn rolling_sts(updated: i32) -> Value {
        let mut s = existing_sts(3, 3);
        s["status"]["updateRevision"] = json!("demo-r2");
        s["status"]["updatedReplicas"] = json!(updated);
        s
    }

    fn pod(ordinal: i32, revision: &str, ready: bool) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("demo-{ordinal}"), "namespace": "prod",
                         "labels": {"controller-revision-hash": revision}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        })
    }

    fn pod_list(pods: Vec<Value>) -> Reply {
        Reply::Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods}))
    }

    /// `c` with the status a previous pass recorded (cluster id and Ready).
    fn running(mut c: FlyMQCluster, replicas: i32) -> FlyMQCluster {
        let sts: StatefulSet = serde_json::from_value(existing_sts(replicas, replicas)).expect("sts");
        let info = ClusterInfo {
            cluster_id: "fake".into(),
            leader: Some(0),
            members: Vec::new(),
            under_replicated: Vec::new(),
        };
        c.status = Some(status::compute(
            &c,
            &Observation {
                stateful_set: Some(&sts),
                membership: Some(&info),
                cluster_id: Some("fake".into()),
                ..Default::default()
            },
            "2025-12-31T00:00:00Z",
        ));
        c
    }

    #[tokio::test]
    async fn new_cluster_applies_config_identity_and_secrets_before_the_statefulset() {
        let c = cluster(json!({}));
        let mut steps = vec![
            step("GET", STS, Reply::NotFound),
            step("GET", ADMIN_SECRET, Reply::NotFound),
            step("GET", CLUSTER_SECRET, Reply::NotFound),
        ];
        steps.extend(applies(true));
        steps.push(status_step(&c));
        let (result, seen) = run(c, steps).await;

        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_NOT_READY));
        // every write is a forced server-side apply with the one field manager
        for s in seen.iter().filter(|s| !s.body.is_null()) {
            assert!(
                s.query.contains("fieldManager=flymq-operator"),
                "{}: {}",
                s.path,
                s.query
            );
            assert!(s.query.contains("force=true"), "{}: {}", s.path, s.query);
        }
        let identity = &sent(&seen, "PATCH", IDENTITY).body;
        assert_eq!(identity["data"], json!({"bootstrap": "auto", "cluster-id": ""}));
        let secret = &sent(&seen, "PATCH", ADMIN_SECRET).body;
        assert_eq!(
            secret["data"]["password"],
            json!("eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=")
        );
        let sts = &sent(&seen, "PATCH", STS).body;
        assert_eq!(sts["spec"]["replicas"], json!(3));
        assert_eq!(sts["spec"]["updateStrategy"]["type"], json!("OnDelete"));
        let status = &sent(&seen, "PATCH", STATUS).body["status"];
        assert_eq!(status["phase"], json!("Pending"));
        assert_eq!(status["observedGeneration"], json!(1));
        assert_eq!(cond(status, "Ready")["reason"], json!("BrokersNotReady"));
        assert_eq!(cond(status, "Ready")["lastTransitionTime"], json!(NOW));
        assert_eq!(cond(status, "Degraded")["status"], json!("False"));
        assert_eq!(status.get("clusterId"), None);
        let secret = &sent(&seen, "PATCH", CLUSTER_SECRET).body;
        assert_eq!(secret["data"]["secret"], json!(BASE64_64_X));
        assert_eq!(seen.len(), 13, "no event for an ordinary first reconcile");
        let np = &sent(&seen, "PATCH", NETPOL).body;
        assert_eq!(np["kind"], json!("NetworkPolicy"));
        let env = sts["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            env.contains(&json!({"name": "FLYMQ_AUTH_ENABLED", "value": "true"})),
            "secure by default: {env:?}"
        );
    }

    /// base64 of the 64 'x' the fixed randomness draws.
    const BASE64_64_X: &str =
        "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eA==";

    #[tokio::test]
    async fn cluster_secret_is_created_once_and_never_replaced() {
        let c = cluster(json!({}));
        let existing = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "demo-cluster-secret", "namespace": "prod"},
            "data": {"secret": "a2VwdC1jbHVzdGVyLXNlY3JldA=="}});
        let mut steps = vec![
            step("GET", STS, Reply::NotFound),
            step("GET", ADMIN_SECRET, Reply::NotFound),
            step("GET", CLUSTER_SECRET, Reply::Json(existing)),
        ];
        steps.extend(applies(true));
        steps.push(status_step(&c));
        let (_, seen) = run(c, steps).await;
        let applied = &sent(&seen, "PATCH", CLUSTER_SECRET).body;
        assert_eq!(applied["data"]["secret"], json!("a2VwdC1jbHVzdGVyLXNlY3JldA=="));
        assert_eq!(applied["metadata"]["ownerReferences"][0]["kind"], json!("FlyMQCluster"));
        let sts = &sent(&seen, "PATCH", STS).body;
        let env = sts["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env");
        let var = env
            .iter()
            .find(|e| e["name"] == "FLYMQ_CLUSTER_SECRET")
            .expect("FLYMQ_CLUSTER_SECRET");
        assert_eq!(
            var["valueFrom"]["secretKeyRef"],
            json!({"name": "demo-cluster-secret", "key": "secret", "optional": false})
        );
    }

    #[tokio::test]
    async fn generated_password_is_kept_across_resyncs() {
        let c = cluster(json!({}));
        let existing = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "demo-admin", "namespace": "prod"},
            "data": {"username": "YWRtaW4=", "password": "a2VwdA=="}});
        let mut steps = vec![
            step("GET", STS, Reply::NotFound),
            step("GET", ADMIN_SECRET, Reply::Json(existing)),
            step("GET", CLUSTER_SECRET, Reply::NotFound),
        ];
        steps.extend(applies(true));
        steps.push(status_step(&c));
        let (_, seen) = run(c, steps).await;
        assert_eq!(
            sent(&seen, "PATCH", ADMIN_SECRET).body["data"]["password"],
            json!("a2VwdA=="),
            "the stored password is reused"
        );
    }

    #[tokio::test]
    async fn the_first_answer_records_the_cluster_id_and_turns_bootstrapping_off() {
        let c = cluster(json!({}));
        let fake = broker(3);
        *fake.cluster_id.lock().expect("lock") = Some("7d1e-cluster".into());
        let mut steps = pass_on(existing_sts(3, 3), existing_sts(3, 3));
        steps.push(step("PATCH", IDENTITY, Reply::Echo));
        steps.push(status_step(&c));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run_with(&fake, c.clone(), steps).await;

        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_READY));
        assert_eq!(
            seen[4].body["data"]["bootstrap"],
            json!("auto"),
            "applied before the answer"
        );
        assert_eq!(
            seen[12].body["data"],
            json!({"bootstrap": "never", "cluster-id": "7d1e-cluster"}),
            "re-applied once the brokers named their cluster"
        );
        let status = &seen[13].body["status"];
        assert_eq!(status["clusterId"], json!("7d1e-cluster"));
        assert_eq!(cond(status, "Ready")["status"], json!("True"));
        assert_eq!(seen[14].body["reason"], json!("ClusterReady"));

        // From then on the identity carries the id from the first apply.
        let mut again = c;
        again.status = Some(serde_json::from_value(status.clone()).expect("status"));
        let steps = pass_on(existing_sts(3, 3), existing_sts(3, 3));
        let (result, seen) = run_with(&fake, again, steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_READY));
        assert_eq!(
            seen[4].body["data"],
            json!({"bootstrap": "never", "cluster-id": "7d1e-cluster"})
        );
    }

    #[tokio::test]
    async fn a_silent_admin_api_is_not_ready_is_shown_and_is_asked_again_soon() {
        let c = cluster(json!({}));
        let fake = broker(3);
        fake.fail("ClusterStatus", tonic::Status::unavailable("connection refused"));
        let mut steps = pass_on(existing_sts(3, 3), existing_sts(3, 3));
        steps.push(status_step(&c));
        let (result, seen) = run_with(&fake, c, steps).await;

        assert_eq!(
            result.expect("reconciles"),
            Action::requeue(Duration::from_secs(2)),
            "retried with a short backoff, not at the 5-minute resync"
        );
        let status = &sent(&seen, "PATCH", STATUS).body["status"];
        let ready = cond(status, "Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"]),
            (&json!("False"), &json!("AdminApiUnavailable"))
        );
        let message = ready["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("3/3 brokers ready, but the admin API has not answered ClusterStatus: cannot reach"),
            "{message}"
        );
        assert!(message.contains("connection refused"), "{message}");
        assert_eq!(status.get("leader"), None);
        assert_eq!(status["phase"], json!("Pending"));
    }

    #[tokio::test]
    async fn a_silent_admin_api_backs_off_per_cluster_and_resets_on_an_answer() {
        let fake = broker(3);
        fake.fail("ClusterStatus", tonic::Status::unavailable("connection refused"));
        let (ctx, handle) = context(&fake);
        let c = cluster(json!({}));
        let mut handle = Some(handle);
        let mut delays = Vec::new();
        let mut stored = c.clone();
        for _ in 0..3 {
            let mut steps = pass_on(existing_sts(3, 3), existing_sts(3, 3));
            if stored.status.is_none() {
                steps.push(status_step(&stored));
            }
            let h = handle.take().expect("handle");
            let server = tokio::spawn(async move {
                let mut h = h;
                let seen = crate::controller::mock::serve_ref(&mut h, steps).await;
                (h, seen)
            });
            let result = reconcile(Arc::new(stored.clone()), ctx.clone()).await;
            let (h, seen) = server.await.expect("server");
            handle = Some(h);
            if let Some(s) = seen.iter().find(|s| s.path == STATUS) {
                stored.status = Some(serde_json::from_value(s.body["status"].clone()).expect("status"));
            }
            delays.push(result.expect("reconciles"));
        }
        assert_eq!(
            delays,
            vec![
                Action::requeue(Duration::from_secs(2)),
                Action::requeue(Duration::from_secs(4)),
                Action::requeue(Duration::from_secs(8)),
            ]
        );
    }

    #[tokio::test]
    async fn scale_down_decommissions_one_broker_per_pass_and_shrinks_after_each() {
        let c = cluster(json!({"replicas": 3}));
        let fake = broker(5);
        let (ctx, handle) = context(&fake);
        let c5 = running(c.clone(), 5);
        let mut steps = vec![
            step("GET", STS, Reply::Json(existing_sts(5, 5))),
            step("GET", ADMIN_SECRET, Reply::NotFound),
            step("GET", CLUSTER_SECRET, Reply::NotFound),
        ];
        let seen_by_then = fake.clone();
        let mut apply = applies_with(true, Some(existing_sts(4, 4)));
        apply[6] = step("PATCH", STS, Reply::Json(existing_sts(4, 4))).checking(move || {
            assert_eq!(
                seen_by_then.calls(),
                vec!["Decommission 4"],
                "broker 4 is decommissioned before the StatefulSet loses it, and only broker 4"
            );
        });
        steps.extend(apply);
        steps.push(status_step(&c5));
        let (result, seen) = run_ctx(ctx, handle, c5.clone(), steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_PROGRESS));
        assert_eq!(sent(&seen, "PATCH", STS).body["spec"]["replicas"], json!(4));
        let status = &sent(&seen, "PATCH", STATUS).body["status"];
        let progressing = cond(status, "Progressing");
        assert_eq!(
            (&progressing["status"], &progressing["reason"], &progressing["message"]),
            (
                &json!("True"),
                &json!("Decommissioning"),
                &json!("scaling from 5 to 3 brokers: broker demo-4 decommissioned, 1 more to go")
            )
        );
        assert_eq!(cond(status, "Degraded")["status"], json!("False"));

        // The next pass finds 4 and decommissions broker 3.
        let mut c4 = c5;
        c4.status = Some(serde_json::from_value(status.clone()).expect("status"));
        let (ctx, handle) = context(&fake);
        let mut steps = pass_on(existing_sts(4, 4), existing_sts(3, 3));
        steps.push(status_step(&c4));
        let (result, seen) = run_ctx(ctx, handle, c4, steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_READY));
        assert_eq!(fake.calls().iter().filter(|c| c.starts_with("Decommission")).count(), 2);
        assert_eq!(sent(&seen, "PATCH", STS).body["spec"]["replicas"], json!(3));
        let status = &sent(&seen, "PATCH", STATUS).body["status"];
        assert_eq!(cond(status, "Progressing")["reason"], json!("RolloutComplete"));
        let ids: Vec<i64> = status["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter_map(|m| m["id"].as_i64())
            .collect();
        assert_eq!(ids, vec![0, 1, 2], "the decommissioned brokers left the group");
        assert_eq!(
            status["members"][1],
            json!({"id": 1, "address": "demo-1.demo-headless.prod.svc:9092", "role": "voter", "health": "up"})
        );
    }

    #[tokio::test]
    async fn a_long_decommission_runs_in_the_background_and_resumes_after_an_operator_restart() {
        let c = running(cluster(json!({"replicas": 3})), 4);
        let fake = broker(4);
        *fake.decommission_delay.lock().expect("lock") = Duration::from_secs(3);
        let (ctx, handle) = context(&fake);
        let ctx = Arc::new(Context {
            decommission_wait: Duration::from_millis(200),
            ..Arc::try_unwrap(ctx).unwrap_or_else(|_| panic!("one owner"))
        });
        let mut steps = pass_on(existing_sts(4, 4), existing_sts(4, 4));
        steps.push(status_step(&c));
        let started = std::time::Instant::now();
        let (result, seen) = run_ctx(ctx.clone(), handle, c.clone(), steps).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the pass does not wait for the decommission"
        );
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_PROGRESS));
        assert_eq!(
            sent(&seen, "PATCH", STS).body["spec"]["replicas"],
            json!(4),
            "broker 3 keeps its pod while it is decommissioned"
        );
        let status = &sent(&seen, "PATCH", STATUS).body["status"];
        assert_eq!(
            cond(status, "Progressing")["message"],
            json!(
                "scaling from 4 to 3 brokers: decommissioning broker demo-3 (moving its replicas to the other \
                 brokers; 1 of 1 to go)"
            )
        );
        assert_eq!(
            ctx.decommissions.in_flight(&ClusterEndpoint {
                namespace: "prod".into(),
                name: "demo".into()
            }),
            Some(3)
        );

        // The operator restarts: its tasks are gone, the StatefulSet still
        // has 4 brokers. The new operator asks for broker 3 again; the broker
        // finishes it (a node no longer a member counts as done).
        drop(ctx);
        *fake.decommission_delay.lock().expect("lock") = Duration::ZERO;
        let mut resumed = c;
        resumed.status = Some(serde_json::from_value(status.clone()).expect("status"));
        let (ctx, handle) = context(&fake);
        let mut steps = pass_on(existing_sts(4, 4), existing_sts(3, 3));
        steps.push(status_step(&resumed));
        let (result, seen) = run_ctx(ctx, handle, resumed, steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_READY));
        assert_eq!(sent(&seen, "PATCH", STS).body["spec"]["replicas"], json!(3));
        assert_eq!(
            fake.calls().iter().filter(|c| *c == "Decommission 3").count(),
            2,
            "asked again after the restart"
        );
    }

    #[tokio::test]
    async fn scale_down_on_brokers_without_decommission_is_refused_with_condition_and_event() {
        let c = running(cluster(json!({"replicas": 1})), 3);
        let fake = broker(3);
        fake.fail(
            "Decommission",
            tonic::Status::unimplemented("decommission is not supported yet"),
        );
        let mut steps = pass_on(existing_sts(3, 3), existing_sts(3, 3));
        steps.push(status_step(&c));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run_with(&fake, c, steps).await;

        assert!(result.is_ok());
        assert_eq!(
            fake.calls(),
            vec!["Decommission 2", "ClusterStatus"],
            "stops at the first refusal"
        );
        let sts = &sent(&seen, "PATCH", STS).body;
        assert_eq!(sts["spec"]["replicas"], json!(3), "the StatefulSet keeps its brokers");
        let status = &sent(&seen, "PATCH", STATUS).body["status"];
        let degraded = cond(status, "Degraded");
        assert_eq!(degraded["status"], json!("True"));
        assert_eq!(degraded["reason"], json!("ScaleDownUnsupported"));
        assert_eq!(
            degraded["message"],
            json!(
                "cannot scale from 3 to 1 brokers: decommissioning broker 2 failed: the broker does not support \
                 decommissioning brokers yet (Decommission: decommission is not supported yet); keeping 3"
            )
        );
        assert_eq!(status["phase"], json!("Degraded"));
        let event = &sent(&seen, "POST", EVENTS).body;
        assert_eq!(event["type"], json!("Warning"));
        assert_eq!(event["reason"], json!("ScaleDownUnsupported"));
        assert_eq!(event["regarding"]["kind"], json!("FlyMQCluster"));
    }

    #[tokio::test]
    async fn a_member_beyond_the_spec_without_a_pod_is_decommissioned() {
        // Broker 3 restarted on its kept volume and rejoined after its
        // decommission, before the StatefulSet shrank: a member with no pod.
        let c = running(cluster(json!({"replicas": 3})), 3);
        let fake = broker(4);
        let mut steps = pass_on(existing_sts(3, 3), existing_sts(3, 3));
        steps.push(status_step(&c));
        let (result, seen) = run_with(&fake, c, steps).await;

        assert!(result.is_ok(), "{result:?}");
        let decommissions: Vec<String> = fake
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("Decommission"))
            .collect();
        assert_eq!(decommissions, vec!["Decommission 3"]);
        assert_eq!(sent(&seen, "PATCH", STS).body["spec"]["replicas"], json!(3));
        let members: Vec<i64> = fake
            .members
            .lock()
            .expect("lock")
            .iter()
            .map(|m| m.node_id as i64)
            .collect();
        assert_eq!(members, vec![0, 1, 2], "broker 3 left the cluster");
    }

    /// A broker pod the StatefulSet keeps, started `started` (RFC 3339).
    fn started_pod(ordinal: i32, ready: bool, started: &str) -> Value {
        let mut p = pod(ordinal, "demo-r1", ready);
        p["status"]["startTime"] = json!(started);
        p
    }

    /// Three broker pods, broker 2 not ready (started `started`) and not a
    /// member (scaled 3 -> 2 and back before its decommission finished: the
    /// brokers finished it, its pod stayed): the cluster, the fake brokers
    /// and the requests of a pass up to the pod list.
    fn broker_2_removed(started: &str) -> (FlyMQCluster, Arc<FakeBroker>, Vec<Step>) {
        let c = running(cluster(json!({"replicas": 3})), 3);
        let fake = broker(3);
        fake.members.lock().expect("lock").retain(|m| m.node_id != 2);
        let mut steps = pass_on(existing_sts(3, 2), existing_sts(3, 2));
        steps.push(step(
            "GET",
            PODS,
            pod_list(vec![
                started_pod(0, true, "2025-12-31T00:00:00Z"),
                started_pod(1, true, "2025-12-31T00:00:00Z"),
                started_pod(2, false, started),
            ]),
        ));
        (c, fake, steps)
    }

    #[tokio::test]
    async fn a_broker_removed_while_its_pod_stayed_is_restarted_to_rejoin() {
        // Started ten minutes before NOW: long past joining.
        let (c, fake, mut steps) = broker_2_removed("2025-12-31T23:50:00Z");
        steps.push(step(
            "DELETE",
            "/api/v1/namespaces/prod/pods/demo-2",
            Reply::Json(started_pod(2, false, "2025-12-31T23:50:00Z")),
        ));
        steps.push(status_step(&c));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run_with(&fake, c, steps).await;

        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_PROGRESS));
        assert_eq!(
            fake.calls(),
            vec!["ClusterStatus"],
            "nothing decommissioned, no leadership moved"
        );
        let progressing = cond(&sent(&seen, "PATCH", STATUS).body["status"], "Progressing");
        assert_eq!(
            (&progressing["status"], &progressing["reason"]),
            (&json!("True"), &json!("RestartingRemovedBroker"))
        );
        assert!(
            progressing["message"]
                .as_str()
                .unwrap_or_default()
                .contains("restarting demo-2"),
            "{progressing}"
        );
    }

    #[tokio::test]
    async fn a_broker_pod_that_is_still_joining_is_left_alone() {
        // Started a minute before NOW: still within the grace to join.
        let (c, fake, mut steps) = broker_2_removed("2025-12-31T23:59:00Z");
        steps.push(status_step(&c));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run_with(&fake, c, steps).await;

        assert!(result.is_ok(), "{result:?}");
        assert!(seen.iter().all(|s| s.method != "DELETE"), "no pod deleted");
    }

    #[tokio::test]
    async fn one_pod_list_serves_the_rejoin_rule_and_a_pending_roll() {
        // Broker 2 is not a member and its pod is still within the grace to
        // join, while a roll is pending: both steps read the same list.
        let c = running(cluster(json!({"replicas": 3})), 3);
        let fake = broker(3);
        fake.members.lock().expect("lock").retain(|m| m.node_id != 2);
        let mut steps = roll_steps(vec![
            started_pod(0, true, "2025-12-31T00:00:00Z"),
            started_pod(1, true, "2025-12-31T00:00:00Z"),
            started_pod(2, false, "2025-12-31T23:59:00Z"),
        ]);
        steps.push(status_step(&c));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run_with(&fake, c, steps).await;

        assert!(result.is_ok(), "{result:?}");
        sent(&seen, "GET", PODS);
        assert!(seen.iter().all(|s| s.method != "DELETE"), "no pod deleted");
    }

    #[tokio::test]
    async fn a_failed_decommission_keeps_that_broker_and_reports_why() {
        let c = running(cluster(json!({"replicas": 3})), 4);
        let fake = broker(4);
        fake.refuse_decommission.lock().expect("lock").insert(3);
        let mut steps = pass_on(existing_sts(4, 4), existing_sts(4, 4));
        steps.push(status_step(&c));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run_with(&fake, c, steps).await;

        assert!(result.is_ok());
        assert_eq!(sent(&seen, "PATCH", STS).body["spec"]["replicas"], json!(4));
        let degraded = cond(&sent(&seen, "PATCH", STATUS).body["status"], "Degraded");
        assert_eq!(degraded["reason"], json!("DecommissionFailed"));
        assert_eq!(
            degraded["message"],
            json!(
                "cannot scale from 4 to 3 brokers: decommissioning broker 3 failed: Decommission refused: \
                 node 3 holds the only in-sync replica of orders/0; keeping 4"
            )
        );
        assert_eq!(sent(&seen, "POST", EVENTS).body["reason"], json!("DecommissionFailed"));
    }

    #[tokio::test]
    async fn a_refusal_found_after_a_scale_down_was_requested_decommissions_nothing() {
        // 5 -> 3 together with a reserved config key: the spec is refused as
        // a whole, before any broker is decommissioned or anything applied.
        let c = running(cluster(json!({"replicas": 3, "config": {"data_dir": "/elsewhere"}})), 5);
        let fake = broker(5);
        let steps = vec![
            step("GET", STS, Reply::Json(existing_sts(5, 5))),
            step("GET", ADMIN_SECRET, Reply::NotFound),
            step("GET", CLUSTER_SECRET, Reply::NotFound),
            status_step(&c),
            step("POST", EVENTS, Reply::Echo),
            step("POST", EVENTS, Reply::Echo),
        ];
        let (result, seen) = run_with(&fake, c, steps).await;

        let err = result.expect_err("an invalid spec fails");
        assert_eq!(err.category(), "invalid_spec");
        assert!(fake.calls().is_empty(), "no decommission: {:?}", fake.calls());
        let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![STS, ADMIN_SECRET, CLUSTER_SECRET, STATUS, EVENTS, EVENTS],
            "nothing applied"
        );
        let status = &seen[3].body["status"];
        assert_eq!(status["replicas"], json!(5));
        for type_ in ["Ready", "Degraded"] {
            assert_eq!(cond(status, type_)["reason"], json!("InvalidSpec"), "{type_}");
        }
        assert!(
            cond(status, "Degraded")["message"]
                .as_str()
                .unwrap_or_default()
                .contains("spec.config key 'data_dir' is managed by the operator")
        );
    }

    #[tokio::test]
    async fn invalid_spec_reports_and_fails_with_its_category() {
        let c = cluster(json!({"config": {"data_dir": "/elsewhere"}}));
        let steps = vec![
            step("GET", STS, Reply::NotFound),
            step("GET", ADMIN_SECRET, Reply::NotFound),
            step("GET", CLUSTER_SECRET, Reply::NotFound),
            status_step(&c),
            step("POST", EVENTS, Reply::Echo),
        ];
        let (result, seen) = run(c, steps).await;
        let err = result.expect_err("invalid spec fails");
        assert_eq!(err.category(), "invalid_spec");
        let degraded = cond(&seen[3].body["status"], "Degraded");
        assert_eq!(degraded["reason"], json!("InvalidSpec"));
        assert!(degraded["message"].as_str().unwrap_or_default().contains("data_dir"));
        assert_eq!(seen[4].body["reason"], json!("InvalidSpec"));
    }

    #[tokio::test]
    async fn paused_cluster_only_reports_status() {
        let mut c = cluster(json!({}));
        c.metadata.annotations = Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
        let steps = vec![step("GET", STS, Reply::Json(existing_sts(3, 3))), status_step(&c)];
        let (result, seen) = run(c, steps).await;
        assert_eq!(result.expect("reconciles"), Action::await_change());
        assert_eq!(seen[1].body["status"]["phase"], json!("Paused"));
        assert_eq!(
            seen[1].body["status"].get("observedGeneration"),
            None,
            "a paused pass does not claim the generation"
        );
    }

    #[tokio::test]
    async fn becoming_ready_publishes_an_event_and_an_unchanged_status_is_not_rewritten() {
        let c = running(cluster(json!({})), 3);
        let mut fresh = c.clone();
        fresh.status = None;
        fresh.status = Some(FlyMQClusterStatus {
            cluster_id: Some("fake".into()),
            ..Default::default()
        });
        let mut steps = pass_on(existing_sts(3, 3), existing_sts(3, 3));
        steps.push(status_step(&fresh));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run(fresh.clone(), steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_READY));
        assert_eq!(seen[13].body["reason"], json!("ClusterReady"));
        assert_eq!(seen[12].body["status"]["leader"], json!("demo-0"));
        assert_eq!(seen[12].body["status"]["members"].as_array().map(Vec::len), Some(3));

        // Second pass: the stored status is what the operator would write.
        let mut again = fresh;
        again.status = Some(serde_json::from_value(seen[12].body["status"].clone()).expect("status"));
        let steps = pass_on(existing_sts(3, 3), existing_sts(3, 3));
        let (result, seen) = run(again, steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_READY));
        assert_eq!(seen.len(), 12, "no status write and no event when nothing changed");
    }

    #[tokio::test]
    async fn a_service_monitor_the_cluster_cannot_hold_is_reported_and_nothing_is_asked_of_the_missing_api() {
        let c = running(cluster(json!({"metrics": {"serviceMonitor": {"enabled": true}}})), 3);
        let mut steps = pass_on(existing_sts(3, 3), existing_sts(3, 3));
        steps.push(status_step(&c));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run(c, steps).await;

        // Any request to monitoring.coreos.com would have hung the reconcile.
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_READY));
        assert!(seen.iter().all(|s| !s.path.contains("monitoring.coreos.com")));
        let status = &sent(&seen, "PATCH", STATUS).body["status"];
        assert_eq!(cond(status, "Ready")["status"], json!("True"), "the brokers run");
        let degraded = cond(status, "Degraded");
        assert_eq!(degraded["reason"], json!("ServiceMonitorUnavailable"));
        assert!(
            degraded["message"]
                .as_str()
                .unwrap_or_default()
                .contains("install the Prometheus Operator or set metrics.serviceMonitor.enabled: false")
        );
    }

    /// A pass over a running cluster with both optional APIs served: the
    /// cluster, the context and the requests up to the sweep's
    /// ServiceMonitor list, answered with `monitors(cluster uid)`.
    fn sweep_pass(monitors: impl FnOnce(&str) -> Reply) -> (FlyMQCluster, Arc<Context>, Handle, Vec<Step>) {
        let c = running(cluster(json!({})), 3);
        let (ctx, handle) = context_serving(
            &broker(3),
            Served {
                service_monitor: true,
                certificate: true,
            },
        );
        let mut steps = pass_on(existing_sts(3, 3), existing_sts(3, 3));
        steps.push(step("GET", MONITORS, monitors(c.metadata.uid.as_deref().expect("uid"))));
        (c, ctx, handle, steps)
    }

    #[tokio::test]
    async fn orphans_are_swept_by_label_and_owner_on_every_pass() {
        let monitor = |name: &str, owner_uid: &str| {
            json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                   "metadata": {"name": name, "namespace": "prod", "ownerReferences": [
                       {"apiVersion": "flymq.io/v1alpha1", "kind": "FlyMQCluster", "name": "demo",
                        "uid": owner_uid, "controller": true}]}})
        };
        let (c, ctx, handle, mut steps) = sweep_pass(|uid| {
            Reply::Json(
                json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitorList",
                               "metadata": {}, "items": [monitor("demo", uid), monitor("other", "someone-else")]}),
            )
        });
        steps.push(step(
            "DELETE",
            MONITOR,
            Reply::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
        ));
        // cert-manager was uninstalled since the last discovery: the API
        // server's plain-text answer for an unserved type is not an error.
        steps.push(step("GET", CERTIFICATES, Reply::Text(404, "404 page not found\n")));
        steps.push(status_step(&c));
        let (result, seen) = run_ctx(ctx, handle, c, steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_READY));
        let list = sent(&seen, "GET", MONITORS);
        assert!(
            list.query.contains("app.kubernetes.io%2Fmanaged-by%3Dflymq-operator")
                || list.query.contains("app.kubernetes.io/managed-by=flymq-operator"),
            "{}",
            list.query
        );
        assert_eq!(
            seen.iter().filter(|s| s.method == "DELETE").count(),
            1,
            "the ServiceMonitor of another owner is left alone"
        );
    }

    /// A pass whose ServiceMonitor list is answered with `refusal`,
    /// cert-manager's Certificates listed empty after it when
    /// `then_certificates`.
    async fn sweep_meets(refusal: Reply, then_certificates: bool) -> (Result<Action, Error>, Vec<Seen>) {
        let (c, ctx, handle, mut steps) = sweep_pass(|_| refusal);
        if then_certificates {
            steps.push(step(
                "GET",
                CERTIFICATES,
                Reply::Json(json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateList",
                                   "metadata": {}, "items": []})),
            ));
            steps.push(status_step(&c));
        }
        run_ctx(ctx, handle, c, steps).await
    }

    #[tokio::test]
    async fn a_sweep_not_allowed_to_list_a_kind_skips_it() {
        // The chart's RBAC for ServiceMonitors is off: nothing of ours can
        // be there, and the pass goes on to the next kind.
        let (result, seen) = sweep_meets(Reply::Failure(403, "Forbidden"), true).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_READY));
        sent(&seen, "GET", CERTIFICATES);
        assert!(seen.iter().all(|s| s.method != "DELETE"));
    }

    #[tokio::test]
    async fn a_sweep_whose_list_fails_reports_what_it_was_listing() {
        let (result, seen) = sweep_meets(Reply::Failure(500, "InternalError"), false).await;
        let err = result.expect_err("the pass fails");
        assert!(
            err.to_string().contains("listing servicemonitors in prod"),
            "the error says what failed: {err}"
        );
        assert!(seen.iter().all(|s| s.method != "DELETE"), "nothing deleted");
    }

    fn roll_steps(pods: Vec<Value>) -> Vec<Step> {
        let mut steps = vec![
            step("GET", STS, Reply::Json(rolling_sts(1))),
            step("GET", ADMIN_SECRET, Reply::NotFound),
            step("GET", CLUSTER_SECRET, Reply::NotFound),
        ];
        steps.extend(applies_with(true, Some(rolling_sts(1))));
        steps.push(step("GET", PODS, pod_list(pods)));
        steps
    }

    #[tokio::test]
    async fn a_roll_waits_for_the_restarted_broker_to_catch_up() {
        let c = running(cluster(json!({})), 3);
        let fake = broker(3);
        fake.members.lock().expect("lock")[2].role = "learner".into();
        let mut steps = roll_steps(vec![
            pod(0, "demo-r1", true),
            pod(1, "demo-r1", true),
            pod(2, "demo-r2", true),
        ]);
        steps.push(status_step(&c));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run_with(&fake, c, steps).await;

        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_PROGRESS));
        assert_eq!(
            fake.calls(),
            vec!["ClusterStatus"],
            "no leadership moved, no pod deleted"
        );
        assert!(seen.iter().all(|s| s.method != "DELETE"));
        let pods = sent(&seen, "GET", PODS);
        assert!(pods.query.contains("labelSelector="), "{}", pods.query);
        let status = &sent(&seen, "PATCH", STATUS).body["status"];
        let progressing = cond(status, "Progressing");
        assert_eq!(
            (&progressing["status"], &progressing["reason"], &progressing["message"]),
            (
                &json!("True"),
                &json!("WaitingForCatchUp"),
                &json!("1/3 brokers updated; waiting for catch-up: broker 2 is a learner (catching up)")
            )
        );
        assert_eq!(cond(status, "CatchingUp")["status"], json!("True"));
        assert_eq!(cond(status, "Ready")["status"], json!("False"), "rolling out");
    }

    #[tokio::test]
    async fn a_caught_up_cluster_restarts_the_next_follower_after_moving_its_leaderships() {
        let c = running(cluster(json!({})), 3);
        let fake = broker(3);
        let mut steps = roll_steps(vec![
            pod(0, "demo-r1", true),
            pod(1, "demo-r1", true),
            pod(2, "demo-r2", true),
        ]);
        let by_then = fake.clone();
        steps.push(
            step(
                "DELETE",
                "/api/v1/namespaces/prod/pods/demo-1",
                Reply::Json(pod(1, "demo-r1", true)),
            )
            .checking(move || {
                assert_eq!(
                    by_then.calls(),
                    vec!["ClusterStatus", "TransferLeadership from 1"],
                    "leaderships move before the pod goes"
                );
            }),
        );
        steps.push(status_step(&c));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run_with(&fake, c, steps).await;

        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_PROGRESS));
        let progressing = cond(&sent(&seen, "PATCH", STATUS).body["status"], "Progressing");
        assert_eq!(
            (&progressing["reason"], &progressing["message"]),
            (&json!("Rolling"), &json!("1/3 brokers updated; restarting demo-1"))
        );
    }

    #[tokio::test]
    async fn the_metadata_leader_is_restarted_last() {
        let c = running(cluster(json!({})), 3);
        let fake = broker(3);
        let mut steps = roll_steps(vec![
            pod(0, "demo-r1", true),
            pod(1, "demo-r2", true),
            pod(2, "demo-r2", true),
        ]);
        steps.push(step(
            "DELETE",
            "/api/v1/namespaces/prod/pods/demo-0",
            Reply::Json(pod(0, "demo-r1", true)),
        ));
        steps.push(status_step(&c));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, _) = run_with(&fake, c, steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_PROGRESS));
        assert_eq!(fake.calls(), vec!["ClusterStatus", "TransferLeadership from 0"]);
        assert!(
            fake.members.lock().expect("lock")[1].is_metadata_leader,
            "the leadership moved before the leader's pod went"
        );
    }

    #[tokio::test]
    async fn a_roll_that_would_lose_quorum_is_refused_with_a_condition() {
        let c = running(cluster(json!({})), 3);
        let fake = broker(3);
        fake.members.lock().expect("lock")[2].health = "down".into();
        let mut steps = roll_steps(vec![
            pod(0, "demo-r1", true),
            pod(1, "demo-r1", true),
            pod(2, "demo-r1", true),
        ]);
        steps.push(status_step(&c));
        steps.push(step("POST", EVENTS, Reply::Echo));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run_with(&fake, c, steps).await;
        assert!(result.is_ok());
        assert!(seen.iter().all(|s| s.method != "DELETE"), "no pod deleted");
        let degraded = cond(&sent(&seen, "PATCH", STATUS).body["status"], "Degraded");
        assert_eq!(degraded["reason"], json!("RollBlocked"));
        assert!(
            degraded["message"]
                .as_str()
                .unwrap_or_default()
                .contains("would leave 1 of 3 voters up, below the quorum of 2"),
            "{degraded}"
        );
    }

    const CA_SECRET: &str = "/api/v1/namespaces/prod/secrets/demo-ca";
    const BROKER_TLS: &str = "/api/v1/namespaces/prod/secrets/demo-broker-tls";
    const BUNDLE: &str = "/api/v1/namespaces/prod/secrets/demo-ca-bundle";
    const KEYS: &str = "/api/v1/namespaces/prod/secrets/keys";
    const ENCRYPTION: &str = "/api/v1/namespaces/prod/secrets/demo-encryption";

    /// The applies of a pass with `extra` Secrets after the generated ones.
    fn applies_plus(extra: &[&'static str], sts: Option<Value>) -> Vec<Step> {
        let mut s = applies_with(true, sts);
        let at = s
            .iter()
            .position(|st| st.path == CLUSTER_SECRET)
            .expect("cluster secret")
            + 1;
        for (i, path) in extra.iter().enumerate() {
            s.insert(at + i, step("PATCH", path, Reply::Echo));
        }
        s
    }

    fn secret_json(name: &str, data: &[(&str, &str)]) -> Value {
        use base64::Engine;
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    json!(base64::engine::general_purpose::STANDARD.encode(v)),
                )
            })
            .collect();
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "prod"}, "data": data})
    }

    fn decoded(secret: &Value, key: &str) -> String {
        use base64::Engine;
        let b64 = secret["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {secret}"));
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).expect("base64")).expect("utf8")
    }

    fn env_of(sts: &Value) -> Vec<Value> {
        sts["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn tls_from_the_operators_ca_is_in_place_before_the_brokers_start() {
        let c = cluster(json!({"tls": {}}));
        let mut steps = vec![
            step("GET", STS, Reply::NotFound),
            step("GET", ADMIN_SECRET, Reply::NotFound),
            step("GET", CLUSTER_SECRET, Reply::NotFound),
            step("GET", CA_SECRET, Reply::NotFound),
            step("GET", BROKER_TLS, Reply::NotFound),
        ];
        steps.extend(applies_plus(&[CA_SECRET, BROKER_TLS, BUNDLE], None));
        steps.push(status_step(&c));
        let (result, seen) = run(c, steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_NOT_READY));

        let position = |path: &str| {
            seen.iter()
                .position(|s| s.method == "PATCH" && s.path == path)
                .expect(path)
        };
        assert!(position(BROKER_TLS) < position(STS), "certificates before the brokers");
        let ca = decoded(&sent(&seen, "PATCH", CA_SECRET).body, "ca.crt");
        let brokers = &sent(&seen, "PATCH", BROKER_TLS).body;
        let now = SystemTime::now();
        for entry in ["demo-0", "demo-1", "demo-2", "operator"] {
            let (cert, key) = (
                decoded(brokers, &format!("{entry}.crt")),
                decoded(brokers, &format!("{entry}.key")),
            );
            crate::pki::check_cert(cert.as_bytes(), key.as_bytes(), ca.as_bytes(), now).expect("signed by the CA");
        }
        let bundle = &sent(&seen, "PATCH", BUNDLE).body;
        assert_eq!(decoded(bundle, "ca.crt"), ca);
        assert_eq!(
            bundle["data"].as_object().map(|d| d.len()),
            Some(1),
            "no key for applications"
        );
        let sts = &sent(&seen, "PATCH", STS).body;
        assert!(
            env_of(sts).contains(&json!({"name": "FLYMQ_TLS_CERT_FILE", "value": "/etc/flymq/tls/$(POD_NAME).crt"}))
        );
        let config = &sent(&seen, "PATCH", CONFIG_MAP).body["data"]["flymq.yaml"];
        assert!(
            config.as_str().unwrap_or_default().contains("tls_enabled: true"),
            "{config}"
        );
    }

    #[tokio::test]
    async fn a_tls_secret_edited_to_garbage_is_refused_and_the_brokers_are_left_alone() {
        let c = running(cluster(json!({"tls": {"secretName": "mine"}})), 3);
        let garbage = secret_json(
            "mine",
            &[
                ("tls.crt", "garbage"),
                ("tls.key", "-----BEGIN PRIVATE KEY-----\nhush\n"),
                ("ca.crt", "junk"),
            ],
        );
        let steps = vec![
            step("GET", STS, Reply::Json(existing_sts(3, 3))),
            step("GET", ADMIN_SECRET, Reply::NotFound),
            step("GET", CLUSTER_SECRET, Reply::NotFound),
            step("GET", BROKER_TLS, Reply::NotFound),
            step("GET", "/api/v1/namespaces/prod/secrets/mine", Reply::Json(garbage)),
            status_step(&c),
            step("POST", EVENTS, Reply::Echo),
            step("POST", EVENTS, Reply::Echo),
        ];
        let (result, seen) = run(c, steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_NOT_SUPPORTED));
        assert!(
            seen.iter().all(|s| s.method != "PATCH" || s.path == STATUS),
            "nothing applied half-way: {:?}",
            seen.iter().map(|s| (&s.method, &s.path)).collect::<Vec<_>>()
        );
        let status = &sent(&seen, "PATCH", STATUS).body["status"];
        let ready = cond(status, "Ready");
        assert_eq!(ready["reason"], json!("TlsSecretInvalid"));
        let message = ready["message"].as_str().unwrap_or_default();
        assert!(
            message
                .starts_with("Secret prod/mine is unusable: certificate is not a PEM certificate; nothing was applied"),
            "{message}"
        );
        let event = &seen[6].body;
        assert_eq!(
            (&event["type"], &event["reason"]),
            (&json!("Warning"), &json!("TlsSecretInvalid"))
        );
        for s in &seen {
            let text = s.body.to_string();
            assert!(!text.contains("hush") && !text.contains("PRIVATE KEY"), "{text}");
        }
    }

    #[tokio::test]
    async fn cert_manager_gets_its_certificate_and_the_brokers_wait_for_it() {
        let fake = broker(3);
        let served = Served {
            certificate: true,
            ..Served::default()
        };
        let (ctx, handle) = context_serving(&fake, served);
        let c = cluster(json!({"tls": {"certManager": {"issuerRef": {"name": "ca"}}}}));
        let certificate = "/apis/cert-manager.io/v1/namespaces/prod/certificates/demo-tls";
        let steps = vec![
            step("GET", STS, Reply::NotFound),
            step("GET", ADMIN_SECRET, Reply::NotFound),
            step("GET", CLUSTER_SECRET, Reply::NotFound),
            step("GET", BROKER_TLS, Reply::NotFound),
            step("GET", "/api/v1/namespaces/prod/secrets/demo-tls", Reply::NotFound),
            step("PATCH", certificate, Reply::Echo),
            status_step(&c),
        ];
        let (result, seen) = run_ctx(ctx, handle, c, steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_PROGRESS));
        let cert = &sent(&seen, "PATCH", certificate).body;
        let names = cert["spec"]["dnsNames"].as_array().cloned().unwrap_or_default();
        assert!(names.contains(&json!("demo-headless.prod.svc")), "{names:?}");
        let status = &sent(&seen, "PATCH", STATUS).body["status"];
        assert_eq!(cond(status, "Progressing")["reason"], json!("WaitingForCertificate"));
        assert_eq!(cond(status, "Degraded")["status"], json!("False"));
    }

    const K1: &str = "00000001:1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "00000002:2222222222222222222222222222222222222222222222222222222222222222";

    fn encrypted() -> FlyMQCluster {
        cluster(json!({"encryption": {"keySecretRef": {"name": "keys", "key": "hex"}}}))
    }

    #[tokio::test]
    async fn encryption_keys_are_checked_copied_and_their_ids_recorded() {
        let c = encrypted();
        let mut steps = vec![
            step("GET", STS, Reply::NotFound),
            step("GET", ADMIN_SECRET, Reply::NotFound),
            step("GET", CLUSTER_SECRET, Reply::NotFound),
            step("GET", KEYS, Reply::Json(secret_json("keys", &[("hex", K1)]))),
        ];
        steps.extend(applies_plus(&[ENCRYPTION], None));
        steps.push(status_step(&c));
        let (result, seen) = run(c, steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_NOT_READY));
        assert_eq!(decoded(&sent(&seen, "PATCH", ENCRYPTION).body, "keys"), K1);
        let sts = &sent(&seen, "PATCH", STS).body;
        let key_env = env_of(sts)
            .into_iter()
            .find(|e| e["name"] == json!("FLYMQ_ENCRYPTION_KEY"))
            .expect("FLYMQ_ENCRYPTION_KEY");
        let reference = &key_env["valueFrom"]["secretKeyRef"];
        assert_eq!(
            (&reference["name"], &reference["key"]),
            (&json!("demo-encryption"), &json!("keys")),
            "{key_env}"
        );
        assert_eq!(
            sts["spec"]["template"]["metadata"]["annotations"]["flymq.io/encryption-key-ids"],
            json!("00000001")
        );
        let status = &sent(&seen, "PATCH", STATUS).body["status"];
        assert_eq!(status["encryptionKeyIds"], json!(["00000001"]));
        for s in &seen {
            if s.path != ENCRYPTION {
                assert!(!s.body.to_string().contains("11111111111111"), "{} shows a key", s.path);
            }
        }
    }

    #[tokio::test]
    async fn removing_a_used_key_or_a_key_of_the_wrong_length_is_refused() {
        let mut c = running(encrypted(), 3);
        if let Some(st) = c.status.as_mut() {
            st.encryption_key_ids = vec!["00000001".into()];
        }
        for (keys, reason, says) in [
            (
                K2.to_string(),
                "EncryptionKeyInUse",
                "no longer holds key id(s) 00000001",
            ),
            (
                format!("{K1},abc123"),
                "InvalidEncryptionKey",
                "encryption key #2 has 6 characters",
            ),
        ] {
            let steps = vec![
                step("GET", STS, Reply::Json(existing_sts(3, 3))),
                step("GET", ADMIN_SECRET, Reply::NotFound),
                step("GET", CLUSTER_SECRET, Reply::NotFound),
                step("GET", KEYS, Reply::Json(secret_json("keys", &[("hex", &keys)]))),
                status_step(&c),
                step("POST", EVENTS, Reply::Echo),
                step("POST", EVENTS, Reply::Echo),
            ];
            let (result, seen) = run(c.clone(), steps).await;
            assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_NOT_SUPPORTED));
            assert!(
                seen.iter().all(|s| s.method != "PATCH" || s.path == STATUS),
                "nothing applied"
            );
            let status = &sent(&seen, "PATCH", STATUS).body["status"];
            let ready = cond(status, "Ready");
            assert_eq!(ready["reason"], json!(reason));
            let message = ready["message"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{message}");
            assert!(!message.contains("abc123") && !message.contains("2222"), "{message}");
            assert_eq!(status["encryptionKeyIds"], json!(["00000001"]), "the record stays");
        }
    }
}
