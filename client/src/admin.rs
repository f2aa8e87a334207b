//! Client of the broker's admin gRPC API (port 9096): cluster status,
//! membership changes and topic administration with replication factors.
//!
//! The messages are the types generated from `proto/grpc/admin.proto` in
//! [`flymq_proto::grpc::admin`], re-exported here. Every call returns the
//! SDK's [`Error`]: a refusal by the broker is [`Error::Admin`] with the gRPC
//! code and the broker's message unchanged; an address that does not answer
//! is [`Error::AdminUnavailable`].
//!
//! With TLS and credentials ([`AdminClient::connect_with`]) every call
//! carries the metadata entry `authorization: Basic base64(user:password)`
//! (the contract of [`flymq_security::tls::grpc`]); a client certificate
//! (mTLS) is the alternative way to authenticate.
//!
//! ```no_run
//! # async fn demo() -> flymq_client::Result<()> {
//! use std::time::Duration;
//! use flymq_client::admin::{AdminClient, NewTopic};
//!
//! let admin = AdminClient::connect("127.0.0.1:9096", Duration::from_secs(5)).await?;
//! let status = admin.cluster_status().await?;
//! println!("cluster {} has {} members", status.cluster_id, status.members.len());
//! admin.create_topic(NewTopic::new("orders", 6).replication_factor(3)).await?;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use flymq_proto::grpc::admin as pb;
use flymq_security::tls::grpc::{AUTHORIZATION_METADATA, basic_authorization};
use flymq_security::tls::{ClientTlsOptions, TlsClient};
use pb::admin_client::AdminClient as GrpcAdmin;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

pub use pb::{
    ClusterStatusReply, GroupStatus, Member, PartitionInfo, TopicConfig, TopicInfo, UpsertAclRequest as AclEntry,
    UserInfo as AdminUserInfo,
};

use crate::config::Credentials;
use crate::error::{Error, Result};

/// Default admin API address.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9096";

/// Default wait for one admin call (except [`AdminClient::decommission`]).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Default wait for [`AdminClient::decommission`], which returns only once
/// every replica has moved off the node.
pub const DEFAULT_DECOMMISSION_TIMEOUT: Duration = Duration::from_secs(600);

/// A topic to create through the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Replicas per partition; 0 = the cluster default, min(3, brokers).
    pub replication_factor: u32,
    /// Retention by age in milliseconds; 0 = keep forever.
    pub retention_ms: u64,
    /// Retention by size in bytes per partition; 0 = no limit.
    pub retention_bytes: u64,
    /// Records produced without their own TTL expire after this many
    /// milliseconds; 0 = never.
    pub message_ttl_ms: u64,
    /// Dead-letter queue: a record delivered this many times to a consumer
    /// group without a commit past it moves to `<topic>.dlq`; 0 = never.
    pub max_deliveries: u32,
    /// When true an existing topic is not an error.
    pub if_not_exists: bool,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the cluster's defaults.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: 0,
            retention_ms: 0,
            retention_bytes: 0,
            message_ttl_ms: 0,
            max_deliveries: 0,
            if_not_exists: false,
        }
    }

    /// Sets the replication factor (0 = cluster default).
    pub fn replication_factor(mut self, replicas: u32) -> Self {
        self.replication_factor = replicas;
        self
    }

    /// Sets retention by age and size (0 = unlimited).
    pub fn retention(mut self, retention_ms: u64, retention_bytes: u64) -> Self {
        self.retention_ms = retention_ms;
        self.retention_bytes = retention_bytes;
        self
    }

    /// Sets the topic's message TTL in milliseconds (0 = never expire).
    pub fn message_ttl(mut self, message_ttl_ms: u64) -> Self {
        self.message_ttl_ms = message_ttl_ms;
        self
    }

    /// Sets the dead-letter limit (0 = no dead-letter queue).
    pub fn max_deliveries(mut self, max_deliveries: u32) -> Self {
        self.max_deliveries = max_deliveries;
        self
    }

    /// Makes creating an existing topic succeed.
    pub fn if_not_exists(mut self, yes: bool) -> Self {
        self.if_not_exists = yes;
        self
    }
}

/// How to reach and authenticate to the admin API.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// Limit for the TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// TLS settings; `None` = plaintext (an `https://` address turns TLS on
    /// with default settings).
    pub tls: Option<ClientTlsOptions>,
    /// Sent with every call as `authorization: Basic ...`.
    pub credentials: Option<Credentials>,
}

