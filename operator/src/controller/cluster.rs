//! The FlyMQCluster reconciler: observe, build, apply, report.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::error::Error;
use super::status::{self, DEGRADED, Observation, Problem, READY};
use crate::admin::{AdminError, BrokerAdmin, ClusterEndpoint, ClusterInfo};
use crate::builders::{self, Desired, Inputs, Randomness, admin_secret_name, ns_name};
use crate::crd::cluster::{FlyMQCluster, FlyMQClusterStatus};
use crate::metrics::Metrics;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "flymq-operator";

/// Requeue interval while brokers are not ready yet.
pub const REQUEUE_NOT_READY: Duration = Duration::from_secs(15);
/// Periodic resync of a healthy cluster.
pub const REQUEUE_READY: Duration = Duration::from_secs(300);
/// Resync of a cluster whose spec asks for something the brokers do not
/// support: only a spec change helps, and that triggers a reconcile anyway.
pub const REQUEUE_NOT_SUPPORTED: Duration = Duration::from_secs(300);

/// Condition reason (Ready and Degraded) of a spec the brokers cannot run.
pub const NOT_SUPPORTED: &str = "NotSupported";

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
}

/// Reconciles one FlyMQCluster.
pub async fn reconcile(cluster: Arc<FlyMQCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start_reconcile("FlyMQCluster");
    let (ns, name) = ns_name(&cluster)?;
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references let Kubernetes delete the children.
        return Ok(Action::await_change());
    }

    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let current = sts_api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("reading StatefulSet {ns}/{name}")))?;

    if cluster.is_paused() {
        let obs = Observation {
            stateful_set: current.as_ref(),
            paused: true,
            ..Default::default()
        };
        publish_status(&cluster, &ctx, &obs).await?;
        return Ok(Action::await_change());
    }

    // Brokers started with settings they do not know crash-loop (or would
    // run without what was asked for): refuse before anything is applied or
    // decommissioned, and say why.
    if let Some(problem) = unsupported(&cluster) {
        let obs = Observation {
            stateful_set: current.as_ref(),
            problem: Some(problem),
            refused: true,
            ..Default::default()
        };
        publish_status(&cluster, &ctx, &obs).await?;
        return Ok(Action::requeue(REQUEUE_NOT_SUPPORTED));
    }

    let endpoint = ClusterEndpoint {
        namespace: ns.clone(),
        name: name.clone(),
    };
    // Scale-down decommissions brokers through the admin API before the
    // StatefulSet loses their pods.
    let mut effective = (*cluster).clone();
    let mut problem = None;
    let current_replicas = current.as_ref().and_then(|s| s.spec.as_ref()?.replicas);
    if let Some(cur) = current_replicas
        && cluster.spec.replicas < cur
    {
        let (keep, failure) = decommission(ctx.admin.as_ref(), &endpoint, cur, cluster.spec.replicas).await;
        effective.spec.replicas = keep;
        if let Some(e) = failure {
            let reason = match e {
                AdminError::NotSupported { .. } => "ScaleDownUnsupported",
                _ => "DecommissionFailed",
            };
            problem = Some(Problem {
                reason,
                message: format!(
                    "cannot scale from {cur} to {} brokers: decommissioning broker {} failed: {e}; keeping {keep}",
                    cluster.spec.replicas,
                    keep - 1
                ),
            });
        }
    }

    let admin_secret = admin_secret_name(&cluster, &name);
    let existing_admin_password = if cluster.spec.auth.admin_secret_name.is_none() {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        secrets
            .get_opt(&admin_secret)
            .await
            .map_err(Error::kube(format!("reading Secret {ns}/{admin_secret}")))?
            .as_ref()
            .and_then(builders::secret::stored_password)
    } else {
        None
    };

    let desired = match builders::build(
        &effective,
        &Inputs {
            existing_admin_password,
        },
        ctx.random.as_ref(),
    ) {
        Ok(d) => d,
        Err(e) => {
            let obs = Observation {
                stateful_set: current.as_ref(),
                problem: Some(Problem {
                    reason: "InvalidSpec",
                    message: e.to_string(),
                }),
                ..Default::default()
            };
            publish_status(&cluster, &ctx, &obs).await?;
            return Err(e.into());
        }
    };

    let applied = apply_all(&ctx.client, &ns, &desired).await?;
    // Optional objects switched off in the spec are removed once per spec
    // change (not on every resync: that would cost two GETs each time).
    let spec_changed = cluster.status.as_ref().and_then(|s| s.observed_generation) != cluster.metadata.generation;
    if spec_changed {
        remove_switched_off(&ctx.client, &cluster, &desired).await?;
    }
    if current.is_none() {
        info!(cluster = %format!("{ns}/{name}"), "created broker StatefulSet");
    }

    let membership = membership(ctx.admin.as_ref(), &endpoint, &applied).await;
    let obs = Observation {
        stateful_set: Some(&applied),
        problem,
        paused: false,
        refused: false,
        admin_secret_name: Some(admin_secret),
        membership: membership.as_ref(),
    };
    let new_status = publish_status(&cluster, &ctx, &obs).await?;
    let ready = status::condition(&new_status, READY).is_some_and(|c| c.status == "True");
    Ok(Action::requeue(if ready { REQUEUE_READY } else { REQUEUE_NOT_READY }))
}

