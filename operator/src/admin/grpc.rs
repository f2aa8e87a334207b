//! [`GrpcAdmin`]: [`BrokerAdmin`] and [`AdminSync`] over the broker's admin
//! gRPC API (`proto/grpc/admin.proto`, port 9096 of the client Service).
//!
//! Every call has a deadline (sent to the broker as `grpc-timeout` and
//! enforced locally), and every gRPC status is turned into an
//! [`AdminError`] by what the reconciler should do about it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use flymq_proto::grpc::admin as pb;
use pb::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::debug;

use super::{
    AdminCredentials, AdminError, AdminFuture, AdminSync, AdminTls, BrokerAdmin, ClusterEndpoint, ClusterInfo,
    CredentialSource, DEFAULT_URL_TEMPLATE, Synced, Warning,
};
use crate::crd::cluster::ClusterMember;
use crate::crd::topic::duration_ms;
use crate::crd::{Acl, Topic};

/// What the broker lacks when users and ACLs answer UNIMPLEMENTED.
const USERS_ACLS: &str = "users/ACLs";
/// What the broker lacks when topic calls answer UNIMPLEMENTED.
const TOPICS: &str = "topic management";

/// Deadlines of admin calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the HTTP/2 connection.
    pub connect: Duration,
    /// Ordinary calls (topics, users, ACLs).
    pub call: Duration,
    /// ClusterStatus, made on every FlyMQCluster reconcile.
    pub status: Duration,
    /// Decommission, which moves every replica off a broker.
    pub decommission: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            call: Duration::from_secs(30),
            status: Duration::from_secs(10),
            decommission: Duration::from_secs(600),
        }
    }
}

/// The admin API client of the operator. One HTTP/2 connection per cluster,
/// opened lazily and re-established by tonic when it breaks.
pub struct GrpcAdmin {
    url_template: String,
    timeouts: Timeouts,
    channels: Mutex<HashMap<String, Channel>>,
    credentials: Option<std::sync::Arc<dyn CredentialSource>>,
}

/// The `authorization` metadata of every call to one cluster (absent when
/// the cluster runs without authentication).
type Auth = Option<tonic::metadata::AsciiMetadataValue>;

impl Default for GrpcAdmin {
    fn default() -> Self {
        GrpcAdmin::new(DEFAULT_URL_TEMPLATE)
    }
}

impl GrpcAdmin {
    /// A client reaching each cluster at `url_template` (`{name}` and
    /// `{namespace}` are replaced; see [`DEFAULT_URL_TEMPLATE`]).
    pub fn new(url_template: impl Into<String>) -> Self {
        GrpcAdmin {
            url_template: url_template.into(),
            timeouts: Timeouts::default(),
            channels: Mutex::default(),
            credentials: None,
        }
    }

    /// Sends each cluster's admin credentials (Basic `authorization`
    /// metadata) on every call.
    pub fn with_credentials(mut self, source: std::sync::Arc<dyn CredentialSource>) -> Self {
        self.credentials = Some(source);
        self
    }

    /// The `authorization` metadata for `cluster`.
    async fn auth(&self, cluster: &ClusterEndpoint) -> Result<Auth, AdminError> {
        let Some(source) = &self.credentials else {
            return Ok(None);
        };
        let Some(creds) = source.credentials(cluster).await? else {
            return Ok(None);
        };
        header(cluster, &creds).map(Some)
    }

    /// Replaces the default deadlines.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// A client for the cluster's admin API, its URL (for messages) and
    /// the credentials every call carries.
    async fn client(&self, cluster: &ClusterEndpoint) -> Result<(AdminClient<Channel>, String, Auth), AdminError> {
        let auth = self.auth(cluster).await?;
        let tls = match &self.credentials {
            Some(source) => source.tls(cluster).await?,
            None => None,
        };
        let (client, url) = self.channel(cluster, tls)?;
        Ok((client, url, auth))
    }

