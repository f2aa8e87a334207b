//! The admin gRPC API (port 9096): topics, cluster status, membership and
//! leadership. Used by the operator and `flymq-cli`. Works on a standalone
//! broker too (membership calls then answer FAILED_PRECONDITION).

use std::sync::Arc;

use flymq_proto::grpc::admin::admin_client::AdminClient;
use flymq_proto::grpc::admin::admin_server::Admin;
use flymq_proto::grpc::admin::*;
use tonic::{Request, Response, Status};

use super::identity::{broker_ids, broker_of};
use super::types::{META_GROUP, NodeInfo, partition_group};
use crate::auth::SecurityChange;
use crate::core::Broker;
use crate::core::error::BrokerError;
use crate::storage::TopicConfig as StoredTopicConfig;

pub struct AdminService {
    pub broker: Arc<Broker>,
    pub cluster: Option<Arc<super::ClusterNode>>,
}

/// Longest wait for a connection to the metadata leader's admin port.
const ADMIN_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Maps a broker error to the gRPC status the API documents.
pub fn status_of(err: BrokerError) -> Status {
    let msg = err.to_string();
    match err {
        BrokerError::TopicNotFound(_) | BrokerError::GroupNotFound { .. } | BrokerError::NotFound(_) => {
            Status::not_found(msg)
        }
        BrokerError::InvalidTopicName { .. }
        | BrokerError::InvalidGroupId { .. }
        | BrokerError::InvalidArgument(_)
        | BrokerError::PartitionNotFound { .. }
        | BrokerError::PartitionOutOfRange { .. } => Status::invalid_argument(msg),
        BrokerError::NotLeader(_) | BrokerError::ShuttingDown => Status::unavailable(msg),
        BrokerError::NotSupported(_) => Status::unimplemented(msg),
        BrokerError::Security(_) => Status::failed_precondition(msg),
        BrokerError::Denied(flymq_security::AuthzError::AuthenticationRequired) => Status::unauthenticated(msg),
        BrokerError::Denied(_) => Status::permission_denied(msg),
        _ => Status::internal(msg),
    }
}

fn stored_config(config: Option<TopicConfig>) -> StoredTopicConfig {
    let config = config.unwrap_or_default();
    StoredTopicConfig {
        retention_ms: (config.retention_ms > 0).then_some(config.retention_ms),
        retention_bytes: (config.retention_bytes > 0).then_some(config.retention_bytes),
    }
}

/// The message TTL an admin request asks for (`None` = never expire).
fn requested_ttl(config: Option<&TopicConfig>) -> Option<u64> {
    config.map(|c| c.message_ttl_ms).filter(|ms| *ms > 0)
}

/// The dead-letter limit an admin request asks for (`None` = off).
fn requested_max_deliveries(config: Option<&TopicConfig>) -> Option<u32> {
    config.map(|c| c.max_deliveries).filter(|n| *n > 0)
}

/// Who made an admin call: the authenticated user and the client address.
struct Caller {
    user: String,
    ip: String,
}

