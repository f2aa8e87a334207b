//! The admin SDK client and the `flymq-cli cluster` admin commands against a
//! fake admin gRPC server (the generated `Admin` service on loopback port 0).
//! The fake checks only the client side: what is sent, how answers and
//! errors come out. The real broker's admin API is tested in the broker.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flymq_client::Error;
use flymq_client::admin::{AdminClient, ClusterStatusReply, GroupStatus, Member, NewTopic, TopicInfo};
use flymq_proto::grpc::admin as pb;
use pb::admin_server::{Admin, AdminServer};
use tonic::{Request, Response, Status};

#[derive(Debug, Default)]
struct Seen {
    topics: BTreeMap<String, TopicInfo>,
    created: Vec<pb::CreateTopicRequest>,
    decommissioned: Vec<u64>,
    transfers: Vec<pb::TransferLeadershipRequest>,
}

#[derive(Debug, Clone, Default)]
struct FakeAdmin {
    seen: Arc<Mutex<Seen>>,
}

impl FakeAdmin {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().expect("fake admin state")
    }
}

fn member(id: u64, role: &str, health: &str, leader: bool, leading: u32) -> Member {
    Member {
        node_id: id,
        cluster_addr: format!("127.0.0.{id}:9093"),
        client_addr: format!("127.0.0.{id}:9092"),
        admin_addr: format!("127.0.0.{id}:9096"),
        role: role.into(),
        health: health.into(),
        is_metadata_leader: leader,
        leading,
    }
}

fn sample_status() -> ClusterStatusReply {
    ClusterStatusReply {
        cluster_id: "test-cluster".into(),
        node_id: 1,
        members: vec![
            member(1, "voter", "up", true, 2),
            member(2, "voter", "down", false, 1),
            member(3, "learner", "up", false, 0),
        ],
        groups: vec![GroupStatus {
            group_id: 0,
            name: "metadata".into(),
            leader: 1,
            has_leader: true,
            term: 4,
            committed_index: 42,
            applied_index: 42,
            voters: vec![1, 2],
            in_sync: vec![1],
        }],
        under_replicated: vec!["orders/1".into()],
    }
}

#[tonic::async_trait]
impl Admin for FakeAdmin {
    async fn upsert_role(
        &self,
        _request: tonic::Request<flymq_proto::grpc::admin::UpsertRoleRequest>,
    ) -> Result<tonic::Response<flymq_proto::grpc::admin::UpsertRoleReply>, tonic::Status> {
        Err(tonic::Status::unimplemented("roles are not faked"))
    }

    async fn delete_role(
        &self,
        _request: tonic::Request<flymq_proto::grpc::admin::DeleteRoleRequest>,
    ) -> Result<tonic::Response<flymq_proto::grpc::admin::DeleteRoleReply>, tonic::Status> {
        Err(tonic::Status::unimplemented("roles are not faked"))
    }

    async fn create_topic(&self, request: Request<pb::CreateTopicRequest>) -> Result<Response<TopicInfo>, Status> {
        let req = request.into_inner();
        let mut seen = self.seen();
        seen.created.push(req.clone());
        if let Some(existing) = seen.topics.get(&req.name) {
            if req.if_not_exists {
                return Ok(Response::new(existing.clone()));
            }
            return Err(Status::already_exists(format!("topic '{}' already exists", req.name)));
        }
        let info = TopicInfo {
            name: req.name.clone(),
            partitions: req.partitions,
            replication_factor: req.replication_factor,
            config: req.config,
            partition_info: Vec::new(),
        };
        seen.topics.insert(req.name, info.clone());
        Ok(Response::new(info))
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicReply>, Status> {
        let existed = self.seen().topics.remove(&request.into_inner().name).is_some();
        Ok(Response::new(pb::DeleteTopicReply { existed }))
    }

    async fn describe_topic(&self, request: Request<pb::DescribeTopicRequest>) -> Result<Response<TopicInfo>, Status> {
        let name = request.into_inner().name;
        match self.seen().topics.get(&name) {
            Some(info) => Ok(Response::new(info.clone())),
            None => Err(Status::not_found(format!("topic '{name}' does not exist"))),
        }
    }

    async fn list_topics(&self, _: Request<pb::ListTopicsRequest>) -> Result<Response<pb::ListTopicsReply>, Status> {
        let topics = self.seen().topics.values().cloned().collect();
        Ok(Response::new(pb::ListTopicsReply { topics }))
    }

    async fn update_topic_config(
        &self,
        _: Request<pb::UpdateTopicConfigRequest>,
    ) -> Result<Response<TopicInfo>, Status> {
        Err(Status::unimplemented(""))
    }

    async fn add_partitions(&self, _: Request<pb::AddPartitionsRequest>) -> Result<Response<TopicInfo>, Status> {
        Err(Status::unimplemented(""))
    }

    async fn cluster_status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        Ok(Response::new(sample_status()))
    }