/// The spec fields the current broker build cannot run with (`spec.tls`,
/// `spec.encryption`), as a problem naming them and saying how to proceed.
/// The builders still render them: that is what will be applied once the
/// brokers support them.
pub fn unsupported(cluster: &FlyMQCluster) -> Option<Problem> {
    let tls = cluster.spec.tls.is_some();
    let encryption = cluster.spec.encryption.is_some();
    let (fields, features) = match (tls, encryption) {
        (false, false) => return None,
        (true, false) => ("spec.tls is", "TLS"),
        (false, true) => ("spec.encryption is", "encryption at rest"),
        (true, true) => ("spec.tls and spec.encryption are", "TLS or encryption at rest"),
    };
    // The API server refuses removing spec.encryption (a CEL rule that
    // protects encrypted data), so that one takes a new FlyMQCluster.
    let proceed = if encryption {
        format!(
            "spec.encryption cannot be removed once set, so delete this FlyMQCluster and create it again without {} \
             to proceed (with storage.retention.whenDeleted: Retain the brokers' volumes are kept)",
            if tls {
                "spec.tls and spec.encryption"
            } else {
                "spec.encryption"
            }
        )
    } else {
        "remove spec.tls to proceed".to_string()
    };
    Some(Problem {
        reason: NOT_SUPPORTED,
        message: format!(
            "{fields} set, but this broker version does not support {features} yet; nothing was applied: {proceed}"
        ),
    })
}

/// Decommissions brokers `desired..current`, highest ordinal first, and
/// stops at the first failure. Returns how many brokers the StatefulSet
/// keeps (every broker above that number was decommissioned) and the
/// failure, if any.
async fn decommission(
    admin: &dyn BrokerAdmin,
    endpoint: &ClusterEndpoint,
    current: i32,
    desired: i32,
) -> (i32, Option<AdminError>) {
    for node in (desired..current).rev() {
        if let Err(e) = admin.decommission(endpoint, node).await {
            warn!(cluster = %format!("{}/{}", endpoint.namespace, endpoint.name), node, error = %e, "decommission failed");
            return (node + 1, Some(e));
        }
        info!(cluster = %format!("{}/{}", endpoint.namespace, endpoint.name), node, "broker decommissioned");
    }
    (desired, None)
}

/// The metadata group as the brokers report it, once at least one broker is
/// ready (before that there is nobody to ask). A failure leaves the status'
/// last known leader and members in place.
async fn membership(admin: &dyn BrokerAdmin, endpoint: &ClusterEndpoint, sts: &StatefulSet) -> Option<ClusterInfo> {
    let ready = sts.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    if ready == 0 {
        return None;
    }
    match admin.cluster_status(endpoint).await {
        Ok(info) => Some(info),
        Err(e) => {
            debug!(cluster = %format!("{}/{}", endpoint.namespace, endpoint.name), error = %e, "no cluster status");
            None
        }
    }
}

