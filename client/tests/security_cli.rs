//! `flymq-cli` and the admin SDK with TLS and credentials, against fakes
//! on loopback with rcgen certificates: a minimal binary-protocol broker
//! (AUTH plus the user / ACL / audit opcodes) and a fake admin gRPC server
//! served through `flymq_security::tls::grpc::TlsIncoming`, which checks
//! the `authorization: Basic` metadata. Passwords must never appear in
//! the CLI's output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flymq_client::admin::{AdminClient, AdminOptions, ClusterStatusReply, TopicInfo};
use flymq_client::{ClientTlsOptions, Credentials, Error};
use flymq_proto::grpc::admin as pb;
use flymq_proto::{
    AclAck, AclListEntry, AclListResponse, AuditExportResponse, AuditQueryResponse, AuthResponse, Frame, Request,
    Response, UserInfo, UserListResponse, WhoamiResponse,
};
use flymq_security::tls::grpc::{TlsConnectInfo, TlsIncoming, parse_basic_authorization};
use flymq_security::tls::{ClientAuth, ServerTls, ServerTlsOptions};
use pb::admin_server::{Admin, AdminServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

const USER: &str = "alice";
const PASSWORD: &str = "alice-s3cret-pw";
const NEW_PASSWORD: &str = "bob-n3w-pw";

struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn write_certs(dir: &Path) -> Certs {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |cn: &str, names: Vec<String>| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).expect("cert");
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf("broker", vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_pem, client_key) = leaf("operator", vec![]);
    let certs = Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
    };
    for (path, contents) in [
        (&certs.ca, ca_cert.pem()),
        (&certs.cert, server_pem),
        (&certs.key, server_key),
        (&certs.client_cert, client_pem),
        (&certs.client_key, client_key),
    ] {
        std::fs::write(path, contents).expect("write PEM");
    }
    certs
}

#[derive(Default)]
struct BrokerState {
    /// user -> (password, roles)
    users: BTreeMap<String, (String, Vec<String>)>,
    acls: BTreeMap<String, (bool, Vec<String>, Vec<String>)>,
}

/// A binary-protocol broker over TLS that requires AUTH as alice.
async fn start_broker(certs: &Certs) -> (String, Arc<Mutex<BrokerState>>) {
    let tls = ServerTls::new(ServerTlsOptions::new(&certs.cert, &certs.key).with_reload_interval(None)).expect("tls");
    let acceptor = tls.acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = format!("localhost:{}", listener.local_addr().expect("addr").port());
    let state = Arc::new(Mutex::new(BrokerState::default()));
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, state) = (acceptor.clone(), shared.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(socket).await else {
                    return;
                };
                let mut user: Option<String> = None;
                let mut buf = BytesMut::new();
                loop {
                    while let Ok(Some(frame)) = Frame::decode(&mut buf) {
                        let reply = match Request::decode_frame(&frame) {
                            Ok(req) => answer(&state, &mut user, req),
                            Err(e) => Response::error(e.to_string()),
                        };
                        let mut out = BytesMut::new();
                        let _ = reply.encode_frame(&mut out);
                        if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                            return;
                        }
                    }
                    match stream.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    (addr, state)
}

