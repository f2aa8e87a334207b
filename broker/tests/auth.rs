//! Authentication and authorization against a real broker on 127.0.0.1:
//! every row of WIRE.md §6.5 with an allowed and a denied case, AUTH and
//! WHOAMI, ACLs (topic and pattern, users and roles, public), the user and
//! ACL opcodes, the audit trail, persistence across a restart, and the
//! authenticated admin gRPC API.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::RawClient;
use flymq_broker::secrets::Secrets;
use flymq_broker::testing::{TestBroker, test_config};
use flymq_proto::*;

const ADMIN_PASSWORD: &str = "admin-pass-1";
const AUTHZ_TEXTS: [&str; 3] = ["authentication required", "unauthorized", "user account is disabled"];

fn secrets() -> Secrets {
    Secrets {
        admin_password: Some(zeroize::Zeroizing::new(ADMIN_PASSWORD.to_owned())),
        ..Secrets::default()
    }
}

async fn start(dir: &std::path::Path, default_public: bool) -> TestBroker {
    let mut config = test_config(dir);
    config.auth_enabled = true;
    config.default_public = default_public;
    TestBroker::start_with_secrets(config, secrets()).await.unwrap()
}

async fn login(broker: &TestBroker, user: &str, password: &str) -> RawClient {
    let mut client = RawClient::connect(broker.client_addr()).await;
    match client.call(auth(user, password)).await {
        Response::Auth(a) => assert!(a.success, "AUTH {user} failed: {}", a.error),
        other => panic!("AUTH answered {other:?}"),
    }
    client
}

fn auth(user: &str, password: &str) -> Request {
    Request::Auth(AuthRequest {
        username: user.into(),
        password: password.into(),
    })
}