    fn channel(
        &self,
        cluster: &ClusterEndpoint,
        tls: Option<AdminTls>,
    ) -> Result<(AdminClient<Channel>, String), AdminError> {
        let url = cluster.url_from(&self.url_template);
        // With TLS the URL says https (messages show what is dialled); the
        // channel itself is given the TLS connector.
        let shown = match &tls {
            Some(_) => url.replacen("http://", "https://", 1),
            None => url.clone(),
        };
        let key = match &tls {
            Some(t) => format!("{url} tls:{}", t.fingerprint()),
            None => url.clone(),
        };
        // A poisoned map is still a valid map of channels.
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(&key) {
            return Ok((AdminClient::new(channel.clone()), shown));
        }
        let endpoint = Endpoint::from_shared(url.clone()).map_err(|e| AdminError::Rejected {
            operation: "connect",
            reason: "InvalidAdminUrl",
            message: format!("'{url}' is not a valid admin API URL ({e}); fix --admin-url-template"),
        })?;
        let endpoint = endpoint
            .connect_timeout(self.timeouts.connect)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let channel = match tls {
            None => endpoint.connect_lazy(),
            Some(t) => {
                let source = format!(
                    "Secret {}/{}",
                    cluster.namespace,
                    crate::builders::tls::broker_secret_name(&cluster.name)
                );
                let client = flymq_security::tls::client::grpc_client_from_pem(
                    &source,
                    &t.ca_pem,
                    Some((&t.cert_pem, t.key_pem.as_slice())),
                )
                .map_err(|e| AdminError::Credentials {
                    cluster: format!("{}/{}", cluster.namespace, cluster.name),
                    message: format!("the operator's TLS material is unusable: {e}"),
                })?;
                // Channels of an older certificate of this cluster go.
                channels.retain(|k, _| !k.starts_with(&format!("{url} tls:")));
                flymq_security::tls::grpc::lazy_channel_on(endpoint, client)
            }
        };
        channels.insert(key, channel.clone());
        Ok((AdminClient::new(channel), shown))
    }
}

/// Awaits one call with a deadline and maps its status.
async fn call<T>(
    operation: &'static str,
    feature: &'static str,
    url: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, AdminError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(from_status(operation, feature, url, &status)),
        Err(_) => Err(AdminError::Unreachable {
            operation,
            message: format!("no answer from {url} within {}s", timeout.as_secs_f32()),
        }),
    }
}

