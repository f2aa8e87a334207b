//! A tiny in-memory broker speaking the real codec, for the SDK's unit
//! tests (pipelining, routing, batching, failover). It is not a stand-in
//! for the real broker: `tests/` runs the SDK against `flymq-broker`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use flymq_proto::{
    AuthResponse, ClusterMetadata, ClusterNode, ClusterStatus, ConsumeResponse, FetchResponse, FetchedRecord, Frame,
    GroupRecord, LagInfo, ListGroupsResponse, ListTopicsResponse, OffsetResponse, PartitionMetadata, PartitionOffset,
    ProduceBatchResponse, RecordMetadata, Request, Response, TopicMetadata,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::partitioner::partition_for_key;

/// How the fake misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Answer every request with `not leader: leader_addr=<addr>`.
    pub redirect_to: Option<String>,
    /// Close each connection after this many requests.
    pub close_after: Option<usize>,
    /// Never answer anything.
    pub silent: bool,
    /// Act as one node of a multi-node cluster: CLUSTER_METADATA names the
    /// cluster's partition leaders, and partition requests for partitions
    /// this node does not lead are answered `not leader`.
    pub cluster: Option<Arc<FakeCluster>>,
    /// Serve implicit TLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Refuse every request but AUTH on connections that have not
    /// authenticated (`authentication required`).
    pub require_auth: bool,
}

/// Partition leadership shared by the fakes of one pretend cluster. Each
/// fake keeps its own records; only leadership is shared.
#[derive(Debug, Default)]
pub struct FakeCluster {
    /// Node addresses (replicas of every partition).
    nodes: Mutex<Vec<String>>,
    /// Leader address per partition (of every topic); `None` = no leader
    /// elected. Partitions missing here are led by whichever node is asked.
    leaders: Mutex<HashMap<i32, Option<String>>>,
}

impl FakeCluster {
    /// A cluster without nodes yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds a node (its address is known only once it listens).
    pub fn add_node(&self, addr: &str) {
        if let Ok(mut nodes) = self.nodes.lock() {
            nodes.push(addr.to_owned());
        }
    }

    /// Makes `leader` (an address, or `None` for "no leader elected") the
    /// leader of `partition`.
    pub fn set_leader(&self, partition: i32, leader: Option<&str>) {
        if let Ok(mut leaders) = self.leaders.lock() {
            leaders.insert(partition, leader.map(str::to_owned));
        }
    }

    fn leader(&self, partition: i32) -> Option<Option<String>> {
        self.leaders.lock().ok()?.get(&partition).cloned()
    }