impl Default for AdminOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            tls: None,
            credentials: None,
        }
    }
}

/// Admin API client. Cheap to clone: clones share one HTTP/2 channel, which
/// reconnects by itself after a broken connection.
#[derive(Clone)]
pub struct AdminClient {
    grpc: GrpcAdmin<Channel>,
    addr: String,
    request_timeout: Duration,
    decommission_timeout: Duration,
    /// `Basic ...`, marked sensitive (never indexed by HPACK, never printed).
    authorization: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("addr", &self.addr)
            .field("request_timeout", &self.request_timeout)
            .field("authenticated", &self.authorization.is_some())
            .finish()
    }
}

impl AdminClient {
    /// Connects to the admin API at `addr` (`host:port`, optionally with an
    /// `http://` prefix) within `connect_timeout`, in plaintext without
    /// credentials.
    pub async fn connect(addr: &str, connect_timeout: Duration) -> Result<Self> {
        Self::connect_with(
            addr,
            AdminOptions {
                connect_timeout,
                ..AdminOptions::default()
            },
        )
        .await
    }

    /// Connects with TLS and/or credentials (`addr` may start with
    /// `http://` or `https://`).
    pub async fn connect_with(addr: &str, options: AdminOptions) -> Result<Self> {
        let https = addr.trim().starts_with("https://");
        let addr = normalize_admin_addr(addr)?;
        let connect_timeout = options.connect_timeout;
        let tls_options = match (options.tls, https) {
            (Some(tls), _) => Some(tls),
            (None, true) => Some(ClientTlsOptions::default()),
            (None, false) => None,
        };
        let authorization = match &options.credentials {
            Some(credentials) => {
                if tls_options.is_none() {
                    tracing::warn!(
                        addr = %addr,
                        "sending admin credentials without TLS; anyone on the network path can read them"
                    );
                }
                let mut value: MetadataValue<Ascii> = basic_authorization(&credentials.username, &credentials.password)
                    .parse()
                    .map_err(|_| Error::Config("admin credentials cannot be encoded".into()))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|err| Error::Config(format!("admin address '{addr}' is not usable: {err}")))?
            .connect_timeout(connect_timeout);
        let connecting = async {
            match &tls_options {
                Some(tls) => {
                    let client =
                        TlsClient::for_grpc(tls).map_err(|e| Error::Config(format!("admin TLS settings: {e}")))?;
                    Ok(flymq_security::tls::grpc::channel(&addr, client, connect_timeout).await)
                }
                None => Ok(endpoint.connect().await),
            }
        };
        let channel = match tokio::time::timeout(connect_timeout, connecting).await {
            Ok(Err(config_error)) => return Err(config_error),
            Ok(Ok(Ok(channel))) => channel,
            Ok(Ok(Err(err))) => {
                return Err(Error::AdminUnavailable {
                    reason: root_cause(&err),
                    addr,
                });
            }
            Err(_) => {
                return Err(Error::AdminUnavailable {
                    reason: format!("no connection within {connect_timeout:?}"),
                    addr,
                });
            }
        };
        Ok(Self {
            grpc: GrpcAdmin::new(channel),
            addr,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            decommission_timeout: DEFAULT_DECOMMISSION_TIMEOUT,
            authorization,
        })
    }

    /// Sets how long each call waits for its answer (default 30 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how long [`AdminClient::decommission`] waits (default 10 min).
    pub fn with_decommission_timeout(mut self, timeout: Duration) -> Self {
        self.decommission_timeout = timeout;
        self
    }

    /// The admin address (`host:port`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Members, Raft groups and under-replicated partitions, as seen by the
    /// node answering.
    pub async fn cluster_status(&self) -> Result<ClusterStatusReply> {
        let mut grpc = self.grpc.clone();
        self.call(
            "ClusterStatus",
            self.request_timeout,
            pb::ClusterStatusRequest {},
            |req| async move { grpc.cluster_status(req).await },
        )
        .await
    }

    /// Creates a topic with a replication factor.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<TopicInfo> {
        let request = pb::CreateTopicRequest {
            name: topic.name,
            partitions: topic.partitions,
            replication_factor: topic.replication_factor,
            config: Some(TopicConfig {
                retention_ms: topic.retention_ms,
                retention_bytes: topic.retention_bytes,
                message_ttl_ms: topic.message_ttl_ms,
                max_deliveries: topic.max_deliveries,
            }),
            if_not_exists: topic.if_not_exists,
        };
        let mut grpc = self.grpc.clone();
        self.call("CreateTopic", self.request_timeout, request, |req| async move {
            grpc.create_topic(req).await
        })
        .await
    }