    async fn join_node(&self, _: Request<pb::JoinNodeRequest>) -> Result<Response<pb::JoinNodeReply>, Status> {
        Err(Status::unimplemented(""))
    }

    async fn decommission(
        &self,
        request: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::DecommissionReply>, Status> {
        let node_id = request.into_inner().node_id;
        match node_id {
            1 => Err(Status::failed_precondition(
                "cannot decommission node 1: it leads the metadata group; transfer leadership first",
            )),
            2 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.seen().decommissioned.push(node_id);
                Ok(Response::new(pb::DecommissionReply { moved: 3 }))
            }
            other => Err(Status::not_found(format!("node {other} is not a member"))),
        }
    }

    async fn transfer_leadership(
        &self,
        request: Request<pb::TransferLeadershipRequest>,
    ) -> Result<Response<pb::TransferLeadershipReply>, Status> {
        let req = request.into_inner();
        let transferred = if req.has_from { 2 } else { 1 };
        self.seen().transfers.push(req);
        Ok(Response::new(pb::TransferLeadershipReply { transferred }))
    }

    async fn upsert_user(&self, _: Request<pb::UpsertUserRequest>) -> Result<Response<pb::UpsertUserReply>, Status> {
        Err(Status::unimplemented("authentication is not supported yet"))
    }

    async fn delete_user(&self, _: Request<pb::DeleteUserRequest>) -> Result<Response<pb::DeleteUserReply>, Status> {
        Err(Status::unimplemented("authentication is not supported yet"))
    }

    async fn list_users(&self, _: Request<pb::ListUsersRequest>) -> Result<Response<pb::ListUsersReply>, Status> {
        Err(Status::unimplemented("authentication is not supported yet"))
    }

    async fn upsert_acl(&self, _: Request<pb::UpsertAclRequest>) -> Result<Response<pb::UpsertAclReply>, Status> {
        Err(Status::unimplemented("authentication is not supported yet"))
    }

    async fn delete_acl(&self, _: Request<pb::DeleteAclRequest>) -> Result<Response<pb::DeleteAclReply>, Status> {
        Err(Status::unimplemented("authentication is not supported yet"))
    }

    async fn list_acls(&self, _: Request<pb::ListAclsRequest>) -> Result<Response<pb::ListAclsReply>, Status> {
        Err(Status::unimplemented("authentication is not supported yet"))
    }
}

/// Serves a fake admin API on 127.0.0.1, port 0, for the rest of the test.
async fn start_fake() -> (SocketAddr, FakeAdmin) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let fake = FakeAdmin::default();
    let service = AdminServer::new(fake.clone());
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        // One service, so no router (tonic's `router` feature is off).
        let _ = tonic::transport::Server::builder()
            .serve_with_incoming(service, incoming)
            .await;
    });
    (addr, fake)
}

/// An address nothing listens on. Not a port 0 pick released again: a
/// broker of a test running at the same time could take it in between.
/// Port 1 is privileged and no test binds it.
fn dead_address() -> String {
    "127.0.0.1:1".to_owned()
}