/// The `authorization` header value of `creds`, marked sensitive.
fn header(
    cluster: &ClusterEndpoint,
    creds: &AdminCredentials,
) -> Result<tonic::metadata::AsciiMetadataValue, AdminError> {
    let mut value = tonic::metadata::AsciiMetadataValue::try_from(creds.authorization().as_str()).map_err(|_| {
        AdminError::Credentials {
            cluster: format!("{}/{}", cluster.namespace, cluster.name),
            message: format!(
                "the user name '{}' or its password cannot be sent as a header (not ASCII)",
                creds.username()
            ),
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A request carrying its deadline and the credentials to the broker.
fn request<T>(message: T, timeout: Duration, auth: &Auth) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(timeout);
    if let Some(value) = auth {
        req.metadata_mut().insert("authorization", value.clone());
    }
    req
}

/// Maps a gRPC status of `operation` to the operator's error.
pub fn from_status(operation: &'static str, feature: &'static str, url: &str, status: &Status) -> AdminError {
    let message = if status.message().is_empty() {
        status.code().description().to_string()
    } else {
        status.message().to_string()
    };
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted | Code::ResourceExhausted => {
            AdminError::Unreachable {
                operation,
                message: format!("{url}: {message}"),
            }
        }
        Code::Unimplemented => AdminError::NotSupported {
            feature,
            operation,
            message,
        },
        Code::InvalidArgument => AdminError::Rejected {
            operation,
            reason: "InvalidArgument",
            message,
        },
        Code::FailedPrecondition => AdminError::Rejected {
            operation,
            reason: "BrokerRefused",
            message,
        },
        // The operator's credentials (or their absence) are refused:
        // retrying soon will not help until they change.
        Code::PermissionDenied | Code::Unauthenticated => AdminError::Rejected {
            operation,
            reason: "AdminAccessDenied",
            message: format!("{url}: {message}"),
        },
        Code::NotFound => AdminError::NotFound { operation, message },
        code => AdminError::Failed {
            operation,
            message: format!("{code:?}: {message}"),
        },
    }
}

/// A spec value the admin API cannot take.
fn invalid_spec(operation: &'static str, message: String) -> AdminError {
    AdminError::Rejected {
        operation,
        reason: "InvalidSpec",
        message,
    }
}

/// `7d`, `2h`, `15m`, `30s` or `250ms`: the largest unit that divides `ms`.
fn format_ms(ms: u64) -> String {
    for (unit, factor) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms.is_multiple_of(factor) {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

/// The retention a Topic asks for. `None` leaves the brokers' value alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WantedConfig {
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
    message_ttl_ms: Option<u64>,
    max_deliveries: Option<u32>,
}

impl WantedConfig {
    fn from_topic(topic: &Topic) -> Result<Self, AdminError> {
        let retention = topic.spec.config.retention.as_ref();
        let retention_ms = match retention.and_then(|r| r.time.as_deref()) {
            None => None,
            Some(text) => Some(duration_ms(text).ok_or_else(|| {
                invalid_spec(
                    "CreateTopic",
                    format!("spec.config.retention.time '{text}' is not a duration such as 7d, 12h, 30m, 10s or 500ms"),
                )
            })?),
        };
        let retention_bytes = match retention.and_then(|r| r.bytes) {
            None => None,
            Some(b) => Some(u64::try_from(b).map_err(|_| {
                invalid_spec(
                    "CreateTopic",
                    format!("spec.config.retention.bytes must be positive, not {b}"),
                )
            })?),
        };
        let message_ttl_ms = match topic.spec.config.message_ttl.as_deref() {
            None => None,
            Some(text) => Some(duration_ms(text).filter(|ms| *ms > 0).ok_or_else(|| {
                invalid_spec(
                    "CreateTopic",
                    format!("spec.config.messageTtl '{text}' is not a positive duration such as 1h, 30m or 500ms"),
                )
            })?),
        };
        let max_deliveries = match &topic.spec.config.dead_letter {
            None => None,
            Some(d) => Some(
                u32::try_from(d.max_deliveries)
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        invalid_spec(
                            "CreateTopic",
                            format!(
                                "spec.config.deadLetter.maxDeliveries must be between 1 and 1000, not {}",
                                d.max_deliveries
                            ),
                        )
                    })?,
            ),
        };
        Ok(WantedConfig {
            retention_ms,
            retention_bytes,
            message_ttl_ms,
            max_deliveries,
        })
    }

    /// The configuration to hold: the spec's values over `current`'s.
    fn over(self, current: pb::TopicConfig) -> pb::TopicConfig {
        pb::TopicConfig {
            retention_ms: self.retention_ms.unwrap_or(current.retention_ms),
            retention_bytes: self.retention_bytes.unwrap_or(current.retention_bytes),
            message_ttl_ms: self.message_ttl_ms.unwrap_or(current.message_ttl_ms),
            max_deliveries: self.max_deliveries.unwrap_or(current.max_deliveries),
        }
    }
}

/// Spec fields the admin API has no setting for (yet), for the status.
fn unapplied_topic_fields(topic: &Topic) -> Vec<&'static str> {
    let config = &topic.spec.config;
    let mut fields = Vec::new();
    // The dead-letter queue of topic T is always `T.dlq` (WIRE.md §11).
    let default_dlq = format!("{}.dlq", topic.topic_name());
    if let Some(dlq) = config.dead_letter.as_ref().and_then(|d| d.topic.as_deref())
        && dlq != default_dlq
    {
        fields.push("config.deadLetter.topic");
    }
    if config.schema.is_some() {
        fields.push("config.schema");
    }
    fields
}

