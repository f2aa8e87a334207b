//! The Topic, User and ACL controllers against a real broker (Users and
//! ACLs with authentication on, as the operator runs clusters by default).
//!
//! Each test starts its own standalone `flymq` process on 127.0.0.1 (port 0
//! everywhere, a temporary data directory; `FLYMQ_BIN`, or the `flymq`
//! binary next to the test executable as `cargo test --release --workspace`
//! builds it), points the operator's real gRPC admin client at the admin
//! address the broker logged, and runs the controller's reconcile with the
//! Kubernetes API replaced by a scripted fake (the same mock service as the
//! unit tests), asserting each API request. What the brokers hold is checked
//! through the admin API directly.
//!
//! Without the broker binary these tests fail and say how to build it.

#[path = "../src/controller/mock.rs"]
#[allow(dead_code)]
mod mock;

use std::sync::Arc;
use std::time::Duration;

use flymq_operator::admin::{
    AdminCredentials, AdminError, AdminFuture, AdminSync, ClusterEndpoint, CredentialSource, GrpcAdmin,
};
use flymq_operator::builders::OsRandomness;
use flymq_operator::controller::Error;
use flymq_operator::controller::admin_object::{
    AdminContext, AdminObject, FINALIZER, RESYNC, RETRY, error_policy, reconcile,
};
use flymq_operator::controller::user::UserSync;
use flymq_operator::crd::cluster::FlyMQClusterStatus;
use flymq_operator::crd::{Acl, AdminObjectStatus, FlyMQCluster, Topic, User};
use flymq_operator::metrics::Metrics;
use flymq_proto::grpc::admin as pb;
use flymq_tests::BrokerProcess;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use mock::{Reply, Seen, Step, step};
use pb::admin_client::AdminClient;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

const NS: &str = "prod";
const CLUSTER: &str = "/apis/flymq.io/v1alpha1/namespaces/prod/flymqclusters/demo";
const STS: &str = "/apis/apps/v1/namespaces/prod/statefulsets/demo";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/prod/events";

/// A running broker, the operator's client for it and a direct admin client.
struct Broker {
    process: BrokerProcess,
    url: String,
    direct: AdminClient<Channel>,
}

impl Broker {
    async fn start() -> Broker {
        let process = tokio::task::spawn_blocking(|| flymq_tests::try_spawn_standalone(&[]))
            .await
            .expect("spawn thread")
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start a real broker: {e:#}\n(build it with `cargo build --release -p flymq-broker` \
                     in the same CARGO_TARGET_DIR, or set FLYMQ_BIN to a flymq binary)"
                )
            });
        let admin = process
            .admin_addr()
            .unwrap_or_else(|| panic!("the broker logged no admin address:\n{}", process.log_text()));
        let url = format!("http://{admin}");
        let direct = AdminClient::connect(url.clone()).await.expect("direct admin client");
        Broker { process, url, direct }
    }

    /// The operator's client: a template without placeholders reaches this
    /// broker for every FlyMQCluster.
    fn operator_admin(&self) -> Arc<GrpcAdmin> {
        Arc::new(GrpcAdmin::new(self.url.clone()))
    }

    async fn describe(&self, name: &str) -> Result<pb::TopicInfo, tonic::Status> {
        let mut c = self.direct.clone();
        c.describe_topic(pb::DescribeTopicRequest { name: name.into() })
            .await
            .map(tonic::Response::into_inner)
    }

    async fn topic(&self, name: &str) -> pb::TopicInfo {
        self.describe(name)
            .await
            .unwrap_or_else(|s| panic!("DescribeTopic {name}: {s:?}\nbroker log:\n{}", self.process.log_text()))
    }

    async fn assert_no_topic(&self, name: &str) {
        let err = self.describe(name).await.expect_err("the topic must not exist");
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
}

fn leak(s: String) -> &'static str {
    s.leak()
}

fn topic_path(name: &str) -> &'static str {
    leak(format!("/apis/flymq.io/v1alpha1/namespaces/{NS}/topics/{name}"))
}

fn topic(name: &str, generation: i64, spec: Value) -> Topic {
    let mut spec = spec;
    spec["clusterRef"] = json!({"name": "demo"});
    serde_json::from_value(json!({
        "apiVersion": "flymq.io/v1alpha1", "kind": "Topic",
        "metadata": {"name": name, "namespace": NS, "generation": generation, "uid": format!("uid-{name}"),
                     "finalizers": [FINALIZER]},
        "spec": spec
    }))
    .expect("topic")
}

fn deleting<K: kube::Resource>(mut obj: K) -> K {
    obj.meta_mut().deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    obj
}

fn cluster_object(replicas: i32) -> Value {
    json!({"apiVersion": "flymq.io/v1alpha1", "kind": "FlyMQCluster",
           "metadata": {"name": "demo", "namespace": NS}, "spec": {"replicas": replicas}})
}

fn sts_object(replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "demo", "namespace": NS},
           "spec": {"replicas": replicas, "selector": {}, "template": {}, "serviceName": "demo-headless"}})
}

/// The answer of the API server to a status patch: the object with the
/// patched status.
fn with_status<K: serde::Serialize>(obj: &K) -> Reply {
    Reply::WithStatus(serde_json::to_value(obj).expect("json"))
}

