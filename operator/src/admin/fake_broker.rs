//! A fake broker admin API for tests: the generated tonic server
//! (`admin_server::Admin`) on 127.0.0.1:0, holding topics and members in
//! memory and recording every call. The operator's client talks real gRPC
//! over HTTP/2 to it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use flymq_proto::grpc::admin as pb;
use pb::admin_server::{Admin, AdminServer};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// In-memory broker state and the calls received.
#[derive(Default)]
pub struct FakeBroker {
    /// Every call, as `Method arg...`, in order.
    pub calls: Mutex<Vec<String>>,
    /// Topics by name.
    pub topics: Mutex<BTreeMap<String, pb::TopicInfo>>,
    /// Metadata group members.
    pub members: Mutex<Vec<pb::Member>>,
    /// Users: name -> (roles, password). Test-only memory; the password is
    /// kept so tests can check what was sent.
    pub users: Mutex<BTreeMap<String, (Vec<String>, String)>>,
    /// ACLs by (topic or pattern, is_pattern).
    pub acls: Mutex<BTreeMap<(String, bool), pb::UpsertAclRequest>>,
    /// The `authorization` metadata of every call, in order (`None` when absent).
    pub authorizations: Mutex<Vec<Option<String>>>,
    /// A status every call of a method (`"CreateTopic"`) answers with.
    pub failures: Mutex<HashMap<&'static str, Status>>,
    /// Nodes whose Decommission is refused (FAILED_PRECONDITION).
    pub refuse_decommission: Mutex<BTreeSet<u64>>,
    /// The cluster id ClusterStatus reports (`fake` when unset).
    pub cluster_id: Mutex<Option<String>>,
    /// Partitions ClusterStatus reports as under-replicated.
    pub under_replicated: Mutex<Vec<String>>,
    /// How long each Decommission takes.
    pub decommission_delay: Mutex<std::time::Duration>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeBroker {
    /// Makes every call of `method` fail with `status`.
    pub fn fail(&self, method: &'static str, status: Status) {
        lock(&self.failures).insert(method, status);
    }

    /// The recorded calls.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    /// A member (voter, up) with the pod-style addresses of `demo-<id>`.
    pub fn member(id: u64, leader: bool) -> pb::Member {
        pb::Member {
            node_id: id,
            cluster_addr: format!("10.0.0.{id}:9093"),
            client_addr: format!("demo-{id}.demo-headless.prod.svc:9092"),
            admin_addr: format!("10.0.0.{id}:9096"),
            role: "voter".into(),
            health: "up".into(),
            is_metadata_leader: leader,
            leading: 0,
        }
    }

    fn record(&self, method: &'static str, call: String) -> Result<(), Status> {
        lock(&self.calls).push(call);
        match lock(&self.failures).get(method) {
            Some(status) => Err(status.clone()),
            None => Ok(()),
        }
    }

    fn seen<T>(&self, req: &Request<T>) {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        lock(&self.authorizations).push(auth);
    }

    fn topic(&self, name: &str) -> Result<pb::TopicInfo, Status> {
        lock(&self.topics)
            .get(name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("topic '{name}' does not exist")))
    }
}

fn config_text(c: Option<pb::TopicConfig>) -> String {
    let c = c.unwrap_or_default();
    let mut text = format!("retention_ms={} retention_bytes={}", c.retention_ms, c.retention_bytes);
    if c.message_ttl_ms > 0 {
        text.push_str(&format!(" message_ttl_ms={}", c.message_ttl_ms));
    }
    if c.max_deliveries > 0 {
        text.push_str(&format!(" max_deliveries={}", c.max_deliveries));
    }
    text
}

#[tonic::async_trait]
impl Admin for FakeBroker {
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

    async fn create_topic(&self, req: Request<pb::CreateTopicRequest>) -> Result<Response<pb::TopicInfo>, Status> {
        let r = req.into_inner();
        self.record(
            "CreateTopic",
            format!(
                "CreateTopic {} partitions={} rf={} {} if_not_exists={}",
                r.name,
                r.partitions,
                r.replication_factor,
                config_text(r.config),
                r.if_not_exists
            ),
        )?;
        if r.partitions == 0 {
            return Err(Status::invalid_argument("partitions must be at least 1"));
        }
        let mut topics = lock(&self.topics);
        if let Some(existing) = topics.get(&r.name) {
            return if r.if_not_exists {
                Ok(Response::new(existing.clone()))
            } else {
                Err(Status::already_exists(format!("topic '{}' exists", r.name)))
            };
        }
        let info = pb::TopicInfo {
            name: r.name.clone(),
            partitions: r.partitions,
            replication_factor: r.replication_factor,
            config: r.config,
            partition_info: Vec::new(),
        };
        topics.insert(r.name, info.clone());
        Ok(Response::new(info))
    }

