//! Inter-broker TLS: the client side of mutual TLS between the brokers of
//! one cluster.
//!
//! A broker dials its peers by their advertised cluster address, which in
//! Kubernetes is the pod IP: it changes with every reschedule and is not in
//! the certificates cert-manager issues (they name the pods' DNS names).
//! So a peer's certificate is verified against the cluster CA (chain,
//! validity, key usage) but its name is not checked: belonging to the
//! cluster is what the CA signature proves, in both directions (the cluster
//! port requires a client certificate from the same CA). Use a CA that signs
//! only broker certificates, or keep the cluster secret set as well.
//!
//! The broker presents its own certificate through the server's
//! [`ReloadingCertResolver`], so a rotated certificate is used for new
//! connections to peers too.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::server::ReloadingCertResolver;
use super::{PROTOCOL_VERSIONS, TlsClient, TlsError, crypto_provider, load_root_store};

/// A gRPC (ALPN `h2`) client for the cluster port: trusts only the CA in
/// `ca_file`, presents the certificate of `identity`.
pub fn peer_client(ca_file: &std::path::Path, identity: Arc<ReloadingCertResolver>) -> Result<TlsClient, TlsError> {
    let provider = crypto_provider();
    let roots = Arc::new(load_root_store(ca_file)?);
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Config(format!("cluster CA {}: {e}", ca_file.display())))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ClusterCaVerifier(webpki)))
        .with_client_cert_resolver(Arc::new(PresentCurrent(identity)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsClient::from_config(config, None))
}

/// Verifies a peer's chain against the cluster CA; accepts any name.
#[derive(Debug)]
struct ClusterCaVerifier(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ClusterCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The webpki verifier checks the chain (and validity) before the
        // name: a name error means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Presents the certificate the server side currently serves.
#[derive(Debug)]
struct PresentCurrent(Arc<ReloadingCertResolver>);

impl ResolvesClientCert for PresentCurrent {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::tls::{ClientAuth, ServerTls, ServerTlsOptions};

    struct Pki {
        dir: tempfile::TempDir,
    }

    /// A CA and a leaf for `names` signed by it, written as `<stem>.crt/.key`
    /// plus `<stem>-ca.crt`.
    fn pki(dir: &std::path::Path, stem: &str, names: &[&str]) {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, format!("{stem} CA"));
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("key");
        let mut leaf = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        leaf.distinguished_name.push(DnType::CommonName, stem);
        let cert = leaf.signed_by(&key, &issuer).expect("leaf");
        std::fs::write(dir.join(format!("{stem}-ca.crt")), ca_cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).expect("write");
    }

    impl Pki {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tmp");
            // Names that do not match 127.0.0.1: peers are not checked by name.
            pki(dir.path(), "cluster", &["broker-0.flymq.svc"]);
            pki(dir.path(), "other", &["broker-0.flymq.svc"]);
            Self { dir }
        }

        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.path().join(name)
        }
    }

    async fn server(pki: &Pki, stem: &str) -> std::net::SocketAddr {
        let tls = ServerTls::new(
            ServerTlsOptions::new(pki.path(&format!("{stem}.crt")), pki.path(&format!("{stem}.key")))
                .with_client_auth(pki.path(&format!("{stem}-ca.crt")), ClientAuth::Required)
                .with_reload_interval(None),
        )
        .expect("server tls");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config_with_alpn(vec![b"h2".to_vec()]).expect("config"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = acceptor.accept(socket).await {
                        let _ = s.write_all(b"ok").await;
                        let _ = s.shutdown().await;
                    }
                });
            }
        });
        addr
    }

    async fn dial(client: &TlsClient, addr: std::net::SocketAddr) -> Result<Vec<u8>, String> {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut s = client.connect("127.0.0.1", tcp).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(buf)
    }

    #[tokio::test]
    async fn peers_of_the_same_ca_connect_whatever_their_names() {
        let pki = Pki::new();
        let addr = server(&pki, "cluster").await;
        let me = Arc::new(
            ReloadingCertResolver::load(pki.path("cluster.crt"), pki.path("cluster.key"), crypto_provider())
                .expect("identity"),
        );
        let client = peer_client(&pki.path("cluster-ca.crt"), me).expect("client");
        assert_eq!(dial(&client, addr).await.expect("same cluster"), b"ok");

        // A broker of another cluster (another CA) is refused both ways.
        let stranger = Arc::new(
            ReloadingCertResolver::load(pki.path("other.crt"), pki.path("other.key"), crypto_provider())
                .expect("identity"),
        );
        let other = peer_client(&pki.path("other-ca.crt"), stranger.clone()).expect("client");
        let err = dial(&other, addr).await.expect_err("untrusted server");
        assert!(err.contains("UnknownIssuer") || err.contains("issuer"), "{err}");
        let wrong_identity = peer_client(&pki.path("cluster-ca.crt"), stranger).expect("client");
        assert!(!matches!(dial(&wrong_identity, addr).await, Ok(b) if b == b"ok"));
    }
}