fn echo_object<K: serde::Serialize>(obj: &K) -> Reply {
    Reply::Json(serde_json::to_value(obj).expect("json"))
}

fn context<K: AdminObject>(client: kube::Client, admin: Arc<dyn AdminSync<K>>) -> Arc<AdminContext<K>> {
    Arc::new(AdminContext {
        client,
        admin,
        clock: Arc::new(|| "T0".to_string()),
        metrics: Arc::new(Metrics::new()),
        peers: None,
    })
}

/// One reconcile against the scripted API server; every scripted request
/// must arrive, in order, and nothing else.
async fn reconcile_once<K: AdminObject>(
    obj: &K,
    admin: Arc<dyn AdminSync<K>>,
    steps: Vec<Step>,
) -> (Result<Action, Error>, Vec<Seen>) {
    let (client, mut handle) = mock::client();
    let expected = steps.len();
    let ctx = context(client, admin);
    let server = tokio::spawn(async move {
        let seen = mock::serve_ref(&mut handle, steps).await;
        (seen, handle)
    });
    let result = tokio::time::timeout(Duration::from_secs(60), reconcile(Arc::new(obj.clone()), ctx))
        .await
        .expect("the reconcile hung (an unscripted Kubernetes request, or an admin call without deadline)");
    let (seen, mut handle) = server.await.expect("fake API server");
    assert_eq!(seen.len(), expected);
    // The reconcile has returned, so any further request would have been
    // sent already: there must be none.
    if let Ok(Some((request, _))) = tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await {
        panic!(
            "the reconcile sent an unscripted Kubernetes request: {} {}",
            request.method(),
            request.uri()
        );
    }
    (result, seen)
}

/// The `Ready` condition a status patch wrote.
fn ready(seen: &Seen) -> &Value {
    &seen.body["status"]["conditions"][0]
}

fn message(seen: &Seen) -> &str {
    ready(seen)["message"].as_str().unwrap_or_default()
}

/// Stores the patched status on `obj`, as the API server would.
fn store_status<K>(obj: &mut K, seen: &Seen, set: impl FnOnce(&mut K, AdminObjectStatus)) {
    let status: AdminObjectStatus = serde_json::from_value(seen.body["status"].clone()).expect("status");
    set(obj, status);
}

/// Reconciles a Topic whose spec the brokers can hold and returns it with
/// the status it got.
async fn synced(admin: &Arc<GrpcAdmin>, t: Topic) -> Topic {
    let mut t = t;
    let path = leak(format!("{}/status", topic_path(&t.name_any())));
    let (result, seen) = reconcile_once(&t, admin.clone(), vec![step("PATCH", path, with_status(&t))]).await;
    assert_eq!(
        result.unwrap_or_else(|e| panic!("reconcile failed: {e}")),
        Action::requeue(RESYNC)
    );
    assert_eq!(ready(&seen[0])["reason"], json!("Synced"), "{}", seen[0].body);
    store_status(&mut t, &seen[0], |t, s| t.status = Some(s));
    t
}

