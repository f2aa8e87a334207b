//! `spec.tls` against a real `flymq` process: certificates issued by the
//! operator's CA ([`flymq_operator::pki`]) are what a broker runs with, the
//! operator's admin client reaches it over mutual TLS, and a client reaches
//! it only with that CA (and, with `requireClientCert`, a certificate from
//! it).
//!
//! Runs the `flymq` binary of the same target directory (or `FLYMQ_BIN`).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use flymq_operator::admin::{
    AdminCredentials, AdminError, AdminFuture, AdminTls, ClusterEndpoint, CredentialSource, GrpcAdmin,
};
use flymq_operator::pki::{self, KeyedCert};
use flymq_security::tls::ClientTlsOptions;

const ADMIN_PASSWORD: &str = "tls-admin-pw";

/// Fixed credentials and TLS material (what `KubeCredentials` reads from
/// the cluster's Secrets).
struct Material {
    tls: Option<AdminTls>,
}

impl CredentialSource for Material {
    fn credentials<'a>(&'a self, _: &'a ClusterEndpoint) -> AdminFuture<'a, Option<AdminCredentials>> {
        Box::pin(async { Ok(Some(AdminCredentials::new("admin", ADMIN_PASSWORD))) })
    }

    fn tls<'a>(&'a self, _: &'a ClusterEndpoint) -> AdminFuture<'a, Option<AdminTls>> {
        Box::pin(async move { Ok(self.tls.clone()) })
    }
}

fn admin_tls(ca: &KeyedCert, client: &KeyedCert) -> AdminTls {
    AdminTls {
        ca_pem: ca.cert.clone().into_bytes(),
        cert_pem: client.cert.clone().into_bytes(),
        key_pem: zeroize::Zeroizing::new(client.key.as_bytes().to_vec()),
    }
}

fn endpoint() -> ClusterEndpoint {
    ClusterEndpoint {
        namespace: "prod".into(),
        name: "demo".into(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write PEM");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_with_operator_issued_certificates_is_reachable_only_with_its_ca() {
    let now = SystemTime::now();
    let ca = pki::new_ca("FlyMQ prod/demo CA", now).expect("CA");
    // What the operator issues: the broker's own certificate (here for the
    // name the test dials), its own client certificate, and one for an app.
    let broker_cert = pki::issue(&ca, "flymq demo-0", &["localhost".into()], now).expect("broker cert");
    let operator_cert = pki::issue(&ca, "flymq operator", &[], now).expect("operator cert");
    let app_cert = pki::issue(&ca, "flymq app", &[], now).expect("app cert");
    let stranger = pki::new_ca("someone else", now).expect("CA");
    let stranger_cert = pki::issue(&stranger, "flymq operator", &[], now).expect("cert");

    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = write(dir.path(), "ca.crt", &ca.cert);
    let cert_file = write(dir.path(), "demo-0.crt", &broker_cert.cert);
    let key_file = write(dir.path(), "demo-0.key", &broker_cert.key);
    let app_cert_file = write(dir.path(), "app.crt", &app_cert.cert);
    let app_key_file = write(dir.path(), "app.key", &app_cert.key);
    let password_file = write(dir.path(), "admin-password", ADMIN_PASSWORD);
    let args = vec![
        "--set".to_string(),
        "tls_enabled=true".into(),
        "--set".into(),
        format!("tls_cert_file={cert_file}"),
        "--set".into(),
        format!("tls_key_file={key_file}"),
        "--set".into(),
        format!("tls_ca_file={ca_file}"),
        "--set".into(),
        "tls_client_auth=required".into(),
        "--set".into(),
        "auth_enabled=true".into(),
        "--set".into(),
        format!("admin_password_file={password_file}"),
    ];
    let process = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        flymq_tests::try_spawn_standalone(&args)
    })
    .await
    .expect("spawn thread")
    .unwrap_or_else(|e| panic!("cannot start a real broker: {e:#}"));
    let admin_port = process
        .admin_addr()
        .unwrap_or_else(|| panic!("no admin address:\n{}", process.log_text()))
        .port();
    let url = format!("http://localhost:{admin_port}");

    // The operator, with the CA and its client certificate: mutual TLS.
    let admin = GrpcAdmin::new(url.clone()).with_credentials(Arc::new(Material {
        tls: Some(admin_tls(&ca, &operator_cert)),
    }));
    let users = admin.list_users(&endpoint()).await.expect("ListUsers over mutual TLS");
    assert!(users.iter().any(|u| u.username == "admin"), "{users:?}");

    // Another CA: the broker's certificate is not trusted.
    let admin = GrpcAdmin::new(url.clone()).with_credentials(Arc::new(Material {
        tls: Some(admin_tls(&stranger, &stranger_cert)),
    }));
    let err = admin.list_users(&endpoint()).await.expect_err("wrong CA");
    assert!(matches!(err, AdminError::Unreachable { .. }), "{err}");
    // The right CA but a client certificate the broker does not trust.
    let admin = GrpcAdmin::new(url.clone()).with_credentials(Arc::new(Material {
        tls: Some(admin_tls(&ca, &stranger_cert)),
    }));
    // With TLS 1.3 the broker's refusal of the certificate arrives after the
    // client's side of the handshake: a connect error or a failed call.
    let err = admin
        .list_users(&endpoint())
        .await
        .expect_err("untrusted client certificate");
    assert!(
        matches!(err, AdminError::Unreachable { .. } | AdminError::Failed { .. }),
        "{err}"
    );
    // Plaintext is not answered.
    let admin = GrpcAdmin::new(url).with_credentials(Arc::new(Material { tls: None }));
    admin.list_users(&endpoint()).await.expect_err("plaintext");

    // A binary-protocol client: only with the CA and a certificate from it.
    let client = |tls: ClientTlsOptions| {
        let mut config = flymq_client::ClientConfig::new([format!("localhost:{}", process.client_addr().port())]);
        config.tls = Some(tls);
        config.credentials = Some(flymq_client::Credentials::new("admin", ADMIN_PASSWORD));
        config.connect_timeout = std::time::Duration::from_secs(5);
        flymq_client::Client::connect(config)
    };
    let with_ca = ClientTlsOptions {
        ca_file: Some(ca_file.clone().into()),
        client_cert_file: Some(app_cert_file.into()),
        client_key_file: Some(app_key_file.into()),
        ..ClientTlsOptions::default()
    };
    let connected = client(with_ca.clone()).await.expect("the CA and a certificate from it");
    connected.create_topic("tls-ok", 1).await.expect("create over TLS");
    let stranger_ca = write(dir.path(), "stranger.crt", &stranger.cert);
    let wrong_ca = ClientTlsOptions {
        ca_file: Some(stranger_ca.into()),
        ..with_ca.clone()
    };
    assert!(
        client(wrong_ca).await.is_err(),
        "a client trusting another CA is refused"
    );
    let no_cert = ClientTlsOptions {
        client_cert_file: None,
        client_key_file: None,
        ..with_ca
    };
    let refused = match client(no_cert).await {
        Err(_) => true,
        // TLS 1.3 reports a missing client certificate on first use.
        Ok(c) => c.create_topic("tls-no-cert", 1).await.is_err(),
    };
    assert!(refused, "without a client certificate the broker answers nothing");
}
