//! [`GrpcAdmin`] against the fake admin server over real gRPC on loopback.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tonic::Status;

use super::*;
use crate::admin::fake_broker::{FakeBroker, serve};

fn endpoint() -> ClusterEndpoint {
    ClusterEndpoint {
        namespace: "prod".into(),
        name: "demo".into(),
    }
}

fn admin(url: &str) -> GrpcAdmin {
    GrpcAdmin::new(url).with_timeouts(Timeouts {
        connect: Duration::from_secs(2),
        call: Duration::from_secs(5),
        status: Duration::from_secs(5),
        decommission: Duration::from_secs(5),
    })
}

fn topic(spec: serde_json::Value) -> Topic {
    let mut spec = spec;
    spec["clusterRef"] = json!({"name": "demo"});
    let mut t = Topic::new("orders", serde_json::from_value(spec).expect("topic spec"));
    t.metadata.namespace = Some("prod".into());
    t
}

fn existing(name: &str, partitions: u32, rf: u32, retention_ms: u64, retention_bytes: u64) -> pb::TopicInfo {
    pb::TopicInfo {
        name: name.into(),
        partitions,
        replication_factor: rf,
        config: Some(pb::TopicConfig {
            retention_ms,
            retention_bytes,
            message_ttl_ms: 0,
            max_deliveries: 0,
        }),
        partition_info: Vec::new(),
    }
}

#[tokio::test]
async fn new_topic_is_created_with_its_config_and_reported() {
    let fake = Arc::new(FakeBroker::default());
    let admin = admin(&serve(fake.clone()));
    let t = topic(json!({"partitions": 6, "replicationFactor": 3,
        "config": {"retention": {"time": "7d", "bytes": 1073741824}}}));

    let synced = AdminSync::<Topic>::apply(&admin, &endpoint(), &t)
        .await
        .expect("applies");

    assert_eq!(
        fake.calls(),
        vec![
            "CreateTopic orders partitions=6 rf=3 retention_ms=604800000 retention_bytes=1073741824 if_not_exists=true",
            "DescribeTopic orders",
        ]
    );
    assert_eq!(
        synced.message,
        "topic 'orders': 6 partitions, replication factor 3, retention 7d, at most 1073741824 bytes per partition"
    );
    let held = fake.topics.lock().expect("lock")["orders"].clone();
    assert_eq!(held.partitions, 6);
}

#[tokio::test]
async fn existing_topic_grows_and_takes_the_spec_config() {
    let fake = Arc::new(FakeBroker::default());
    fake.topics
        .lock()
        .expect("lock")
        .insert("orders".into(), existing("orders", 4, 3, 3_600_000, 500));
    let admin = admin(&serve(fake.clone()));
    let t = topic(json!({"partitions": 8, "replicationFactor": 3,
        "config": {"retention": {"time": "1d"}}}));

    let synced = AdminSync::<Topic>::apply(&admin, &endpoint(), &t)
        .await
        .expect("applies");

    let calls = fake.calls();
    assert_eq!(
        calls[2..],
        [
            // retention.bytes is not in the spec: the brokers' value is kept
            "UpdateTopicConfig orders retention_ms=86400000 retention_bytes=500".to_string(),
            "AddPartitions orders to=8".to_string(),
        ]
    );
    let held = fake.topics.lock().expect("lock")["orders"].clone();
    assert_eq!(held.partitions, 8);
    assert_eq!(held.config.map(|c| c.retention_ms), Some(86_400_000));
    assert!(synced.message.contains("8 partitions"), "{}", synced.message);

    // Converged: the next resync only creates (no-op) and describes.
    AdminSync::<Topic>::apply(&admin, &endpoint(), &t)
        .await
        .expect("applies");
    assert_eq!(
        fake.calls()[4..],
        [
            "CreateTopic orders partitions=8 rf=3 retention_ms=86400000 retention_bytes=0 if_not_exists=true"
                .to_string(),
            "DescribeTopic orders".to_string()
        ]
    );
}