    fn nodes(&self) -> Vec<String> {
        self.nodes.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

/// The node id the fake cluster gives an address.
fn node_id(addr: &str) -> String {
    format!("node-{}", addr.rsplit(':').next().unwrap_or(addr))
}

#[derive(Debug, Default)]
struct Topic {
    partitions: Vec<Vec<(Bytes, Bytes)>>,
    round_robin: usize,
}

/// Shared state of the fake broker.
#[derive(Debug, Default)]
pub struct State {
    topics: Mutex<HashMap<String, Topic>>,
    offsets: Mutex<HashMap<(String, String, i32), u64>>,
    /// Users (name -> (roles, enabled)) and ACLs of the security opcodes.
    users: Mutex<std::collections::BTreeMap<String, (Vec<String>, bool)>>,
    acls: Mutex<std::collections::BTreeMap<String, flymq_proto::AclSetRequest>>,
    /// Passwords received by USER_CREATE / PASSWORD_CHANGE (to check what
    /// the client sent).
    pub passwords: Mutex<HashMap<String, String>>,
    /// The last audit query received.
    pub last_audit_query: Mutex<Option<flymq_proto::AuditQuery>>,
    /// Requests received per opcode.
    requests: Mutex<HashMap<u8, usize>>,
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// `not leader` answers sent (cluster mode).
    pub not_leader_replies: AtomicUsize,
}

impl State {
    /// Requests of `opcode` received so far.
    pub fn requests(&self, opcode: flymq_proto::Opcode) -> usize {
        self.requests
            .lock()
            .map(|r| r.get(&opcode.code()).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Records stored in a partition.
    pub fn partition_len(&self, topic: &str, partition: usize) -> usize {
        self.topics
            .lock()
            .ok()
            .and_then(|t| t.get(topic).and_then(|t| t.partitions.get(partition).map(Vec::len)))
            .unwrap_or(0)
    }
}

/// A running fake broker.
pub struct FakeBroker {
    /// Its address.
    pub addr: SocketAddr,
    /// Its state.
    pub state: Arc<State>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl FakeBroker {
    /// Starts a well-behaved fake broker.
    pub async fn start() -> Self {
        Self::start_with(Behaviour::default()).await
    }

    /// Starts a fake broker with the given behaviour.
    pub async fn start_with(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake broker");
        let addr = listener.local_addr().expect("fake broker address");
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let own = addr.to_string();
        tokio::spawn(async move {
            loop {
                let socket = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(_) => return,
                    },
                    _ = stopped.changed() => return,
                };
                accept_state.connections.fetch_add(1, Ordering::SeqCst);
                let (state, behaviour) = (accept_state.clone(), behaviour.clone());
                match behaviour.tls.clone() {
                    None => {
                        tokio::spawn(serve(socket, state, behaviour, own.clone(), stopped.clone()));
                    }
                    Some(config) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                        let (own, stopped) = (own.clone(), stopped.clone());
                        tokio::spawn(async move {
                            if let Ok(stream) = acceptor.accept(socket).await {
                                serve(stream, state, behaviour, own, stopped).await;
                            }
                        });
                    }
                }
            }
        });
        Self { addr, state, stop }
    }

    /// Stops listening and closes every connection, like a crashed broker.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// `host:port` of the broker.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut socket: S,
    state: Arc<State>,
    behaviour: Behaviour,
    own_addr: String,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    if *stopped.borrow() {
        return;
    }
    let mut buf = BytesMut::new();
    let mut served = 0usize;
    // The user bound by AUTH on this connection.
    let mut user: Option<String> = None;
    loop {
        loop {
            let frame = match Frame::decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return,
            };
            if let Ok(mut r) = state.requests.lock() {
                *r.entry(frame.opcode).or_default() += 1;
            }
            if behaviour.silent {
                continue;
            }
            let reply = match &behaviour.redirect_to {
                Some(leader) => Response::error(format!("not leader: leader_addr={leader} current leader is node-2")),
                None => match Request::decode_frame(&frame) {
                    Ok(Request::Auth(auth)) => {
                        let reply = handle(&state, Request::Auth(auth.clone()));
                        if matches!(&reply, Response::Auth(r) if r.success) {
                            user = Some(auth.username);
                        }
                        reply
                    }
                    Ok(_) if behaviour.require_auth && user.is_none() => Response::error("authentication required"),
                    Ok(req) => match handle_security(&state, user.as_deref(), &req) {
                        Some(reply) => reply,
                        None => match &behaviour.cluster {
                            Some(cluster) => handle_in_cluster(&state, cluster, &own_addr, req),
                            None => handle(&state, req),
                        },
                    },
                    Err(e) => Response::error(e.to_string()),
                },
            };
            let mut out = BytesMut::new();
            let _ = reply.encode_frame(&mut out);
            if socket.write_all(&out).await.is_err() {
                return;
            }
            served += 1;
            if behaviour.close_after.is_some_and(|n| served >= n) {
                return;
            }
        }
        tokio::select! {
            read = socket.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = stopped.changed() => return,
        }
    }
}

/// Cluster mode: metadata names the shared leaders; partition requests for
/// partitions led elsewhere get the WIRE.md redirect texts.
fn handle_in_cluster(state: &State, cluster: &FakeCluster, own_addr: &str, req: Request) -> Response {
    let partition = match &req {
        Request::Produce(r) => Some(r.partition),
        Request::ProduceBatch(r) => Some(r.partition),
        Request::Fetch(r) => Some(r.partition),
        Request::Consume(r) => Some(r.partition),
        Request::ClusterMetadata(_) => {
            return match handle(state, req) {
                Response::ClusterMetadata(mut meta) => {
                    let nodes = cluster.nodes();
                    for topic in &mut meta.topics {
                        for p in &mut topic.partitions {
                            let leader = cluster.leader(p.partition).unwrap_or_else(|| Some(own_addr.to_owned()));
                            p.leader_addr = leader.clone().unwrap_or_default();
                            p.leader_id = leader.as_deref().map(node_id).unwrap_or_default();
                            p.state = if leader.is_some() { "online" } else { "offline" }.into();
                            p.replicas = nodes.iter().map(|n| node_id(n)).collect();
                            p.isr = p.replicas.clone();
                        }
                    }
                    Response::ClusterMetadata(meta)
                }
                other => other,
            };
        }
        _ => None,
    };
    if let Some(partition) = partition.filter(|p| *p >= 0)
        && let Some(leader) = cluster.leader(partition)
        && leader.as_deref() != Some(own_addr)
    {
        state.not_leader_replies.fetch_add(1, Ordering::SeqCst);
        return match leader {
            Some(addr) => Response::error(format!(
                "not leader: leader_addr={addr} current leader is {}",
                node_id(&addr)
            )),
            None => Response::error("not leader: no leader elected"),
        };
    }
    handle(state, req)
}

fn handle(state: &State, req: Request) -> Response {
    let mut topics = match state.topics.lock() {
        Ok(t) => t,
        Err(_) => return Response::error("poisoned"),
    };
    match req {
        Request::CreateTopic(r) => {
            topics.entry(r.topic).or_insert_with(|| Topic {
                partitions: vec![Vec::new(); r.partitions.max(1) as usize],
                round_robin: 0,
            });
            Response::CreateTopic
        }
        Request::DeleteTopic(r) => {
            topics.remove(&r.topic);
            Response::DeleteTopic
        }
        Request::ListTopics => {
            let mut names: Vec<String> = topics.keys().cloned().collect();
            names.sort();
            Response::ListTopics(ListTopicsResponse { topics: names })
        }
        Request::ClusterMetadata(r) => {
            let mut names: Vec<&String> = topics.keys().filter(|t| r.topic.is_empty() || **t == r.topic).collect();
            if names.is_empty() && !r.topic.is_empty() {
                return Response::error(format!("topic not found: {}", r.topic));
            }
            names.sort();
            Response::ClusterMetadata(ClusterMetadata {
                cluster_id: "fake".into(),
                topics: names
                    .into_iter()
                    .map(|name| TopicMetadata {
                        topic: name.clone(),
                        partitions: (0..topics[name].partitions.len() as i32)
                            .map(|p| PartitionMetadata {
                                partition: p,
                                leader_id: "node-0".into(),
                                leader_addr: "fake:9092".into(),
                                epoch: 1,
                                state: "online".into(),
                                replicas: vec!["node-0".into()],
                                isr: vec!["node-0".into()],
                            })
                            .collect(),
                    })
                    .collect(),
            })
        }
        Request::ClusterStatus => Response::ClusterStatus(ClusterStatus {
            cluster_id: "fake".into(),
            node_id: "node-0".into(),
            leader_id: "node-0".into(),
            nodes: vec![ClusterNode {
                node_id: "node-0".into(),
                address: "fake:9092".into(),
                role: "leader".into(),
                state: "alive".into(),
            }],
        }),
        Request::Produce(r) => {
            let topic = topics.entry(r.topic.clone()).or_insert_with(|| Topic {
                partitions: vec![Vec::new()],
                round_robin: 0,
            });
            let Some(p) = choose(topic, &r.key, r.partition) else {
                return Response::error(format!("partition {} not found", r.partition));
            };
            let log = &mut topic.partitions[p];
            log.push((r.key.clone(), r.value.clone()));
            Response::Produce(RecordMetadata::new(
                r.topic,
                p as i32,
                log.len() as u64 - 1,
                0,
                &r.key,
                &r.value,
            ))
        }
        Request::ProduceBatch(r) => {
            let topic = topics.entry(r.topic.clone()).or_insert_with(|| Topic {
                partitions: vec![Vec::new()],
                round_robin: 0,
            });
            let Some(p) = choose(topic, &Bytes::new(), r.partition) else {
                return Response::error(format!("partition {} not found", r.partition));
            };
            let log = &mut topic.partitions[p];
            let base = log.len() as u64;
            log.extend(r.records.iter().map(|rec| (rec.key.clone(), rec.value.clone())));
            Response::ProduceBatch(ProduceBatchResponse {
                topic: r.topic,
                partition: p as i32,
                base_offset: base,
                count: r.records.len() as u32,
                timestamp: 0,
            })
        }
        Request::Consume(r) => match log(&topics, &r.topic, r.partition).and_then(|l| l.get(r.offset as usize)) {
            Some((key, value)) => Response::Consume(ConsumeResponse {
                key: key.clone(),
                value: value.clone(),
            }),
            None => Response::error("EOF"),
        },
        Request::Fetch(r) => match log(&topics, &r.topic, r.partition) {
            Some(log) => {
                let max = if r.max_messages <= 0 {
                    10
                } else {
                    r.max_messages as usize
                };
                let records: Vec<FetchedRecord> = log
                    .iter()
                    .enumerate()
                    .skip(r.offset as usize)
                    .take(max)
                    .map(|(o, (key, value))| FetchedRecord {
                        offset: o as u64,
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect();
                let next_offset = records.last().map_or(r.offset, |rec| rec.offset + 1);
                Response::Fetch(FetchResponse { next_offset, records })
            }
            None => Response::error(format!("topic not found: {}", r.topic)),
        },
        Request::Subscribe(r) => {
            let Some(log) = log(&topics, &r.topic, r.partition) else {
                return Response::error(format!("partition {} not found", r.partition));
            };
            let end = log.len() as u64;
            let committed = state
                .offsets
                .lock()
                .ok()
                .and_then(|o| o.get(&(r.topic.clone(), r.group_id.clone(), r.partition)).copied());
            let offset = match r.mode.as_str() {
                "earliest" => 0,
                "latest" | "" => end,
                "commit" => committed.unwrap_or(0),
                other => return Response::error(format!("unknown subscribe mode: {other}")),
            };
            Response::Subscribe(OffsetResponse { offset })
        }
        Request::Commit(r) => {
            if let Ok(mut o) = state.offsets.lock() {
                o.insert((r.topic, r.group_id, r.partition), r.offset);
            }
            Response::Commit
        }
        Request::GetOffset(r) => {
            let offset = state
                .offsets
                .lock()
                .ok()
                .and_then(|o| o.get(&(r.topic, r.group_id, r.partition)).copied())
                .unwrap_or(0);
            Response::GetOffset(OffsetResponse { offset })
        }
        Request::GetLag(r) => {
            let latest = log(&topics, &r.topic, r.partition).map_or(0, |l| l.len() as u64);
            let committed = state
                .offsets
                .lock()
                .ok()
                .and_then(|o| o.get(&(r.topic, r.group_id, r.partition)).copied())
                .unwrap_or(0);
            Response::GetLag(LagInfo {
                current: committed,
                committed,
                latest,
                lag: latest.saturating_sub(committed),
            })
        }
        Request::ListGroups => {
            let offsets = match state.offsets.lock() {
                Ok(o) => o.clone(),
                Err(_) => return Response::error("poisoned"),
            };
            let mut groups: HashMap<(String, String), Vec<PartitionOffset>> = HashMap::new();
            for ((topic, group, partition), offset) in offsets {
                groups
                    .entry((topic, group))
                    .or_default()
                    .push(PartitionOffset { partition, offset });
            }
            let mut groups: Vec<GroupRecord> = groups
                .into_iter()
                .map(|((topic, group_id), mut offsets)| {
                    offsets.sort_by_key(|o| o.partition);
                    GroupRecord {
                        topic,
                        group_id,
                        members: 0,
                        offsets,
                    }
                })
                .collect();
            groups.sort_by(|a, b| (&a.topic, &a.group_id).cmp(&(&b.topic, &b.group_id)));
            Response::ListGroups(ListGroupsResponse { groups })
        }
        Request::Auth(r) => {
            let success = r.username == "alice" && r.password == "secret";
            Response::Auth(AuthResponse {
                success,
                username: if success { r.username } else { String::new() },
                roles: Vec::new(),
                error: if success {
                    String::new()
                } else {
                    "invalid username or password".into()
                },
            })
        }
        other => Response::error(format!("unknown opcode: {}", other.opcode().code())),
    }
}

/// The user, role, ACL and audit opcodes (§12), in memory.
fn handle_security(state: &State, user: Option<&str>, req: &Request) -> Option<Response> {
    use flymq_proto::{
        AclAck, AclInfo, AclListEntry, AclListResponse, AuditDetail, AuditEvent, AuditExportResponse,
        AuditQueryResponse, OkMessage, RoleInfo, RoleListResponse, UserInfo, UserListResponse, WhoamiResponse,
    };
    let info = |name: &str, roles: &[String], enabled: bool| UserInfo {
        username: name.to_owned(),
        roles: roles.to_vec(),
        permissions: if roles.iter().any(|r| r == "admin") {
            vec!["read".into(), "write".into(), "admin".into()]
        } else {
            Vec::new()
        },
        enabled,
        created: 1_700_000_000,
        updated: 1_700_000_000,
    };
    let mut users = state.users.lock().ok()?;
    let mut acls = state.acls.lock().ok()?;
    Some(match req {
        Request::Whoami => Response::Whoami(WhoamiResponse {
            authenticated: user.is_some(),
            username: user.unwrap_or_default().to_owned(),
            roles: user.map(|_| vec!["admin".to_owned()]).unwrap_or_default(),
            permissions: user.map(|_| vec!["admin".to_owned()]).unwrap_or_default(),
        }),
        Request::UserCreate(r) => {
            if users.contains_key(&r.username) {
                return Some(Response::error(format!("user already exists: {}", r.username)));
            }
            users.insert(r.username.clone(), (r.roles.clone(), true));
            if let Ok(mut p) = state.passwords.lock() {
                p.insert(r.username.clone(), r.password.clone());
            }
            Response::UserCreate(info(&r.username, &r.roles, true))
        }
        Request::UserUpdate(r) => match users.get_mut(&r.username) {
            Some(entry) => {
                *entry = (r.roles.clone(), r.enabled);
                Response::UserUpdate(OkMessage::ok("user updated"))
            }
            None => Response::error(format!("user not found: {}", r.username)),
        },
        Request::UserDelete(r) => match users.remove(&r.username) {
            Some(_) => Response::UserDelete(OkMessage::ok(r.username.clone())),
            None => Response::error(format!("user not found: {}", r.username)),
        },
        Request::UserList => Response::UserList(UserListResponse {
            users: users
                .iter()
                .map(|(n, (roles, enabled))| UserInfo {
                    permissions: Vec::new(),
                    ..info(n, roles, *enabled)
                })
                .collect(),
        }),
        Request::UserGet(r) => match users.get(&r.username) {
            Some((roles, enabled)) => Response::UserGet(info(&r.username, roles, *enabled)),
            None => Response::error(format!("user not found: {}", r.username)),
        },
        Request::PasswordChange(r) => {
            if let Ok(mut p) = state.passwords.lock() {
                p.insert(r.username.clone(), r.password.clone());
            }
            Response::PasswordChange(OkMessage::ok("password changed"))
        }
        Request::RoleList => Response::RoleList(RoleListResponse {
            roles: vec![
                RoleInfo {
                    name: "admin".into(),
                    permissions: vec!["read".into(), "write".into(), "admin".into()],
                    description: "Full access".into(),
                },
                RoleInfo {
                    name: "guest".into(),
                    permissions: Vec::new(),
                    description: "Public topics only".into(),
                },
            ],
        }),
        Request::AclSet(r) => {
            acls.insert(r.topic.clone(), r.clone());
            Response::AclSet(AclAck {
                success: true,
                topic: r.topic.clone(),
            })
        }
        Request::AclGet(r) => Response::AclGet(match acls.get(&r.topic) {
            Some(acl) => AclInfo {
                topic: acl.topic.clone(),
                exists: true,
                public: acl.public,
                default_public: true,
                users: acl.users.clone(),
                roles: acl.roles.clone(),
            },
            None => AclInfo {
                topic: r.topic.clone(),
                exists: false,
                default_public: true,
                ..AclInfo::default()
            },
        }),
        Request::AclDelete(r) => Response::AclDelete(AclAck {
            success: acls.remove(&r.topic).is_some(),
            topic: r.topic.clone(),
        }),
        Request::AclList => Response::AclList(AclListResponse {
            entries: acls
                .values()
                .map(|a| AclListEntry {
                    topic: a.topic.clone(),
                    exists: true,
                    public: a.public,
                    users: a.users.clone(),
                    roles: a.roles.clone(),
                })
                .collect(),
            default_public: true,
        }),
        Request::AuditQuery(q) | Request::AuditQueryAlt(q) => {
            if let Ok(mut last) = state.last_audit_query.lock() {
                *last = Some(q.clone());
            }
            let event = AuditEvent {
                id: "ev-1".into(),
                timestamp_ms: 1_700_000_000_000,
                event_type: "auth_failure".into(),
                user: "mallory".into(),
                client_ip: "127.0.0.1".into(),
                resource: "".into(),
                action: "AUTH".into(),
                result: "failure".into(),
                node_id: "1".into(),
                details: vec![AuditDetail {
                    key: "reason".into(),
                    value: "invalid username or password".into(),
                }],
            };
            Response::AuditQuery(AuditQueryResponse {
                events: vec![event],
                total: 3,
                has_more: true,
            })
        }
        Request::AuditExport(r) | Request::AuditExportAlt(r) => Response::AuditExport(AuditExportResponse {
            format: r.format.clone(),
            data: Bytes::from(format!("{{\"format\":\"{}\",\"limit\":{}}}", r.format, r.query.limit)),
        }),
        _ => return None,
    })
}

fn log<'a>(topics: &'a HashMap<String, Topic>, topic: &str, partition: i32) -> Option<&'a Vec<(Bytes, Bytes)>> {
    topics
        .get(topic)
        .and_then(|t| usize::try_from(partition).ok().and_then(|p| t.partitions.get(p)))
}

/// The broker's partition rule: explicit, else key hash, else round robin.
fn choose(topic: &mut Topic, key: &Bytes, requested: i32) -> Option<usize> {
    let n = topic.partitions.len();
    if requested >= 0 {
        return ((requested as usize) < n).then_some(requested as usize);
    }
    if !key.is_empty() {
        return Some(partition_for_key(key, n as u32) as usize);
    }
    let p = topic.round_robin % n;
    topic.round_robin += 1;
    Some(p)
}
