//! One reconciler for the kinds that live on the brokers: `Topic`, `User`
//! and `ACL`. It hands the resource to an [`AdminSync`] implementation and
//! reports the outcome in the `Ready` condition.
//!
//! Every resource carries the finalizer [`FINALIZER`]: when it is deleted,
//! the broker-side object is deleted first (unless `deletionPolicy` is
//! `Retain`, or the FlyMQCluster is gone), then the finalizer is removed.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::cluster::{Clock, FIELD_MANAGER};
use super::error::Error;
use super::status::{READY, make_condition};
use crate::admin::{AdminError, AdminSync, ClusterEndpoint, Synced};
use crate::builders::BuildError;
use crate::crd::{Acl, AdminObjectStatus, DeletionPolicy, FlyMQCluster, Topic, User};
use crate::metrics::Metrics;

/// The finalizer that makes deleting a resource delete its broker-side object.
pub const FINALIZER: &str = "flymq.io/finalizer";
/// Periodic resync: drift on the brokers is corrected at least this often.
pub const RESYNC: Duration = Duration::from_secs(300);
/// How often a resource the brokers do not support yet is tried again (a
/// broker upgrade may have added it).
pub const NOT_SUPPORTED_RETRY: Duration = Duration::from_secs(1800);
/// Retry after a transient failure (admin API unreachable, Kubernetes API).
pub const RETRY: Duration = Duration::from_secs(30);

/// A custom resource mirrored by an object on the brokers.
pub trait AdminObject:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Name of the FlyMQCluster (same namespace).
    fn cluster_name(&self) -> &str;
    /// The current status, if any.
    fn admin_status(&self) -> Option<&AdminObjectStatus>;
    /// What deleting the resource does to the broker-side object.
    fn deletion_policy(&self) -> DeletionPolicy;
    /// The name of the broker-side object when two resources could claim
    /// the same one (a Topic's `topicName`); `None` when names cannot clash.
    fn broker_name(&self) -> Option<String> {
        None
    }
    /// Whether resources of this kind read Secrets (the controller then
    /// watches Secrets).
    const READS_SECRETS: bool = false;
    /// Secrets (same namespace) the resource reads: a change to one of them
    /// reconciles it (a User's password Secret).
    fn secret_names(&self) -> Vec<String> {
        Vec::new()
    }
}

impl AdminObject for Topic {
    fn cluster_name(&self) -> &str {
        &self.spec.cluster_ref.name
    }
    fn admin_status(&self) -> Option<&AdminObjectStatus> {
        self.status.as_ref()
    }
    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy
    }
    fn broker_name(&self) -> Option<String> {
        Some(self.topic_name())
    }
}

impl AdminObject for User {
    fn cluster_name(&self) -> &str {
        &self.spec.cluster_ref.name
    }
    const READS_SECRETS: bool = true;
    fn secret_names(&self) -> Vec<String> {
        vec![self.password_secret_name()]
    }
    fn admin_status(&self) -> Option<&AdminObjectStatus> {
        self.status.as_ref()
    }
    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy
    }
}

impl AdminObject for Acl {
    fn cluster_name(&self) -> &str {
        &self.spec.cluster_ref.name
    }
    fn admin_status(&self) -> Option<&AdminObjectStatus> {
        self.status.as_ref()
    }
    /// An ACL without its resource grants nothing anyone asked for.
    fn deletion_policy(&self) -> DeletionPolicy {
        DeletionPolicy::Delete
    }
}