fn answer(state: &Mutex<BrokerState>, user: &mut Option<String>, req: Request) -> Response {
    let mut state = state.lock().expect("state");
    if let Request::Auth(auth) = &req {
        let ok = auth.username == USER && auth.password == PASSWORD;
        if ok {
            *user = Some(auth.username.clone());
        }
        return Response::Auth(AuthResponse {
            success: ok,
            username: if ok { auth.username.clone() } else { String::new() },
            roles: if ok { vec!["admin".into()] } else { Vec::new() },
            error: if ok {
                String::new()
            } else {
                "invalid username or password".into()
            },
        });
    }
    if user.is_none() {
        return Response::error("authentication required");
    }
    match req {
        Request::Whoami => Response::Whoami(WhoamiResponse {
            authenticated: true,
            username: USER.into(),
            roles: vec!["admin".into()],
            permissions: vec!["read".into(), "write".into(), "admin".into()],
        }),
        Request::UserCreate(r) => {
            state
                .users
                .insert(r.username.clone(), (r.password.clone(), r.roles.clone()));
            Response::UserCreate(UserInfo {
                username: r.username,
                roles: r.roles,
                enabled: true,
                ..UserInfo::default()
            })
        }
        Request::UserList => Response::UserList(UserListResponse {
            users: state
                .users
                .iter()
                .map(|(name, (_, roles))| UserInfo {
                    username: name.clone(),
                    roles: roles.clone(),
                    enabled: true,
                    ..UserInfo::default()
                })
                .collect(),
        }),
        Request::AclSet(r) => {
            state.acls.insert(r.topic.clone(), (r.public, r.users, r.roles));
            Response::AclSet(AclAck {
                success: true,
                topic: r.topic,
            })
        }
        Request::AclList => Response::AclList(AclListResponse {
            entries: state
                .acls
                .iter()
                .map(|(topic, (public, users, roles))| AclListEntry {
                    topic: topic.clone(),
                    exists: true,
                    public: *public,
                    users: users.clone(),
                    roles: roles.clone(),
                })
                .collect(),
            default_public: false,
        }),
        Request::AuditQuery(q) => Response::AuditQuery(AuditQueryResponse {
            events: vec![flymq_proto::AuditEvent {
                id: "1".into(),
                timestamp_ms: 1_700_000_000_000,
                event_type: q.event_types.first().cloned().unwrap_or_else(|| "user_created".into()),
                user: USER.into(),
                action: "USER_CREATE".into(),
                result: "success".into(),
                resource: "bob".into(),
                ..flymq_proto::AuditEvent::default()
            }],
            total: 1,
            has_more: false,
        }),
        Request::AuditExport(r) => Response::AuditExport(AuditExportResponse {
            format: r.format.clone(),
            data: Bytes::from(format!("id,type\n1,user_created\n# format={}\n", r.format)),
        }),
        other => Response::error(format!("unknown opcode: {}", other.opcode().code())),
    }
}

fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flymq-cli"));
    command.args(args);
    for var in [
        "FLYMQ_ADMIN_ADDR",
        "FLYMQ_BOOTSTRAP",
        "FLYMQ_USERNAME",
        "FLYMQ_PASSWORD",
        "FLYMQ_PASSWORD_FILE",
        "FLYMQ_NEW_PASSWORD",
        "FLYMQ_TLS",
        "FLYMQ_TLS_CA",
        "FLYMQ_TLS_CERT",
        "FLYMQ_TLS_KEY",
        "FLYMQ_TLS_SERVER_NAME",
        "FLYMQ_TLS_INSECURE_SKIP_VERIFY",
    ] {
        command.env_remove(var);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run flymq-cli")
}

async fn run_cli(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        cli(&args, &env)
    })
    .await
    .expect("cli task")
}

fn no_secrets(out: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in [PASSWORD, NEW_PASSWORD] {
        assert!(!all.contains(secret), "a password was printed: {all}");
    }
}