/// "topic 'orders': 6 partitions, replication factor 3, retention 7d, no size limit".
fn describe_topic(info: &pb::TopicInfo, unapplied: &[&str]) -> String {
    let config = info.config.unwrap_or_default();
    let time = match config.retention_ms {
        0 => "no time limit".to_string(),
        ms => format!("retention {}", format_ms(ms)),
    };
    let bytes = match config.retention_bytes {
        0 => "no size limit".to_string(),
        b => format!("at most {b} bytes per partition"),
    };
    let mut text = format!(
        "topic '{}': {} partitions, replication factor {}, {time}, {bytes}",
        info.name, info.partitions, info.replication_factor
    );
    if config.message_ttl_ms > 0 {
        text.push_str(&format!(", message TTL {}", format_ms(config.message_ttl_ms)));
    }
    if config.max_deliveries > 0 {
        text.push_str(&format!(
            ", dead-letter queue after {} deliveries",
            config.max_deliveries
        ));
    }
    if !unapplied.is_empty() {
        text.push_str(&format!(
            "; not applied (the admin API has no setting for them yet): {}",
            unapplied.join(", ")
        ));
    }
    text
}

impl GrpcAdmin {
    /// CreateTopic (if missing), then DescribeTopic, UpdateTopicConfig when
    /// the retention differs and AddPartitions when the spec asks for more.
    async fn apply_topic(&self, cluster: &ClusterEndpoint, topic: &Topic) -> Result<Synced, AdminError> {
        let name = topic.topic_name();
        let partitions = u32::try_from(topic.spec.partitions)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                invalid_spec(
                    "CreateTopic",
                    format!("spec.partitions must be at least 1, not {}", topic.spec.partitions),
                )
            })?;
        let replication_factor = u32::try_from(topic.spec.replication_factor)
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| {
                invalid_spec(
                    "CreateTopic",
                    format!(
                        "spec.replicationFactor must be at least 1, not {}",
                        topic.spec.replication_factor
                    ),
                )
            })?;
        let wanted = WantedConfig::from_topic(topic)?;
        let (mut client, url, auth) = self.client(cluster).await?;
        let t = self.timeouts.call;

        let create = pb::CreateTopicRequest {
            name: name.clone(),
            partitions,
            replication_factor,
            config: Some(wanted.over(pb::TopicConfig::default())),
            if_not_exists: true,
        };
        call(
            "CreateTopic",
            TOPICS,
            &url,
            t,
            client.create_topic(request(create, t, &auth)),
        )
        .await?;
        let describe = pb::DescribeTopicRequest { name: name.clone() };
        let mut info = call(
            "DescribeTopic",
            TOPICS,
            &url,
            t,
            client.describe_topic(request(describe, t, &auth)),
        )
        .await?;

        let current = info.config.unwrap_or_default();
        let desired = wanted.over(current);
        if desired != current {
            debug!(topic = %name, ?current, ?desired, "updating topic configuration");
            let update = pb::UpdateTopicConfigRequest {
                name: name.clone(),
                config: Some(desired),
            };
            info = call(
                "UpdateTopicConfig",
                TOPICS,
                &url,
                t,
                client.update_topic_config(request(update, t, &auth)),
            )
            .await?;
        }

        if info.partitions > partitions {
            return Err(AdminError::Rejected {
                operation: "AddPartitions",
                reason: "PartitionsCannotShrink",
                message: format!(
                    "topic '{name}' has {} partitions on the brokers but spec.partitions is {partitions}; \
                     partitions cannot be removed: set spec.partitions to {} or more",
                    info.partitions, info.partitions
                ),
            });
        }
        if info.partitions < partitions {
            debug!(topic = %name, from = info.partitions, to = partitions, "adding partitions");
            let add = pb::AddPartitionsRequest {
                name: name.clone(),
                partitions,
            };
            info = call(
                "AddPartitions",
                TOPICS,
                &url,
                t,
                client.add_partitions(request(add, t, &auth)),
            )
            .await?;
        }
        if info.replication_factor != replication_factor {
            return Err(AdminError::Rejected {
                operation: "CreateTopic",
                reason: "ReplicationFactorMismatch",
                message: format!(
                    "topic '{name}' has replication factor {} on the brokers but spec.replicationFactor is \
                     {replication_factor}; the replication factor of an existing topic cannot be changed yet",
                    info.replication_factor
                ),
            });
        }
        Ok(Synced::new(describe_topic(&info, &unapplied_topic_fields(topic))))
    }
}

