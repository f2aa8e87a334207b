//! One reconciler for the kinds that live on the brokers: `Topic`, `User`
//! and `ACL`. It hands the resource to an [`AdminSync`] implementation and
//! reports the outcome in the `Ready` condition.
//!
//! With the admin API missing, the binary wires in [`crate::admin::Unavailable`]:
//! every resource then gets `Ready=False`, reason `AdminApiUnavailable`, and
//! nothing is pretended to exist on the brokers. No finalizer is added yet,
//! so deleting a resource is never blocked by an operation that cannot run;
//! `deletionPolicy` is honoured once the admin API exists.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use super::cluster::{Clock, FIELD_MANAGER};
use super::error::Error;
use super::status::{READY, make_condition};
use crate::admin::{AdminError, AdminSync, ClusterEndpoint};
use crate::builders::BuildError;
use crate::crd::{Acl, AdminObjectStatus, Topic, User};
use crate::metrics::Metrics;

/// Periodic resync: drift on the brokers is corrected at least this often.
pub const RESYNC: Duration = Duration::from_secs(300);

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
}

impl AdminObject for Topic {
    fn cluster_name(&self) -> &str {
        &self.spec.cluster_ref.name
    }
    fn admin_status(&self) -> Option<&AdminObjectStatus> {
        self.status.as_ref()
    }
}

impl AdminObject for User {
    fn cluster_name(&self) -> &str {
        &self.spec.cluster_ref.name
    }
    fn admin_status(&self) -> Option<&AdminObjectStatus> {
        self.status.as_ref()
    }
}

impl AdminObject for Acl {
    fn cluster_name(&self) -> &str {
        &self.spec.cluster_ref.name
    }
    fn admin_status(&self) -> Option<&AdminObjectStatus> {
        self.status.as_ref()
    }
}

/// What the reconciler of one kind needs.
pub struct AdminContext<K> {
    /// Kubernetes client.
    pub client: Client,
    /// Keeps the broker-side objects in step.
    pub admin: Arc<dyn AdminSync<K>>,
    /// Time source for condition transitions.
    pub clock: Clock,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
}

/// The status for an outcome of [`AdminSync::apply`].
pub fn status_for(
    previous: Option<&AdminObjectStatus>,
    generation: Option<i64>,
    cluster: &str,
    outcome: &Result<(), AdminError>,
    now: &str,
) -> AdminObjectStatus {
    let previous = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let (ok, reason, message) = match outcome {
        Ok(()) => (true, "Synced", format!("in sync with FlyMQCluster {cluster}")),
        Err(e @ AdminError::NotAvailable { .. }) => (false, "AdminApiUnavailable", e.to_string()),
        Err(e @ AdminError::Failed { .. }) => (false, "AdminCallFailed", e.to_string()),
    };
    AdminObjectStatus {
        observed_generation: generation,
        conditions: vec![make_condition(previous, READY, ok, reason, message, generation, now)],
    }
}