#[tokio::test]
async fn a_topic_is_created_with_its_partitions_replication_factor_and_retention() {
    let broker = Broker::start().await;
    let admin = broker.operator_admin();
    let spec = json!({"partitions": 3, "replicationFactor": 1,
                      "config": {"retention": {"time": "1d", "bytes": 1048576}}});

    // A new resource gets the finalizer first; the brokers are not touched.
    let mut fresh = topic("orders", 1, spec.clone());
    fresh.metadata.finalizers = None;
    let (result, seen) = reconcile_once(
        &fresh,
        admin.clone(),
        vec![step("PATCH", topic_path("orders"), echo_object(&fresh))],
    )
    .await;
    assert_eq!(result.expect("finalizer added"), Action::await_change());
    assert_eq!(
        seen[0].body,
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
               {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    );
    broker.assert_no_topic("orders").await;

    // Then the topic is created as the spec says, and the status says so.
    let t = topic("orders", 1, spec);
    let (result, seen) = reconcile_once(
        &t,
        admin.clone(),
        vec![step(
            "PATCH",
            leak(format!("{}/status", topic_path("orders"))),
            with_status(&t),
        )],
    )
    .await;
    assert_eq!(result.expect("synced"), Action::requeue(RESYNC));
    assert!(
        seen[0].query.contains("fieldManager=flymq-operator") && seen[0].query.contains("force=true"),
        "status is server-side applied: {}",
        seen[0].query
    );
    assert_eq!(seen[0].body["status"]["observedGeneration"], json!(1));
    assert_eq!(ready(&seen[0])["status"], json!("True"));
    assert_eq!(
        message(&seen[0]),
        "in sync with FlyMQCluster demo: topic 'orders': 3 partitions, replication factor 1, retention 1d, \
         at most 1048576 bytes per partition"
    );
    let info = broker.topic("orders").await;
    assert_eq!((info.partitions, info.replication_factor), (3, 1));
    assert_eq!(
        info.config,
        Some(pb::TopicConfig {
            retention_ms: 86_400_000,
            retention_bytes: 1_048_576,
            message_ttl_ms: 0,
            max_deliveries: 0,
        })
    );

    // A resync of an unchanged topic writes nothing.
    let mut t = t;
    store_status(&mut t, &seen[0], |t, s| t.status = Some(s));
    let (result, _) = reconcile_once(&t, admin, vec![]).await;
    assert_eq!(result.expect("in sync"), Action::requeue(RESYNC));
}

#[tokio::test]
async fn a_replication_factor_a_standalone_broker_cannot_hold_is_a_clear_condition() {
    let broker = Broker::start().await;
    let admin = broker.operator_admin();
    // replicationFactor defaults to 3; a standalone broker keeps one copy.
    let t = topic("orders", 1, json!({"partitions": 2}));
    let (result, seen) = reconcile_once(
        &t,
        admin.clone(),
        vec![
            step(
                "PATCH",
                leak(format!("{}/status", topic_path("orders"))),
                with_status(&t),
            ),
            // A new failure is also a Warning event.
            step("POST", EVENTS, Reply::Echo),
        ],
    )
    .await;
    let err = result.expect_err("the broker refuses");
    assert_eq!(err.category(), "admin_rejected");
    let ready = ready(&seen[0]);
    assert_eq!(ready["status"], json!("False"));
    assert_eq!(ready["reason"], json!("InvalidArgument"));
    let text = message(&seen[0]);
    assert!(
        text.starts_with("CreateTopic refused: ") && text.contains("replication factor 3"),
        "the condition carries the broker's reason: {text}"
    );
    broker.assert_no_topic("orders").await;
    // Not retried hot: the spec (or the cluster) has to change first.
    let (client, _handle) = mock::client();
    assert_eq!(
        error_policy(Arc::new(t), &err, context::<Topic>(client, admin)),
        Action::requeue(RESYNC)
    );
}

#[tokio::test]
async fn drift_on_the_brokers_is_corrected_and_partitions_only_grow() {
    let broker = Broker::start().await;
    let admin = broker.operator_admin();
    let status_path = leak(format!("{}/status", topic_path("events")));
    let spec = json!({"partitions": 3, "replicationFactor": 1, "config": {"retention": {"time": "1h"}}});
    let t = synced(&admin, topic("events", 1, spec.clone())).await;

    // Deleted behind the operator's back: the next reconcile recreates it.
    let mut direct = broker.direct.clone();
    direct
        .delete_topic(pb::DeleteTopicRequest { name: "events".into() })
        .await
        .expect("out-of-band delete");
    broker.assert_no_topic("events").await;
    let (result, seen) = reconcile_once(&t, admin.clone(), vec![]).await;
    assert_eq!(
        result.expect("recreated"),
        Action::requeue(RESYNC),
        "same status as before, so nothing is written: {seen:?}"
    );
    let info = broker.topic("events").await;
    assert_eq!((info.partitions, info.replication_factor), (3, 1));
    assert_eq!(info.config.map(|c| c.retention_ms), Some(3_600_000));

    // A record in partition 0, to show that growing keeps the data.
    let client = flymq_client::Client::connect(flymq_client::ClientConfig::new([broker
        .process
        .client_addr()
        .to_string()]))
    .await
    .expect("client");
    client
        .produce_to_partition("events", 0, "", "kept")
        .await
        .expect("produce");

    // More partitions in the spec: AddPartitions.
    let mut grown = topic(
        "events",
        2,
        json!({"partitions": 5, "replicationFactor": 1,
                                              "config": {"retention": {"time": "1h"}}}),
    );
    grown.status = t.status.clone();
    let (result, seen) = reconcile_once(
        &grown,
        admin.clone(),
        vec![step("PATCH", status_path, with_status(&grown))],
    )
    .await;
    assert_eq!(result.expect("grown"), Action::requeue(RESYNC), "{:?}", seen[0].body);
    assert!(
        message(&seen[0]).contains("topic 'events': 5 partitions"),
        "{}",
        message(&seen[0])
    );
    assert_eq!(seen[0].body["status"]["observedGeneration"], json!(2));
    let info = broker.topic("events").await;
    assert_eq!(info.partitions, 5);
    let p0 = info
        .partition_info
        .iter()
        .find(|p| p.partition == 0)
        .expect("partition 0");
    assert_eq!(p0.end_offset, 1, "partition 0 keeps its record: {info:?}");
    let consumed = client.consume("events", 0, 0).await.expect("consume");
    assert_eq!(consumed.value.as_ref(), b"kept");

    // Other retention in the spec: UpdateTopicConfig.
    let mut retained = topic(
        "events",
        3,
        json!({"partitions": 5, "replicationFactor": 1,
                                                 "config": {"retention": {"time": "2d", "bytes": 4096}}}),
    );
    store_status(&mut retained, &seen[0], |t, s| t.status = Some(s));
    let (result, seen) = reconcile_once(
        &retained,
        admin.clone(),
        vec![step("PATCH", status_path, with_status(&retained))],
    )
    .await;
    assert_eq!(result.expect("updated"), Action::requeue(RESYNC), "{:?}", seen[0].body);
    assert!(
        message(&seen[0]).ends_with("retention 2d, at most 4096 bytes per partition"),
        "{}",
        message(&seen[0])
    );
    assert_eq!(
        broker.topic("events").await.config,
        Some(pb::TopicConfig {
            retention_ms: 172_800_000,
            retention_bytes: 4096,
            message_ttl_ms: 0,
            max_deliveries: 0,
        })
    );

    // Retention changed behind the operator's back: the spec wins again.
    direct
        .update_topic_config(pb::UpdateTopicConfigRequest {
            name: "events".into(),
            config: Some(pb::TopicConfig {
                retention_ms: 1000,
                retention_bytes: 0,
                message_ttl_ms: 0,
                max_deliveries: 0,
            }),
        })
        .await
        .expect("out-of-band config change");
    store_status(&mut retained, &seen[0], |t, s| t.status = Some(s));
    let (result, _) = reconcile_once(&retained, admin.clone(), vec![]).await;
    assert_eq!(result.expect("corrected"), Action::requeue(RESYNC));
    assert_eq!(
        broker.topic("events").await.config,
        Some(pb::TopicConfig {
            retention_ms: 172_800_000,
            retention_bytes: 4096,
            message_ttl_ms: 0,
            max_deliveries: 0,
        })
    );

    // Fewer partitions than the brokers hold: refused and reported, nothing removed.
    let mut shrunk = topic(
        "events",
        4,
        json!({"partitions": 2, "replicationFactor": 1,
                                               "config": {"retention": {"time": "2d", "bytes": 4096}}}),
    );
    shrunk.status = retained.status.clone();
    let (result, seen) = reconcile_once(
        &shrunk,
        admin.clone(),
        vec![
            step("PATCH", status_path, with_status(&shrunk)),
            step("POST", EVENTS, Reply::Echo),
        ],
    )
    .await;
    let err = result.expect_err("refused");
    assert_eq!(err.category(), "admin_rejected");
    assert_eq!(ready(&seen[0])["status"], json!("False"));
    assert_eq!(ready(&seen[0])["reason"], json!("PartitionsCannotShrink"));
    assert!(
        message(&seen[0]).contains("has 5 partitions on the brokers but spec.partitions is 2"),
        "{}",
        message(&seen[0])
    );
    assert_eq!(broker.topic("events").await.partitions, 5);
    let (client, _handle) = mock::client();
    assert_eq!(
        error_policy(Arc::new(shrunk), &err, context::<Topic>(client, admin)),
        Action::requeue(RESYNC),
        "a refusal waits for the next resync or a spec change"
    );
}

#[tokio::test]
async fn deletion_policy_retain_keeps_the_topic_and_releases_the_finalizer() {
    let broker = Broker::start().await;
    let admin = broker.operator_admin();
    let t = synced(&admin, topic("audit", 1, json!({"replicationFactor": 1}))).await;
    let t = deleting(t);
    // No read of the cluster, no admin call: only the finalizer goes.
    let (result, seen) = reconcile_once(&t, admin, vec![step("PATCH", topic_path("audit"), echo_object(&t))]).await;
    assert_eq!(result.expect("released"), Action::await_change());
    assert_eq!(
        seen[0].body,
        json!([{"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
               {"op": "remove", "path": "/metadata/finalizers/0"}])
    );
    assert_eq!(broker.topic("audit").await.partitions, 1, "Retain keeps the topic");
}

#[tokio::test]
async fn deletion_policy_delete_removes_the_topic_then_the_finalizer() {
    let broker = Broker::start().await;
    let admin = broker.operator_admin();
    let t = synced(
        &admin,
        topic(
            "orders",
            1,
            json!({"partitions": 2, "replicationFactor": 1, "deletionPolicy": "Delete"}),
        ),
    )
    .await;
    let t = deleting(t);
    let steps = || {
        vec![
            step("GET", CLUSTER, Reply::Json(cluster_object(1))),
            step("GET", STS, Reply::Json(sts_object(1))),
            step("PATCH", topic_path("orders"), echo_object(&t)),
        ]
    };
    let (result, seen) = reconcile_once(&t, admin.clone(), steps()).await;
    assert_eq!(result.expect("deleted"), Action::await_change());
    assert_eq!(
        seen[2].body[1],
        json!({"op": "remove", "path": "/metadata/finalizers/0"})
    );
    broker.assert_no_topic("orders").await;

    // Deleting again (say, the finalizer patch failed last time) is fine.
    let (result, _) = reconcile_once(&t, admin, steps()).await;
    assert_eq!(result.expect("nothing left to delete"), Action::await_change());
}

#[tokio::test]
async fn the_finalizer_is_released_when_no_broker_can_answer() {
    let broker = Broker::start().await;
    let admin = broker.operator_admin();
    let t = synced(
        &admin,
        topic("orders", 1, json!({"replicationFactor": 1, "deletionPolicy": "Delete"})),
    )
    .await;
    let t = deleting(t);
    let mut being_deleted = cluster_object(3);
    being_deleted["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    being_deleted["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let cases: Vec<(&str, Vec<Step>)> = vec![
        ("FlyMQCluster missing", vec![step("GET", CLUSTER, Reply::NotFound)]),
        (
            "FlyMQCluster being deleted",
            vec![step("GET", CLUSTER, Reply::Json(being_deleted))],
        ),
        (
            "spec.replicas 0",
            vec![step("GET", CLUSTER, Reply::Json(cluster_object(0)))],
        ),
        (
            "StatefulSet scaled to 0",
            vec![
                step("GET", CLUSTER, Reply::Json(cluster_object(3))),
                step("GET", STS, Reply::Json(sts_object(0))),
            ],
        ),
        (
            "no StatefulSet",
            vec![
                step("GET", CLUSTER, Reply::Json(cluster_object(3))),
                step("GET", STS, Reply::NotFound),
            ],
        ),
    ];
    for (case, mut steps) in cases {
        steps.push(step("PATCH", topic_path("orders"), echo_object(&t)));
        let (result, seen) = reconcile_once(&t, admin.clone(), steps).await;
        assert_eq!(result.expect("released"), Action::await_change(), "{case}");
        assert_eq!(
            seen.last().expect("finalizer patch").body[1],
            json!({"op": "remove", "path": "/metadata/finalizers/0"}),
            "{case}"
        );
        // Nothing was deleted on the brokers.
        assert_eq!(broker.topic("orders").await.partitions, 1, "{case}");
    }
}

#[tokio::test]
async fn a_delete_the_brokers_cannot_answer_keeps_the_finalizer() {
    let mut broker = Broker::start().await;
    let admin = broker.operator_admin();
    let t = synced(
        &admin,
        topic("orders", 1, json!({"replicationFactor": 1, "deletionPolicy": "Delete"})),
    )
    .await;
    let t = deleting(t);
    // The cluster has brokers, but none answers.
    broker.process.kill9();
    let (result, seen) = reconcile_once(
        &t,
        admin.clone(),
        vec![
            step("GET", CLUSTER, Reply::Json(cluster_object(1))),
            step("GET", STS, Reply::Json(sts_object(1))),
            step(
                "PATCH",
                leak(format!("{}/status", topic_path("orders"))),
                with_status(&t),
            ),
            step("POST", EVENTS, Reply::Echo),
        ],
    )
    .await;
    let err = result.expect_err("retried");
    assert_eq!(err.category(), "admin_unavailable");
    assert_eq!(ready(&seen[2])["reason"], json!("DeletionFailed"));
    assert!(
        message(&seen[2]).contains(&broker.url) && message(&seen[2]).contains("the resource is kept"),
        "{}",
        message(&seen[2])
    );
    let (client, _handle) = mock::client();
    assert_eq!(
        error_policy(Arc::new(t), &err, context::<Topic>(client, admin)),
        Action::requeue(RETRY)
    );
}

/// Fixed admin credentials (the cluster's admin Secret, in a real cluster).
struct FixedCredentials(AdminCredentials);

impl CredentialSource for FixedCredentials {
    fn credentials<'a>(&'a self, _: &'a ClusterEndpoint) -> AdminFuture<'a, Option<AdminCredentials>> {
        Box::pin(async move { Ok(Some(self.0.clone())) })
    }
}

const ADMIN_PASSWORD: &str = "bootstrap-admin-pw";

/// A broker with authentication on and `admin` / [`ADMIN_PASSWORD`] as its
/// bootstrap admin (what the StatefulSet's FLYMQ_AUTH_ENABLED and admin
/// Secret give a pod).
struct SecureBroker {
    process: BrokerProcess,
    url: String,
    _password_file: PasswordFile,
}

/// A temporary file holding the admin password, removed on drop.
struct PasswordFile(std::path::PathBuf);

impl Drop for PasswordFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl SecureBroker {
    async fn start() -> SecureBroker {
        let path = std::env::temp_dir().join(format!(
            "flymq-op-admin-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::write(&path, ADMIN_PASSWORD).expect("write the admin password file");
        let file = PasswordFile(path.clone());
        let args = [
            "--set".to_string(),
            "auth_enabled=true".to_string(),
            "--set".to_string(),
            format!("admin_password_file={}", path.display()),
        ];
        let process = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            flymq_tests::try_spawn_standalone(&args)
        })
        .await
        .expect("spawn thread")
        .unwrap_or_else(|e| panic!("cannot start a real broker: {e:#}"));
        let admin = process
            .admin_addr()
            .unwrap_or_else(|| panic!("the broker logged no admin address:\n{}", process.log_text()));
        SecureBroker {
            url: format!("http://{admin}"),
            process,
            _password_file: file,
        }
    }

    /// The operator's admin client, with the admin credentials.
    fn operator_admin(&self) -> Arc<GrpcAdmin> {
        Arc::new(
            GrpcAdmin::new(self.url.clone()).with_credentials(Arc::new(FixedCredentials(AdminCredentials::new(
                "admin",
                ADMIN_PASSWORD,
            )))),
        )
    }

    /// A binary-protocol client authenticated as `user` (AUTH on connect).
    async fn login(&self, user: &str, password: &str) -> Result<flymq_client::Client, flymq_client::Error> {
        let mut config = flymq_client::ClientConfig::new([self.process.client_addr().to_string()]);
        config.credentials = Some(flymq_client::Credentials::new(user, password));
        flymq_client::Client::connect(config).await
    }
}

fn secret_object(name: &str, key: &str, value: &str) -> Value {
    use base64::Engine;
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
           "data": {key: base64::engine::general_purpose::STANDARD.encode(value)}})
}

fn user_resource(name: &str, spec: Value) -> User {
    let mut spec = spec;
    spec["clusterRef"] = json!({"name": "demo"});
    serde_json::from_value(json!({
        "apiVersion": "flymq.io/v1alpha1", "kind": "User",
        "metadata": {"name": name, "namespace": NS, "generation": 1, "uid": format!("uid-{name}"),
                     "finalizers": [FINALIZER]},
        "spec": spec
    }))
    .expect("user")
}

fn acl_resource(name: &str, spec: Value) -> Acl {
    let mut spec = spec;
    spec["clusterRef"] = json!({"name": "demo"});
    serde_json::from_value(json!({
        "apiVersion": "flymq.io/v1alpha1", "kind": "ACL",
        "metadata": {"name": name, "namespace": NS, "generation": 1, "uid": format!("uid-{name}"),
                     "finalizers": [FINALIZER]},
        "spec": spec
    }))
    .expect("acl")
}

/// One reconcile of a User (its password Secrets read through the same
/// scripted API server).
async fn reconcile_user(user: &User, admin: &Arc<GrpcAdmin>, steps: Vec<Step>) -> (Result<Action, Error>, Vec<Seen>) {
    let (client, handle) = mock::client();
    let sync: Arc<dyn AdminSync<User>> = Arc::new(UserSync {
        client: client.clone(),
        admin: admin.clone(),
        random: Arc::new(OsRandomness),
    });
    let ctx = context(client, sync);
    let server = tokio::spawn(mock::serve(handle, steps));
    let result = tokio::time::timeout(Duration::from_secs(60), reconcile(Arc::new(user.clone()), ctx))
        .await
        .expect("the reconcile hung");
    (result, server.await.expect("fake API server"))
}

fn user_path(name: &str) -> &'static str {
    leak(format!("/apis/flymq.io/v1alpha1/namespaces/{NS}/users/{name}"))
}