impl AdminSync<Topic> for GrpcAdmin {
    fn apply<'a>(&'a self, cluster: &'a ClusterEndpoint, topic: &'a Topic) -> AdminFuture<'a, Synced> {
        Box::pin(self.apply_topic(cluster, topic))
    }

    fn delete<'a>(&'a self, cluster: &'a ClusterEndpoint, topic: &'a Topic) -> AdminFuture<'a, ()> {
        Box::pin(async move {
            let (mut client, url, auth) = self.client(cluster).await?;
            let t = self.timeouts.call;
            let req = pb::DeleteTopicRequest {
                name: topic.topic_name(),
            };
            match call(
                "DeleteTopic",
                TOPICS,
                &url,
                t,
                client.delete_topic(request(req, t, &auth)),
            )
            .await
            {
                Ok(_) | Err(AdminError::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
}

/// The roles every broker knows without anyone defining them.
pub const BUILT_IN_ROLES: [&str; 4] = ["admin", "producer", "consumer", "guest"];

/// Condition type under which an ACL reports names the brokers do not know.
pub const PRINCIPALS_KNOWN: &str = "PrincipalsKnown";

/// User calls: the User reconciler reads the password from its Secret and
/// hands it here; it goes only into the request, never into an error or a
/// log line.
impl GrpcAdmin {
    /// Creates `username` or updates its roles and password.
    pub async fn upsert_user(
        &self,
        cluster: &ClusterEndpoint,
        username: &str,
        roles: &[String],
        password: &str,
    ) -> Result<(), AdminError> {
        let (mut client, url, auth) = self.client(cluster).await?;
        let t = self.timeouts.call;
        let req = pb::UpsertUserRequest {
            username: username.to_string(),
            roles: roles.to_vec(),
            password: password.to_string(),
        };
        match call(
            "UpsertUser",
            USERS_ACLS,
            &url,
            t,
            client.upsert_user(request(req, t, &auth)),
        )
        .await
        {
            Ok(_) => Ok(()),
            // The broker refuses roles nobody defined.
            Err(AdminError::Rejected {
                operation,
                reason: "BrokerRefused",
                message,
            }) if message.contains("role") => Err(AdminError::Rejected {
                operation,
                reason: "UnknownRole",
                message: format!("user '{username}': {message}; fix spec.roles"),
            }),
            Err(e) => Err(e),
        }
    }

    /// Deletes `username`; a user that does not exist is not an error.
    pub async fn delete_user(&self, cluster: &ClusterEndpoint, username: &str) -> Result<(), AdminError> {
        let (mut client, url, auth) = self.client(cluster).await?;
        let t = self.timeouts.call;
        let req = pb::DeleteUserRequest {
            username: username.to_string(),
        };
        match call(
            "DeleteUser",
            USERS_ACLS,
            &url,
            t,
            client.delete_user(request(req, t, &auth)),
        )
        .await
        {
            // A broker without users holds none to delete.
            Ok(_) | Err(AdminError::NotFound { .. } | AdminError::NotSupported { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every user the brokers hold, with its roles.
    pub async fn list_users(&self, cluster: &ClusterEndpoint) -> Result<Vec<pb::UserInfo>, AdminError> {
        let (mut client, url, auth) = self.client(cluster).await?;
        let t = self.timeouts.call;
        let reply = call(
            "ListUsers",
            USERS_ACLS,
            &url,
            t,
            client.list_users(request(pb::ListUsersRequest {}, t, &auth)),
        )
        .await?;
        Ok(reply.users)
    }
}

/// The topic (or pattern) an ACL covers, as the admin API names it.
fn acl_target(acl: &Acl) -> Result<(String, bool), AdminError> {
    match (&acl.spec.topic.name, &acl.spec.topic.pattern) {
        (Some(name), None) => Ok((name.clone(), false)),
        (None, Some(pattern)) => Ok((pattern.clone(), true)),
        _ => Err(invalid_spec(
            "UpsertAcl",
            "set exactly one of spec.topic.name and spec.topic.pattern".into(),
        )),
    }
}

/// The rule an ACL resource asks for, with users and roles sorted and
/// deduplicated (the brokers store sets).
fn wanted_acl(acl: &Acl) -> Result<pb::UpsertAclRequest, AdminError> {
    let (topic, is_pattern) = acl_target(acl)?;
    let set = |v: &[String]| {
        v.iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    Ok(pb::UpsertAclRequest {
        topic,
        is_pattern,
        public: acl.spec.public,
        users: set(&acl.spec.users),
        roles: set(&acl.spec.roles),
    })
}

/// Whether the brokers' rule is the wanted one (users and roles as sets).
fn same_acl(held: &pb::UpsertAclRequest, wanted: &pb::UpsertAclRequest) -> bool {
    let set = |v: &[String]| v.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    held.public == wanted.public && set(&held.users) == set(&wanted.users) && set(&held.roles) == set(&wanted.roles)
}

/// The users and roles an ACL names that no broker user or built-in role
/// defines (the brokers accept such names: the user may be created later).
fn unknown_principals(wanted: &pb::UpsertAclRequest, users: &[pb::UserInfo]) -> Option<Warning> {
    let known_users: std::collections::BTreeSet<&str> = users.iter().map(|u| u.username.as_str()).collect();
    let known_roles: std::collections::BTreeSet<&str> = users
        .iter()
        .flat_map(|u| u.roles.iter().map(String::as_str))
        .chain(BUILT_IN_ROLES)
        .collect();
    let missing_users: Vec<&str> = wanted
        .users
        .iter()
        .map(String::as_str)
        .filter(|u| !known_users.contains(u))
        .collect();
    let missing_roles: Vec<&str> = wanted
        .roles
        .iter()
        .map(String::as_str)
        .filter(|r| !known_roles.contains(r))
        .collect();
    let list = |v: &[&str]| v.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    let (reason, message) = match (missing_users.is_empty(), missing_roles.is_empty()) {
        (true, true) => return None,
        (false, true) => (
            "UnknownUser",
            format!("no user {} exists on the brokers", list(&missing_users)),
        ),
        (true, false) => (
            "UnknownRole",
            format!(
                "no role {} exists on the brokers (built-in roles: admin, producer, consumer, guest)",
                list(&missing_roles)
            ),
        ),
        (false, false) => (
            "UnknownUserAndRole",
            format!(
                "no user {} and no role {} exist on the brokers",
                list(&missing_users),
                list(&missing_roles)
            ),
        ),
    };
    Some(Warning {
        reason,
        message: format!(
            "{message}; the ACL is applied and takes effect once they exist: create a User resource, or fix the \
             names in the ACL"
        ),
    })
}

impl AdminSync<Acl> for GrpcAdmin {
    /// Compares the brokers' rule for the topic (ListAcls) with the spec
    /// and writes it (UpsertAcl) only when it differs: drift is corrected,
    /// an unchanged ACL costs no write.
    fn apply<'a>(&'a self, cluster: &'a ClusterEndpoint, acl: &'a Acl) -> AdminFuture<'a, Synced> {
        Box::pin(async move {
            let wanted = wanted_acl(acl)?;
            let (mut client, url, auth) = self.client(cluster).await?;
            let t = self.timeouts.call;
            let held = call(
                "ListAcls",
                USERS_ACLS,
                &url,
                t,
                client.list_acls(request(pb::ListAclsRequest {}, t, &auth)),
            )
            .await?
            .acls
            .into_iter()
            .find(|a| a.topic == wanted.topic && a.is_pattern == wanted.is_pattern);
            let users = call(
                "ListUsers",
                USERS_ACLS,
                &url,
                t,
                client.list_users(request(pb::ListUsersRequest {}, t, &auth)),
            )
            .await?
            .users;
            let change = match &held {
                Some(h) if same_acl(h, &wanted) => "",
                Some(_) => " (drift corrected)",
                None => " (created)",
            };
            if !change.is_empty() {
                call(
                    "UpsertAcl",
                    USERS_ACLS,
                    &url,
                    t,
                    client.upsert_acl(request(wanted.clone(), t, &auth)),
                )
                .await?;
            }
            let what = if wanted.is_pattern { "topics matching" } else { "topic" };
            let names = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
            Ok(Synced {
                message: format!(
                    "ACL on {what} '{}': public={}, users: {}, roles: {}{change}",
                    wanted.topic,
                    wanted.public,
                    names(&wanted.users),
                    names(&wanted.roles)
                ),
                warning: unknown_principals(&wanted, &users),
                checked: Some(PRINCIPALS_KNOWN),
                ..Synced::default()
            })
        })
    }

    fn delete<'a>(&'a self, cluster: &'a ClusterEndpoint, acl: &'a Acl) -> AdminFuture<'a, ()> {
        Box::pin(async move {
            let (topic, is_pattern) = acl_target(acl)?;
            let (mut client, url, auth) = self.client(cluster).await?;
            let t = self.timeouts.call;
            let req = pb::DeleteAclRequest { topic, is_pattern };
            match call(
                "DeleteAcl",
                USERS_ACLS,
                &url,
                t,
                client.delete_acl(request(req, t, &auth)),
            )
            .await
            {
                Ok(_) | Err(AdminError::NotFound { .. } | AdminError::NotSupported { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
}

/// The status view of one member.
fn member(m: &pb::Member) -> ClusterMember {
    ClusterMember {
        id: i64::try_from(m.node_id).unwrap_or(i64::MAX),
        address: if m.client_addr.is_empty() {
            m.cluster_addr.clone()
        } else {
            m.client_addr.clone()
        },
        role: m.role.clone(),
        health: m.health.clone(),
    }
}

impl BrokerAdmin for GrpcAdmin {
    fn decommission<'a>(&'a self, cluster: &'a ClusterEndpoint, node_id: i32) -> AdminFuture<'a, ()> {
        Box::pin(async move {
            let node = u64::try_from(node_id)
                .map_err(|_| invalid_spec("Decommission", format!("node id {node_id} is negative")))?;
            let (mut client, url, auth) = self.client(cluster).await?;
            let t = self.timeouts.decommission;
            let req = pb::DecommissionRequest { node_id: node };
            match call(
                "Decommission",
                "decommissioning brokers",
                &url,
                t,
                client.decommission(request(req, t, &auth)),
            )
            .await
            {
                Ok(reply) => {
                    debug!(node, moved = reply.moved, "broker decommissioned");
                    Ok(())
                }
                // Not a member any more: decommissioned by an earlier reconcile.
                Err(AdminError::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn cluster_status<'a>(&'a self, cluster: &'a ClusterEndpoint) -> AdminFuture<'a, ClusterInfo> {
        Box::pin(async move {
            let (mut client, url, auth) = self.client(cluster).await?;
            let t = self.timeouts.status;
            let reply = call(
                "ClusterStatus",
                "cluster status",
                &url,
                t,
                client.cluster_status(request(pb::ClusterStatusRequest {}, t, &auth)),
            )
            .await?;
            let mut members: Vec<ClusterMember> = reply.members.iter().map(member).collect();
            members.sort_by_key(|m| m.id);
            let leader = reply
                .members
                .iter()
                .find(|m| m.is_metadata_leader)
                .map(|m| i64::try_from(m.node_id).unwrap_or(i64::MAX));
            Ok(ClusterInfo {
                cluster_id: reply.cluster_id,
                leader,
                members,
                under_replicated: reply.under_replicated,
            })
        })
    }

    fn transfer_leadership<'a>(&'a self, cluster: &'a ClusterEndpoint, from_node: i32) -> AdminFuture<'a, u32> {
        Box::pin(async move {
            let node = u64::try_from(from_node)
                .map_err(|_| invalid_spec("TransferLeadership", format!("node id {from_node} is negative")))?;
            let (mut client, url, auth) = self.client(cluster).await?;
            let t = self.timeouts.call;
            let req = pb::TransferLeadershipRequest {
                group_id: 0,
                to_node: 0,
                from_node: node,
                has_from: true,
                // Any other voter: the operator moves leaders off a broker
                // it is about to restart or remove.
                has_to: false,
            };
            let reply = call(
                "TransferLeadership",
                "leadership transfer",
                &url,
                t,
                client.transfer_leadership(request(req, t, &auth)),
            )
            .await?;
            Ok(reply.transferred)
        })
    }
}

#[cfg(test)]
mod tests;