/// What the reconciler of one kind needs.
pub struct AdminContext<K: AdminObject> {
    /// Kubernetes client.
    pub client: Client,
    /// Keeps the broker-side objects in step.
    pub admin: Arc<dyn AdminSync<K>>,
    /// Time source for condition transitions.
    pub clock: Clock,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Every resource of the kind the controller has seen (its watch
    /// cache), to find two resources claiming one broker-side object.
    pub peers: Option<Store<DeserializeGuard<K>>>,
}

/// Condition reason of a Topic whose `topicName` an earlier Topic manages.
pub const DUPLICATE_TOPIC_NAME: &str = "DuplicateTopicName";

/// The earlier resource (by creation, then name) of the same namespace and
/// cluster that claims the same broker-side object as `obj`, if any: that
/// one manages it, `obj` makes no admin calls.
pub fn claimed_by<K: AdminObject>(obj: &K, peers: &[Arc<DeserializeGuard<K>>]) -> Option<String> {
    let name = obj.broker_name()?;
    let rank = |o: &K| (o.meta().creation_timestamp.as_ref().map(|t| t.0), o.name_any());
    let mine = rank(obj);
    peers
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|o| {
            o.namespace() == obj.namespace()
                && o.name_any() != obj.name_any()
                && o.cluster_name() == obj.cluster_name()
                && o.broker_name().as_deref() == Some(name.as_str())
                && rank(o) < mine
        })
        .min_by_key(|o| rank(o))
        .map(ResourceExt::name_any)
}

fn duplicate_of<K: AdminObject>(obj: &K, ctx: &AdminContext<K>) -> Option<String> {
    claimed_by(obj, &ctx.peers.as_ref()?.state())
}

/// The `Ready` condition's reason for a failed admin call.
pub fn failure_reason(e: &AdminError) -> &'static str {
    match e {
        AdminError::Unreachable { .. } => "AdminApiUnreachable",
        AdminError::NotSupported { .. } => "NotSupported",
        AdminError::Rejected { reason, .. } => reason,
        AdminError::Credentials { .. } => "AdminCredentialsUnavailable",
        AdminError::NotFound { .. } | AdminError::Failed { .. } => "AdminCallFailed",
    }
}

/// The status for an outcome of [`AdminSync::apply`]. A failure keeps
/// what the previous status said was applied (it still is).
pub fn status_for(
    previous: Option<&AdminObjectStatus>,
    generation: Option<i64>,
    cluster: &str,
    outcome: &Result<Synced, AdminError>,
    now: &str,
) -> AdminObjectStatus {
    match outcome {
        Ok(synced) => {
            let mut status = condition_status(
                previous,
                generation,
                true,
                "Synced",
                format!("in sync with FlyMQCluster {cluster}: {}", synced.message),
                now,
            );
            if let Some(type_) = synced.checked {
                let old = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
                let (ok, reason, message) = match &synced.warning {
                    None => (true, "AllKnown", String::new()),
                    Some(w) => (false, w.reason, w.message.clone()),
                };
                status
                    .conditions
                    .push(make_condition(old, type_, ok, reason, message, generation, now));
            }
            status.applied_roles = synced.roles.clone();
            status.password_secret = synced.password_secret.clone();
            status
        }
        Err(e) => {
            let mut status = condition_status(previous, generation, false, failure_reason(e), e.to_string(), now);
            status.applied_roles = previous.and_then(|p| p.applied_roles.clone());
            status.password_secret = previous.and_then(|p| p.password_secret.clone());
            status
        }
    }
}

fn condition_status(
    previous: Option<&AdminObjectStatus>,
    generation: Option<i64>,
    ok: bool,
    reason: &str,
    message: String,
    now: &str,
) -> AdminObjectStatus {
    let previous = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    AdminObjectStatus {
        observed_generation: generation,
        conditions: vec![make_condition(previous, READY, ok, reason, message, generation, now)],
        ..AdminObjectStatus::default()
    }
}

/// Publishes a Warning event on `obj` (failures are only logged: an event
/// is a courtesy, the status is the record).
async fn warn_event<K: AdminObject>(client: &Client, obj: &K, reason: &str, note: String) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: None,
        },
    );
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &obj.object_ref(&())).await {
        warn!(object = %obj.name_any(), error = %e, "cannot publish event");
    }
}

/// Writes `status` unless the object already has it; says whether it wrote.
async fn write_status<K: AdminObject>(api: &Api<K>, obj: &K, status: AdminObjectStatus) -> Result<bool, Error> {
    if obj.admin_status() == Some(&status) {
        return Ok(false);
    }
    let name = obj.name_any();
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube(format!(
            "updating status of {} {}/{name}",
            K::kind(&()),
            obj.namespace().unwrap_or_default()
        )))?;
    Ok(true)
}