impl AdminService {
    /// Authenticates the call (Basic credentials or a client certificate)
    /// and checks the admin permission; every admin call goes through here.
    async fn authorize<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let ip = request.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default();
        let credentials = flymq_security::tls::grpc::call_credentials(request)?;
        let user = flymq_security::tls::grpc::authorize_admin_call(
            credentials,
            &self.broker.authorizer(),
            self.broker.security().hasher.clone(),
        )
        .await
        .inspect_err(|status| {
            if self.broker.settings().security.auth_enabled {
                let mut record = self.broker.audit_record("auth", "", &ip, "admin-api", "login");
                record.result = "failure".into();
                record.details.push(("reason".into(), status.message().to_owned()));
                self.broker.audit(record);
            }
        })?;
        Ok(Caller { user, ip })
    }

    /// Records a successful admin change in the audit trail.
    fn audited(&self, caller: &Caller, event_type: &str, resource: String, action: &str) {
        let record = self
            .broker
            .audit_record(event_type, &caller.user, &caller.ip, resource, action);
        self.broker.audit(record);
    }

    fn cluster(&self) -> Result<&Arc<super::ClusterNode>, Status> {
        self.cluster
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("this broker runs standalone (no cluster membership to manage)"))
    }

    /// An admin client for the metadata leader, when it is another broker.
    async fn leader_admin(&self) -> Result<Option<AdminClient<tonic::transport::Channel>>, Status> {
        let node = self.cluster()?;
        if node.meta().raft.is_leader() {
            return Ok(None);
        }
        let (_, info): (u64, NodeInfo) = node
            .leader_of(META_GROUP)
            .ok_or_else(|| Status::unavailable("no metadata leader elected yet; retry"))?;
        let unreachable = |e: &dyn std::fmt::Display| {
            Status::unavailable(format!("cannot reach the metadata leader at {}: {e}", info.admin_addr))
        };
        // With TLS on, the leader's admin port speaks TLS: dial it as a peer
        // (cluster CA, this broker's certificate).
        let channel = match &node.peers.auth().tls {
            Some(tls) => flymq_security::tls::grpc::channel(&info.admin_addr, tls.clone(), ADMIN_CONNECT_TIMEOUT)
                .await
                .map_err(|e| unreachable(&e))?,
            None => tonic::transport::Endpoint::from_shared(format!("http://{}", info.admin_addr))
                .map_err(|e| unreachable(&e))?
                .connect_timeout(ADMIN_CONNECT_TIMEOUT)
                .connect()
                .await
                .map_err(|e| unreachable(&e))?,
        };
        Ok(Some(AdminClient::new(channel)))
    }

    fn topic_info(&self, name: &str) -> Result<TopicInfo, Status> {
        let info = self
            .broker
            .topic_metadata(name)
            .map_err(status_of)?
            .pop()
            .ok_or_else(|| Status::not_found(format!("topic not found: {name}")))?;
        let view = self
            .broker
            .catalog()
            .topic(name)
            .ok_or_else(|| Status::not_found(format!("topic not found: {name}")))?;
        let parse = |s: &str| s.parse::<u64>().unwrap_or(0);
        Ok(TopicInfo {
            name: info.name,
            partitions: info.partitions.len() as u32,
            replication_factor: view.record.replicas.first().map_or(1, |r| r.len() as u32),
            config: Some(TopicConfig {
                retention_ms: view.record.config.retention_ms.unwrap_or(0),
                retention_bytes: view.record.config.retention_bytes.unwrap_or(0),
                message_ttl_ms: view.record.message_ttl_ms.unwrap_or(0),
                max_deliveries: view.record.max_deliveries.unwrap_or(0),
            }),
            partition_info: info
                .partitions
                .into_iter()
                .map(|p| PartitionInfo {
                    partition: p.partition,
                    group_id: partition_group(view.record.id, p.partition),
                    leader: parse(&p.leader_id),
                    has_leader: p.state == "online" && !p.leader_id.is_empty(),
                    replicas: p.replicas.iter().map(|r| parse(r)).collect(),
                    in_sync: p.isr.iter().map(|r| parse(r)).collect(),
                    start_offset: p.start_offset,
                    end_offset: p.end_offset,
                })
                .collect(),
        })
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_topic(&self, request: Request<CreateTopicRequest>) -> Result<Response<TopicInfo>, Status> {
        let caller = self.authorize(&request).await?;
        let req = request.into_inner();
        let partitions = if req.partitions == 0 { 1 } else { req.partitions };
        let ttl = requested_ttl(req.config.as_ref());
        let max_deliveries = requested_max_deliveries(req.config.as_ref());
        // Refused before anything changes.
        if let Some(ttl) = ttl {
            crate::core::ttl::validate_ttl(ttl).map_err(status_of)?;
        }
        if let Some(n) = max_deliveries {
            crate::core::dlq::validate_max_deliveries(n).map_err(status_of)?;
        }
        let created = self
            .broker
            .create_topic_with(&req.name, partitions, req.replication_factor, stored_config(req.config))
            .await
            .map_err(status_of)?;
        if created && ttl.is_some() {
            self.broker.set_message_ttl(&req.name, ttl).await.map_err(status_of)?;
        }
        if created && max_deliveries.is_some() {
            self.broker
                .set_max_deliveries(&req.name, max_deliveries)
                .await
                .map_err(status_of)?;
        }
        if created {
            self.audited(&caller, "topic", format!("topic:{}", req.name), "create");
        }
        if !created && !req.if_not_exists {
            return Err(Status::already_exists(format!("topic '{}' already exists", req.name)));
        }
        self.topic_info(&req.name).map(Response::new)
    }

    async fn delete_topic(&self, request: Request<DeleteTopicRequest>) -> Result<Response<DeleteTopicReply>, Status> {
        let caller = self.authorize(&request).await?;
        let name = request.into_inner().name;
        let existed = self.broker.delete_topic(&name).await.map_err(status_of)?;
        if existed {
            self.audited(&caller, "topic", format!("topic:{name}"), "delete");
        }
        Ok(Response::new(DeleteTopicReply { existed }))
    }

    async fn describe_topic(&self, request: Request<DescribeTopicRequest>) -> Result<Response<TopicInfo>, Status> {
        let _caller = self.authorize(&request).await?;
        self.topic_info(&request.into_inner().name).map(Response::new)
    }

    async fn list_topics(&self, request: Request<ListTopicsRequest>) -> Result<Response<ListTopicsReply>, Status> {
        let _caller = self.authorize(&request).await?;
        let topics = self
            .broker
            .list_topics()
            .iter()
            .filter_map(|name| self.topic_info(name).ok())
            .collect();
        Ok(Response::new(ListTopicsReply { topics }))
    }

    async fn update_topic_config(
        &self,
        request: Request<UpdateTopicConfigRequest>,
    ) -> Result<Response<TopicInfo>, Status> {
        let caller = self.authorize(&request).await?;
        let req = request.into_inner();
        let ttl = requested_ttl(req.config.as_ref());
        let max_deliveries = requested_max_deliveries(req.config.as_ref());
        if let Some(ttl) = ttl {
            crate::core::ttl::validate_ttl(ttl).map_err(status_of)?;
        }
        if let Some(n) = max_deliveries {
            crate::core::dlq::validate_max_deliveries(n).map_err(status_of)?;
        }
        self.broker
            .update_topic_config(&req.name, stored_config(req.config))
            .await
            .map_err(status_of)?;
        self.broker.set_message_ttl(&req.name, ttl).await.map_err(status_of)?;
        self.broker
            .set_max_deliveries(&req.name, max_deliveries)
            .await
            .map_err(status_of)?;
        self.audited(&caller, "topic", format!("topic:{}", req.name), "config_change");
        self.topic_info(&req.name).map(Response::new)
    }

    async fn add_partitions(&self, request: Request<AddPartitionsRequest>) -> Result<Response<TopicInfo>, Status> {
        let caller = self.authorize(&request).await?;
        let req = request.into_inner();
        let previous = self
            .broker
            .add_partitions(&req.name, req.partitions)
            .await
            .map_err(status_of)?;
        self.audited(&caller, "topic", format!("topic:{}", req.name), "add_partitions");
        tracing::info!(topic = %req.name, previous, partitions = req.partitions, "partitions added");
        self.topic_info(&req.name).map(Response::new)
    }

    async fn cluster_status(
        &self,
        request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        let _caller = self.authorize(&request).await?;
        let Some(node) = &self.cluster else {
            let addr = self.broker.settings().advertised_addr.clone();
            return Ok(Response::new(ClusterStatusReply {
                cluster_id: self.broker.cluster_id(),
                node_id: u64::from(self.broker.settings().node_id),
                members: vec![Member {
                    node_id: u64::from(self.broker.settings().node_id),
                    client_addr: addr,
                    role: "voter".into(),
                    health: "up".into(),
                    is_metadata_leader: true,
                    ..Default::default()
                }],
                groups: Vec::new(),
                under_replicated: Vec::new(),
            }));
        };
        Ok(Response::new(node.cluster_status().await))
    }

    async fn join_node(&self, request: Request<JoinNodeRequest>) -> Result<Response<JoinNodeReply>, Status> {
        let caller = self.authorize(&request).await?;
        if let Some(mut leader) = self.leader_admin().await? {
            return leader.join_node(request).await;
        }
        let req = request.into_inner();
        let node = self.cluster()?;
        let info = NodeInfo {
            cluster_addr: req.cluster_addr,
            client_addr: req.client_addr,
            admin_addr: req.admin_addr,
        };
        if req.node_id >> 32 == 0 {
            return Err(Status::invalid_argument(format!(
                "node_id {} is a broker id; JoinNode takes a member id (broker id << 32 | incarnation), \
                 as `flymq-cli cluster status --groups` shows it. Brokers normally join by themselves through their seeds",
                req.node_id
            )));
        }
        node.handle_join("", req.node_id, info).await?;
        self.audited(&caller, "cluster", format!("member:{}", req.node_id), "join");
        Ok(Response::new(JoinNodeReply {}))
    }

    async fn decommission(&self, request: Request<DecommissionRequest>) -> Result<Response<DecommissionReply>, Status> {
        let caller = self.authorize(&request).await?;
        if let Some(mut leader) = self.leader_admin().await? {
            return leader.decommission(request).await;
        }
        let node = self.cluster()?;
        let broker = u32::try_from(request.into_inner().node_id)
            .map_err(|_| Status::invalid_argument("node_id must be a broker id (the StatefulSet ordinal)"))?;
        let moved = node.decommission(broker).await.map_err(status_of)?;
        self.audited(&caller, "cluster", format!("broker:{broker}"), "decommission");
        Ok(Response::new(DecommissionReply { moved }))
    }

    async fn transfer_leadership(
        &self,
        request: Request<TransferLeadershipRequest>,
    ) -> Result<Response<TransferLeadershipReply>, Status> {
        let caller = self.authorize(&request).await?;
        let req = request.into_inner();
        let node = self.cluster()?;
        let member = |broker: u64| -> Result<u64, Status> {
            u32::try_from(broker)
                .ok()
                .and_then(|b| node.member_of_broker(b))
                .ok_or_else(|| Status::invalid_argument(format!("node {broker} is not a member of this cluster")))
        };
        let from = if req.has_from {
            Some(member(req.from_node)?)
        } else {
            None
        };
        // Moving away from a node: to the requested node where it can lead
        // the group, otherwise to another voter.
        let preferred = if req.has_from && req.has_to {
            Some(member(req.to_node)?)
        } else {
            None
        };
        let mut groups = Vec::new();
        if req.has_from {
            groups.push(META_GROUP);
            for topic in self.broker.catalog().topics() {
                for p in 0..topic.record.replicas.len() {
                    groups.push(partition_group(topic.record.id, p as u32));
                }
            }
        } else {
            groups.push(req.group_id);
        }
        let mut transferred = 0;
        for group in groups {
            let view = node.group_view(group);
            let Some(leader) = view.leader else { continue };
            if from.is_some_and(|f| leader != f) {
                continue;
            }
            let to = match from {
                Some(f) => {
                    let wanted = preferred.filter(|p| *p != f && view.voters.contains(p));
                    match wanted.or_else(|| view.voters.iter().copied().find(|v| *v != f)) {
                        Some(v) => v,
                        None => continue,
                    }
                }
                None => member(req.to_node)?,
            };
            if !view.voters.contains(&to) {
                return Err(Status::invalid_argument(format!(
                    "node {} is not a voter of group {group}; voters are {:?}",
                    broker_of(to),
                    broker_ids(&view.voters)
                )));
            }
            node.transfer_leader(group, to).await.map_err(status_of)?;
            transferred += 1;
        }
        self.audited(&caller, "cluster", "leadership".into(), "transfer");
        Ok(Response::new(TransferLeadershipReply { transferred }))
    }

    async fn upsert_user(&self, request: Request<UpsertUserRequest>) -> Result<Response<UpsertUserReply>, Status> {
        let caller = self.authorize(&request).await?;
        let req = request.into_inner();
        // An empty password keeps the current one (or makes a
        // certificate-only user when the user is new).
        let password_hash = match req.password.is_empty() {
            true => None,
            false => Some(
                crate::server::handlers::users::hash_password(&self.broker, req.password)
                    .await
                    .map_err(status_of)?,
            ),
        };
        let change = SecurityChange::UpsertUser {
            name: req.username,
            roles: req.roles,
            password_hash,
            now_secs: crate::core::now_ms() / 1000,
        };
        self.change(change, &caller).await?;
        Ok(Response::new(UpsertUserReply {}))
    }

    async fn delete_user(&self, request: Request<DeleteUserRequest>) -> Result<Response<DeleteUserReply>, Status> {
        let caller = self.authorize(&request).await?;
        let name = request.into_inner().username;
        if name == caller.user {
            return Err(Status::failed_precondition("you cannot delete your own account"));
        }
        self.change(SecurityChange::DeleteUser { name }, &caller).await?;
        Ok(Response::new(DeleteUserReply {}))
    }

    async fn list_users(&self, request: Request<ListUsersRequest>) -> Result<Response<ListUsersReply>, Status> {
        let _caller = self.authorize(&request).await?;
        let state = self.security_state()?;
        let users = state
            .users
            .values()
            .map(|u| UserInfo {
                username: u.name.clone(),
                roles: u.roles.iter().cloned().collect(),
            })
            .collect();
        Ok(Response::new(ListUsersReply { users }))
    }

    async fn upsert_acl(&self, request: Request<UpsertAclRequest>) -> Result<Response<UpsertAclReply>, Status> {
        let caller = self.authorize(&request).await?;
        let req = request.into_inner();
        let change = SecurityChange::SetAcl {
            target: req.topic,
            is_pattern: req.is_pattern,
            public: req.public,
            users: req.users,
            roles: req.roles,
        };
        self.change(change, &caller).await?;
        Ok(Response::new(UpsertAclReply {}))
    }

    async fn delete_acl(&self, request: Request<DeleteAclRequest>) -> Result<Response<DeleteAclReply>, Status> {
        let caller = self.authorize(&request).await?;
        let req = request.into_inner();
        let change = SecurityChange::DeleteAcl {
            target: req.topic,
            is_pattern: req.is_pattern,
        };
        self.change(change, &caller).await?;
        Ok(Response::new(DeleteAclReply {}))
    }

    async fn upsert_role(&self, request: Request<UpsertRoleRequest>) -> Result<Response<UpsertRoleReply>, Status> {
        let caller = self.authorize(&request).await?;
        let req = request.into_inner();
        let permissions = req
            .permissions
            .iter()
            .map(|p| flymq_security::Permission::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let change = SecurityChange::UpsertRole {
            name: req.name,
            permissions,
            description: req.description,
        };
        self.change(change, &caller).await?;
        Ok(Response::new(UpsertRoleReply {}))
    }

    async fn delete_role(&self, request: Request<DeleteRoleRequest>) -> Result<Response<DeleteRoleReply>, Status> {
        let caller = self.authorize(&request).await?;
        let name = request.into_inner().name;
        self.change(SecurityChange::DeleteRole { name }, &caller).await?;
        Ok(Response::new(DeleteRoleReply {}))
    }

    async fn list_acls(&self, request: Request<ListAclsRequest>) -> Result<Response<ListAclsReply>, Status> {
        let _caller = self.authorize(&request).await?;
        let state = self.security_state()?;
        let acls = state
            .acls()
            .map(|(target, rule)| UpsertAclRequest {
                topic: target.as_str().to_owned(),
                is_pattern: target.is_pattern(),
                public: rule.public,
                users: rule.users.iter().cloned().collect(),
                roles: rule.roles.iter().cloned().collect(),
            })
            .collect();
        Ok(Response::new(ListAclsReply { acls }))
    }
}

impl AdminService {
    /// This broker's applied users, roles and ACLs (admin reads only).
    fn security_state(&self) -> Result<flymq_security::SecurityState, Status> {
        self.broker
            .store()
            .load_security_state()
            .map_err(|e| status_of(e.into()))
    }

    async fn change(&self, change: SecurityChange, caller: &Caller) -> Result<bool, Status> {
        self.broker
            .change_security(change, &caller.user, &caller.ip)
            .await
            .map_err(status_of)
    }
}
