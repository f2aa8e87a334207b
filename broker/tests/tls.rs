//! TLS on a real in-process broker, with certificates generated here
//! (rcgen): the SDK over TLS, a plaintext client on the TLS port, untrusted
//! and expired certificates, required client certificates, the plaintext
//! migration listener, the admin API over TLS, certificate files replaced
//! by garbage and then by a new certificate while running, and a cluster
//! broker with neither TLS nor a cluster secret.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use flymq_broker::config::{Config, TlsClientAuth};
use flymq_broker::secrets::Secrets;
use flymq_broker::testing::test_config;
use flymq_broker::{RunningBroker, StartError};
use flymq_client::{AdminClient, AdminOptions, Client, ClientConfig};
use flymq_security::tls::{ClientTlsOptions, TlsClient};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

// --- certificates ---------------------------------------------------------

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Self {
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

    /// A leaf for `names` with common name `cn`; `expired` makes it valid
    /// only in 2020.
    fn leaf(&self, cn: &str, names: &[&str], expired: bool) -> Leaf {
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

/// Replaces `path` atomically, as a Kubernetes Secret volume does.
fn write_atomically(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// The files of one TLS test: a CA, the broker certificate and key.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    fn new() -> Self {
        let pki = Self {
            dir: tempfile::tempdir().expect("tmp"),
            ca: Ca::new("test CA"),
        };
        std::fs::write(pki.ca_file(), &pki.ca.pem).expect("CA file");
        pki.install(&pki.ca.leaf("broker", &["127.0.0.1", "localhost"], false));
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca_file(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// Makes `leaf` the broker's certificate (key first: a reload between
    /// the two renames sees a mismatched pair and keeps the old one).
    fn install(&self, leaf: &Leaf) {
        write_atomically(&self.path("broker.key"), leaf.key_pem.as_bytes());
        write_atomically(&self.path("broker.crt"), leaf.cert_pem.as_bytes());
    }

    /// A client certificate signed by `ca`, written under `name`.
    fn client_cert(&self, ca: &Ca, name: &str, expired: bool) -> (PathBuf, PathBuf) {
        let leaf = ca.leaf(name, &[], expired);
        let (cert, key) = (self.path(&format!("{name}.crt")), self.path(&format!("{name}.key")));
        std::fs::write(&cert, leaf.cert_pem).expect("write");
        std::fs::write(&key, leaf.key_pem).expect("write");
        (cert, key)
    }

    fn config(&self, data: &Path) -> Config {
        Config {
            tls_enabled: true,
            tls_cert_file: Some(self.path("broker.crt")),
            tls_key_file: Some(self.path("broker.key")),
            tls_ca_file: Some(self.ca_file()),
            tls_reload_interval_secs: 1,
            ..test_config(data)
        }
    }

    fn client_tls(&self) -> ClientTlsOptions {
        ClientTlsOptions {
            ca_file: Some(self.ca_file()),
            ..ClientTlsOptions::default()
        }
    }
}

// --- helpers ---------------------------------------------------------------

async fn start(config: &Config) -> RunningBroker {
    log_capture();
    RunningBroker::start_with(config, Secrets::default())
        .await
        .expect("broker starts")
}

async fn sdk(addr: impl ToString, tls: Option<ClientTlsOptions>) -> flymq_client::Result<Client> {
    Client::connect(ClientConfig {
        bootstrap: vec![addr.to_string()],
        connect_timeout: Duration::from_secs(3),
        request_timeout: WAIT,
        connect_rounds: 1,
        tls,
        ..ClientConfig::default()
    })
    .await
}

/// Connects, creates the topic if needed, produces `n` values and reads
/// them back.
async fn round_trip(client: &Client, topic: &str, n: usize) -> flymq_client::Result<()> {
    if !client.list_topics().await?.iter().any(|t| t == topic) {
        client.create_topic(topic, 1).await?;
    }
    let mut sent = Vec::new();
    for i in 0..n {
        let value = format!("{topic}-{i}");
        client.produce_to_partition(topic, 0, "", value.clone()).await?;
        sent.push(value);
    }
    let fetched = client.fetch(topic, 0, 0, 10_000, "").await?;
    let got: Vec<String> = fetched
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    assert!(got.ends_with(&sent), "read back {got:?}, sent {sent:?}");
    Ok(())
}

/// The certificate a TLS handshake with `addr` is answered with.
async fn presented(addr: std::net::SocketAddr, pki: &Pki) -> Result<CertificateDer<'static>, String> {
    let client = TlsClient::new(&pki.client_tls()).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let stream = client.connect("127.0.0.1", tcp).await.map_err(|e| e.to_string())?;
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .ok_or_else(|| "no certificate".to_owned())
}

/// Every log line of this test process (the broker runs in process).
fn log_capture() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || CaptureWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
    .clone()
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> String {
    String::from_utf8_lossy(&log_capture().lock().expect("log buffer")).into_owned()
}

// --- tests -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_produces_and_consumes_through_the_sdk() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tmp");
    let broker = start(&pki.config(data.path())).await;
    let client = sdk(broker.client_addr(), Some(pki.client_tls()))
        .await
        .expect("TLS connect");
    round_trip(&client, "tls-orders", 50)
        .await
        .expect("produce and fetch over TLS");

    // A plaintext SDK client cannot use the TLS port.
    let plain = async {
        let client = sdk(broker.client_addr(), None).await?;
        client.list_topics().await
    };
    assert!(plain.await.is_err(), "a plaintext client was served on the TLS port");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_client_on_the_tls_port_is_closed_and_others_keep_working() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tmp");
    let broker = start(&pki.config(data.path())).await;
    let tls_client = sdk(broker.client_addr(), Some(pki.client_tls()))
        .await
        .expect("TLS connect");
    round_trip(&tls_client, "mixed", 5).await.expect("before");

    // A silent TCP connection (its handshake never starts) holds up nobody.
    let silent = TcpStream::connect(broker.client_addr()).await.expect("connect");
    // A plaintext FlyMQ request: the handshake fails and only that
    // connection is closed, with no FlyMQ frame in reply.
    let mut plain = TcpStream::connect(broker.client_addr()).await.expect("connect");
    let frame = flymq_proto::Request::ListTopics.to_frame_bytes().expect("encode");
    plain.write_all(&frame).await.expect("write");
    let mut reply = Vec::new();
    let read = tokio::time::timeout(WAIT, plain.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the plaintext connection was not closed");
    assert_ne!(
        reply.first(),
        Some(&flymq_proto::MAGIC),
        "a FlyMQ frame was sent over a plaintext connection"
    );

    round_trip(&tls_client, "mixed", 5)
        .await
        .expect("the TLS client keeps working");
    let another = sdk(broker.client_addr(), Some(pki.client_tls()))
        .await
        .expect("new TLS client");
    round_trip(&another, "mixed", 1)
        .await
        .expect("new TLS connections work");
    drop(silent);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_and_expired_server_certificates_are_refused() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tmp");
    // The broker's certificate comes from another CA than the client trusts.
    let stranger = Ca::new("another CA");
    pki.install(&stranger.leaf("broker", &["127.0.0.1"], false));
    let broker = start(&pki.config(data.path())).await;
    let err = sdk(broker.client_addr(), Some(pki.client_tls()))
        .await
        .expect_err("untrusted certificate refused")
        .to_string();
    assert!(err.contains("UnknownIssuer") || err.contains("trusted CA"), "{err}");
    broker.shutdown().await;

    let data = tempfile::tempdir().expect("tmp");
    pki.install(&pki.ca.leaf("broker", &["127.0.0.1"], true));
    let broker = start(&pki.config(data.path())).await;
    let err = sdk(broker.client_addr(), Some(pki.client_tls()))
        .await
        .expect_err("expired certificate refused")
        .to_string();
    assert!(err.contains("Expired") || err.contains("expired"), "{err}");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates_are_verified() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tmp");
    let config = Config {
        tls_client_auth: TlsClientAuth::Required,
        ..pki.config(data.path())
    };
    let broker = start(&config).await;
    let addr = broker.client_addr();
    // With TLS 1.3 the client learns of the refusal at its first read, so
    // a refused client is one that cannot complete a request.
    let works = |tls: ClientTlsOptions| async move {
        let client = sdk(addr, Some(tls)).await?;
        client.list_topics().await
    };

    assert!(
        works(pki.client_tls()).await.is_err(),
        "a client without a certificate was served"
    );
    let stranger = Ca::new("another CA");
    for (name, ca, expired) in [("untrusted", &stranger, false), ("expired", &pki.ca, true)] {
        let (cert, key) = pki.client_cert(ca, name, expired);
        let tls = ClientTlsOptions {
            client_cert_file: Some(cert),
            client_key_file: Some(key),
            ..pki.client_tls()
        };
        assert!(
            works(tls).await.is_err(),
            "a client with an {name} certificate was served"
        );
    }
    let (cert, key) = pki.client_cert(&pki.ca, "alice", false);
    let tls = ClientTlsOptions {
        client_cert_file: Some(cert),
        client_key_file: Some(key),
        ..pki.client_tls()
    };
    let client = sdk(addr, Some(tls)).await.expect("client with a valid certificate");
    round_trip(&client, "mtls", 3).await.expect("served");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_migration_listener_serves_beside_the_tls_port() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tmp");
    let config = Config {
        plaintext_bind_addr: Some("127.0.0.1:0".into()),
        ..pki.config(data.path())
    };
    let broker = start(&config).await;
    let plain_addr = broker.plaintext_addr().expect("plaintext listener");
    let plain = sdk(plain_addr, None).await.expect("plaintext connect");
    round_trip(&plain, "migrating", 3)
        .await
        .expect("plaintext listener serves");
    let tls = sdk(broker.client_addr(), Some(pki.client_tls()))
        .await
        .expect("TLS connect");
    round_trip(&tls, "migrating", 3)
        .await
        .expect("TLS port serves the same data");
    // The plaintext listener does not speak TLS.
    assert!(sdk(plain_addr, Some(pki.client_tls())).await.is_err());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_speaks_tls() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tmp");
    let broker = start(&pki.config(data.path())).await;
    let addr = broker.admin_addr().to_string();
    let options = AdminOptions {
        connect_timeout: Duration::from_secs(3),
        tls: Some(pki.client_tls()),
        credentials: None,
    };
    let admin = AdminClient::connect_with(&addr, options).await.expect("admin over TLS");
    admin
        .create_topic(flymq_client::admin::NewTopic::new("via-admin", 2))
        .await
        .expect("create over TLS");
    let names: Vec<String> = admin
        .list_topics()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(names.contains(&"via-admin".to_owned()), "{names:?}");
    // Plaintext gRPC on the TLS admin port fails.
    let plain = async {
        AdminClient::connect(&addr, Duration::from_secs(3))
            .await?
            .list_topics()
            .await
    };
    assert!(plain.await.is_err(), "plaintext admin call served on the TLS port");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_certificate_files_keep_the_old_certificate_until_valid_ones_arrive() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tmp");
    let broker = start(&pki.config(data.path())).await;
    let addr = broker.client_addr();
    let original = presented(addr, &pki).await.expect("handshake");
    let client = sdk(addr, Some(pki.client_tls())).await.expect("TLS connect");

    // A rotation gone wrong: garbage in both files.
    write_atomically(&pki.path("broker.key"), b"not a key");
    write_atomically(&pki.path("broker.crt"), b"-----BEGIN CERTIFICATE-----\ngarbage\n");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !logs().contains("TLS certificate reload failed") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload error logged:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        presented(addr, &pki).await.expect("handshake"),
        original,
        "the old certificate stays"
    );
    round_trip(&client, "rotation", 2)
        .await
        .expect("existing connection unaffected");
    let fresh = sdk(addr, Some(pki.client_tls()))
        .await
        .expect("new connections still work");
    round_trip(&fresh, "rotation", 1).await.expect("served");

    // A good rotation: the new certificate is served without a restart.
    let rotated = pki.ca.leaf("broker", &["127.0.0.1"], false);
    pki.install(&rotated);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if presented(addr, &pki).await.expect("handshake") == rotated.der {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_ne!(rotated.der, original);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_needs_tls_or_a_cluster_secret() {
    let data = tempfile::tempdir().expect("tmp");
    let config = Config {
        seeds: "127.0.0.1:1".into(),
        ..test_config(data.path())
    };
    let err = RunningBroker::start_with(&config, Secrets::default())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, StartError::ClusterUnauthenticated), "{err}");
    let text = err.to_string();
    for fix in ["FLYMQ_CLUSTER_SECRET", "cluster_secret_file", "tls_enabled"] {
        assert!(text.contains(fix), "'{text}' does not name {fix}");
    }
    // TLS in cluster mode needs the cluster CA (mutual TLS between brokers).
    let pki = Pki::new();
    let config = Config {
        seeds: "127.0.0.1:1".into(),
        tls_ca_file: None,
        ..pki.config(data.path())
    };
    let err = config.validate().expect_err("no CA").to_string();
    assert!(err.contains("tls_ca_file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_authenticates_its_user() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tmp");
    let config = Config {
        tls_client_auth: TlsClientAuth::Optional,
        auth_enabled: true,
        default_public: false,
        ..pki.config(data.path())
    };
    log_capture();
    let secrets = Secrets {
        admin_password: Some(zeroize::Zeroizing::new("cert-admin-pw".to_owned())),
        ..Secrets::default()
    };
    let broker = RunningBroker::start_with(&config, secrets)
        .await
        .expect("broker starts");
    let addr = broker.client_addr();
    let admin = Client::connect(ClientConfig {
        bootstrap: vec![addr.to_string()],
        credentials: Some(flymq_client::Credentials::new("admin", "cert-admin-pw")),
        request_timeout: WAIT,
        tls: Some(pki.client_tls()),
        ..ClientConfig::default()
    })
    .await
    .expect("admin connects");
    admin
        .create_user("carol", "carol-pw", vec!["producer".into(), "consumer".into()])
        .await
        .expect("create carol");
    admin.create_topic("cert-topic", 1).await.expect("create topic");
    let with_cert = |name: &str| {
        let (cert, key) = pki.client_cert(&pki.ca, name, false);
        ClientTlsOptions {
            client_cert_file: Some(cert),
            client_key_file: Some(key),
            ..pki.client_tls()
        }
    };

    // No AUTH: the certificate's user is bound to the connection.
    let carol = sdk(addr, Some(with_cert("carol"))).await.expect("carol connects");
    let me = carol.whoami().await.expect("whoami");
    assert!(me.authenticated && me.username == "carol", "{me:?}");
    round_trip(&carol, "cert-topic", 3).await.expect("carol is served");

    // A certificate of a user that does not exist grants nothing.
    let mallory = sdk(addr, Some(with_cert("mallory"))).await.expect("connects");
    let err = mallory.produce("cert-topic", "x").await.unwrap_err();
    assert!(err.to_string().ends_with("unauthorized"), "{err}");
    // Without a certificate or AUTH: authentication required.
    let nobody = sdk(addr, Some(pki.client_tls())).await.expect("connects");
    let err = nobody.produce("cert-topic", "x").await.unwrap_err();
    assert!(err.to_string().ends_with("authentication required"), "{err}");
    broker.shutdown().await;
}