    /// Deletes a topic; returns whether it existed.
    pub async fn delete_topic(&self, name: &str) -> Result<bool> {
        let request = pb::DeleteTopicRequest { name: name.to_owned() };
        let mut grpc = self.grpc.clone();
        let reply = self
            .call("DeleteTopic", self.request_timeout, request, |req| async move {
                grpc.delete_topic(req).await
            })
            .await?;
        Ok(reply.existed)
    }

    /// One topic's partitions, replicas and offsets. A missing topic is
    /// [`Error::Admin`] with code `NotFound`.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        let request = pb::DescribeTopicRequest { name: name.to_owned() };
        let mut grpc = self.grpc.clone();
        self.call("DescribeTopic", self.request_timeout, request, |req| async move {
            grpc.describe_topic(req).await
        })
        .await
    }

    /// Every topic.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let mut grpc = self.grpc.clone();
        let reply = self
            .call(
                "ListTopics",
                self.request_timeout,
                pb::ListTopicsRequest {},
                |req| async move { grpc.list_topics(req).await },
            )
            .await?;
        Ok(reply.topics)
    }

    /// Grows a topic to `partitions` in total. Existing records keep their
    /// partitions; keyed messages written from now on may map elsewhere.
    pub async fn add_partitions(&self, name: &str, partitions: u32) -> Result<TopicInfo> {
        let request = pb::AddPartitionsRequest {
            name: name.to_owned(),
            partitions,
        };
        let mut grpc = self.grpc.clone();
        self.call("AddPartitions", self.request_timeout, request, |req| async move {
            grpc.add_partitions(req).await
        })
        .await
    }

    /// Replaces a topic's retention settings (0 = unlimited).
    pub async fn update_topic_config(&self, name: &str, config: TopicConfig) -> Result<TopicInfo> {
        let request = pb::UpdateTopicConfigRequest {
            name: name.to_owned(),
            config: Some(config),
        };
        let mut grpc = self.grpc.clone();
        self.call("UpdateTopicConfig", self.request_timeout, request, |req| async move {
            grpc.update_topic_config(req).await
        })
        .await
    }

    /// Moves every replica off `node_id`, then removes the node from every
    /// group. Returns the number of partition groups whose replicas moved.
    /// Waits up to the decommission timeout (default 10 min).
    pub async fn decommission(&self, node_id: u64) -> Result<u32> {
        let mut grpc = self.grpc.clone();
        let reply = self
            .call(
                "Decommission",
                self.decommission_timeout,
                pb::DecommissionRequest { node_id },
                |req| async move { grpc.decommission(req).await },
            )
            .await?;
        Ok(reply.moved)
    }

    /// Moves the leadership of one Raft group (0 = the metadata group) to
    /// `to_node`. Returns the number of groups transferred.
    pub async fn transfer_leadership(&self, group_id: u64, to_node: u64) -> Result<u32> {
        let request = pb::TransferLeadershipRequest {
            group_id,
            to_node,
            from_node: 0,
            has_from: false,
            has_to: true,
        };
        self.transfer(request).await
    }

    /// Moves the leadership of every group led by `from_node` to `to_node`
    /// (a group `to_node` is no voter of moves to another of its voters).
    /// Returns the number of groups transferred.
    pub async fn transfer_leadership_from(&self, from_node: u64, to_node: u64) -> Result<u32> {
        let request = pb::TransferLeadershipRequest {
            group_id: 0,
            to_node,
            from_node,
            has_from: true,
            has_to: true,
        };
        self.transfer(request).await
    }

    async fn transfer(&self, request: pb::TransferLeadershipRequest) -> Result<u32> {
        let mut grpc = self.grpc.clone();
        let reply = self
            .call("TransferLeadership", self.request_timeout, request, |req| async move {
                grpc.transfer_leadership(req).await
            })
            .await?;
        Ok(reply.transferred)
    }

    /// Creates a user or replaces its roles; an empty `password` keeps the
    /// current one.
    pub async fn upsert_user(&self, username: &str, roles: Vec<String>, password: &str) -> Result<()> {
        let request = pb::UpsertUserRequest {
            username: username.to_owned(),
            roles,
            password: password.to_owned(),
        };
        let mut grpc = self.grpc.clone();
        self.call("UpsertUser", self.request_timeout, request, |req| async move {
            grpc.upsert_user(req).await
        })
        .await
        .map(|_| ())
    }

    /// Deletes a user.
    pub async fn delete_user(&self, username: &str) -> Result<()> {
        let request = pb::DeleteUserRequest {
            username: username.to_owned(),
        };
        let mut grpc = self.grpc.clone();
        self.call("DeleteUser", self.request_timeout, request, |req| async move {
            grpc.delete_user(req).await
        })
        .await
        .map(|_| ())
    }

    /// Every user with its roles.
    pub async fn list_users(&self) -> Result<Vec<AdminUserInfo>> {
        let mut grpc = self.grpc.clone();
        let reply = self
            .call(
                "ListUsers",
                self.request_timeout,
                pb::ListUsersRequest {},
                |req| async move { grpc.list_users(req).await },
            )
            .await?;
        Ok(reply.users)
    }

    /// Creates or replaces the ACL of a topic or pattern.
    pub async fn upsert_acl(&self, acl: AclEntry) -> Result<()> {
        let mut grpc = self.grpc.clone();
        self.call("UpsertAcl", self.request_timeout, acl, |req| async move {
            grpc.upsert_acl(req).await
        })
        .await
        .map(|_| ())
    }

    /// Deletes the ACL of a topic or pattern.
    pub async fn delete_acl(&self, topic: &str, is_pattern: bool) -> Result<()> {
        let request = pb::DeleteAclRequest {
            topic: topic.to_owned(),
            is_pattern,
        };
        let mut grpc = self.grpc.clone();
        self.call("DeleteAcl", self.request_timeout, request, |req| async move {
            grpc.delete_acl(req).await
        })
        .await
        .map(|_| ())
    }

    /// Creates or replaces a custom role granting `permissions` (`read`,
    /// `write`, `admin`).
    pub async fn upsert_role(&self, name: &str, permissions: Vec<String>, description: &str) -> Result<()> {
        let request = pb::UpsertRoleRequest {
            name: name.to_owned(),
            permissions,
            description: description.to_owned(),
        };
        let mut grpc = self.grpc.clone();
        self.call("UpsertRole", self.request_timeout, request, |req| async move {
            grpc.upsert_role(req).await
        })
        .await
        .map(|_| ())
    }

    /// Deletes a custom role that no user has.
    pub async fn delete_role(&self, name: &str) -> Result<()> {
        let request = pb::DeleteRoleRequest { name: name.to_owned() };
        let mut grpc = self.grpc.clone();
        self.call("DeleteRole", self.request_timeout, request, |req| async move {
            grpc.delete_role(req).await
        })
        .await
        .map(|_| ())
    }

    /// Every ACL.
    pub async fn list_acls(&self) -> Result<Vec<AclEntry>> {
        let mut grpc = self.grpc.clone();
        let reply = self
            .call(
                "ListAcls",
                self.request_timeout,
                pb::ListAclsRequest {},
                |req| async move { grpc.list_acls(req).await },
            )
            .await?;
        Ok(reply.acls)
    }

    /// Runs one unary call with a deadline (sent to the broker as
    /// `grpc-timeout` and enforced here) and maps its failure.
    async fn call<Req, Resp, F, Fut>(&self, op: &'static str, timeout: Duration, message: Req, send: F) -> Result<Resp>
    where
        F: FnOnce(tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert(AUTHORIZATION_METADATA, value.clone());
        }
        match tokio::time::timeout(timeout, send(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(status_error(op, &self.addr, timeout, status)),
            Err(_) => Err(Error::Timeout {
                op,
                addr: self.addr.clone(),
                after: timeout,
            }),
        }
    }
}