fn user_create(name: &str, password: &str, roles: &[&str]) -> Request {
    Request::UserCreate(UserRequest {
        username: name.into(),
        password: password.into(),
        old_password: String::new(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        enabled: true,
    })
}

fn produce(topic: &str, value: &str) -> Request {
    Request::Produce(ProduceRequest {
        topic: topic.into(),
        key: Bytes::new(),
        value: Bytes::from(value.to_owned()),
        partition: 0,
    })
}

fn consume(topic: &str) -> Request {
    Request::Consume(ConsumeRequest {
        topic: topic.into(),
        partition: 0,
        offset: 0,
    })
}

fn acl_set(target: &str, public: bool, users: &[&str], roles: &[&str]) -> Request {
    Request::AclSet(AclSetRequest {
        topic: target.into(),
        public,
        users: users.iter().map(|u| u.to_string()).collect(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    })
}

/// The authorization error of a response, if it is one.
fn denial(response: &Response) -> Option<String> {
    match response {
        Response::Error(e) if AUTHZ_TEXTS.contains(&e.message.as_str()) => Some(e.message.clone()),
        _ => None,
    }
}

async fn expect_ok(client: &mut RawClient, request: Request) -> Response {
    let what = format!("{:?}", request.opcode());
    let response = client.call(request).await;
    assert!(
        !matches!(response, Response::Error(_)),
        "{what} should succeed, got {response:?}"
    );
    response
}

/// Sets up: admin (bootstrap), prod (producer), cons (consumer), guest1
/// (guest), topic `orders` with one record, a group offset.
async fn populated(dir: &std::path::Path, default_public: bool) -> (TestBroker, RawClient) {
    let broker = start(dir, default_public).await;
    let mut admin = login(&broker, "admin", ADMIN_PASSWORD).await;
    expect_ok(&mut admin, user_create("prod", "prod-pass", &["producer"])).await;
    expect_ok(&mut admin, user_create("cons", "cons-pass", &["consumer"])).await;
    expect_ok(&mut admin, user_create("guest1", "guest-pass", &["guest"])).await;
    expect_ok(
        &mut admin,
        Request::CreateTopic(CreateTopicRequest {
            topic: "orders".into(),
            partitions: 1,
        }),
    )
    .await;
    expect_ok(&mut admin, produce("orders", "first")).await;
    expect_ok(
        &mut admin,
        Request::Commit(CommitRequest {
            topic: "orders".into(),
            group_id: "g1".into(),
            partition: 0,
            offset: 1,
        }),
    )
    .await;
    (broker, admin)
}

/// One §6.5 row: `allowed` passes the gate, `denied` gets `denied_text`.
struct Row {
    request: Request,
    allowed: &'static str,
    denied: &'static str,
    denied_text: &'static str,
}

fn rows() -> Vec<Row> {
    let topic = || "orders".to_string();
    let group = |topic: String| GroupPartitionRequest {
        topic,
        group_id: "g1".into(),
        partition: 0,
    };
    let fetch = FetchRequest {
        topic: topic(),
        partition: 0,
        offset: 0,
        max_messages: 10,
        filter: String::new(),
    };
    let read = |request: Request| Row {
        request,
        allowed: "cons",
        denied: "prod",
        denied_text: "unauthorized",
    };
    let write = |request: Request| Row {
        request,
        allowed: "prod",
        denied: "cons",
        denied_text: "unauthorized",
    };
    let admin = |request: Request| Row {
        request,
        allowed: "admin",
        denied: "prod",
        denied_text: "unauthorized",
    };
    let anyone = |request: Request| Row {
        request,
        allowed: "",
        denied: "",
        denied_text: "",
    };
    let authenticated = |request: Request| Row {
        request,
        allowed: "guest1",
        denied: "",
        denied_text: "authentication required",
    };
    let audit_query = AuditQuery {
        limit: 10,
        ..Default::default()
    };
    vec![
        // PRODUCE (and the PRODUCE_BATCH extension): topic write.
        write(produce("orders", "p")),
        write(Request::ProduceBatch(ProduceBatchRequest {
            topic: topic(),
            partition: 0,
            records: vec![BatchRecord {
                key: Bytes::new(),
                value: Bytes::from_static(b"b"),
            }],
        })),
        // CONSUME, FETCH, 0x0A, 0x0B, SUBSCRIBE, GET_OFFSET, GET_LAG: topic read.
        read(consume("orders")),
        read(Request::Fetch(fetch.clone())),
        read(Request::ConsumeZeroCopy(ConsumeRequest {
            topic: topic(),
            partition: 0,
            offset: 0,
        })),
        read(Request::FetchBinary(fetch)),
        read(Request::Subscribe(SubscribeRequest {
            topic: topic(),
            group_id: "g1".into(),
            partition: 0,
            mode: "earliest".into(),
        })),
        read(Request::GetOffset(group(topic()))),
        read(Request::GetLag(group(topic()))),
        // COMMIT: topic read (Go checks nothing; the recommendation).
        read(Request::Commit(CommitRequest {
            topic: topic(),
            group_id: "g1".into(),
            partition: 0,
            offset: 1,
        })),
        read(Request::SeekToTimestamp(SeekToTimestampRequest {
            topic: topic(),
            partition: 0,
            timestamp_ms: 0,
        })),
        // CREATE_TOPIC, DELETE_TOPIC, RESET_OFFSET: admin.
        admin(Request::CreateTopic(CreateTopicRequest {
            topic: "created-by-admin".into(),
            partitions: 1,
        })),
        admin(Request::DeleteTopic(TopicRequest {
            topic: "created-by-admin".into(),
        })),
        admin(Request::ResetOffset(ResetOffsetRequest {
            topic: topic(),
            group_id: "g1".into(),
            partition: 0,
            mode: "earliest".into(),
            offset: 0,
        })),
        // LIST_GROUPS, DESCRIBE_GROUP, DELETE_GROUP, 0x73-0x7B, audit: user management.
        admin(Request::ListGroups),
        admin(Request::DescribeGroup(GroupRequest {
            topic: topic(),
            group_id: "g1".into(),
        })),
        admin(user_create("made-by-admin", "pw-123", &["consumer"])),
        admin(Request::UserUpdate(UserRequest {
            username: "made-by-admin".into(),
            roles: vec!["producer".into()],
            enabled: true,
            ..Default::default()
        })),
        admin(Request::UserGet(UsernameRequest {
            username: "made-by-admin".into(),
        })),
        admin(Request::UserList),
        admin(Request::UserDelete(UsernameRequest {
            username: "made-by-admin".into(),
        })),
        admin(acl_set("acl-topic", false, &["cons"], &[])),
        admin(Request::AclGet(TopicRequest {
            topic: "acl-topic".into(),
        })),
        admin(Request::AclList),
        admin(Request::AclDelete(TopicRequest {
            topic: "acl-topic".into(),
        })),
        admin(Request::AuditQuery(audit_query.clone())),
        admin(Request::AuditQueryAlt(audit_query.clone())),
        admin(Request::AuditExport(AuditExportRequest {
            query: audit_query.clone(),
            format: "json".into(),
        })),
        admin(Request::AuditExportAlt(AuditExportRequest {
            query: audit_query,
            format: "csv".into(),
        })),
        admin(Request::DeleteGroup(GroupRequest {
            topic: topic(),
            group_id: "g1".into(),
        })),
        // PRODUCE_DELAYED, PRODUCE_WITH_TTL, PRODUCE_WITH_SCHEMA, PRODUCE_TX: topic write
        // (past the gate, an unknown transaction id or an unknown schema
        // answer their own errors).
        write(Request::ProduceDelayed(ProduceDelayedRequest {
            topic: topic(),
            data: Bytes::from_static(b"d"),
            delay_ms: 10,
        })),
        write(Request::ProduceWithTtl(ProduceWithTtlRequest {
            topic: topic(),
            data: Bytes::from_static(b"t"),
            ttl_ms: 10,
        })),
        write(Request::ProduceWithSchema(ProduceWithSchemaRequest {
            topic: topic(),
            data: Bytes::from_static(b"{}"),
            schema_name: "s".into(),
        })),
        write(Request::ProduceTx(ProduceTxRequest {
            txn_id: "t1".into(),
            topic: topic(),
            data: Bytes::from_static(b"x"),
        })),
        // BEGIN_TX, COMMIT_TX, ABORT_TX: an authenticated user.
        authenticated(Request::BeginTx),
        authenticated(Request::CommitTx(TxRequest { txn_id: "t1".into() })),
        authenticated(Request::AbortTx(TxRequest { txn_id: "t1".into() })),
        // Schema and DLQ changes: admin; reads: read.
        admin(Request::RegisterSchema(RegisterSchemaRequest {
            name: "s".into(),
            schema_type: "json".into(),
            definition: Bytes::from_static(b"{}"),
        })),
        admin(Request::DeleteSchema(SchemaVersionRequest {
            name: "s".into(),
            version: 1,
        })),
        admin(Request::ReplayDlq(ReplayDlqRequest {
            topic: topic(),
            target: DlqTarget::Offset(0),
        })),
        admin(Request::PurgeDlq(TopicRequest { topic: topic() })),
        Row {
            request: Request::GetSchema(SchemaVersionRequest {
                name: "s".into(),
                version: 1,
            }),
            allowed: "cons",
            denied: "guest1",
            denied_text: "unauthorized",
        },
        Row {
            request: Request::ListSchemas(ListSchemasRequest::default()),
            allowed: "cons",
            denied: "guest1",
            denied_text: "unauthorized",
        },
        Row {
            request: Request::ValidateSchema(ValidateSchemaRequest {
                name: "s".into(),
                message: Bytes::from_static(b"{}"),
            }),
            allowed: "cons",
            denied: "guest1",
            denied_text: "unauthorized",
        },
        read(Request::FetchDlq(FetchDlqRequest {
            topic: topic(),
            max_messages: 10,
        })),
        // FlyMQ extensions of consumers: group assignment and REJECT_RECORD,
        // topic read like SUBSCRIBE (past the gate, an unknown member or
        // offset answers its own error).
        read(Request::JoinGroup(JoinGroupRequest {
            topic: topic(),
            group_id: "g1".into(),
            member_id: String::new(),
            session_timeout_ms: 10_000,
        })),
        read(Request::GroupHeartbeat(GroupMemberRequest {
            topic: topic(),
            group_id: "g1".into(),
            member_id: "m".into(),
        })),
        read(Request::LeaveGroup(GroupMemberRequest {
            topic: topic(),
            group_id: "g1".into(),
            member_id: "m".into(),
        })),
        read(Request::CommitFenced(CommitFencedRequest {
            topic: topic(),
            group_id: "g1".into(),
            partition: 0,
            offset: 1,
            member_id: "m".into(),
            generation: 1,
        })),
        read(Request::RejectRecord(RejectRecordRequest {
            topic: topic(),
            group_id: "g1".into(),
            partition: 0,
            offset: 0,
            reason: "bad".into(),
        })),
        // LIST_TOPICS, CLUSTER_METADATA, AUTH, WHOAMI, ROLE_LIST: no check.
        anyone(Request::ListTopics),
        anyone(Request::ClusterMetadata(ClusterMetadataRequest {
            topic: String::new(),
        })),
        anyone(Request::Whoami),
        anyone(Request::RoleList),
        anyone(Request::ClusterStatus),
    ]
}

async fn as_user(broker: &TestBroker, user: &str) -> RawClient {
    let password = match user {
        "" => return RawClient::connect(broker.client_addr()).await,
        "admin" => ADMIN_PASSWORD,
        "prod" => "prod-pass",
        "cons" => "cons-pass",
        "guest1" => "guest-pass",
        other => panic!("no password for {other}"),
    };
    login(broker, user, password).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_opcode_row_of_6_5_is_allowed_and_denied_as_recommended() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _admin) = populated(dir.path(), false).await;
    for row in rows() {
        let what = format!("{:?}", row.request.opcode());
        let mut allowed = as_user(&broker, row.allowed).await;
        let answer = allowed.call(row.request.clone()).await;
        assert_eq!(
            denial(&answer),
            None,
            "{what} as '{}' must pass the permission check, got {answer:?}",
            row.allowed
        );
        if row.denied_text.is_empty() {
            continue;
        }
        let mut denied = as_user(&broker, row.denied).await;
        let answer = denied.call(row.request).await;
        assert_eq!(
            denial(&answer).as_deref(),
            Some(row.denied_text),
            "{what} as '{}' must be refused, got {answer:?}",
            row.denied
        );
        // The connection stays usable after a refusal.
        assert!(matches!(
            denied.call(Request::ListTopics).await,
            Response::ListTopics(_)
        ));
    }
    // Anonymous callers: data needs a user, admin needs a user.
    let mut anon = RawClient::connect(broker.client_addr()).await;
    for request in [
        produce("orders", "x"),
        consume("orders"),
        Request::ListGroups,
        Request::UserList,
    ] {
        let answer = anon.call(request).await;
        assert_eq!(
            denial(&answer).as_deref(),
            Some("authentication required"),
            "{answer:?}"
        );
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_needs_the_old_password_or_user_management() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut admin) = populated(dir.path(), true).await;
    let change = |user: &str, old: &str, new: &str| {
        Request::PasswordChange(UserRequest {
            username: user.into(),
            password: new.into(),
            old_password: old.into(),
            ..Default::default()
        })
    };
    let mut cons = as_user(&broker, "cons").await;
    let wrong = cons.call(change("cons", "not-it", "cons-new")).await;
    assert!(
        matches!(&wrong, Response::Error(e) if e.message == "invalid username or password"),
        "{wrong:?}"
    );
    let other = cons.call(change("prod", "prod-pass", "hijacked")).await;
    assert_eq!(denial(&other).as_deref(), Some("unauthorized"), "{other:?}");
    expect_ok(&mut cons, change("cons", "cons-pass", "cons-new")).await;
    expect_ok(&mut admin, change("prod", "", "prod-new")).await;

    let mut client = RawClient::connect(broker.client_addr()).await;
    for (user, old, new) in [("cons", "cons-pass", "cons-new"), ("prod", "prod-pass", "prod-new")] {
        match client.call(auth(user, old)).await {
            Response::Auth(a) => assert!(!a.success, "old password of {user} still works"),
            other => panic!("{other:?}"),
        }
        match client.call(auth(user, new)).await {
            Response::Auth(a) => assert!(a.success, "new password of {user} refused: {}", a.error),
            other => panic!("{other:?}"),
        }
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_answers_and_whoami() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut admin) = populated(dir.path(), false).await;

    // Wrong password and unknown user: the same in-band answer, after the
    // same work. Timing is compared on the fastest of several tries of
    // each, alternating, so a busy machine does not decide the result.
    let mut texts = Vec::new();
    let (mut known, mut unknown) = (Duration::MAX, Duration::MAX);
    for round in 0..12 {
        let user = if round % 2 == 0 { "cons" } else { "nobody" };
        // A fresh connection each time, so the per-connection slow-down does not count.
        let mut client = RawClient::connect(broker.client_addr()).await;
        let started = Instant::now();
        match client.call(auth(user, "wrong")).await {
            Response::Auth(a) => {
                assert!(!a.success && a.username.is_empty() && a.roles.is_empty());
                texts.push(a.error);
            }
            other => panic!("AUTH failure must be in-band, got {other:?}"),
        }
        let took = started.elapsed();
        if round % 2 == 0 {
            known = known.min(took);
        } else {
            unknown = unknown.min(took);
        }
    }
    assert!(texts.iter().all(|t| t == "invalid username or password"), "{texts:?}");
    // Both paths run one argon2 verification with the same parameters.
    assert!(
        unknown * 3 > known && known * 3 > unknown,
        "wrong password took {known:?}, unknown user {unknown:?}"
    );

    // Repeated failures on one connection are slowed down.
    let mut client = RawClient::connect(broker.client_addr()).await;
    for _ in 0..3 {
        client.call(auth("cons", "wrong")).await;
    }
    let started = Instant::now();
    client.call(auth("cons", "wrong")).await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the 4th failure answered after {:?}",
        started.elapsed()
    );

    // A malformed AUTH is an error frame and the connection stays open.
    let mut malformed = bytes::BytesMut::new();
    encode_frame(0x70, 0, b"\x00\x05ab", &mut malformed);
    client.send_raw(&malformed).await;
    let answer = client.read_response().await;
    assert!(matches!(answer, Response::Error(_)), "{answer:?}");
    assert!(matches!(
        client.call(Request::ListTopics).await,
        Response::ListTopics(_)
    ));

    // WHOAMI before and after AUTH.
    match client.call(Request::Whoami).await {
        Response::Whoami(w) => assert!(!w.authenticated && w.username.is_empty()),
        other => panic!("{other:?}"),
    }
    match client.call(auth("admin", ADMIN_PASSWORD)).await {
        Response::Auth(a) => assert!(a.success && a.username == "admin" && a.roles == vec!["admin".to_string()]),
        other => panic!("{other:?}"),
    }
    match client.call(Request::Whoami).await {
        Response::Whoami(w) => {
            assert!(w.authenticated && w.username == "admin");
            assert_eq!(w.roles, vec!["admin".to_string()]);
            assert_eq!(w.permissions, vec!["read".to_string(), "write".into(), "admin".into()]);
        }
        other => panic!("{other:?}"),
    }

    // A disabled account cannot log in, and a connection it already has is refused.
    let mut cons = as_user(&broker, "cons").await;
    expect_ok(
        &mut admin,
        Request::UserUpdate(UserRequest {
            username: "cons".into(),
            roles: vec!["consumer".into()],
            enabled: false,
            ..Default::default()
        }),
    )
    .await;
    let answer = cons.call(consume("orders")).await;
    assert_eq!(
        denial(&answer).as_deref(),
        Some("user account is disabled"),
        "{answer:?}"
    );
    match RawClient::connect(broker.client_addr())
        .await
        .call(auth("cons", "cons-pass"))
        .await
    {
        Response::Auth(a) => assert_eq!(a.error, "user account is disabled"),
        other => panic!("{other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_grant_users_roles_patterns_and_public_topics() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut admin) = populated(dir.path(), false).await;
    expect_ok(&mut admin, user_create("auditor", "aud-pass", &["guest"])).await;
    let mut guest = as_user(&broker, "guest1").await;
    let mut auditor = login(&broker, "auditor", "aud-pass").await;

    // No ACL and default-public off: a guest may not read.
    assert_eq!(
        denial(&guest.call(consume("orders")).await).as_deref(),
        Some("unauthorized")
    );
    // ACL naming the user.
    expect_ok(&mut admin, acl_set("orders", false, &["guest1"], &[])).await;
    expect_ok(&mut guest, consume("orders")).await;
    expect_ok(&mut guest, produce("orders", "from-guest")).await;
    assert_eq!(
        denial(&auditor.call(consume("orders")).await).as_deref(),
        Some("unauthorized")
    );
    // ACL naming a role.
    expect_ok(&mut admin, acl_set("orders", false, &[], &["guest"])).await;
    expect_ok(&mut auditor, consume("orders")).await;
    // Deleting the ACL takes the access away at once.
    expect_ok(&mut admin, Request::AclDelete(TopicRequest { topic: "orders".into() })).await;
    assert_eq!(
        denial(&auditor.call(consume("orders")).await).as_deref(),
        Some("unauthorized")
    );

    // A public pattern ACL: any authenticated user, not anonymous ones.
    expect_ok(&mut admin, acl_set("logs.*", true, &[], &[])).await;
    expect_ok(&mut guest, produce("logs.app", "line")).await;
    let mut anon = RawClient::connect(broker.client_addr()).await;
    assert_eq!(
        denial(&anon.call(produce("logs.app", "x")).await).as_deref(),
        Some("authentication required")
    );
    // Public never grants admin.
    assert_eq!(
        denial(
            &guest
                .call(Request::DeleteTopic(TopicRequest {
                    topic: "logs.app".into()
                }))
                .await
        )
        .as_deref(),
        Some("unauthorized")
    );
    match admin.call(Request::AclList).await {
        Response::AclList(list) => {
            assert!(!list.default_public);
            assert_eq!(list.entries.len(), 1);
            assert!(list.entries[0].topic == "logs.*" && list.entries[0].public);
        }
        other => panic!("{other:?}"),
    }
    // An ACL target that is neither a topic nor a pattern is refused.
    let answer = admin.call(acl_set("bad topic!", false, &[], &[])).await;
    assert!(
        matches!(&answer, Response::Error(e) if e.message.contains("invalid ACL target")),
        "{answer:?}"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_auth_counts_for_the_requests_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _admin) = populated(dir.path(), false).await;
    let mut client = RawClient::connect(broker.client_addr()).await;
    let mut bytes = Vec::new();
    for request in [auth("prod", "prod-pass"), produce("orders", "pipelined")] {
        bytes.extend_from_slice(&request.to_frame_bytes().unwrap());
    }
    client.send_raw(&bytes).await;
    assert!(matches!(client.read_response().await, Response::Auth(a) if a.success));
    let answer = client.read_response().await;
    assert!(matches!(answer, Response::Produce(_)), "{answer:?}");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_acls_survive_a_restart_and_the_audit_trail_records_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut admin) = populated(dir.path(), false).await;
    expect_ok(&mut admin, acl_set("orders", false, &["guest1"], &[])).await;
    // A failed login and a refused change are audited too.
    let mut client = RawClient::connect(broker.client_addr()).await;
    client.call(auth("prod", "wrong-password")).await;
    let dup = admin.call(user_create("prod", "again", &[])).await;
    assert!(
        matches!(&dup, Response::Error(e) if e.message.contains("already exists")),
        "{dup:?}"
    );
    broker.shutdown().await;

    // Restart without the bootstrap password: everything is still there.
    let mut config = test_config(dir.path());
    config.auth_enabled = true;
    config.default_public = false;
    let broker = TestBroker::start_with_secrets(config, Secrets::default())
        .await
        .unwrap();
    let mut guest = as_user(&broker, "guest1").await;
    expect_ok(&mut guest, consume("orders")).await;
    let mut admin = as_user(&broker, "admin").await;
    let events = match admin
        .call(Request::AuditQuery(AuditQuery {
            limit: 1000,
            ..Default::default()
        }))
        .await
    {
        Response::AuditQuery(q) => q.events,
        other => panic!("{other:?}"),
    };
    let has = |event_type: &str, resource: &str, action: &str, result: &str| {
        events
            .iter()
            .any(|e| e.event_type == event_type && e.resource == resource && e.action == action && e.result == result)
    };
    assert!(has("user", "user:admin", "bootstrap", "success"), "{events:#?}");
    assert!(has("user", "user:cons", "create", "success"));
    assert!(has("user", "user:prod", "create", "failure"), "the refused duplicate");
    assert!(has("acl", "acl:orders", "set", "success"));
    assert!(has("topic", "topic:orders", "create", "success"));
    assert!(
        events
            .iter()
            .any(|e| e.event_type == "auth" && e.user == "prod" && e.result == "failure")
    );
    // Newest first, and no password anywhere.
    assert!(
        events
            .windows(2)
            .all(|w| w[0].id.parse::<u64>().unwrap() > w[1].id.parse::<u64>().unwrap())
    );
    let text = format!("{events:?}");
    for secret in [ADMIN_PASSWORD, "prod-pass", "wrong-password", "again"] {
        assert!(!text.contains(secret), "the audit trail holds a password");
    }
    // Filters: by user and type.
    match admin
        .call(Request::AuditQuery(AuditQuery {
            event_types: vec!["auth".into()],
            user: "prod".into(),
            ..Default::default()
        }))
        .await
    {
        Response::AuditQuery(q) => {
            assert!(!q.events.is_empty() && q.events.iter().all(|e| e.event_type == "auth" && e.user == "prod"))
        }
        other => panic!("{other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_grpc_requires_an_admin() {
    use flymq_proto::grpc::admin::admin_client::AdminClient;
    use flymq_proto::grpc::admin::{ListTopicsRequest, UpsertAclRequest, UpsertUserRequest};

    let dir = tempfile::tempdir().unwrap();
    let (broker, _admin) = populated(dir.path(), false).await;
    let mut client = AdminClient::connect(format!("http://{}", broker.admin_addr()))
        .await
        .unwrap();
    let call = |user: Option<(&str, &str)>| {
        let mut request = tonic::Request::new(ListTopicsRequest {});
        if let Some((u, p)) = user {
            let value = flymq_security::tls::grpc::basic_authorization(u, p);
            request.metadata_mut().insert("authorization", value.parse().unwrap());
        }
        request
    };
    let status = client.list_topics(call(None)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let status = client.list_topics(call(Some(("admin", "wrong")))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(!status.message().contains("wrong"));
    let status = client.list_topics(call(Some(("cons", "cons-pass")))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let topics = client.list_topics(call(Some(("admin", ADMIN_PASSWORD)))).await.unwrap();
    assert!(topics.into_inner().topics.iter().any(|t| t.name == "orders"));

    // The calls the operator's User and ACL controllers make.
    let mut upsert = tonic::Request::new(UpsertUserRequest {
        username: "svc".into(),
        roles: vec!["consumer".into()],
        password: "svc-pass".into(),
    });
    let auth_value = flymq_security::tls::grpc::basic_authorization("admin", ADMIN_PASSWORD);
    upsert
        .metadata_mut()
        .insert("authorization", auth_value.parse().unwrap());
    client.upsert_user(upsert).await.unwrap();
    let mut acl = tonic::Request::new(UpsertAclRequest {
        topic: "svc.*".into(),
        is_pattern: true,
        public: false,
        users: vec!["svc".into()],
        roles: vec![],
    });
    acl.metadata_mut().insert("authorization", auth_value.parse().unwrap());
    client.upsert_acl(acl).await.unwrap();
    let mut svc = login(&broker, "svc", "svc-pass").await;
    expect_ok(&mut svc, consume("orders")).await;
    let mut bad = tonic::Request::new(UpsertUserRequest {
        username: "x".into(),
        roles: vec!["no-such-role".into()],
        password: "pw".into(),
    });
    bad.metadata_mut().insert("authorization", auth_value.parse().unwrap());
    let status = client.upsert_user(bad).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("no-such-role"));
    // Custom roles: created through the admin API, granted to a user, and
    // refused for deletion while a user has them.
    let mut role = tonic::Request::new(flymq_proto::grpc::admin::UpsertRoleRequest {
        name: "auditors".into(),
        permissions: vec!["read".into()],
        description: "read everything".into(),
    });
    role.metadata_mut().insert("authorization", auth_value.parse().unwrap());
    client.upsert_role(role).await.unwrap();
    let mut aud = tonic::Request::new(UpsertUserRequest {
        username: "aud".into(),
        roles: vec!["auditors".into()],
        password: "aud-pass".into(),
    });
    aud.metadata_mut().insert("authorization", auth_value.parse().unwrap());
    client.upsert_user(aud).await.unwrap();
    let mut aud_client = login(&broker, "aud", "aud-pass").await;
    expect_ok(&mut aud_client, consume("orders")).await;
    assert_eq!(
        denial(&aud_client.call(produce("orders", "no")).await).as_deref(),
        Some("unauthorized")
    );
    match aud_client.call(Request::RoleList).await {
        Response::RoleList(list) => assert!(
            list.roles
                .iter()
                .any(|r| r.name == "auditors" && r.permissions == vec!["read".to_string()])
        ),
        other => panic!("{other:?}"),
    }
    let mut in_use = tonic::Request::new(flymq_proto::grpc::admin::DeleteRoleRequest {
        name: "auditors".into(),
    });
    in_use
        .metadata_mut()
        .insert("authorization", auth_value.parse().unwrap());
    let status = client.delete_role(in_use).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let mut builtin = tonic::Request::new(flymq_proto::grpc::admin::UpsertRoleRequest {
        name: "admin".into(),
        permissions: vec![],
        description: String::new(),
    });
    builtin
        .metadata_mut()
        .insert("authorization", auth_value.parse().unwrap());
    assert_eq!(
        client.upsert_role(builtin).await.unwrap_err().code(),
        tonic::Code::FailedPrecondition
    );

    // Deleting what does not exist is NOT_FOUND (the operator's finalizers rely on it).
    let mut gone = tonic::Request::new(flymq_proto::grpc::admin::DeleteUserRequest {
        username: "never-existed".into(),
    });
    gone.metadata_mut().insert("authorization", auth_value.parse().unwrap());
    let status = client.delete_user(gone).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    let mut gone = tonic::Request::new(flymq_proto::grpc::admin::DeleteAclRequest {
        topic: "never-had-an-acl".into(),
        is_pattern: false,
    });
    gone.metadata_mut().insert("authorization", auth_value.parse().unwrap());
    let status = client.delete_acl(gone).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    broker.shutdown().await;
}