fn secret_path(name: &str) -> &'static str {
    leak(format!("/api/v1/namespaces/{NS}/secrets/{name}"))
}

fn is_denied(result: Result<flymq_client::RecordMetadata, flymq_client::Error>) -> bool {
    match result {
        Ok(_) => false,
        Err(e) => e.to_string().contains("unauthorized"),
    }
}

#[tokio::test]
async fn the_admin_api_refuses_the_operator_without_credentials() {
    let broker = SecureBroker::start().await;
    let anonymous = GrpcAdmin::new(broker.url.clone());
    let endpoint = ClusterEndpoint {
        namespace: NS.into(),
        name: "demo".into(),
    };
    let err = flymq_operator::admin::BrokerAdmin::cluster_status(&anonymous, &endpoint)
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            AdminError::Rejected {
                reason: "AdminAccessDenied",
                ..
            }
        ),
        "{err:?}"
    );
    flymq_operator::admin::BrokerAdmin::cluster_status(broker.operator_admin().as_ref(), &endpoint)
        .await
        .expect("the admin Secret's credentials are accepted");
}

#[tokio::test]
async fn users_from_resources_authenticate_rotate_and_acls_permit_and_deny_as_written() {
    let broker = SecureBroker::start().await;
    let admin = broker.operator_admin();
    let root = broker.login("admin", ADMIN_PASSWORD).await.expect("bootstrap admin");
    for t in ["payments", "secret.plans"] {
        root.create_topic(t, 1).await.expect("create topic");
    }

    // alice: her own Secret. bob: a generated one. No roles: only ACLs grant.
    let alice = user_resource("alice", json!({"passwordSecretRef": {"name": "alice-pw", "key": "pw"}}));
    let (result, seen) = reconcile_user(
        &alice,
        &admin,
        vec![
            step(
                "GET",
                secret_path("alice-pw"),
                Reply::Json(secret_object("alice-pw", "pw", "alice-first")),
            ),
            step(
                "PATCH",
                leak(format!("{}/status", user_path("alice"))),
                with_status(&alice),
            ),
        ],
    )
    .await;
    assert_eq!(result.expect("alice applied"), Action::requeue(RESYNC));
    assert_eq!(ready(&seen[1])["reason"], json!("Synced"), "{}", seen[1].body);
    assert!(
        !seen[1].body.to_string().contains("alice-first"),
        "no password in the status"
    );

    let bob = user_resource("bob", json!({}));
    let (result, seen) = reconcile_user(
        &bob,
        &admin,
        vec![
            step("GET", secret_path("bob-flymq-user"), Reply::NotFound),
            step("PATCH", secret_path("bob-flymq-user"), Reply::Echo),
            step("PATCH", leak(format!("{}/status", user_path("bob"))), with_status(&bob)),
        ],
    )
    .await;
    assert_eq!(result.expect("bob applied"), Action::requeue(RESYNC));
    let bob_password = {
        use base64::Engine;
        let encoded = seen[1].body["data"]["password"].as_str().expect("generated password");
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("base64"),
        )
        .expect("utf-8")
    };
    assert_eq!(bob_password.len(), 32);

    // Both authenticate on the binary protocol.
    let alice_client = broker.login("alice", "alice-first").await.expect("alice authenticates");
    let bob_client = broker.login("bob", &bob_password).await.expect("bob authenticates");

    // ACLs: payments for alice only; secret.* (a pattern) for bob only.
    let payments = acl_resource("payments", json!({"topic": {"name": "payments"}, "users": ["alice"]}));
    let secrets = acl_resource("secrets", json!({"topic": {"pattern": "secret.*"}, "users": ["bob"]}));
    let acl_admin: Arc<dyn AdminSync<Acl>> = admin.clone();
    for a in [&payments, &secrets] {
        let path = leak(format!(
            "/apis/flymq.io/v1alpha1/namespaces/{NS}/acls/{}/status",
            a.name_any()
        ));
        let (result, seen) = reconcile_once(a, acl_admin.clone(), vec![step("PATCH", path, with_status(a))]).await;
        assert_eq!(result.expect("ACL applied"), Action::requeue(RESYNC));
        let conditions = &seen[0].body["status"]["conditions"];
        assert_eq!(conditions[0]["reason"], json!("Synced"));
        assert_eq!(conditions[1]["type"], json!("PrincipalsKnown"));
        assert_eq!(conditions[1]["status"], json!("True"), "{conditions}");
    }
    alice_client
        .produce("payments", "a1")
        .await
        .expect("alice may write payments");
    assert!(is_denied(bob_client.produce("payments", "b1").await), "bob may not");
    bob_client
        .produce("secret.plans", "b2")
        .await
        .expect("bob may write secret.*");
    assert!(
        is_denied(alice_client.produce("secret.plans", "a2").await),
        "alice may not"
    );

    // Drift: someone opens payments to bob by hand; the next reconcile puts
    // the ACL back.
    let mut direct = AdminClient::connect(broker.url.clone()).await.expect("direct client");
    let mut req = tonic::Request::new(pb::UpsertAclRequest {
        topic: "payments".into(),
        is_pattern: false,
        public: false,
        users: vec!["alice".into(), "bob".into()],
        roles: vec![],
    });
    req.metadata_mut().insert(
        "authorization",
        flymq_security::tls::grpc::basic_authorization("admin", ADMIN_PASSWORD)
            .parse()
            .expect("header"),
    );
    direct.upsert_acl(req).await.expect("hand-made change");
    let bob_client = broker.login("bob", &bob_password).await.expect("bob");
    bob_client
        .produce("payments", "b3")
        .await
        .expect("the drift let bob in");
    let path = leak(format!("/apis/flymq.io/v1alpha1/namespaces/{NS}/acls/payments/status"));
    let (result, seen) = reconcile_once(
        &payments,
        acl_admin.clone(),
        vec![step("PATCH", path, with_status(&payments))],
    )
    .await;
    assert_eq!(result.expect("corrected"), Action::requeue(RESYNC));
    assert!(
        message(&seen[0]).ends_with("(drift corrected)"),
        "{}",
        message(&seen[0])
    );
    let bob_client = broker.login("bob", &bob_password).await.expect("bob");
    assert!(
        is_denied(bob_client.produce("payments", "b4").await),
        "bob is out again"
    );

    // alice's Secret changes: the new password works, the old one fails.
    let (result, _) = reconcile_user(
        &alice,
        &admin,
        vec![
            step(
                "GET",
                secret_path("alice-pw"),
                Reply::Json(secret_object("alice-pw", "pw", "alice-second")),
            ),
            step(
                "PATCH",
                leak(format!("{}/status", user_path("alice"))),
                with_status(&alice),
            ),
        ],
    )
    .await;
    assert_eq!(result.expect("rotated"), Action::requeue(RESYNC));
    broker
        .login("alice", "alice-second")
        .await
        .expect("the new password works");
    let old = broker.login("alice", "alice-first").await;
    assert!(
        matches!(old, Err(flymq_client::Error::Authentication { .. })),
        "the old password fails: {:?}",
        old.err()
    );

    // A Secret edited to an empty password: refused, nothing applied, the
    // password stays.
    let (result, seen) = reconcile_user(
        &alice,
        &admin,
        vec![
            step(
                "GET",
                secret_path("alice-pw"),
                Reply::Json(secret_object("alice-pw", "pw", "")),
            ),
            step(
                "PATCH",
                leak(format!("{}/status", user_path("alice"))),
                with_status(&alice),
            ),
            step("POST", EVENTS, Reply::Echo),
        ],
    )
    .await;
    assert_eq!(result.expect_err("refused").category(), "admin_rejected");
    assert_eq!(ready(&seen[1])["reason"], json!("PasswordEmpty"));
    broker.login("alice", "alice-second").await.expect("unchanged");

    // Deleting the User removes it: alice cannot log in any more.
    let gone = deleting(alice);
    let (result, _) = reconcile_user(
        &gone,
        &admin,
        vec![
            step("GET", CLUSTER, Reply::Json(cluster_object(1))),
            step("GET", STS, Reply::Json(sts_object(1))),
            step("PATCH", user_path("alice"), echo_object(&gone)),
        ],
    )
    .await;
    assert_eq!(result.expect("deleted"), Action::await_change());
    assert!(broker.login("alice", "alice-second").await.is_err(), "alice is gone");

    // Deleting an ACL removes it: with default_public, payments is open again.
    let gone = deleting(payments);
    let (result, _) = reconcile_once(
        &gone,
        acl_admin,
        vec![
            step("GET", CLUSTER, Reply::Json(cluster_object(1))),
            step("GET", STS, Reply::Json(sts_object(1))),
            step(
                "PATCH",
                leak(format!("/apis/flymq.io/v1alpha1/namespaces/{NS}/acls/payments")),
                echo_object(&gone),
            ),
        ],
    )
    .await;
    assert_eq!(result.expect("deleted"), Action::await_change());
    let bob_client = broker.login("bob", &bob_password).await.expect("bob");
    bob_client
        .produce("payments", "b5")
        .await
        .expect("no ACL: public by default");
}