    async fn delete_topic(
        &self,
        req: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicReply>, Status> {
        let r = req.into_inner();
        self.record("DeleteTopic", format!("DeleteTopic {}", r.name))?;
        let existed = lock(&self.topics).remove(&r.name).is_some();
        Ok(Response::new(pb::DeleteTopicReply { existed }))
    }

    async fn describe_topic(&self, req: Request<pb::DescribeTopicRequest>) -> Result<Response<pb::TopicInfo>, Status> {
        let r = req.into_inner();
        self.record("DescribeTopic", format!("DescribeTopic {}", r.name))?;
        Ok(Response::new(self.topic(&r.name)?))
    }

    async fn list_topics(&self, _: Request<pb::ListTopicsRequest>) -> Result<Response<pb::ListTopicsReply>, Status> {
        self.record("ListTopics", "ListTopics".into())?;
        let topics = lock(&self.topics).values().cloned().collect();
        Ok(Response::new(pb::ListTopicsReply { topics }))
    }

    async fn update_topic_config(
        &self,
        req: Request<pb::UpdateTopicConfigRequest>,
    ) -> Result<Response<pb::TopicInfo>, Status> {
        let r = req.into_inner();
        self.record(
            "UpdateTopicConfig",
            format!("UpdateTopicConfig {} {}", r.name, config_text(r.config)),
        )?;
        let mut topics = lock(&self.topics);
        let info = topics
            .get_mut(&r.name)
            .ok_or_else(|| Status::not_found(format!("topic '{}' does not exist", r.name)))?;
        info.config = r.config;
        Ok(Response::new(info.clone()))
    }

    async fn add_partitions(&self, req: Request<pb::AddPartitionsRequest>) -> Result<Response<pb::TopicInfo>, Status> {
        let r = req.into_inner();
        self.record("AddPartitions", format!("AddPartitions {} to={}", r.name, r.partitions))?;
        let mut topics = lock(&self.topics);
        let info = topics
            .get_mut(&r.name)
            .ok_or_else(|| Status::not_found(format!("topic '{}' does not exist", r.name)))?;
        if r.partitions <= info.partitions {
            return Err(Status::invalid_argument(format!(
                "topic '{}' already has {} partitions",
                r.name, info.partitions
            )));
        }
        info.partitions = r.partitions;
        Ok(Response::new(info.clone()))
    }

    async fn cluster_status(
        &self,
        req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusReply>, Status> {
        self.seen(&req);
        self.record("ClusterStatus", "ClusterStatus".into())?;
        Ok(Response::new(pb::ClusterStatusReply {
            cluster_id: lock(&self.cluster_id).clone().unwrap_or_else(|| "fake".into()),
            node_id: 0,
            members: lock(&self.members).clone(),
            groups: Vec::new(),
            under_replicated: lock(&self.under_replicated).clone(),
        }))
    }

    async fn join_node(&self, req: Request<pb::JoinNodeRequest>) -> Result<Response<pb::JoinNodeReply>, Status> {
        self.record("JoinNode", format!("JoinNode {}", req.into_inner().node_id))?;
        Ok(Response::new(pb::JoinNodeReply {}))
    }

    async fn decommission(
        &self,
        req: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::DecommissionReply>, Status> {
        let node = req.into_inner().node_id;
        self.record("Decommission", format!("Decommission {node}"))?;
        let delay = *lock(&self.decommission_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut members = lock(&self.members);
        let Some(at) = members.iter().position(|m| m.node_id == node) else {
            return Err(Status::not_found(format!("node {node} is not a member")));
        };
        if lock(&self.refuse_decommission).contains(&node) {
            return Err(Status::failed_precondition(format!(
                "node {node} holds the only in-sync replica of orders/0"
            )));
        }
        if members.len() == 1 {
            return Err(Status::failed_precondition("cannot decommission the last node"));
        }
        members.remove(at);
        Ok(Response::new(pb::DecommissionReply { moved: 2 }))
    }

    async fn transfer_leadership(
        &self,
        req: Request<pb::TransferLeadershipRequest>,
    ) -> Result<Response<pb::TransferLeadershipReply>, Status> {
        let r = req.into_inner();
        self.record("TransferLeadership", format!("TransferLeadership from {}", r.from_node))?;
        let mut members = lock(&self.members);
        let was_leader = members.iter().any(|m| m.node_id == r.from_node && m.is_metadata_leader);
        if r.has_from && was_leader {
            // The metadata leadership moves to the lowest other voter.
            for m in members.iter_mut() {
                m.is_metadata_leader = false;
            }
            if let Some(m) = members
                .iter_mut()
                .find(|m| m.node_id != r.from_node && m.role == "voter")
            {
                m.is_metadata_leader = true;
            }
        }
        Ok(Response::new(pb::TransferLeadershipReply {
            transferred: u32::from(was_leader),
        }))
    }

    async fn upsert_user(&self, req: Request<pb::UpsertUserRequest>) -> Result<Response<pb::UpsertUserReply>, Status> {
        self.seen(&req);
        let r = req.into_inner();
        // The password is deliberately not recorded in the calls.
        self.record("UpsertUser", format!("UpsertUser {} roles={:?}", r.username, r.roles))?;
        let builtin = ["admin", "producer", "consumer", "guest"];
        if let Some(role) = r.roles.iter().find(|x| !builtin.contains(&x.as_str())) {
            return Err(Status::failed_precondition(format!(
                "role '{role}' does not exist; built-in roles are admin, producer, consumer, guest"
            )));
        }
        let mut users = lock(&self.users);
        let password = match (r.password.is_empty(), users.get(&r.username)) {
            (false, _) => r.password,
            (true, Some((_, old))) => old.clone(),
            (true, None) => String::new(),
        };
        users.insert(r.username, (r.roles, password));
        Ok(Response::new(pb::UpsertUserReply {}))
    }

    async fn delete_user(&self, req: Request<pb::DeleteUserRequest>) -> Result<Response<pb::DeleteUserReply>, Status> {
        self.seen(&req);
        let name = req.into_inner().username;
        self.record("DeleteUser", format!("DeleteUser {name}"))?;
        lock(&self.users).remove(&name);
        Ok(Response::new(pb::DeleteUserReply {}))
    }

    async fn list_users(&self, req: Request<pb::ListUsersRequest>) -> Result<Response<pb::ListUsersReply>, Status> {
        self.seen(&req);
        self.record("ListUsers", "ListUsers".into())?;
        let users = lock(&self.users)
            .iter()
            .map(|(name, (roles, _))| pb::UserInfo {
                username: name.clone(),
                roles: roles.clone(),
            })
            .collect();
        Ok(Response::new(pb::ListUsersReply { users }))
    }

    async fn upsert_acl(&self, req: Request<pb::UpsertAclRequest>) -> Result<Response<pb::UpsertAclReply>, Status> {
        self.seen(&req);
        let r = req.into_inner();
        self.record(
            "UpsertAcl",
            format!(
                "UpsertAcl {} pattern={} public={} users={:?} roles={:?}",
                r.topic, r.is_pattern, r.public, r.users, r.roles
            ),
        )?;
        lock(&self.acls).insert((r.topic.clone(), r.is_pattern), r);
        Ok(Response::new(pb::UpsertAclReply {}))
    }

    async fn delete_acl(&self, req: Request<pb::DeleteAclRequest>) -> Result<Response<pb::DeleteAclReply>, Status> {
        self.seen(&req);
        let r = req.into_inner();
        self.record("DeleteAcl", format!("DeleteAcl {} pattern={}", r.topic, r.is_pattern))?;
        lock(&self.acls).remove(&(r.topic, r.is_pattern));
        Ok(Response::new(pb::DeleteAclReply {}))
    }

    async fn list_acls(&self, req: Request<pb::ListAclsRequest>) -> Result<Response<pb::ListAclsReply>, Status> {
        self.seen(&req);
        self.record("ListAcls", "ListAcls".into())?;
        let acls = lock(&self.acls).values().cloned().collect();
        Ok(Response::new(pb::ListAclsReply { acls }))
    }
}

/// Serves `fake` on 127.0.0.1 with an OS-chosen port until the test's
/// runtime ends; returns its `http://127.0.0.1:<port>` URL.
pub fn serve(fake: Arc<FakeBroker>) -> String {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("loopback address")).expect("bind 127.0.0.1:0");
    let addr = incoming.local_addr().expect("bound address");
    tokio::spawn(async move {
        let _ = Server::builder()
            .serve_with_incoming(AdminServer::from_arc(fake), incoming)
            .await;
    });
    format!("http://{addr}")
}
