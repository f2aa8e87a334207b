//! Shared helpers of the TLS integration tests: rcgen CAs and leaves, PEM
//! files replaced atomically, a TLS echo server and a ping client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flymq_security::tls::server::accept;
use flymq_security::tls::{CertIdentity, ClientTlsOptions, ServerTls, TlsClient};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const HANDSHAKE: Duration = Duration::from_secs(5);

/// A CA that signs leaf certificates.
pub struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA cert");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (DNS names or IPs) with common name `cn`;
    /// `expired` makes it valid only in 2020.
    pub fn leaf(&self, cn: &str, names: &[&str], expired: bool) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Leaf {
    /// Writes the PEM files (replacing them atomically, as a Kubernetes
    /// secret volume does) and returns (cert, key) paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        write_atomically(&key, self.key_pem.as_bytes());
        write_atomically(&cert, self.cert_pem.as_bytes());
        (cert, key)
    }
}

pub fn write_atomically(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

pub fn write_ca(dir: &Path, name: &str, ca: &Ca) -> PathBuf {
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, &ca.pem).expect("write CA");
    path
}

/// An echo server: handshakes each connection in its own task, then echoes
/// one line. Returns its address and the identities of verified clients.
pub async fn echo_server(tls: ServerTls) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let acceptor = tls.acceptor();
    let seen_by_server = seen.clone();
    tokio::spawn(async move {
        let _keep = tls;
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), seen_by_server.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = accept(&acceptor, socket, HANDSHAKE).await else {
                    return;
                };
                let identity = CertIdentity::of_peer(stream.get_ref().1.peer_certificates())
                    .and_then(|id| id.username().map(str::to_owned));
                seen.lock().expect("seen").push(identity);
                let mut buf = [0u8; 64];
                if let Ok(n) = stream.read(&mut buf).await {
                    let _ = stream.write_all(&buf[..n]).await;
                    let _ = stream.flush().await;
                }
            });
        }
    });
    (addr, seen)
}

/// Connects, sends "ping", expects "ping" back; returns the certificate the
/// server presented.
pub async fn ping(addr: &str, client: &TlsClient, host: &str) -> Result<CertificateDer<'static>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut stream = client.connect(host, tcp).await.map_err(|e| e.to_string())?;
    let presented = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .ok_or("no server certificate")?;
    stream.write_all(b"ping").await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tokio::time::timeout(HANDSHAKE, stream.read_exact(&mut buf))
        .await
        .map_err(|_| "no echo".to_string())?
        .map_err(|e| e.to_string())?;
    if &buf != b"ping" {
        return Err(format!("unexpected echo {buf:?}"));
    }
    Ok(presented)
}

pub fn client_for(ca: &Path) -> TlsClient {
    TlsClient::new(&ClientTlsOptions {
        ca_file: Some(ca.to_owned()),
        ..ClientTlsOptions::default()
    })
    .expect("client config")
}
