//! A pyflymq-style client (the stdlib Python client of
//! `tests/conformance/`, connecting as pyflymq does: TLS verified against a
//! CA file, then AUTH) against a real `flymq` with TLS on the client port
//! and authentication on. Certificates are generated here with rcgen.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flymq_client::{Client, ClientConfig, ClientTlsOptions, Credentials};
use flymq_tests::{parse_pass_fail_summary, spawn_standalone};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

fn python3_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 in `dir`.
fn write_pki(dir: &Path) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name.push(DnType::CommonName, "wire test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).expect("leaf params");
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).expect("write");
    std::fs::write(dir.join("tls.crt"), cert.pem()).expect("write");
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pyflymq_style_client_uses_tls_and_credentials() {
    if !python3_available() {
        eprintln!("SKIPPED wire_secure: python3 is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    write_pki(dir.path());
    std::fs::write(dir.path().join("admin.pw"), "wire-admin-pw\n").expect("write");
    std::fs::write(dir.path().join("app.pw"), "wire-app-pw\n").expect("write");
    let file = |name: &str| dir.path().join(name).display().to_string();
    let sets = [
        "tls_enabled=true".to_owned(),
        format!("tls_cert_file={}", file("tls.crt")),
        format!("tls_key_file={}", file("tls.key")),
        "auth_enabled=true".to_owned(),
        format!("admin_password_file={}", file("admin.pw")),
    ];
    let mut args: Vec<&str> = Vec::new();
    for set in &sets {
        args.push("--set");
        args.push(set);
    }
    let broker = spawn_standalone(&args);
    let addr = broker.client_addr();

    // The administrator creates the application's user over TLS.
    let admin = Client::connect(ClientConfig {
        bootstrap: vec![format!("localhost:{}", addr.port())],
        credentials: Some(Credentials::new("admin", "wire-admin-pw")),
        request_timeout: Duration::from_secs(10),
        tls: Some(ClientTlsOptions {
            ca_file: Some(dir.path().join("ca.crt")),
            ..ClientTlsOptions::default()
        }),
        ..ClientConfig::default()
    })
    .await
    .expect("admin connects over TLS");
    admin
        .create_user("app", "wire-app-pw", vec!["producer".into(), "consumer".into()])
        .await
        .expect("create user app");

    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conformance")
        .join("test_secure.py");
    let output = Command::new("python3")
        .arg(&script)
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--ca", &file("ca.crt"), "--server-name", "localhost"])
        .args(["--user", "app", "--password-file", &file("app.pw")])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("cannot run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let summary = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let (passed, failed) = parse_pass_fail_summary(summary)
        .unwrap_or_else(|| panic!("no `N passed, N failed` line (exit {:?}): {summary:?}", output.status));
    assert!(
        output.status.success() && failed == 0 && passed == 5,
        "secure wire tests: {summary}; broker log:\n{}",
        broker.log_lines().join("\n")
    );
}
