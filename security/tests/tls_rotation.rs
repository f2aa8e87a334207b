//! Server certificate rotation by file replacement, and garbage files
//! keeping the old certificate with an error logged. Its own test binary:
//! it installs a log subscriber, and tracing caches per call site whether
//! anyone listens, which other tests in the same process would disturb.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Ca, client_for, echo_server, ping, write_atomically, write_ca};
use flymq_security::tls::{ServerTls, ServerTlsOptions};
use rustls::pki_types::CertificateDer;

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A fresh client per attempt: a resumed TLS session would report the
/// certificate of the original handshake.
async fn wait_for_certificate(addr: &str, ca: &Path, expected: &CertificateDer<'static>) -> bool {
    for _ in 0..100 {
        if ping(addr, &client_for(ca), "localhost").await.ok().as_ref() == Some(expected) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Rotation: replacing the files makes new handshakes use the new
/// certificate; garbage keeps the old one and logs an error.
#[tokio::test(flavor = "current_thread")]
async fn certificate_rotation_and_garbage() {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().expect("tmp");
    let ca = Ca::new("test CA");
    let ca_path = write_ca(dir.path(), "ca", &ca);
    let first = ca.leaf("broker-v1", &["localhost"], false);
    let (cert, key) = first.write(dir.path(), "server");
    let options = ServerTlsOptions::new(&cert, &key).with_reload_interval(Some(Duration::from_millis(100)));
    let tls = ServerTls::new(options).expect("server");
    let resolver = tls.resolver().clone();
    let (addr, _) = echo_server(tls).await;
    assert_eq!(
        ping(&addr, &client_for(&ca_path), "localhost").await.expect("first"),
        first.der
    );

    let second = ca.leaf("broker-v2", &["localhost"], false);
    second.write(dir.path(), "server");
    assert!(
        wait_for_certificate(&addr, &ca_path, &second.der).await,
        "the new certificate was not picked up; log: {}",
        String::from_utf8_lossy(&logs.0.lock().expect("log"))
    );

    // Garbage in the certificate file: the old certificate stays.
    write_atomically(
        &cert,
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        ping(&addr, &client_for(&ca_path), "localhost")
            .await
            .expect("still served"),
        second.der
    );
    // A key that does not match the certificate: also refused.
    let third = ca.leaf("broker-v3", &["localhost"], false);
    write_atomically(&cert, third.cert_pem.as_bytes());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        ping(&addr, &client_for(&ca_path), "localhost")
            .await
            .expect("still served"),
        second.der
    );
    let text = String::from_utf8(logs.0.lock().expect("log").clone()).expect("utf8");
    assert!(
        text.contains("ERROR") && text.contains("keeping the previous certificate"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE KEY"), "the key never reaches the log");
    // Completing the rotation (the matching key) applies it.
    write_atomically(&key, third.key_pem.as_bytes());
    assert!(wait_for_certificate(&addr, &ca_path, &third.der).await);
    // A manual reload with unchanged files reports no change.
    assert!(!resolver.reload().expect("reload"));
}