#[tokio::test]
async fn sdk_calls_send_their_arguments_and_keep_broker_messages() {
    let (addr, fake) = start_fake().await;
    let admin = AdminClient::connect(&format!("http://{addr}"), Duration::from_secs(5))
        .await
        .expect("connect");
    assert_eq!(admin.addr(), addr.to_string());

    let status = admin.cluster_status().await.expect("status");
    assert_eq!(status.cluster_id, "test-cluster");
    assert_eq!(status.members.len(), 3);

    let info = admin
        .create_topic(NewTopic::new("orders", 6).replication_factor(3).retention(60_000, 0))
        .await
        .expect("create");
    assert_eq!((info.partitions, info.replication_factor), (6, 3));
    {
        let seen = fake.seen();
        let sent = &seen.created[0];
        assert_eq!(
            (sent.name.as_str(), sent.partitions, sent.replication_factor),
            ("orders", 6, 3)
        );
        assert_eq!(sent.config.map(|c| c.retention_ms), Some(60_000));
        assert!(!sent.if_not_exists);
    }
    let err = admin.create_topic(NewTopic::new("orders", 6)).await.unwrap_err();
    assert_eq!(err.admin_code(), Some(tonic::Code::AlreadyExists));
    assert_eq!(
        err.to_string(),
        "admin CreateTopic failed: topic 'orders' already exists"
    );
    admin
        .create_topic(NewTopic::new("orders", 6).if_not_exists(true))
        .await
        .expect("if_not_exists");

    assert_eq!(admin.describe_topic("orders").await.expect("describe").partitions, 6);
    let names: Vec<String> = admin
        .list_topics()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["orders"]);
    assert!(admin.delete_topic("orders").await.expect("delete"));
    assert!(!admin.delete_topic("orders").await.expect("delete again"));
    let err = admin.describe_topic("orders").await.unwrap_err();
    assert!(
        matches!(&err, Error::Admin { code: tonic::Code::NotFound, message, .. } if message == "topic 'orders' does not exist"),
        "{err:?}"
    );

    assert_eq!(admin.decommission(2).await.expect("decommission"), 3);
    let err = admin.decommission(1).await.unwrap_err();
    assert_eq!(err.admin_code(), Some(tonic::Code::FailedPrecondition));
    assert!(err.to_string().contains("transfer leadership first"), "{err}");
    assert!(!err.is_retriable());

    assert_eq!(admin.transfer_leadership(5, 3).await.expect("transfer"), 1);
    assert_eq!(admin.transfer_leadership_from(2, 3).await.expect("transfer from"), 2);
    let seen = fake.seen();
    assert_eq!(seen.decommissioned, vec![2]);
    let transfers: Vec<(u64, u64, u64, bool)> = seen
        .transfers
        .iter()
        .map(|t| (t.group_id, t.to_node, t.from_node, t.has_from))
        .collect();
    assert_eq!(transfers, vec![(5, 3, 0, false), (0, 3, 2, true)]);
}

#[tokio::test]
async fn sdk_reports_an_unreachable_admin_api() {
    let dead = dead_address();
    let err = AdminClient::connect(&dead, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot reach the admin API at {dead}: connection refused")
    );
    assert!(err.is_connection_error());
    let err = AdminClient::connect("no-port", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[tokio::test]
async fn sdk_decommission_times_out_on_its_own_deadline() {
    let (addr, _fake) = start_fake().await;
    let admin = AdminClient::connect(&addr.to_string(), Duration::from_secs(5))
        .await
        .expect("connect")
        .with_decommission_timeout(Duration::from_millis(10));
    let err = admin.decommission(2).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { op: "Decommission", .. }), "{err:?}");
}

/// Runs `flymq-cli` with `args` (no FLYMQ_* from the caller's environment
/// except those in `env`).
fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flymq-cli"));
    command
        .args(args)
        .env_remove("FLYMQ_ADMIN_ADDR")
        .env_remove("FLYMQ_BOOTSTRAP")
        .env_remove("FLYMQ_USERNAME")
        .env_remove("FLYMQ_PASSWORD");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run flymq-cli")
}