/// Reconciles one Topic, User or ACL.
pub async fn reconcile<K: AdminObject>(obj: Arc<K>, ctx: Arc<AdminContext<K>>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start_reconcile(&K::kind(&()));
    let ns = obj.namespace().ok_or(BuildError::MissingMetadata("namespace"))?;
    let name = obj.name_any();
    if obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let endpoint = ClusterEndpoint {
        namespace: ns.clone(),
        name: obj.cluster_name().to_string(),
    };
    let outcome = ctx.admin.apply(&endpoint, &obj).await;
    let status = status_for(
        obj.admin_status(),
        obj.meta().generation,
        obj.cluster_name(),
        &outcome,
        &(ctx.clock)(),
    );
    if obj.admin_status() != Some(&status) {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(Error::kube(format!("updating status of {} {ns}/{name}", K::kind(&()))))?;
    }
    match outcome {
        Ok(()) => Ok(Action::requeue(RESYNC)),
        // Nothing to retry until a build with the admin API replaces this one.
        Err(AdminError::NotAvailable { .. }) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Retry policy of failed Topic/User/ACL reconciles.
pub fn error_policy<K: AdminObject>(obj: Arc<K>, error: &Error, ctx: Arc<AdminContext<K>>) -> Action {
    ctx.metrics.failed(&K::kind(&()), error.category());
    warn!(
        kind = %K::kind(&()),
        object = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
        category = error.category(),
        error = %error,
        "reconcile failed"
    );
    Action::requeue(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{AdminFuture, Unavailable};
    use crate::controller::mock::{Reply, client, serve, step};
    use serde_json::json;
    use std::sync::Mutex;

    /// An admin API that records calls and answers with a fixed result.
    struct FakeAdmin {
        calls: Mutex<Vec<String>>,
        result: Result<(), AdminError>,
    }

    impl AdminSync<Topic> for FakeAdmin {
        fn apply<'a>(&'a self, cluster: &'a ClusterEndpoint, obj: &'a Topic) -> AdminFuture<'a, ()> {
            self.calls.lock().expect("lock").push(format!(
                "apply {}/{} topic={} partitions={}",
                cluster.namespace,
                cluster.name,
                obj.topic_name(),
                obj.spec.partitions
            ));
            let result = self.result.clone();
            Box::pin(async move { result })
        }
        fn delete<'a>(&'a self, _: &'a ClusterEndpoint, obj: &'a Topic) -> AdminFuture<'a, ()> {
            self.calls
                .lock()
                .expect("lock")
                .push(format!("delete {}", obj.topic_name()));
            Box::pin(async { Ok(()) })
        }
    }

    const STATUS: &str = "/apis/flymq.io/v1alpha1/namespaces/prod/topics/orders/status";

    fn topic() -> Topic {
        let mut t: Topic = serde_json::from_value(json!({
            "apiVersion": "flymq.io/v1alpha1", "kind": "Topic",
            "metadata": {"name": "orders", "namespace": "prod", "generation": 2},
            "spec": {"clusterRef": {"name": "demo"}, "partitions": 6}
        }))
        .expect("topic");
        t.metadata.uid = Some("u".into());
        t
    }

    async fn run(
        t: Topic,
        admin: Arc<dyn AdminSync<Topic>>,
        steps: Vec<crate::controller::mock::Step>,
    ) -> (Result<Action, Error>, Vec<crate::controller::mock::Seen>) {
        let (client, handle) = client();
        let ctx = Arc::new(AdminContext {
            client,
            admin,
            clock: Arc::new(|| "T0".to_string()),
            metrics: Arc::new(Metrics::new()),
        });
        let server = tokio::spawn(serve(handle, steps));
        let result = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(t), ctx))
            .await
            .expect("reconcile hung on an unscripted request");
        (result, server.await.expect("fake API server"))
    }

    #[tokio::test]
    async fn synced_topic_reports_ready_and_resyncs() {
        let t = topic();
        let fake = Arc::new(FakeAdmin {
            calls: Mutex::default(),
            result: Ok(()),
        });
        let steps = vec![step(
            "PATCH",
            STATUS,
            Reply::WithStatus(serde_json::to_value(&t).expect("json")),
        )];
        let (result, seen) = run(t, fake.clone(), steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(RESYNC));
        assert_eq!(
            *fake.calls.lock().expect("lock"),
            vec!["apply prod/demo topic=orders partitions=6".to_string()]
        );
        let ready = &seen[0].body["status"]["conditions"][0];
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("True"), Some("Synced"))
        );
        assert_eq!(seen[0].body["status"]["observedGeneration"], json!(2));
    }

    #[tokio::test]
    async fn without_the_admin_api_the_topic_says_so_and_is_not_retried() {
        let t = topic();
        let steps = vec![step(
            "PATCH",
            STATUS,
            Reply::WithStatus(serde_json::to_value(&t).expect("json")),
        )];
        let (result, seen) = run(t, Arc::new(Unavailable), steps).await;
        assert_eq!(result.expect("not an error"), Action::await_change());
        let ready = &seen[0].body["status"]["conditions"][0];
        assert_eq!(ready["status"], json!("False"));
        assert_eq!(ready["reason"], json!("AdminApiUnavailable"));
        assert_eq!(
            ready["message"],
            json!("reconciling this resource requires the admin API (not supported yet)")
        );
    }

    #[tokio::test]
    async fn failed_admin_call_is_an_error_and_unchanged_status_is_not_rewritten() {
        let mut t = topic();
        let failure = AdminError::Failed {
            operation: "CreateTopic",
            message: "boom".into(),
        };
        t.status = Some(status_for(None, Some(2), "demo", &Err(failure.clone()), "T0"));
        let fake = Arc::new(FakeAdmin {
            calls: Mutex::default(),
            result: Err(failure),
        });
        let (result, seen) = run(t, fake, vec![]).await;
        assert_eq!(result.expect_err("fails").category(), "admin_api");
        assert!(seen.is_empty(), "the status already says AdminCallFailed");
    }
}