/// `host:port` from `host:port`, `http://host:port[/]` or
/// `https://host:port[/]`.
pub fn normalize_admin_addr(addr: &str) -> Result<String> {
    let trimmed = addr.trim();
    let bare = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    let valid = bare
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok());
    if valid {
        Ok(bare.to_owned())
    } else {
        Err(Error::Config(format!(
            "admin address '{trimmed}' is not host:port (for example {DEFAULT_ADMIN_ADDR})"
        )))
    }
}

/// Maps a failed call: statuses made on this side from a local error (they
/// carry it as their source) are [`Error::Timeout`] when the deadline
/// expired and [`Error::AdminUnavailable`] otherwise; statuses the broker
/// sent are [`Error::Admin`] with its message unchanged.
fn status_error(op: &'static str, addr: &str, timeout: Duration, status: tonic::Status) -> Error {
    if let Some(source) = std::error::Error::source(&status) {
        let mut cause = Some(source);
        while let Some(err) = cause {
            if err.is::<tonic::TimeoutExpired>() {
                return Error::Timeout {
                    op,
                    addr: addr.to_owned(),
                    after: timeout,
                };
            }
            cause = err.source();
        }
        return Error::AdminUnavailable {
            addr: addr.to_owned(),
            reason: root_cause(source),
        };
    }
    let code = status.code();
    let message = if status.message().is_empty() {
        match code {
            tonic::Code::Unimplemented => {
                format!("the broker at {addr} does not implement {op} (UNIMPLEMENTED)")
            }
            other => format!("{other} ({other:?})"),
        }
    } else {
        status.message().to_owned()
    };
    Error::Admin { op, code, message }
}