/// Server-side applies every desired object, configuration and Secrets
/// first; returns the StatefulSet as the API server stored it.
async fn apply_all(client: &Client, ns: &str, d: &Desired) -> Result<StatefulSet, Error> {
    apply(client, ns, &d.config_map).await?;
    for s in &d.secrets {
        apply(client, ns, s).await?;
    }
    if let Some(cert) = &d.certificate {
        apply_dynamic(client, ns, cert, &builders::tls::certificate_resource()).await?;
    }
    apply(client, ns, &d.headless_service).await?;
    apply(client, ns, &d.client_service).await?;
    let sts = apply(client, ns, &d.stateful_set).await?;
    apply(client, ns, &d.pdb).await?;
    if let Some(sm) = &d.service_monitor {
        apply_dynamic(client, ns, sm, &builders::monitoring::service_monitor_resource()).await?;
    }
    Ok(sts)
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

/// Deletes the ServiceMonitor and the Certificate the operator created
/// earlier if the spec no longer asks for them. Only objects controlled by
/// this FlyMQCluster are deleted; a missing object (or a missing CRD) is fine.
async fn remove_switched_off(client: &Client, cluster: &FlyMQCluster, d: &Desired) -> Result<(), Error> {
    let (ns, name) = ns_name(cluster)?;
    let mut unwanted = Vec::new();
    if d.service_monitor.is_none() {
        unwanted.push((builders::monitoring::service_monitor_resource(), name.clone()));
    }
    if d.certificate.is_none() {
        unwanted.push((builders::tls::certificate_resource(), format!("{name}-tls")));
    }
    let uid = cluster.metadata.uid.as_deref();
    for (resource, object) in unwanted {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
        let what = format!("{} {ns}/{object}", resource.kind);
        let existing = match api.get_opt(&object).await {
            Ok(Some(o)) => o,
            Ok(None) => continue,
            // Not allowed to manage this kind (e.g. the chart's
            // rbac.certManager is off): then the operator never created one.
            Err(kube::Error::Api(status)) if status.is_forbidden() => continue,
            Err(e) => return Err(Error::kube(format!("reading {what}"))(e)),
        };
        let ours = existing
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid);
        if ours {
            api.delete(&object, &Default::default())
                .await
                .map_err(Error::kube(format!("deleting {what}")))?;
            info!(object = %what, "deleted: switched off in the spec");
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
        _ => Action::requeue(REQUEUE_NOT_READY),
    }
}

#[cfg(test)]
mod tests {
    //! Reconcile sequences against a scripted fake API server
    //! (kube-rs's tower-test mock-service pattern).
    use super::*;
    use crate::admin::GrpcAdmin;
    use crate::admin::fake_broker::{self, FakeBroker};
    use crate::builders::test_support::{Fixed, cluster};
    use crate::controller::mock::{Reply, Seen, Step, client, serve, step};
    use crate::crd::cluster::PAUSED_ANNOTATION;
    use kube::runtime::events::Reporter;
    use serde_json::{Value, json};

    const NOW: &str = "2026-01-01T00:00:00Z";
    const STS: &str = "/apis/apps/v1/namespaces/prod/statefulsets/demo";
    const ADMIN_SECRET: &str = "/api/v1/namespaces/prod/secrets/demo-admin";
    const CONFIG_MAP: &str = "/api/v1/namespaces/prod/configmaps/demo-config";
    const HEADLESS: &str = "/api/v1/namespaces/prod/services/demo-headless";
    const CLIENT: &str = "/api/v1/namespaces/prod/services/demo";
    const PDB: &str = "/apis/policy/v1/namespaces/prod/poddisruptionbudgets/demo";
    const STATUS: &str = "/apis/flymq.io/v1alpha1/namespaces/prod/flymqclusters/demo/status";
    const MONITOR: &str = "/apis/monitoring.coreos.com/v1/namespaces/prod/servicemonitors/demo";
    const CERTIFICATE: &str = "/apis/cert-manager.io/v1/namespaces/prod/certificates/demo-tls";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/prod/events";

    /// A fake broker admin API with `n` members, node 0 leading.
    fn broker(n: u64) -> Arc<FakeBroker> {
        let fake = Arc::new(FakeBroker::default());
        *fake.members.lock().expect("lock") = (0..n).map(|id| FakeBroker::member(id, id == 0)).collect();
        fake
    }

    fn context(fake: &Arc<FakeBroker>) -> (Arc<Context>, crate::controller::mock::Handle) {
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
        };
        (Arc::new(ctx), handle)
    }

    /// Runs one reconcile against the scripted steps; fails if the
    /// reconciler makes a request that is not scripted.
    async fn run(c: FlyMQCluster, steps: Vec<Step>) -> (Result<Action, Error>, Vec<Seen>) {
        run_with(&broker(3), c, steps).await
    }

    /// [`run`] against the given fake broker.
    async fn run_with(fake: &Arc<FakeBroker>, c: FlyMQCluster, steps: Vec<Step>) -> (Result<Action, Error>, Vec<Seen>) {
        let (ctx, handle) = context(fake);
        let server = tokio::spawn(serve(handle, steps));
        let result = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(c), ctx))
            .await
            .expect("reconcile hung: it made a request the test did not script");
        let seen = server.await.expect("fake API server failed");
        (result, seen)
    }

    fn applies(admin_secret: bool) -> Vec<Step> {
        let mut s = vec![step("PATCH", CONFIG_MAP, Reply::Echo)];
        if admin_secret {
            s.push(step("PATCH", ADMIN_SECRET, Reply::Echo));
        }
        s.extend([
            step("PATCH", HEADLESS, Reply::Echo),
            step("PATCH", CLIENT, Reply::Echo),
            step("PATCH", STS, Reply::Echo),
            step("PATCH", PDB, Reply::Echo),
        ]);
        s
    }

    /// The look-ups for switched-off optional objects after a spec change.
    fn cleanup_lookups() -> Vec<Step> {
        vec![
            step("GET", MONITOR, Reply::NotFound),
            step("GET", CERTIFICATE, Reply::NotFound),
        ]
    }

    fn cond<'a>(status: &'a Value, type_: &str) -> &'a Value {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
            .unwrap_or(&Value::Null)
    }

    fn existing_sts(replicas: i32, ready: i32) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "demo", "namespace": "prod", "generation": 4},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
            "status": {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas,
                       "observedGeneration": 4}
        })
    }

    #[tokio::test]
    async fn new_cluster_applies_config_and_secrets_before_the_statefulset() {
        let c = cluster(json!({}));
        let mut steps = vec![
            step("GET", STS, Reply::NotFound),
            step("GET", ADMIN_SECRET, Reply::NotFound),
        ];
        steps.extend(applies(true));
        steps.extend(cleanup_lookups());
        steps.push(step(
            "PATCH",
            STATUS,
            Reply::WithStatus(serde_json::to_value(&c).expect("json")),
        ));
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
        let secret = &seen[3].body;
        assert_eq!(
            secret["data"]["password"],
            json!("eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=")
        );
        let sts = &seen[6].body;
        assert_eq!(sts["spec"]["replicas"], json!(3));
        let status = &seen[10].body["status"];
        assert_eq!(status["phase"], json!("Pending"));
        assert_eq!(status["observedGeneration"], json!(1));
        assert_eq!(cond(status, "Ready")["reason"], json!("BrokersNotReady"));
        assert_eq!(cond(status, "Ready")["lastTransitionTime"], json!(NOW));
        assert_eq!(cond(status, "Degraded")["status"], json!("False"));
        assert_eq!(seen.len(), 11, "no event for an ordinary first reconcile");
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
        ];
        steps.extend(applies(true));
        steps.extend(cleanup_lookups());
        steps.push(step(
            "PATCH",
            STATUS,
            Reply::WithStatus(serde_json::to_value(&c).expect("json")),
        ));
        let (_, seen) = run(c, steps).await;
        assert_eq!(seen[3].path, ADMIN_SECRET);
        assert_eq!(
            seen[3].body["data"]["password"],
            json!("a2VwdA=="),
            "the stored password is reused"
        );
    }

    #[tokio::test]
    async fn scale_down_on_brokers_without_decommission_is_refused_with_condition_and_event() {
        let c = cluster(json!({"replicas": 1}));
        let fake = broker(3);
        fake.fail(
            "Decommission",
            tonic::Status::unimplemented("decommission is not supported yet"),
        );
        let mut steps = vec![
            step("GET", STS, Reply::Json(existing_sts(3, 3))),
            step("GET", ADMIN_SECRET, Reply::NotFound),
        ];
        steps.extend(applies(true));
        steps.extend(cleanup_lookups());
        steps.push(step(
            "PATCH",
            STATUS,
            Reply::WithStatus(serde_json::to_value(&c).expect("json")),
        ));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run_with(&fake, c, steps).await;

        assert!(result.is_ok());
        assert_eq!(fake.calls(), vec!["Decommission 2"], "stops at the first refusal");
        let sts = &seen[6].body;
        assert_eq!(sts["spec"]["replicas"], json!(3), "the StatefulSet keeps its brokers");
        let status = &seen[10].body["status"];
        let degraded = cond(status, "Degraded");
        assert_eq!(degraded["status"], json!("True"));
        assert_eq!(degraded["reason"], json!("ScaleDownUnsupported"));
        let message = degraded["message"].as_str().unwrap_or_default();
        assert_eq!(
            message,
            "cannot scale from 3 to 1 brokers: decommissioning broker 2 failed: the broker does not support \
             decommissioning brokers yet (Decommission: decommission is not supported yet); keeping 3"
        );
        assert_eq!(status["phase"], json!("Degraded"));
        let event = &seen[11].body;
        assert_eq!(event["type"], json!("Warning"));
        assert_eq!(event["reason"], json!("ScaleDownUnsupported"));
        assert!(event["note"].as_str().unwrap_or_default().contains("does not support"));
        assert_eq!(event["regarding"]["kind"], json!("FlyMQCluster"));
    }

    #[tokio::test]
    async fn scale_down_decommissions_highest_first_before_the_statefulset_shrinks() {
        let c = cluster(json!({"replicas": 3}));
        let fake = broker(5);
        let mut steps = vec![
            step("GET", STS, Reply::Json(existing_sts(5, 5))),
            step("GET", ADMIN_SECRET, Reply::NotFound),
        ];
        let mut apply = applies(true);
        let seen_by_then = fake.clone();
        apply[4] = step("PATCH", STS, Reply::Json(existing_sts(3, 3))).checking(move || {
            assert_eq!(
                seen_by_then.calls(),
                vec!["Decommission 4", "Decommission 3"],
                "both brokers are decommissioned before the StatefulSet is shrunk"
            );
        });
        steps.extend(apply);
        steps.extend(cleanup_lookups());
        steps.push(step(
            "PATCH",
            STATUS,
            Reply::WithStatus(serde_json::to_value(&c).expect("json")),
        ));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run_with(&fake, c, steps).await;

        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_READY));
        assert_eq!(seen[6].body["spec"]["replicas"], json!(3));
        let status = &seen[10].body["status"];
        assert_eq!(cond(status, "Degraded")["status"], json!("False"));
        assert_eq!(status["leader"], json!("demo-0"));
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
    async fn a_failed_decommission_keeps_that_broker_and_reports_why() {
        let c = cluster(json!({"replicas": 3}));
        let fake = broker(5);
        fake.refuse_decommission.lock().expect("lock").insert(3);
        let mut steps = vec![
            step("GET", STS, Reply::Json(existing_sts(5, 5))),
            step("GET", ADMIN_SECRET, Reply::NotFound),
        ];
        steps.extend(applies(true));
        steps.extend(cleanup_lookups());
        steps.push(step(
            "PATCH",
            STATUS,
            Reply::WithStatus(serde_json::to_value(&c).expect("json")),
        ));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run_with(&fake, c, steps).await;

        assert!(result.is_ok());
        assert_eq!(fake.calls(), vec!["Decommission 4", "Decommission 3"]);
        assert_eq!(
            seen[6].body["spec"]["replicas"],
            json!(4),
            "broker 4 was decommissioned and goes; broker 3 stays"
        );
        let degraded = cond(&seen[10].body["status"], "Degraded");
        assert_eq!(degraded["reason"], json!("DecommissionFailed"));
        assert_eq!(
            degraded["message"],
            json!(
                "cannot scale from 5 to 3 brokers: decommissioning broker 3 failed: Decommission refused: \
                 node 3 holds the only in-sync replica of orders/0; keeping 4"
            )
        );
        assert_eq!(seen[11].body["reason"], json!("DecommissionFailed"));
    }

    #[tokio::test]
    async fn invalid_spec_reports_and_fails_with_its_category() {
        let c = cluster(json!({"config": {"data_dir": "/elsewhere"}}));
        let steps = vec![
            step("GET", STS, Reply::NotFound),
            step("GET", ADMIN_SECRET, Reply::NotFound),
            step(
                "PATCH",
                STATUS,
                Reply::WithStatus(serde_json::to_value(&c).expect("json")),
            ),
            step("POST", EVENTS, Reply::Echo),
        ];
        let (result, seen) = run(c, steps).await;
        let err = result.expect_err("invalid spec fails");
        assert_eq!(err.category(), "invalid_spec");
        let degraded = cond(&seen[2].body["status"], "Degraded");
        assert_eq!(degraded["reason"], json!("InvalidSpec"));
        assert!(degraded["message"].as_str().unwrap_or_default().contains("data_dir"));
        assert_eq!(seen[3].body["reason"], json!("InvalidSpec"));
    }

    #[tokio::test]
    async fn paused_cluster_only_reports_status() {
        let mut c = cluster(json!({}));
        c.metadata.annotations = Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
        let steps = vec![
            step("GET", STS, Reply::Json(existing_sts(3, 3))),
            step(
                "PATCH",
                STATUS,
                Reply::WithStatus(serde_json::to_value(&c).expect("json")),
            ),
        ];
        let (result, seen) = run(c, steps).await;
        assert_eq!(result.expect("reconciles"), Action::await_change());
        assert_eq!(seen[1].body["status"]["phase"], json!("Paused"));
    }

    #[tokio::test]
    async fn becoming_ready_publishes_an_event_and_an_unchanged_status_is_not_rewritten() {
        let c = cluster(json!({}));
        let mut steps = vec![
            step("GET", STS, Reply::Json(existing_sts(3, 3))),
            step("GET", ADMIN_SECRET, Reply::NotFound),
        ];
        let mut apply = applies(true);
        apply[4] = step("PATCH", STS, Reply::Json(existing_sts(3, 3)));
        steps.extend(apply);
        steps.extend(cleanup_lookups());
        steps.push(step(
            "PATCH",
            STATUS,
            Reply::WithStatus(serde_json::to_value(&c).expect("json")),
        ));
        steps.push(step("POST", EVENTS, Reply::Echo));
        let (result, seen) = run(c.clone(), steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_READY));
        assert_eq!(seen[11].body["reason"], json!("ClusterReady"));
        assert_eq!(seen[10].body["status"]["leader"], json!("demo-0"));
        assert_eq!(seen[10].body["status"]["members"].as_array().map(Vec::len), Some(3));

        // Second pass: the stored status is what the operator would write.
        let mut again = c;
        again.status = Some(serde_json::from_value(seen[10].body["status"].clone()).expect("status"));
        let mut steps = vec![
            step("GET", STS, Reply::Json(existing_sts(3, 3))),
            step("GET", ADMIN_SECRET, Reply::NotFound),
        ];
        let mut apply = applies(true);
        apply[4] = step("PATCH", STS, Reply::Json(existing_sts(3, 3)));
        steps.extend(apply);
        let (result, seen) = run(again, steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_READY));
        assert_eq!(seen.len(), 8, "no status write and no event when nothing changed");
    }

    #[tokio::test]
    async fn a_switched_off_service_monitor_is_deleted_only_if_ours() {
        let c = cluster(json!({}));
        let uid = c.metadata.uid.clone().expect("uid");
        let owned = |owner_uid: &str| {
            json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                   "metadata": {"name": "demo", "namespace": "prod", "ownerReferences": [
                       {"apiVersion": "flymq.io/v1alpha1", "kind": "FlyMQCluster", "name": "demo",
                        "uid": owner_uid, "controller": true}]}})
        };
        let mut steps = vec![
            step("GET", STS, Reply::NotFound),
            step("GET", ADMIN_SECRET, Reply::NotFound),
        ];
        steps.extend(applies(true));
        steps.push(step("GET", MONITOR, Reply::Json(owned(&uid))));
        steps.push(step(
            "DELETE",
            MONITOR,
            Reply::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
        ));
        steps.push(step("GET", CERTIFICATE, Reply::Json(owned("someone-else"))));
        steps.push(step(
            "PATCH",
            STATUS,
            Reply::WithStatus(serde_json::to_value(&c).expect("json")),
        ));
        let (result, seen) = run(c, steps).await;
        assert!(result.is_ok());
        assert_eq!(seen.len(), 12, "the Certificate of another owner is left alone");
    }

    const TLS_AND_ENCRYPTION: &str = "spec.tls and spec.encryption are set, but this broker version does not support \
        TLS or encryption at rest yet; nothing was applied: spec.encryption cannot be removed once set, so delete \
        this FlyMQCluster and create it again without spec.tls and spec.encryption to proceed (with \
        storage.retention.whenDeleted: Retain the brokers' volumes are kept)";

    #[test]
    fn unsupported_names_the_fields_and_how_to_proceed() {
        assert_eq!(unsupported(&cluster(json!({}))), None);
        let tls = unsupported(&cluster(json!({"tls": {"secretName": "demo-cert"}}))).expect("tls refused");
        assert_eq!(
            (tls.reason, tls.message.as_str()),
            (
                "NotSupported",
                "spec.tls is set, but this broker version does not support TLS yet; nothing was applied: \
                 remove spec.tls to proceed"
            )
        );
        let enc = unsupported(&cluster(
            json!({"encryption": {"keySecretRef": {"name": "demo-key", "key": "key"}}}),
        ))
        .expect("encryption refused");
        assert_eq!(
            enc.message,
            "spec.encryption is set, but this broker version does not support encryption at rest yet; nothing was \
             applied: spec.encryption cannot be removed once set, so delete this FlyMQCluster and create it again \
             without spec.encryption to proceed (with storage.retention.whenDeleted: Retain the brokers' volumes \
             are kept)"
        );
    }

    fn tls_and_encryption(replicas: i32) -> FlyMQCluster {
        cluster(json!({
            "replicas": replicas,
            "tls": {"certManager": {"issuerRef": {"name": "ca"}}},
            "encryption": {"keySecretRef": {"name": "demo-key", "key": "key"}},
        }))
    }

    #[tokio::test]
    async fn tls_or_encryption_is_refused_with_not_supported_and_nothing_is_applied() {
        let c = tls_and_encryption(3);
        let steps = vec![
            step("GET", STS, Reply::NotFound),
            step(
                "PATCH",
                STATUS,
                Reply::WithStatus(serde_json::to_value(&c).expect("json")),
            ),
            step("POST", EVENTS, Reply::Echo),
        ];
        let (result, seen) = run(c.clone(), steps).await;

        // Any further request (an apply) would have failed the reconcile:
        // the fake API server is gone after the scripted steps.
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_NOT_SUPPORTED));
        assert_eq!(REQUEUE_NOT_SUPPORTED, Duration::from_secs(300));
        let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![STS, STATUS, EVENTS],
            "no ConfigMap, Secret, Certificate or StatefulSet apply"
        );
        assert!(seen[0].body.is_null(), "the StatefulSet is only read");

        let status = &seen[1].body["status"];
        assert_eq!(status["phase"], json!("Degraded"));
        assert_eq!(status["observedGeneration"], json!(1));
        let ready = cond(status, "Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"], &ready["message"]),
            (&json!("False"), &json!("NotSupported"), &json!(TLS_AND_ENCRYPTION))
        );
        let degraded = cond(status, "Degraded");
        assert_eq!(
            (&degraded["status"], &degraded["reason"], &degraded["message"]),
            (&json!("True"), &json!("NotSupported"), &json!(TLS_AND_ENCRYPTION))
        );
        assert_eq!(degraded["lastTransitionTime"], json!(NOW));
        let progressing = cond(status, "Progressing");
        assert_eq!(
            (&progressing["status"], &progressing["reason"]),
            (&json!("False"), &json!("NotSupported"))
        );

        let event = &seen[2].body;
        assert_eq!(event["type"], json!("Warning"));
        assert_eq!(event["reason"], json!("NotSupported"));
        assert_eq!(event["note"], json!(TLS_AND_ENCRYPTION));
        assert_eq!(event["regarding"]["kind"], json!("FlyMQCluster"));
        assert_eq!(event["regarding"]["name"], json!("demo"));

        // The resync: the stored status is what the operator would write, so
        // neither the status nor the event is written again.
        let mut again = c;
        again.status = Some(serde_json::from_value(status.clone()).expect("status"));
        let (result, seen) = run(again, vec![step("GET", STS, Reply::NotFound)]).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_NOT_SUPPORTED));
        assert_eq!(seen.len(), 1, "one Warning event, not one per resync");
    }

    #[tokio::test]
    async fn tls_added_to_a_running_cluster_leaves_its_brokers_alone() {
        // A ready cluster of 5 that now asks for 3 brokers and TLS: nothing
        // is decommissioned and the StatefulSet is not touched.
        let mut c = tls_and_encryption(3);
        c.spec.encryption = None;
        let fake = broker(5);
        let mut running = cluster(json!({"replicas": 5}));
        let sts: StatefulSet = serde_json::from_value(existing_sts(5, 5)).expect("sts");
        running.status = Some(status::compute(
            &running,
            &Observation {
                stateful_set: Some(&sts),
                ..Default::default()
            },
            "2025-12-31T00:00:00Z",
        ));
        c.status = running.status.clone();
        let steps = vec![
            step("GET", STS, Reply::Json(existing_sts(5, 5))),
            step(
                "PATCH",
                STATUS,
                Reply::WithStatus(serde_json::to_value(&c).expect("json")),
            ),
            step("POST", EVENTS, Reply::Echo),
            step("POST", EVENTS, Reply::Echo),
        ];
        let (result, seen) = run_with(&fake, c, steps).await;

        assert_eq!(result.expect("reconciles"), Action::requeue(REQUEUE_NOT_SUPPORTED));
        assert!(
            fake.calls().is_empty(),
            "no broker is decommissioned: {:?}",
            fake.calls()
        );
        let status = &seen[1].body["status"];
        assert_eq!(
            (status["replicas"].clone(), status["readyReplicas"].clone()),
            (json!(5), json!(5))
        );
        let ready = cond(status, "Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"]),
            (&json!("False"), &json!("NotSupported"))
        );
        assert_eq!(
            ready["message"],
            json!(
                "spec.tls is set, but this broker version does not support TLS yet; nothing was applied: \
                 remove spec.tls to proceed"
            )
        );
        assert_eq!(cond(status, "Degraded")["reason"], json!("NotSupported"));
        assert_eq!(
            (&seen[2].body["type"], &seen[2].body["reason"]),
            (&json!("Warning"), &json!("NotSupported"))
        );
        assert_eq!(seen[3].body["reason"], json!("ClusterNotReady"));
    }
}