fn endpoint<K: AdminObject>(obj: &K, ns: &str) -> ClusterEndpoint {
    ClusterEndpoint {
        namespace: ns.to_string(),
        name: obj.cluster_name().to_string(),
    }
}

/// Why no broker of `cluster` can take an admin call, if none can: the
/// FlyMQCluster is gone or being deleted, or it is scaled to zero (its
/// `spec.replicas`, or its StatefulSet's, is 0, or the StatefulSet does not
/// exist). A cluster whose brokers merely are not ready is not such a case:
/// the delete is retried until they are.
async fn no_brokers(client: &Client, ns: &str, cluster: &str) -> Result<Option<&'static str>, Error> {
    let clusters: Api<FlyMQCluster> = Api::namespaced(client.clone(), ns);
    let Some(c) = clusters
        .get_opt(cluster)
        .await
        .map_err(Error::kube(format!("reading FlyMQCluster {ns}/{cluster}")))?
    else {
        return Ok(Some("its FlyMQCluster does not exist"));
    };
    if c.metadata.deletion_timestamp.is_some() {
        return Ok(Some("its FlyMQCluster is being deleted"));
    }
    if c.spec.replicas < 1 {
        return Ok(Some("its FlyMQCluster is scaled to zero brokers"));
    }
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = statefulsets
        .get_opt(cluster)
        .await
        .map_err(Error::kube(format!("reading StatefulSet {ns}/{cluster}")))?;
    Ok(match sts {
        None => Some("its FlyMQCluster has no StatefulSet (no brokers)"),
        Some(s) if s.spec.as_ref().and_then(|s| s.replicas) == Some(0) => {
            Some("its StatefulSet is scaled to zero brokers")
        }
        Some(_) => None,
    })
}