/// The innermost cause of a transport error, as people say it:
/// "connection refused" rather than "transport error".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if let Some(io) = cause.downcast_ref::<std::io::Error>() {
        match io.kind() {
            std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
            std::io::ErrorKind::TimedOut => return "connection timed out".into(),
            std::io::ErrorKind::ConnectionReset => return "connection reset by the peer".into(),
            _ => {}
        }
    }
    let text = cause.to_string();
    // "Connection refused (os error 111)" -> "connection refused"
    let text = match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if chars.clone().next().is_some_and(char::is_lowercase) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_and_without_scheme() {
        assert_eq!(normalize_admin_addr("127.0.0.1:9096").unwrap(), "127.0.0.1:9096");
        assert_eq!(
            normalize_admin_addr(" http://broker-0:9096/ ").unwrap(),
            "broker-0:9096"
        );
        assert_eq!(normalize_admin_addr("[::1]:9096").unwrap(), "[::1]:9096");
        for bad in ["broker", "broker:x", ":9096", "http://", "http://a/b:1"] {
            let err = normalize_admin_addr(bad).unwrap_err().to_string();
            assert!(err.contains("not host:port"), "{bad}: {err}");
        }
        assert_eq!(normalize_admin_addr("https://b:9096/").unwrap(), "b:9096");
    }

    #[test]
    fn broker_statuses_keep_their_message() {
        let t = Duration::from_secs(1);
        let err = status_error(
            "Decommission",
            "h:1",
            t,
            tonic::Status::failed_precondition("cannot decommission node 1: it is the last voter"),
        );
        assert_eq!(
            err.to_string(),
            "admin Decommission failed: cannot decommission node 1: it is the last voter"
        );
        assert_eq!(err.admin_code(), Some(tonic::Code::FailedPrecondition));
        assert!(!err.is_retriable());

        let err = status_error(
            "ClusterStatus",
            "h:1",
            t,
            tonic::Status::unavailable("no metadata leader known"),
        );
        assert!(err.is_retriable());
        assert!(!err.is_connection_error());

        let err = status_error("Decommission", "h:1", t, tonic::Status::unimplemented(""));
        assert!(err.to_string().contains("does not implement Decommission"), "{err}");
    }

    #[test]
    fn transport_failures_are_unavailable() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let status = tonic::Status::from_error(Box::new(io));
        let err = status_error("ClusterStatus", "127.0.0.1:9096", Duration::from_secs(1), status);
        assert_eq!(
            err.to_string(),
            "cannot reach the admin API at 127.0.0.1:9096: connection refused"
        );
        assert!(err.is_connection_error() && err.is_retriable());

        let status = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        let err = status_error("Decommission", "h:1", Duration::from_secs(3), status);
        assert!(
            matches!(err, Error::Timeout { op: "Decommission", after, .. } if after == Duration::from_secs(3)),
            "{err:?}"
        );
    }

    #[test]
    fn root_cause_is_short() {
        let io = std::io::Error::other("Broken thing (os error 5)");
        assert_eq!(root_cause(&io), "broken thing");
        let io = std::io::Error::other("TLS handshake");
        assert_eq!(root_cause(&io), "TLS handshake");
    }

    #[test]
    fn new_topic_builder() {
        let t = NewTopic::new("orders", 6)
            .replication_factor(3)
            .retention(1000, 2000)
            .if_not_exists(true);
        assert_eq!(
            (t.partitions, t.replication_factor, t.retention_ms, t.retention_bytes),
            (6, 3, 1000, 2000)
        );
        assert!(t.if_not_exists);
    }
}