#[tokio::test]
async fn fewer_partitions_than_the_brokers_hold_is_refused_without_a_call() {
    let fake = Arc::new(FakeBroker::default());
    fake.topics
        .lock()
        .expect("lock")
        .insert("orders".into(), existing("orders", 8, 3, 0, 0));
    let admin = admin(&serve(fake.clone()));
    let t = topic(json!({"partitions": 6, "replicationFactor": 3}));

    let err = AdminSync::<Topic>::apply(&admin, &endpoint(), &t)
        .await
        .expect_err("cannot shrink");

    assert!(
        matches!(
            err,
            AdminError::Rejected {
                reason: "PartitionsCannotShrink",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("has 8 partitions on the brokers but spec.partitions is 6"),
        "{err}"
    );
    assert!(!fake.calls().iter().any(|c| c.starts_with("AddPartitions")));
    assert_eq!(fake.topics.lock().expect("lock")["orders"].partitions, 8);
}

#[tokio::test]
async fn replication_factor_drift_is_reported() {
    let fake = Arc::new(FakeBroker::default());
    fake.topics
        .lock()
        .expect("lock")
        .insert("orders".into(), existing("orders", 1, 1, 0, 0));
    let admin = admin(&serve(fake.clone()));
    let err = AdminSync::<Topic>::apply(&admin, &endpoint(), &topic(json!({})))
        .await
        .expect_err("rf differs");
    assert!(
        matches!(
            err,
            AdminError::Rejected {
                reason: "ReplicationFactorMismatch",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn settings_without_an_admin_api_field_are_named_in_the_status() {
    let fake = Arc::new(FakeBroker::default());
    let admin = admin(&serve(fake.clone()));
    let t = topic(json!({"config": {
        "messageTtl": "1h",
        "deadLetter": {"maxDeliveries": 3, "topic": "elsewhere"},
        "schema": {"type": "JsonSchema", "definition": "{}"}
    }}));
    let synced = AdminSync::<Topic>::apply(&admin, &endpoint(), &t)
        .await
        .expect("applies");
    assert!(
        synced.message.ends_with(
            "not applied (the admin API has no setting for them yet): config.deadLetter.topic, config.schema"
        ),
        "{}",
        synced.message
    );
    assert!(
        synced.message.contains("dead-letter queue after 3 deliveries"),
        "{}",
        synced.message
    );
    // The message TTL and the dead-letter limit are applied.
    let held = fake.topics.lock().expect("lock")[&t.topic_name()].clone();
    assert_eq!(held.config.map(|c| c.message_ttl_ms), Some(3_600_000));
    assert_eq!(held.config.map(|c| c.max_deliveries), Some(3));
}

#[tokio::test]
async fn grpc_statuses_map_to_typed_errors() {
    let cases = [
        (Status::invalid_argument("bad name"), "Rejected/InvalidArgument"),
        (
            Status::failed_precondition("replication factor 3 exceeds 2 brokers"),
            "Rejected/BrokerRefused",
        ),
        (Status::unavailable("no metadata leader"), "Unreachable"),
        (Status::deadline_exceeded("slow"), "Unreachable"),
        (Status::unimplemented("later"), "NotSupported"),
        (Status::not_found("gone"), "NotFound"),
        (Status::internal("disk full"), "Failed"),
        (Status::permission_denied("no"), "Rejected/AdminAccessDenied"),
        (Status::unauthenticated("who are you"), "Rejected/AdminAccessDenied"),
        (Status::already_exists("twice"), "Failed"),
    ];
    for (status, expected) in cases {
        let fake = Arc::new(FakeBroker::default());
        fake.fail("CreateTopic", status.clone());
        let admin = admin(&serve(fake.clone()));
        let err = AdminSync::<Topic>::apply(&admin, &endpoint(), &topic(json!({})))
            .await
            .expect_err("fails");
        let kind = match &err {
            AdminError::Rejected { reason, .. } => format!("Rejected/{reason}"),
            AdminError::Unreachable { .. } => "Unreachable".into(),
            AdminError::NotSupported { .. } => "NotSupported".into(),
            AdminError::NotFound { .. } => "NotFound".into(),
            AdminError::Failed { .. } => "Failed".into(),
            AdminError::Credentials { .. } => "Credentials".into(),
        };
        assert_eq!(kind, expected, "{status:?}");
        assert!(err.to_string().contains(status.message()), "{err}");
        assert!(err.to_string().contains("CreateTopic"), "{err}");
    }
}

#[tokio::test]
async fn a_closed_port_is_unreachable_and_names_the_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let admin = admin(&url);
    let err = AdminSync::<Topic>::apply(&admin, &endpoint(), &topic(json!({})))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, AdminError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let admin = GrpcAdmin::new(url).with_timeouts(Timeouts {
        connect: Duration::from_millis(300),
        call: Duration::from_millis(300),
        status: Duration::from_millis(300),
        decommission: Duration::from_millis(300),
    });
    let err = admin.cluster_status(&endpoint()).await.expect_err("times out");
    assert!(matches!(err, AdminError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn topic_delete_calls_delete_topic_and_a_missing_topic_is_fine() {
    let fake = Arc::new(FakeBroker::default());
    fake.topics
        .lock()
        .expect("lock")
        .insert("orders".into(), existing("orders", 1, 3, 0, 0));
    let admin = admin(&serve(fake.clone()));
    let t = topic(json!({"deletionPolicy": "Delete"}));
    AdminSync::<Topic>::delete(&admin, &endpoint(), &t)
        .await
        .expect("deletes");
    assert!(fake.topics.lock().expect("lock").is_empty());
    AdminSync::<Topic>::delete(&admin, &endpoint(), &t)
        .await
        .expect("already gone is fine");

    fake.fail("DeleteTopic", Status::not_found("no such topic"));
    AdminSync::<Topic>::delete(&admin, &endpoint(), &t)
        .await
        .expect("NOT_FOUND is fine");
    fake.fail("DeleteTopic", Status::unavailable("no leader"));
    let err = AdminSync::<Topic>::delete(&admin, &endpoint(), &t)
        .await
        .expect_err("retried later");
    assert!(matches!(err, AdminError::Unreachable { .. }), "{err:?}");
    assert_eq!(fake.calls().iter().filter(|c| *c == "DeleteTopic orders").count(), 4);
}

fn acl(topic: serde_json::Value) -> Acl {
    let mut a = Acl::new(
        "orders-acl",
        serde_json::from_value(json!({"clusterRef": {"name": "demo"}, "topic": topic,
            "public": true, "users": ["alice"], "roles": ["consumer"]}))
        .expect("spec"),
    );
    a.metadata.namespace = Some("prod".into());
    a
}

/// Fixed credentials for every cluster.
struct Static(Option<AdminCredentials>);

impl CredentialSource for Static {
    fn credentials<'a>(&'a self, _: &'a ClusterEndpoint) -> AdminFuture<'a, Option<AdminCredentials>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

#[tokio::test]
async fn every_call_carries_the_clusters_credentials() {
    let fake = Arc::new(FakeBroker::default());
    let url = serve(fake.clone());
    let admin = admin(&url).with_credentials(Arc::new(Static(Some(AdminCredentials::new("admin", "pw")))));
    admin.cluster_status(&endpoint()).await.expect("status");
    admin
        .upsert_user(&endpoint(), "alice", &["producer".to_string()], "alice-pw")
        .await
        .expect("upserted");
    AdminSync::<Acl>::apply(&admin, &endpoint(), &acl(json!({"name": "orders"})))
        .await
        .expect("applied");
    let auths = fake.authorizations.lock().expect("lock").clone();
    assert_eq!(
        auths.len(),
        5,
        "ClusterStatus, UpsertUser, ListAcls, ListUsers, UpsertAcl"
    );
    assert!(
        auths.iter().all(|a| a.as_deref() == Some("Basic YWRtaW46cHc=")),
        "{auths:?}"
    );

    // A cluster without authentication: no header at all.
    let anonymous = admin_without(&url);
    anonymous.cluster_status(&endpoint()).await.expect("status");
    assert_eq!(fake.authorizations.lock().expect("lock").last(), Some(&None));
}

fn admin_without(url: &str) -> GrpcAdmin {
    admin(url).with_credentials(Arc::new(Static(None)))
}

#[tokio::test]
async fn users_are_upserted_with_their_password_and_unknown_roles_are_named() {
    let fake = Arc::new(FakeBroker::default());
    let admin = admin(&serve(fake.clone()));
    admin
        .upsert_user(&endpoint(), "alice", &["producer".to_string()], "pw-1")
        .await
        .expect("upserted");
    assert_eq!(
        fake.users.lock().expect("lock").get("alice"),
        Some(&(vec!["producer".to_string()], "pw-1".to_string()))
    );
    let err = admin
        .upsert_user(&endpoint(), "bob", &["auditor".to_string()], "pw-2")
        .await
        .expect_err("unknown role");
    assert!(
        matches!(&err, AdminError::Rejected { reason: "UnknownRole", message, .. }
            if message.contains("'auditor'") && !message.contains("pw-2")),
        "{err:?}"
    );
    assert!(!fake.users.lock().expect("lock").contains_key("bob"));
    admin.delete_user(&endpoint(), "alice").await.expect("deleted");
    admin
        .delete_user(&endpoint(), "alice")
        .await
        .expect("a missing user is fine");
    assert!(fake.users.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn acls_are_written_only_when_they_drift() {
    let fake = Arc::new(FakeBroker::default());
    fake.users
        .lock()
        .expect("lock")
        .insert("alice".into(), (vec!["consumer".into()], "pw".into()));
    let admin = admin(&serve(fake.clone()));
    let a = acl(json!({"pattern": "orders.*"}));
    let synced = AdminSync::<Acl>::apply(&admin, &endpoint(), &a)
        .await
        .expect("upserted");
    assert_eq!(
        synced.message,
        "ACL on topics matching 'orders.*': public=true, users: alice, roles: consumer (created)"
    );
    assert_eq!(synced.warning, None);
    assert_eq!(synced.checked, Some(PRINCIPALS_KNOWN));
    // Unchanged: no write.
    let synced = AdminSync::<Acl>::apply(&admin, &endpoint(), &a).await.expect("in sync");
    assert!(!synced.message.contains('('), "{}", synced.message);
    // Changed on the brokers behind the operator's back: put back.
    fake.acls
        .lock()
        .expect("lock")
        .get_mut(&("orders.*".to_string(), true))
        .expect("held")
        .users = vec!["mallory".into()];
    let synced = AdminSync::<Acl>::apply(&admin, &endpoint(), &a)
        .await
        .expect("corrected");
    assert!(synced.message.ends_with("(drift corrected)"), "{}", synced.message);
    assert_eq!(
        fake.calls().iter().filter(|c| c.starts_with("UpsertAcl")).count(),
        2,
        "{:?}",
        fake.calls()
    );
    assert_eq!(
        fake.acls.lock().expect("lock")[&("orders.*".to_string(), true)].users,
        vec!["alice".to_string()]
    );
    AdminSync::<Acl>::delete(&admin, &endpoint(), &a)
        .await
        .expect("deleted");
    assert!(fake.acls.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn acls_naming_unknown_users_or_roles_are_applied_with_a_warning() {
    let fake = Arc::new(FakeBroker::default());
    let admin = admin(&serve(fake.clone()));
    let mut a = acl(json!({"name": "orders"}));
    a.spec.roles = vec!["consumer".into(), "auditors".into()];
    let synced = AdminSync::<Acl>::apply(&admin, &endpoint(), &a).await.expect("applied");
    let w = synced.warning.expect("warning");
    assert_eq!(w.reason, "UnknownUserAndRole");
    assert!(
        w.message
            .starts_with("no user 'alice' and no role 'auditors' exist on the brokers"),
        "{}",
        w.message
    );
    assert!(
        fake.acls
            .lock()
            .expect("lock")
            .contains_key(&("orders".to_string(), false))
    );
}

#[tokio::test]
async fn decommission_removes_the_member_and_is_idempotent() {
    let fake = Arc::new(FakeBroker::default());
    *fake.members.lock().expect("lock") = vec![
        FakeBroker::member(0, true),
        FakeBroker::member(1, false),
        FakeBroker::member(2, false),
    ];
    let admin = admin(&serve(fake.clone()));
    admin.decommission(&endpoint(), 2).await.expect("decommissioned");
    admin
        .decommission(&endpoint(), 2)
        .await
        .expect("not a member any more: done already");
    assert_eq!(fake.members.lock().expect("lock").len(), 2);

    fake.fail("Decommission", Status::failed_precondition("replicas cannot be moved"));
    let err = admin.decommission(&endpoint(), 1).await.expect_err("refused");
    assert!(
        matches!(
            err,
            AdminError::Rejected {
                reason: "BrokerRefused",
                ..
            }
        ),
        "{err:?}"
    );
    fake.fail("Decommission", Status::unimplemented("later"));
    let err = admin.decommission(&endpoint(), 1).await.expect_err("unsupported");
    assert!(
        matches!(
            err,
            AdminError::NotSupported {
                feature: "decommissioning brokers",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn cluster_status_reports_leader_and_members_by_id() {
    let fake = Arc::new(FakeBroker::default());
    let mut learner = FakeBroker::member(2, false);
    learner.role = "learner".into();
    learner.health = "down".into();
    learner.client_addr.clear();
    *fake.members.lock().expect("lock") = vec![learner, FakeBroker::member(1, true), FakeBroker::member(0, false)];
    let admin = admin(&serve(fake.clone()));
    let info = admin.cluster_status(&endpoint()).await.expect("status");
    assert_eq!(info.leader, Some(1));
    let ids: Vec<i64> = info.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![0, 1, 2]);
    assert_eq!(info.members[0].address, "demo-0.demo-headless.prod.svc:9092");
    assert_eq!(
        (
            info.members[2].address.as_str(),
            info.members[2].role.as_str(),
            info.members[2].health.as_str()
        ),
        ("10.0.0.2:9093", "learner", "down"),
        "without a client address the cluster address is shown"
    );
}

#[test]
fn durations_are_shown_in_the_largest_exact_unit() {
    assert_eq!(format_ms(604_800_000), "7d");
    assert_eq!(format_ms(7_200_000), "2h");
    assert_eq!(format_ms(90_000), "90s");
    assert_eq!(format_ms(1_500), "1500ms");
}