/// Reconciles one Topic, User or ACL: adds the finalizer, then applies it
/// to the brokers, or, when it is being deleted, cleans up.
pub async fn reconcile<K: AdminObject>(obj: Arc<K>, ctx: Arc<AdminContext<K>>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start_reconcile(&K::kind(&()));
    let ns = obj.namespace().ok_or(BuildError::MissingMetadata("namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let (ctx, api_ref, ns_ref) = (ctx.as_ref(), &api, ns.as_str());
    finalizer(&api, FINALIZER, obj, |event| async move {
        match event {
            Event::Apply(obj) => apply::<K>(&obj, ctx, api_ref, ns_ref).await,
            Event::Cleanup(obj) => cleanup::<K>(&obj, ctx, api_ref, ns_ref).await,
        }
    })
    .await
    .map_err(|e| Error::from_finalizer(FINALIZER, e))
}

async fn apply<K: AdminObject>(obj: &K, ctx: &AdminContext<K>, api: &Api<K>, ns: &str) -> Result<Action, Error> {
    if let Some(first) = duplicate_of(obj, ctx) {
        let kind = K::kind(&());
        let message = format!(
            "{kind} {first} (created earlier) already manages '{}' on FlyMQCluster {}; this {kind} makes no admin \
             calls: give it another name or delete it",
            obj.broker_name().unwrap_or_default(),
            obj.cluster_name()
        );
        warn!(object = %format!("{kind} {ns}/{}", obj.name_any()), %message, "duplicate");
        let status = condition_status(
            obj.admin_status(),
            obj.meta().generation,
            false,
            DUPLICATE_TOPIC_NAME,
            message,
            &(ctx.clock)(),
        );
        write_status(api, obj, status).await?;
        // Checked again soon: the earlier one may be deleted.
        return Ok(Action::requeue(RETRY));
    }
    let outcome = ctx.admin.apply(&endpoint(obj, ns), obj).await;
    let status = status_for(
        obj.admin_status(),
        obj.meta().generation,
        obj.cluster_name(),
        &outcome,
        &(ctx.clock)(),
    );
    // One event per change of the outcome, not one per resync.
    if write_status(api, obj, status).await? {
        match &outcome {
            Err(e) => warn_event(&ctx.client, obj, failure_reason(e), e.to_string()).await,
            Ok(Synced { warning: Some(w), .. }) => warn_event(&ctx.client, obj, w.reason, w.message.clone()).await,
            Ok(_) => {}
        }
    }
    match outcome {
        // Checked again soon: the missing user or role may be created.
        Ok(Synced { warning: Some(_), .. }) => Ok(Action::requeue(RETRY)),
        Ok(_) => Ok(Action::requeue(RESYNC)),
        // Not an error of this resource: wait for a broker that has it.
        Err(AdminError::NotSupported { .. }) => Ok(Action::requeue(NOT_SUPPORTED_RETRY)),
        Err(e) => Err(e.into()),
    }
}

async fn cleanup<K: AdminObject>(obj: &K, ctx: &AdminContext<K>, api: &Api<K>, ns: &str) -> Result<Action, Error> {
    let what = format!("{} {ns}/{}", K::kind(&()), obj.name_any());
    if obj.deletion_policy() == DeletionPolicy::Retain {
        info!(object = %what, "deleted; deletionPolicy Retain keeps it on the brokers");
        return Ok(Action::await_change());
    }
    if let Some(first) = duplicate_of(obj, ctx) {
        info!(object = %what, manager = %first, "deleted; the broker-side object belongs to another resource and stays");
        return Ok(Action::await_change());
    }
    let cluster = obj.cluster_name();
    if let Some(why) = no_brokers(&ctx.client, ns, cluster).await? {
        // Nothing can answer a delete; waiting for brokers would keep this
        // resource (and its namespace) from ever being deleted.
        info!(object = %what, cluster, why, "deleted; nothing to delete on the brokers");
        return Ok(Action::await_change());
    }
    match ctx.admin.delete(&endpoint(obj, ns), obj).await {
        Ok(()) => {
            info!(object = %what, "deleted from the brokers");
            Ok(Action::await_change())
        }
        Err(e) => {
            let status = condition_status(
                obj.admin_status(),
                obj.meta().generation,
                false,
                "DeletionFailed",
                format!("{e}; the resource is kept until the brokers have deleted it"),
                &(ctx.clock)(),
            );
            if write_status(api, obj, status).await? {
                warn_event(&ctx.client, obj, "DeletionFailed", e.to_string()).await;
            }
            Err(e.into())
        }
    }
}

/// [`reconcile`] behind a [`DeserializeGuard`](kube::core::DeserializeGuard):
/// a resource that does not decode is reported on itself instead of
/// stopping the controller of its kind.
pub async fn reconcile_guarded<K: AdminObject>(
    obj: Arc<kube::core::DeserializeGuard<K>>,
    ctx: Arc<AdminContext<K>>,
) -> Result<Action, Error> {
    match (&obj.0, super::guard::decoded(&obj)) {
        (_, Some(k)) => reconcile(k, ctx).await,
        (Err(invalid), None) => super::guard::report_invalid::<K>(&ctx.client, invalid, &ctx.clock).await,
        (Ok(_), None) => Ok(Action::await_change()),
    }
}

/// [`error_policy`] behind a [`DeserializeGuard`](kube::core::DeserializeGuard).
pub fn error_policy_guarded<K: AdminObject>(
    obj: Arc<kube::core::DeserializeGuard<K>>,
    error: &Error,
    ctx: Arc<AdminContext<K>>,
) -> Action {
    match super::guard::decoded(&obj) {
        Some(k) => error_policy(k, error, ctx),
        None => Action::requeue(RETRY),
    }
}

/// Retry policy of failed Topic/User/ACL reconciles: refusals wait for the
/// next resync (or a spec change), everything else is retried soon.
pub fn error_policy<K: AdminObject>(obj: Arc<K>, error: &Error, ctx: Arc<AdminContext<K>>) -> Action {
    ctx.metrics.failed(&K::kind(&()), error.category());
    warn!(
        kind = %K::kind(&()),
        object = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
        category = error.category(),
        error = %error,
        "reconcile failed"
    );
    match error {
        Error::Admin(AdminError::Rejected { .. }) | Error::InvalidSpec(_) => Action::requeue(RESYNC),
        _ => Action::requeue(RETRY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::GrpcAdmin;
    use crate::admin::fake_broker::{self, FakeBroker};
    use crate::controller::mock::{Reply, Seen, Step, client, serve, step};
    use serde_json::{Value, json};
    use tonic::Status;

    const TOPIC: &str = "/apis/flymq.io/v1alpha1/namespaces/prod/topics/orders";
    const STATUS: &str = "/apis/flymq.io/v1alpha1/namespaces/prod/topics/orders/status";
    const CLUSTER: &str = "/apis/flymq.io/v1alpha1/namespaces/prod/flymqclusters/demo";
    const STS: &str = "/apis/apps/v1/namespaces/prod/statefulsets/demo";

    fn topic(spec: Value) -> Topic {
        let mut spec = spec;
        spec["clusterRef"] = json!({"name": "demo"});
        let mut t: Topic = serde_json::from_value(json!({
            "apiVersion": "flymq.io/v1alpha1", "kind": "Topic",
            "metadata": {"name": "orders", "namespace": "prod", "generation": 2, "uid": "u",
                         "finalizers": [FINALIZER]},
            "spec": spec
        }))
        .expect("topic");
        t.metadata.uid = Some("u".into());
        t
    }

    fn deleting(mut t: Topic) -> Topic {
        t.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        t
    }

    fn with_status(t: &Topic) -> Reply {
        Reply::WithStatus(serde_json::to_value(t).expect("json"))
    }

    fn cluster_object() -> Value {
        json!({"apiVersion": "flymq.io/v1alpha1", "kind": "FlyMQCluster",
               "metadata": {"name": "demo", "namespace": "prod"}, "spec": {}})
    }

    fn sts_object(replicas: i32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "demo", "namespace": "prod"},
               "spec": {"replicas": replicas, "selector": {}, "template": {}, "serviceName": "demo-headless"}})
    }

    async fn run<K: AdminObject>(
        obj: K,
        admin: Arc<dyn AdminSync<K>>,
        steps: Vec<Step>,
    ) -> (Result<Action, Error>, Vec<Seen>) {
        let (client, handle) = client();
        let ctx = Arc::new(AdminContext {
            client,
            admin,
            clock: Arc::new(|| "T0".to_string()),
            metrics: Arc::new(Metrics::new()),
            peers: None,
        });
        let server = tokio::spawn(serve(handle, steps));
        let result = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(obj), ctx))
            .await
            .expect("reconcile hung on an unscripted request");
        (result, server.await.expect("fake API server"))
    }

    fn broker() -> (Arc<FakeBroker>, Arc<GrpcAdmin>) {
        let fake = Arc::new(FakeBroker::default());
        let admin = Arc::new(GrpcAdmin::new(fake_broker::serve(fake.clone())));
        (fake, admin)
    }

    fn ready(seen: &Seen) -> &Value {
        &seen.body["status"]["conditions"][0]
    }

    #[tokio::test]
    async fn the_finalizer_is_added_before_anything_reaches_the_brokers() {
        let mut t = topic(json!({}));
        t.metadata.finalizers = None;
        let (fake, admin) = broker();
        let (result, seen) = run(
            t.clone(),
            admin,
            vec![step(
                "PATCH",
                TOPIC,
                Reply::Json(serde_json::to_value(&t).expect("json")),
            )],
        )
        .await;
        assert_eq!(result.expect("reconciles"), Action::await_change());
        assert_eq!(
            seen[0].body,
            json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                   {"op": "add", "path": "/metadata/finalizers", "value": ["flymq.io/finalizer"]}])
        );
        assert!(
            fake.calls().is_empty(),
            "the brokers are not touched before the finalizer is in place"
        );
    }

    #[tokio::test]
    async fn synced_topic_reports_what_the_brokers_hold_and_resyncs() {
        let t = topic(json!({"partitions": 6, "config": {"retention": {"time": "7d"}}}));
        let (fake, admin) = broker();
        let (result, seen) = run(t.clone(), admin, vec![step("PATCH", STATUS, with_status(&t))]).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(RESYNC));
        assert_eq!(fake.topics.lock().expect("lock")["orders"].partitions, 6);
        let ready = ready(&seen[0]);
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("True"), Some("Synced"))
        );
        assert_eq!(
            ready["message"],
            json!(
                "in sync with FlyMQCluster demo: topic 'orders': 6 partitions, replication factor 3, retention 7d, no size limit"
            )
        );
        assert_eq!(seen[0].body["status"]["observedGeneration"], json!(2));
    }

    #[tokio::test]
    async fn an_unchanged_status_is_not_rewritten() {
        let mut t = topic(json!({}));
        let (_, admin) = broker();
        let (_, seen) = run(t.clone(), admin.clone(), vec![step("PATCH", STATUS, with_status(&t))]).await;
        t.status = Some(serde_json::from_value(seen[0].body["status"].clone()).expect("status"));
        let (result, seen) = run(t, admin, vec![]).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(RESYNC));
        assert!(seen.is_empty());
    }

    #[tokio::test]
    async fn shrinking_partitions_is_reported_and_not_retried_hot() {
        let t = topic(json!({"partitions": 2}));
        let (fake, admin) = broker();
        fake.topics.lock().expect("lock").insert(
            "orders".into(),
            flymq_proto::grpc::admin::TopicInfo {
                name: "orders".into(),
                partitions: 4,
                replication_factor: 3,
                config: None,
                partition_info: Vec::new(),
            },
        );
        let (result, seen) = run(t.clone(), admin, vec![step("PATCH", STATUS, with_status(&t))]).await;
        let err = result.expect_err("refused");
        assert_eq!(err.category(), "admin_rejected");
        let ready = ready(&seen[0]);
        assert_eq!(ready["status"], json!("False"));
        assert_eq!(ready["reason"], json!("PartitionsCannotShrink"));
        assert!(
            ready["message"]
                .as_str()
                .unwrap_or_default()
                .contains("set spec.partitions to 4 or more"),
            "{ready}"
        );
        let (client, _handle) = client();
        let ctx = Arc::new(AdminContext::<Topic> {
            client,
            admin: Arc::new(GrpcAdmin::default()),
            clock: Arc::new(|| "T0".to_string()),
            metrics: Arc::new(Metrics::new()),
            peers: None,
        });
        assert_eq!(
            error_policy(Arc::new(t.clone()), &err, ctx.clone()),
            Action::requeue(RESYNC)
        );
        let unreachable = Error::Admin(AdminError::Unreachable {
            operation: "CreateTopic",
            message: "x".into(),
        });
        assert_eq!(error_policy(Arc::new(t), &unreachable, ctx), Action::requeue(RETRY));
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_reported_and_retried() {
        let t = topic(json!({}));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let (result, seen) = run(
            t.clone(),
            Arc::new(GrpcAdmin::new(url)),
            vec![step("PATCH", STATUS, with_status(&t))],
        )
        .await;
        assert_eq!(result.expect_err("unreachable").category(), "admin_unavailable");
        assert_eq!(ready(&seen[0])["reason"], json!("AdminApiUnreachable"));
    }

    #[tokio::test]
    async fn deleting_with_policy_delete_deletes_the_topic_then_the_finalizer() {
        let t = deleting(topic(json!({"deletionPolicy": "Delete"})));
        let (fake, admin) = broker();
        fake.topics.lock().expect("lock").insert(
            "orders".into(),
            flymq_proto::grpc::admin::TopicInfo {
                name: "orders".into(),
                partitions: 1,
                replication_factor: 3,
                config: None,
                partition_info: Vec::new(),
            },
        );
        let steps = vec![
            step("GET", CLUSTER, Reply::Json(cluster_object())),
            step("GET", STS, Reply::Json(sts_object(3))),
            step("PATCH", TOPIC, Reply::Json(serde_json::to_value(&t).expect("json"))),
        ];
        let (result, seen) = run(t, admin, steps).await;
        assert_eq!(result.expect("cleaned up"), Action::await_change());
        assert_eq!(fake.calls(), vec!["DeleteTopic orders"]);
        assert!(fake.topics.lock().expect("lock").is_empty());
        assert_eq!(
            seen[2].body,
            json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "flymq.io/finalizer"},
                   {"op": "remove", "path": "/metadata/finalizers/0"}])
        );
    }

    #[tokio::test]
    async fn deleting_with_policy_retain_keeps_the_topic_on_the_brokers() {
        let t = deleting(topic(json!({})));
        assert_eq!(t.spec.deletion_policy, DeletionPolicy::Retain, "the Topic default");
        let (fake, admin) = broker();
        let steps = vec![step(
            "PATCH",
            TOPIC,
            Reply::Json(serde_json::to_value(&t).expect("json")),
        )];
        let (result, seen) = run(t, admin, steps).await;
        assert_eq!(result.expect("cleaned up"), Action::await_change());
        assert!(fake.calls().is_empty());
        assert_eq!(seen[0].body[1]["op"], json!("remove"));
    }

    #[tokio::test]
    async fn deleting_after_the_cluster_is_gone_only_removes_the_finalizer() {
        let t = deleting(topic(json!({"deletionPolicy": "Delete"})));
        let (fake, admin) = broker();
        let steps = vec![
            step("GET", CLUSTER, Reply::NotFound),
            step("PATCH", TOPIC, Reply::Json(serde_json::to_value(&t).expect("json"))),
        ];
        let (result, _) = run(t, admin, steps).await;
        assert_eq!(result.expect("cleaned up"), Action::await_change());
        assert!(fake.calls().is_empty());
    }

    #[tokio::test]
    async fn deleting_while_the_cluster_has_no_brokers_only_removes_the_finalizer() {
        let mut being_deleted = cluster_object();
        being_deleted["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        being_deleted["metadata"]["finalizers"] = json!(["example.com/hold"]);
        let cases: Vec<(&str, Vec<Step>)> = vec![
            ("being deleted", vec![step("GET", CLUSTER, Reply::Json(being_deleted))]),
            (
                "StatefulSet at 0",
                vec![
                    step("GET", CLUSTER, Reply::Json(cluster_object())),
                    step("GET", STS, Reply::Json(sts_object(0))),
                ],
            ),
            (
                "no StatefulSet",
                vec![
                    step("GET", CLUSTER, Reply::Json(cluster_object())),
                    step("GET", STS, Reply::NotFound),
                ],
            ),
        ];
        for (case, mut steps) in cases {
            let t = deleting(topic(json!({"deletionPolicy": "Delete"})));
            let (fake, admin) = broker();
            steps.push(step(
                "PATCH",
                TOPIC,
                Reply::Json(serde_json::to_value(&t).expect("json")),
            ));
            let (result, seen) = run(t, admin, steps).await;
            assert_eq!(result.expect("cleaned up"), Action::await_change(), "{case}");
            assert!(fake.calls().is_empty(), "{case}: no admin call");
            assert_eq!(seen.last().expect("patch").body[1]["op"], json!("remove"), "{case}");
        }
    }

    #[tokio::test]
    async fn a_failed_delete_keeps_the_finalizer_and_says_why() {
        let t = deleting(topic(json!({"deletionPolicy": "Delete"})));
        let (fake, admin) = broker();
        fake.fail("DeleteTopic", Status::unavailable("no metadata leader"));
        let steps = vec![
            step("GET", CLUSTER, Reply::Json(cluster_object())),
            step("GET", STS, Reply::Json(sts_object(3))),
            step("PATCH", STATUS, with_status(&t)),
        ];
        let (result, seen) = run(t, admin, steps).await;
        assert_eq!(result.expect_err("retried").category(), "admin_unavailable");
        let ready = ready(&seen[2]);
        assert_eq!(ready["reason"], json!("DeletionFailed"));
        assert!(
            ready["message"]
                .as_str()
                .unwrap_or_default()
                .contains("no metadata leader"),
            "{ready}"
        );
        assert_eq!(seen.len(), 3, "the finalizer stays");
    }

    fn named(name: &str, topic_name: Option<&str>, created: i64) -> Arc<DeserializeGuard<Topic>> {
        let mut t = topic(json!({}));
        t.metadata.name = Some(name.into());
        t.spec.topic_name = topic_name.map(String::from);
        t.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(created).expect("time"),
        ));
        Arc::new(DeserializeGuard(Ok(t)))
    }

    #[test]
    fn the_earlier_topic_claims_a_topic_name() {
        let first = named("orders", None, 100);
        let second = named("orders-copy", Some("orders"), 200);
        let other = named("audit", None, 50);
        let peers = vec![first.clone(), second.clone(), other];
        let get = |g: &Arc<DeserializeGuard<Topic>>| g.0.clone().expect("valid");
        assert_eq!(claimed_by(&get(&first), &peers), None, "the first one manages it");
        assert_eq!(claimed_by(&get(&second), &peers).as_deref(), Some("orders"));
        // Another cluster's topic of the same name is no clash.
        let mut elsewhere = get(&second);
        elsewhere.spec.cluster_ref.name = "other".into();
        assert_eq!(claimed_by(&elsewhere, &peers), None);
    }

    #[tokio::test]
    async fn a_duplicate_topic_name_gets_a_condition_and_no_admin_calls() {
        use kube::runtime::{reflector, watcher};
        let (reader, mut writer) = reflector::store::<DeserializeGuard<Topic>>();
        let first = named("orders", None, 100);
        let mut dup = topic(json!({"topicName": "orders", "deletionPolicy": "Delete"}));
        dup.metadata.name = Some("orders-copy".into());
        dup.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(200).expect("time"),
        ));
        writer.apply_watcher_event(&watcher::Event::Apply((*first).clone()));
        writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(dup.clone()))));

        let (fake, admin) = broker();
        let (kube_client, handle) = client();
        let ctx = Arc::new(AdminContext::<Topic> {
            client: kube_client,
            admin,
            clock: Arc::new(|| "T0".to_string()),
            metrics: Arc::new(Metrics::new()),
            peers: Some(reader),
        });
        let server = tokio::spawn(serve(
            handle,
            vec![step(
                "PATCH",
                "/apis/flymq.io/v1alpha1/namespaces/prod/topics/orders-copy/status",
                with_status(&dup),
            )],
        ));
        let result = reconcile(Arc::new(dup.clone()), ctx.clone()).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(RETRY));
        let seen = server.await.expect("server");
        let c = ready(&seen[0]);
        assert_eq!(
            (&c["status"], &c["reason"]),
            (&json!("False"), &json!("DuplicateTopicName"))
        );
        assert_eq!(
            c["message"],
            json!(
                "Topic orders (created earlier) already manages 'orders' on FlyMQCluster demo; this Topic makes no \
                 admin calls: give it another name or delete it"
            )
        );
        assert!(fake.calls().is_empty(), "no admin call: {:?}", fake.calls());

        // Deleting the duplicate (policy Delete) leaves the topic alone.
        let gone = deleting(dup);
        let gone_json = serde_json::to_value(&gone).expect("json");
        let (kube_client, handle) = client();
        let ctx = Arc::new(AdminContext::<Topic> {
            client: kube_client,
            admin: ctx.admin.clone(),
            clock: Arc::new(|| "T0".to_string()),
            metrics: Arc::new(Metrics::new()),
            peers: ctx.peers.clone(),
        });
        let server = tokio::spawn(serve(
            handle,
            vec![step(
                "PATCH",
                "/apis/flymq.io/v1alpha1/namespaces/prod/topics/orders-copy",
                Reply::Json(gone_json),
            )],
        ));
        let result = reconcile(Arc::new(gone), ctx).await;
        assert!(result.is_ok(), "{result:?}");
        server.await.expect("server");
        assert!(fake.calls().is_empty(), "no DeleteTopic: {:?}", fake.calls());
    }
}
