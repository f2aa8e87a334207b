//! SDK security tests against the fake broker: implicit TLS with rcgen
//! certificates, AUTH on every (re)connection, and the user / role / ACL /
//! audit operations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flymq_proto::{AuditQuery, Opcode};
use flymq_security::tls::{ClientTlsOptions, ServerTls, ServerTlsOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::fake_broker::{Behaviour, FakeBroker};
use crate::{Client, ClientConfig, Credentials, Error, UserUpdate};

/// A CA and a server certificate for `localhost`/127.0.0.1, written to `dir`.
/// Returns (CA file, server cert file, server key file).
pub(crate) fn write_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let paths = (dir.join("ca.pem"), dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&paths.0, ca_cert.pem()).expect("write CA");
    std::fs::write(&paths.1, cert.pem()).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}

fn config(addr: String) -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        reconnect_backoff: Duration::from_millis(10),
        connect_rounds: 1,
        ..ClientConfig::new([addr])
    }
}

async fn tls_broker(dir: &Path, require_auth: bool) -> (FakeBroker, PathBuf) {
    let (ca, cert, key) = write_certs(dir);
    let tls = ServerTls::new(ServerTlsOptions::new(cert, key).with_reload_interval(None)).expect("server TLS");
    let broker = FakeBroker::start_with(Behaviour {
        tls: Some(tls.config()),
        require_auth,
        ..Behaviour::default()
    })
    .await;
    (broker, ca)
}

#[tokio::test]
async fn implicit_tls_with_a_ca_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let (broker, ca) = tls_broker(dir.path(), false).await;
    let mut cfg = config(format!("localhost:{}", broker.addr.port()));
    cfg.tls = Some(ClientTlsOptions {
        ca_file: Some(ca.clone()),
        ..ClientTlsOptions::default()
    });
    let client = Client::connect(cfg.clone()).await.expect("TLS connect");
    client.create_topic("t", 1).await.expect("create over TLS");
    client.produce("t", "hello").await.expect("produce over TLS");
    // Pipelined requests flow through the TLS stream.
    let many = futures::future::join_all((0..50).map(|i| client.produce("t", format!("m{i}")))).await;
    assert!(many.iter().all(Result::is_ok));
    assert_eq!(broker.state.partition_len("t", 0), 51);

    // By IP with a server-name override.
    let mut by_ip = config(broker.address());
    by_ip.tls = Some(ClientTlsOptions {
        ca_file: Some(ca),
        server_name: Some("localhost".into()),
        ..ClientTlsOptions::default()
    });
    Client::connect(by_ip)
        .await
        .expect("IP + server name")
        .list_topics()
        .await
        .expect("list");
}

#[tokio::test]
async fn tls_failures_are_reported_with_a_hint() {
    let dir = tempfile::tempdir().expect("tmp");
    let (broker, _) = tls_broker(dir.path(), false).await;
    let other = tempfile::tempdir().expect("tmp");
    let (other_ca, _, _) = write_certs(other.path());
    let mut cfg = config(format!("localhost:{}", broker.addr.port()));
    cfg.tls = Some(ClientTlsOptions {
        ca_file: Some(other_ca),
        ..ClientTlsOptions::default()
    });
    let err = Client::connect(cfg).await.unwrap_err().to_string();
    assert!(err.contains("TLS") && err.contains("--tls-ca"), "{err}");

    // A plaintext client against the TLS port: no answer, the socket closes.
    let plain = Client::connect(config(broker.address())).await;
    let failed = match plain {
        Err(_) => true,
        Ok(client) => client.list_topics().await.is_err(),
    };
    assert!(failed, "plaintext must not work on a TLS port");

    // TLS client against a plaintext broker.
    let plain_broker = FakeBroker::start().await;
    let mut cfg = config(format!("localhost:{}", plain_broker.addr.port()));
    cfg.tls = Some(ClientTlsOptions {
        insecure_skip_verify: true,
        ..ClientTlsOptions::default()
    });
    let err = Client::connect(cfg).await.unwrap_err();
    assert!(err.is_connection_error(), "{err}");

    // A missing CA file is a configuration error before any connection.
    let mut cfg = config(broker.address());
    cfg.tls = Some(ClientTlsOptions {
        ca_file: Some(dir.path().join("missing.pem")),
        ..ClientTlsOptions::default()
    });
    let err = Client::connect(cfg).await.unwrap_err();
    assert!(
        matches!(err, Error::Config(_)) && err.to_string().contains("missing.pem"),
        "{err}"
    );
}