fn stdout_of(out: &Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "flymq-cli {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

async fn run_cli(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cli(&args, &env)
    })
    .await
    .expect("cli task")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_status_and_members() {
    let (addr, _fake) = start_fake().await;
    let admin = addr.to_string();

    let args = strings(&["--admin", &admin, "cluster", "status"]);
    let out = run_cli(args.clone(), Vec::new()).await;
    let text = stdout_of(&out, &["cluster", "status"]);
    assert_eq!(
        text,
        "cluster test-cluster: 3 member(s), answered by node 1\n\
         NODE  CLIENT_ADDR     ROLE     HEALTH  METADATA_LEADER  PARTITIONS_LED\n\
         1     127.0.0.1:9092  voter    up      *                2\n\
         2     127.0.0.2:9092  voter    down                     1\n\
         3     127.0.0.3:9092  learner  up                       0\n\
         under-replicated partitions (1): orders/1\n"
    );

    // The address from the environment, groups included, JSON.
    let out = run_cli(
        strings(&["cluster", "status", "--groups", "-o", "json"]),
        vec![("FLYMQ_ADMIN_ADDR".into(), admin.clone())],
    )
    .await;
    let json: serde_json::Value =
        serde_json::from_str(stdout_of(&out, &["cluster", "status", "-o", "json"]).trim()).expect("one JSON object");
    assert_eq!(json["cluster_id"], "test-cluster");
    assert_eq!(json["members"][1]["health"], "down");
    assert_eq!(json["members"][0]["metadata_leader"], true);
    assert_eq!(json["under_replicated"][0], "orders/1");
    assert_eq!(json["groups"][0]["name"], "metadata");

    let out = run_cli(
        strings(&["--admin", &admin, "cluster", "status", "--groups"]),
        Vec::new(),
    )
    .await;
    assert!(
        stdout_of(&out, &["cluster", "status", "--groups"]).contains("0      metadata  1       4"),
        "groups table"
    );

    let out = run_cli(
        strings(&["--admin", &admin, "cluster", "members", "-o", "json"]),
        Vec::new(),
    )
    .await;
    let members: Vec<serde_json::Value> = stdout_of(&out, &["cluster", "members"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let ids: Vec<u64> = members.iter().map(|m| m["node_id"].as_u64().expect("id")).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(members[2]["role"], "learner");

    let out = run_cli(strings(&["--admin", &admin, "cluster", "members"]), Vec::new()).await;
    let text = stdout_of(&out, &["cluster", "members"]);
    assert!(text.starts_with("NODE  CLIENT_ADDR"), "{text}");
    assert!(!text.contains("under-replicated"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_decommission_and_transfer_leader() {
    let (addr, fake) = start_fake().await;
    let admin = addr.to_string();

    let out = run_cli(
        strings(&["--admin", &admin, "cluster", "decommission", "2"]),
        Vec::new(),
    )
    .await;
    assert_eq!(
        stdout_of(&out, &["cluster", "decommission", "2"]),
        "done: moved 3 partition replicas; node 2 removed\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "decommissioning node 2: moving replicas…\n"
    );
    assert_eq!(fake.seen().decommissioned, vec![2]);

    let out = run_cli(
        strings(&["--admin", &admin, "cluster", "decommission", "1"]),
        Vec::new(),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "error: admin Decommission failed: cannot decommission node 1: it leads the metadata group; transfer leadership first"
    );
    assert!(out.stdout.is_empty());

    let out = run_cli(
        strings(&[
            "--admin",
            &admin,
            "cluster",
            "transfer-leader",
            "--group",
            "7",
            "--to",
            "3",
        ]),
        Vec::new(),
    )
    .await;
    assert_eq!(
        stdout_of(&out, &["cluster", "transfer-leader"]),
        "transferred 1 group(s): group 7 is now led by node 3\n"
    );
    let out = run_cli(
        strings(&[
            "--admin",
            &admin,
            "cluster",
            "transfer-leader",
            "--from",
            "2",
            "--to",
            "3",
            "-o",
            "json",
        ]),
        Vec::new(),
    )
    .await;
    let json: serde_json::Value =
        serde_json::from_str(stdout_of(&out, &["cluster", "transfer-leader", "--from"]).trim()).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!({"group_id": null, "from_node": 2, "to_node": 3, "transferred": 2})
    );
    let transfers: Vec<(u64, u64, bool)> = fake
        .seen()
        .transfers
        .iter()
        .map(|t| (t.group_id, t.to_node, t.has_from))
        .collect();
    assert_eq!(transfers, vec![(7, 3, false), (0, 3, true)]);
}

#[test]
fn cli_unreachable_admin_api_fails_with_one_clear_line() {
    let dead = dead_address();
    for args in [
        &["--admin", dead.as_str(), "cluster", "status"][..],
        &["--admin", dead.as_str(), "cluster", "decommission", "2"],
    ] {
        let out = cli(args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.lines().last().unwrap_or_default(),
            format!(
                "error: cannot reach the admin API at {dead}: connection refused (is the broker running? is --admin right?)"
            ),
            "{args:?}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = cli(&["--admin", "nowhere", "cluster", "members"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not host:port"),
        "bad address"
    );
}

#[test]
fn cli_unreachable_broker_fails_clearly() {
    let dead = dead_address();
    let out = cli(
        &["--bootstrap", &dead, "cluster", "wire-status", "--timeout", "1s"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: could not connect to any broker"), "{stderr}");
}