/// Credentials the test switches, as `KubeCredentials` does once the
/// operator's own Secret exists.
struct Switchable(std::sync::Mutex<AdminCredentials>);

impl CredentialSource for Switchable {
    fn credentials<'a>(&'a self, _: &'a ClusterEndpoint) -> AdminFuture<'a, Option<AdminCredentials>> {
        let creds = self.0.lock().expect("lock").clone();
        Box::pin(async move { Ok(Some(creds)) })
    }
}

fn admin_secret(username: &str, password: &str, version: &str) -> Value {
    use base64::Engine;
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "demo-admin", "namespace": NS, "resourceVersion": version},
           "data": {"username": b64(username), "password": b64(password)}})
}

#[tokio::test]
async fn the_operator_creates_its_own_user_and_rotates_the_admin_password_from_the_admin_secret() {
    use flymq_operator::controller::admin_users::{self, OPERATOR_USERNAME};
    let broker = SecureBroker::start().await;
    let creds = Arc::new(Switchable(std::sync::Mutex::new(AdminCredentials::new(
        "admin",
        ADMIN_PASSWORD,
    ))));
    let admin = GrpcAdmin::new(broker.url.clone()).with_credentials(creds.clone());
    let endpoint = ClusterEndpoint {
        namespace: NS.into(),
        name: "demo".into(),
    };
    let mut cluster: FlyMQCluster = serde_json::from_value(json!({
        "apiVersion": "flymq.io/v1alpha1", "kind": "FlyMQCluster",
        "metadata": {"name": "demo", "namespace": NS, "uid": "uid-demo", "generation": 1},
        "spec": {}
    }))
    .expect("cluster");
    let sync = |cluster: FlyMQCluster, steps: Vec<Step>| {
        let admin = &admin;
        let endpoint = &endpoint;
        async move {
            let (client, handle) = mock::client();
            let server = tokio::spawn(mock::serve(handle, steps));
            let result = admin_users::sync(&client, admin, &OsRandomness, &cluster, endpoint).await;
            (result, server.await.expect("fake API server"))
        }
    };

    // 1. No operator Secret yet: the bootstrap admin creates the operator's
    //    user, then its Secret is stored; the admin Secret is applied once.
    let (result, seen) = sync(
        cluster.clone(),
        vec![
            step("GET", secret_path("demo-operator"), Reply::NotFound),
            step("PATCH", secret_path("demo-operator"), Reply::Echo),
            step(
                "GET",
                secret_path("demo-admin"),
                Reply::Json(admin_secret("admin", ADMIN_PASSWORD, "1")),
            ),
        ],
    )
    .await;
    assert_eq!(result.expect("synced"), Some("1".into()));
    let stored = &seen[1].body;
    assert_eq!(stored["metadata"]["ownerReferences"][0]["name"], json!("demo"));
    let password = {
        use base64::Engine;
        let b64 = stored["data"]["password"].as_str().expect("password");
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).expect("b64")).expect("utf8")
    };
    assert_eq!(password.len(), 32);
    broker
        .login(OPERATOR_USERNAME, &password)
        .await
        .expect("the operator's user exists with the stored password");

    // 2. The operator authenticates as itself; the admin Secret changes:
    //    the new password is applied, the old one stops working.
    *creds.0.lock().expect("lock") = AdminCredentials::new(OPERATOR_USERNAME, password.clone());
    cluster.status = Some(FlyMQClusterStatus {
        admin_secret_version: Some("1".into()),
        ..FlyMQClusterStatus::default()
    });
    let operator_secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "demo-operator", "namespace": NS}, "data": stored["data"].clone()});
    let (result, _) = sync(
        cluster.clone(),
        vec![
            step(
                "GET",
                secret_path("demo-operator"),
                Reply::Json(operator_secret.clone()),
            ),
            step(
                "GET",
                secret_path("demo-admin"),
                Reply::Json(admin_secret("admin", "rotated-pw-2", "2")),
            ),
        ],
    )
    .await;
    assert_eq!(result.expect("synced"), Some("2".into()));
    broker
        .login("admin", "rotated-pw-2")
        .await
        .expect("the new admin password works");
    assert!(
        broker.login("admin", ADMIN_PASSWORD).await.is_err(),
        "the old admin password no longer works"
    );

    // 3. Unchanged Secret: nothing is written (the script has no broker
    //    side, so only the reads are checked), the version stays.
    cluster.status = Some(FlyMQClusterStatus {
        admin_secret_version: Some("2".into()),
        ..FlyMQClusterStatus::default()
    });
    let (result, seen) = sync(
        cluster,
        vec![
            step("GET", secret_path("demo-operator"), Reply::Json(operator_secret)),
            step(
                "GET",
                secret_path("demo-admin"),
                Reply::Json(admin_secret("admin", "rotated-pw-2", "2")),
            ),
        ],
    )
    .await;
    assert_eq!(result.expect("synced"), Some("2".into()));
    assert_eq!(seen.len(), 2);
}