/// Unlike pyflymq, the SDK authenticates again on every new connection.
#[tokio::test]
async fn auth_is_sent_after_every_reconnect() {
    let dir = tempfile::tempdir().expect("tmp");
    let (ca, cert, key) = write_certs(dir.path());
    let tls = ServerTls::new(ServerTlsOptions::new(cert, key).with_reload_interval(None)).expect("server TLS");
    let broker = FakeBroker::start_with(Behaviour {
        tls: Some(tls.config()),
        require_auth: true,
        close_after: Some(3),
        ..Behaviour::default()
    })
    .await;
    let mut cfg = config(format!("localhost:{}", broker.addr.port()));
    cfg.tls = Some(ClientTlsOptions {
        ca_file: Some(ca),
        ..ClientTlsOptions::default()
    });
    cfg.credentials = Some(Credentials::new("alice", "secret"));
    let client = Client::connect(cfg).await.expect("connect");
    let mut ok = 0;
    for _ in 0..12 {
        match client.list_topics().await {
            Ok(_) => ok += 1,
            Err(err) => assert!(err.is_connection_error(), "never 'authentication required': {err}"),
        }
    }
    assert!(ok >= 8, "{ok} of 12 succeeded");
    let connections = broker.state.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(connections >= 4, "the broker closed connections: {connections}");
    assert_eq!(
        broker.state.requests(Opcode::Auth),
        connections,
        "one AUTH per connection"
    );
}

#[tokio::test]
async fn auth_failures_are_clear() {
    let broker = FakeBroker::start_with(Behaviour {
        require_auth: true,
        ..Behaviour::default()
    })
    .await;
    let mut cfg = config(broker.address());
    cfg.credentials = Some(Credentials::new("alice", "wrong"));
    let err = Client::connect(cfg).await.unwrap_err();
    assert!(
        matches!(err, Error::Authentication { .. }) && err.is_auth_error(),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "authentication as 'alice' failed: invalid username or password"
    );
    let client = Client::connect(config(broker.address())).await.expect("no credentials");
    let err = client.list_topics().await.unwrap_err();
    assert!(err.is_auth_error(), "{err}");
    assert!(err.to_string().contains("authentication required"), "{err}");
    let who = {
        let mut cfg = config(broker.address());
        cfg.credentials = Some(Credentials::new("alice", "secret"));
        Client::connect(cfg)
            .await
            .expect("auth")
            .whoami()
            .await
            .expect("whoami")
    };
    assert!(who.authenticated);
    assert_eq!(who.username, "alice");
}

#[tokio::test]
async fn user_role_acl_and_audit_operations() {
    let broker = FakeBroker::start().await;
    let client = Client::connect(config(broker.address())).await.expect("connect");

    let created = client
        .create_user("bob", "b0b-pass", vec!["producer".into()])
        .await
        .expect("create");
    assert_eq!((created.username.as_str(), created.enabled), ("bob", true));
    assert_eq!(broker.state.passwords.lock().expect("p")["bob"], "b0b-pass");
    let err = client.create_user("bob", "x", vec![]).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    client
        .update_user(
            "bob",
            UserUpdate {
                roles: vec!["consumer".into()],
                enabled: false,
            },
        )
        .await
        .expect("update");
    let bob = client.get_user("bob").await.expect("get");
    assert_eq!((bob.roles.clone(), bob.enabled), (vec!["consumer".to_owned()], false));
    assert_eq!(client.list_users().await.expect("list").len(), 1);
    client.change_password("bob", "b0b-pass", "n3w").await.expect("passwd");
    assert_eq!(broker.state.passwords.lock().expect("p")["bob"], "n3w");
    assert_eq!(client.list_roles().await.expect("roles")[0].name, "admin");
    client.delete_user("bob").await.expect("delete");
    assert!(client.get_user("bob").await.is_err());

    client
        .set_acl("orders.*", false, vec!["bob".into()], vec!["ops".into()])
        .await
        .expect("set");
    let acl = client.get_acl("orders.*").await.expect("get");
    assert!(acl.exists && !acl.public);
    assert_eq!(acl.users, ["bob"]);
    assert!(!client.get_acl("other").await.expect("get").exists);
    assert_eq!(client.list_acls().await.expect("list").entries.len(), 1);
    client.delete_acl("orders.*").await.expect("delete");
    assert!(client.delete_acl("orders.*").await.is_err(), "nothing left to delete");

    let page = client
        .audit_query(AuditQuery {
            user: "mallory".into(),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!((page.events.len(), page.total, page.has_more), (1, 3, true));
    assert_eq!(
        broker
            .state
            .last_audit_query
            .lock()
            .expect("q")
            .as_ref()
            .map(|q| q.user.clone()),
        Some("mallory".into())
    );
    let export = client
        .audit_export(
            AuditQuery {
                limit: 5,
                ..AuditQuery::default()
            },
            "json",
        )
        .await
        .expect("export");
    assert_eq!(export.format, "json");
    assert_eq!(&export.data[..], br#"{"format":"json","limit":5}"#);
}

#[test]
fn config_debug_hides_the_password() {
    let cfg = ClientConfig {
        credentials: Some(Credentials::new("alice", "s3cret-pw")),
        ..ClientConfig::default()
    };
    let text = format!("{cfg:?}");
    assert!(text.contains("alice") && !text.contains("s3cret-pw"), "{text}");
}