fn ok_stdout(out: &Output) -> String {
    no_secrets(out);
    assert!(
        out.status.success(),
        "flymq-cli failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

fn args(base: &[String], extra: &[&str]) -> Vec<String> {
    base.iter()
        .cloned()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_security_commands_over_tls() {
    let dir = tempfile::tempdir().expect("tmp");
    let certs = write_certs(dir.path());
    let (addr, state) = start_broker(&certs).await;
    let base: Vec<String> = ["-b", &addr, "--tls-ca", certs.ca.to_str().expect("path"), "-u", USER]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let env = || vec![("FLYMQ_PASSWORD", PASSWORD.to_owned())];

    let out = run_cli(args(&base, &["whoami"]), env()).await;
    assert_eq!(
        ok_stdout(&out).trim(),
        "alice (roles admin, permissions read,write,admin)"
    );

    // user create: the new password from a file, never from a flag.
    let pw_file = dir.path().join("bob.pw");
    std::fs::write(&pw_file, format!("{NEW_PASSWORD}\n")).expect("write");
    let out = run_cli(
        args(
            &base,
            &[
                "user",
                "create",
                "bob",
                "-r",
                "producer",
                "--new-password-file",
                pw_file.to_str().expect("path"),
                "-o",
                "json",
            ],
        ),
        env(),
    )
    .await;
    let created: serde_json::Value = serde_json::from_str(ok_stdout(&out).trim()).expect("json");
    assert_eq!(created["user"]["username"], "bob");
    assert_eq!(created["user"]["roles"][0], "producer");
    assert_eq!(state.lock().expect("state").users["bob"].0, NEW_PASSWORD);

    let out = run_cli(args(&base, &["user", "list"]), env()).await;
    let text = ok_stdout(&out);
    assert!(
        text.contains("USER") && text.contains("bob") && text.contains("producer"),
        "{text}"
    );

    let out = run_cli(
        args(&base, &["acl", "set", "orders.*", "--user", "bob", "--role", "ops"]),
        env(),
    )
    .await;
    assert!(ok_stdout(&out).contains("set ACL of 'orders.*': private, users bob, roles ops"));
    let out = run_cli(args(&base, &["acl", "list", "-o", "json"]), env()).await;
    let line: serde_json::Value = serde_json::from_str(ok_stdout(&out).trim()).expect("json");
    assert_eq!(line["topic"], "orders.*");
    assert_eq!(line["users"][0], "bob");

    let out = run_cli(
        args(
            &base,
            &[
                "audit",
                "query",
                "--type",
                "user_created",
                "--since",
                "1h",
                "-o",
                "json",
            ],
        ),
        env(),
    )
    .await;
    let event: serde_json::Value = serde_json::from_str(ok_stdout(&out).trim()).expect("json");
    assert_eq!(event["type"], "user_created");
    assert_eq!(event["resource"], "bob");
    let export = dir.path().join("audit.csv");
    let out = run_cli(
        args(
            &base,
            &[
                "audit",
                "export",
                "--format",
                "csv",
                "--out",
                export.to_str().expect("path"),
            ],
        ),
        env(),
    )
    .await;
    ok_stdout(&out);
    let csv = std::fs::read_to_string(&export).expect("export written");
    assert!(csv.starts_with("id,type\n") && csv.contains("format=csv"), "{csv}");

    // --password-file instead of FLYMQ_PASSWORD.
    let own = dir.path().join("alice.pw");
    std::fs::write(&own, PASSWORD).expect("write");
    let out = run_cli(
        args(&base, &["--password-file", own.to_str().expect("path"), "whoami"]),
        Vec::new(),
    )
    .await;
    assert!(ok_stdout(&out).starts_with("alice"));

    // Failures: no password, wrong password, no TLS trust.
    let out = run_cli(args(&base, &["whoami"]), Vec::new()).await;
    no_secrets(&out);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FLYMQ_PASSWORD"));
    let out = run_cli(args(&base, &["whoami"]), vec![("FLYMQ_PASSWORD", "wrong".to_owned())]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("authentication as 'alice' failed: invalid username or password"),
        "{err}"
    );
    let out = run_cli(
        vec!["-b".into(), addr.clone(), "--tls".into(), "whoami".into()],
        Vec::new(),
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS"));
    // Without credentials the broker refuses.
    let out = run_cli(
        vec![
            "-b".into(),
            addr.clone(),
            "--tls-ca".into(),
            certs.ca.display().to_string(),
            "user".into(),
            "list".into(),
        ],
        Vec::new(),
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("authentication required"));
}

/// The admin fake: ClusterStatus requires Basic credentials of alice or a
/// client certificate; it records the certificate identity it saw.
#[derive(Clone, Default)]
struct FakeAdmin {
    identities: Arc<Mutex<Vec<Option<String>>>>,
}

impl FakeAdmin {
    fn authenticate<T>(&self, request: &GrpcRequest<T>) -> Result<(), Status> {
        let identity = request
            .extensions()
            .get::<TlsConnectInfo>()
            .and_then(|info| info.username().map(str::to_owned));
        self.identities.lock().expect("ids").push(identity.clone());
        if identity.is_some() {
            return Ok(());
        }
        let creds = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_basic_authorization);
        match creds {
            Some(c) if c.username == USER && c.password == PASSWORD => Ok(()),
            Some(_) => Err(Status::unauthenticated("invalid username or password")),
            None => Err(Status::unauthenticated("authentication required")),
        }
    }
}

fn unimplemented<T>() -> Result<GrpcResponse<T>, Status> {
    Err(Status::unimplemented("not in this fake"))
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

    async fn create_topic(&self, _: GrpcRequest<pb::CreateTopicRequest>) -> Result<GrpcResponse<TopicInfo>, Status> {
        unimplemented()
    }
    async fn delete_topic(
        &self,
        _: GrpcRequest<pb::DeleteTopicRequest>,
    ) -> Result<GrpcResponse<pb::DeleteTopicReply>, Status> {
        unimplemented()
    }
    async fn describe_topic(
        &self,
        _: GrpcRequest<pb::DescribeTopicRequest>,
    ) -> Result<GrpcResponse<TopicInfo>, Status> {
        unimplemented()
    }
    async fn list_topics(
        &self,
        _: GrpcRequest<pb::ListTopicsRequest>,
    ) -> Result<GrpcResponse<pb::ListTopicsReply>, Status> {
        unimplemented()
    }
    async fn update_topic_config(
        &self,
        _: GrpcRequest<pb::UpdateTopicConfigRequest>,
    ) -> Result<GrpcResponse<TopicInfo>, Status> {
        unimplemented()
    }
    async fn add_partitions(
        &self,
        _: GrpcRequest<pb::AddPartitionsRequest>,
    ) -> Result<GrpcResponse<TopicInfo>, Status> {
        unimplemented()
    }
    async fn cluster_status(
        &self,
        request: GrpcRequest<pb::ClusterStatusRequest>,
    ) -> Result<GrpcResponse<ClusterStatusReply>, Status> {
        self.authenticate(&request)?;
        Ok(GrpcResponse::new(ClusterStatusReply {
            cluster_id: "secure-cluster".into(),
            node_id: 1,
            ..ClusterStatusReply::default()
        }))
    }
    async fn join_node(&self, _: GrpcRequest<pb::JoinNodeRequest>) -> Result<GrpcResponse<pb::JoinNodeReply>, Status> {
        unimplemented()
    }
    async fn decommission(
        &self,
        _: GrpcRequest<pb::DecommissionRequest>,
    ) -> Result<GrpcResponse<pb::DecommissionReply>, Status> {
        unimplemented()
    }
    async fn transfer_leadership(
        &self,
        _: GrpcRequest<pb::TransferLeadershipRequest>,
    ) -> Result<GrpcResponse<pb::TransferLeadershipReply>, Status> {
        unimplemented()
    }
    async fn upsert_user(
        &self,
        request: GrpcRequest<pb::UpsertUserRequest>,
    ) -> Result<GrpcResponse<pb::UpsertUserReply>, Status> {
        self.authenticate(&request)?;
        Ok(GrpcResponse::new(pb::UpsertUserReply {}))
    }
    async fn delete_user(
        &self,
        _: GrpcRequest<pb::DeleteUserRequest>,
    ) -> Result<GrpcResponse<pb::DeleteUserReply>, Status> {
        unimplemented()
    }
    async fn list_users(
        &self,
        _: GrpcRequest<pb::ListUsersRequest>,
    ) -> Result<GrpcResponse<pb::ListUsersReply>, Status> {
        unimplemented()
    }
    async fn upsert_acl(
        &self,
        _: GrpcRequest<pb::UpsertAclRequest>,
    ) -> Result<GrpcResponse<pb::UpsertAclReply>, Status> {
        unimplemented()
    }
    async fn delete_acl(
        &self,
        _: GrpcRequest<pb::DeleteAclRequest>,
    ) -> Result<GrpcResponse<pb::DeleteAclReply>, Status> {
        unimplemented()
    }
    async fn list_acls(&self, _: GrpcRequest<pb::ListAclsRequest>) -> Result<GrpcResponse<pb::ListAclsReply>, Status> {
        unimplemented()
    }
}

async fn start_admin(certs: &Certs) -> (String, FakeAdmin) {
    let options = ServerTlsOptions::new(&certs.cert, &certs.key)
        .with_reload_interval(None)
        .with_client_auth(&certs.ca, ClientAuth::Optional);
    let tls = ServerTls::new(options).expect("tls");
    let config = tls.config_with_alpn(vec![b"h2".to_vec()]).expect("h2 config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = format!("localhost:{}", listener.local_addr().expect("addr").port());
    let incoming = TlsIncoming::new(
        listener,
        tokio_rustls::TlsAcceptor::from(config),
        Duration::from_secs(5),
    );
    let fake = FakeAdmin::default();
    let service = AdminServer::new(fake.clone());
    tokio::spawn(async move {
        let _keep = tls;
        let _ = tonic::transport::Server::builder()
            .serve_with_incoming(service, incoming)
            .await;
    });
    (addr, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_over_tls_with_basic_credentials_or_client_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    let certs = write_certs(dir.path());
    let (addr, fake) = start_admin(&certs).await;
    let tls = ClientTlsOptions {
        ca_file: Some(certs.ca.clone()),
        ..ClientTlsOptions::default()
    };

    // Credentials as `authorization: Basic`.
    let admin = AdminClient::connect_with(
        &addr,
        AdminOptions {
            tls: Some(tls.clone()),
            credentials: Some(Credentials::new(USER, PASSWORD)),
            ..AdminOptions::default()
        },
    )
    .await
    .expect("connect");
    assert_eq!(
        admin.cluster_status().await.expect("status").cluster_id,
        "secure-cluster"
    );
    admin
        .upsert_user("bob", vec!["consumer".into()], NEW_PASSWORD)
        .await
        .expect("upsert");
    assert!(!format!("{admin:?}").contains(PASSWORD));

    // No credentials, wrong credentials.
    let anonymous = AdminClient::connect_with(
        &addr,
        AdminOptions {
            tls: Some(tls.clone()),
            ..AdminOptions::default()
        },
    )
    .await
    .expect("connect");
    let err = anonymous.cluster_status().await.unwrap_err();
    assert_eq!(err.admin_code(), Some(tonic::Code::Unauthenticated), "{err}");
    let wrong = AdminClient::connect_with(
        &addr,
        AdminOptions {
            tls: Some(tls.clone()),
            credentials: Some(Credentials::new(USER, "nope")),
            ..AdminOptions::default()
        },
    )
    .await
    .expect("connect");
    assert!(matches!(
        wrong.cluster_status().await,
        Err(Error::Admin {
            code: tonic::Code::Unauthenticated,
            ..
        })
    ));

    // A client certificate instead of a password.
    let mtls = AdminClient::connect_with(
        &addr,
        AdminOptions {
            tls: Some(ClientTlsOptions {
                client_cert_file: Some(certs.client_cert.clone()),
                client_key_file: Some(certs.client_key.clone()),
                ..tls.clone()
            }),
            ..AdminOptions::default()
        },
    )
    .await
    .expect("connect");
    mtls.cluster_status().await.expect("certificate accepted");
    assert!(
        fake.identities
            .lock()
            .expect("ids")
            .contains(&Some("operator".to_owned()))
    );

    // Untrusted server certificate.
    let other = tempfile::tempdir().expect("tmp");
    let other_certs = write_certs(other.path());
    let result = AdminClient::connect_with(
        &addr,
        AdminOptions {
            tls: Some(ClientTlsOptions {
                ca_file: Some(other_certs.ca.clone()),
                ..ClientTlsOptions::default()
            }),
            credentials: Some(Credentials::new(USER, PASSWORD)),
            connect_timeout: Duration::from_secs(3),
        },
    )
    .await;
    let failed = match result {
        Err(err) => err.is_connection_error(),
        Ok(client) => client.cluster_status().await.is_err(),
    };
    assert!(failed);

    // The CLI with the same options.
    let out = run_cli(
        vec![
            "--admin".into(),
            addr.clone(),
            "--tls-ca".into(),
            certs.ca.display().to_string(),
            "-u".into(),
            USER.into(),
            "cluster".into(),
            "status".into(),
            "-o".into(),
            "json".into(),
        ],
        vec![("FLYMQ_PASSWORD", PASSWORD.to_owned())],
    )
    .await;
    let status: serde_json::Value = serde_json::from_str(ok_stdout(&out).trim()).expect("json");
    assert_eq!(status["cluster_id"], "secure-cluster");
}
