//! Inter-broker authentication on real `flymq` processes (127.0.0.x play
//! the pods): a cluster with TLS on every port and mutual TLS between the
//! brokers forms and replicates; a cluster authenticated by the shared
//! secret replicates and a broker with another secret cannot join; a broker
//! in cluster mode with neither refuses to start; an admin authenticated by
//! its client certificate alone gets the cluster status through a follower.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flymq_client::admin::{AdminClient, AdminOptions, ClusterStatusReply};
use flymq_client::{Client, ClientConfig, ClientTlsOptions, Credentials};
use flymq_tests::cluster::{
    Cluster, NodeAddrs, http_get, is_node_ready, produce_retrying, read_all_from, read_until_offset, start_broker,
    wait_until,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A CA and one broker certificate naming every address of the cluster
/// (clients check the name; brokers check only the CA), written to `dir`,
/// plus a client certificate `<user>.crt` / `<user>.key` (common name
/// `user`) for each of `users`.
fn write_pki(dir: &Path, ips: &[String], users: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name.push(DnType::CommonName, "cluster CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(ips.to_vec()).expect("leaf params");
    leaf.distinguished_name.push(DnType::CommonName, "flymq-broker");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let paths = (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&paths.0, ca_cert.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    for user in users {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, *user);
        let cert = params.signed_by(&key, &issuer).expect("client cert");
        std::fs::write(dir.join(format!("{user}.crt")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{user}.key")), key.serialize_pem()).expect("write");
    }
    paths
}

/// The CA, certificate and key paths as text, for the environment.
fn tls_paths(ca: &Path, cert: &Path, key: &Path) -> [String; 3] {
    [ca, cert, key].map(|p| p.display().to_string())
}

/// Brokers with TLS on every port and no cluster secret: mutual TLS alone
/// authenticates them to each other. `paths` from [`tls_paths`].
fn mutual_tls_env(paths: &[String; 3]) -> Vec<(&'static str, &str)> {
    let [ca, cert, key] = paths;
    vec![
        ("FLYMQ_CLUSTER_SECRET", ""),
        ("FLYMQ_TLS_ENABLED", "true"),
        ("FLYMQ_TLS_CERT_FILE", cert.as_str()),
        ("FLYMQ_TLS_KEY_FILE", key.as_str()),
        ("FLYMQ_TLS_CA_FILE", ca.as_str()),
    ]
}

async fn tls_client(addrs: &[String], ca: &Path) -> Client {
    Client::connect(ClientConfig {
        bootstrap: addrs.to_vec(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        connect_rounds: 2,
        tls: Some(ClientTlsOptions {
            ca_file: Some(ca.to_owned()),
            ..ClientTlsOptions::default()
        }),
        ..ClientConfig::default()
    })
    .await
    .expect("TLS client connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_cluster_with_mutual_tls_forms_and_replicates() {
    let pki = tempfile::tempdir().expect("tmp");
    let ips: Vec<String> = (141..144).map(|i| format!("127.0.0.{i}")).collect();
    let (ca, cert, key) = write_pki(pki.path(), &ips, &[]);
    let paths = tls_paths(&ca, &cert, &key);
    let env = mutual_tls_env(&paths);
    let cluster = tokio::task::block_in_place(|| Cluster::start_with(141, 3, &env));
    let addrs: Vec<String> = cluster.nodes.iter().map(NodeAddrs::client_addr).collect();
    let client = tls_client(&addrs, &ca).await;
    wait_until_members(&client, 3).await;
    client.create_topic("secured", 1).await.expect("create");
    let mut last = 0;
    for i in 0..20 {
        last = produce_retrying(&client, "secured", 0, format!("v{i:02}")).await;
    }
    for (i, addr) in addrs.iter().enumerate() {
        let one = tls_client(std::slice::from_ref(addr), &ca).await;
        let records = read_until_offset(last, || read_all_from(&one, "secured")).await;
        let values: Vec<&str> = records.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values.len(), 20, "node {i} holds {values:?}\n{}", cluster.logs());
    }
    // The cluster port refuses a caller without a certificate of the CA.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.nodes[0].cluster_addr()))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    if let Ok(channel) = plain {
        let mut rpc = flymq_proto::grpc::cluster::cluster_client::ClusterClient::new(channel);
        let join = rpc.join(flymq_proto::grpc::cluster::JoinRequest::default()).await;
        assert!(join.is_err(), "a plaintext caller was served on the mTLS cluster port");
    }
}

async fn wait_until_members(client: &Client, n: usize) {
    for _ in 0..300 {
        if client.cluster_status().await.is_ok_and(|s| s.nodes.len() == n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the cluster never had {n} members");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secret_cluster_replicates_and_a_broker_with_another_secret_cannot_join() {
    // Every harness broker gets flymq_tests::cluster::TEST_CLUSTER_SECRET.
    let cluster = tokio::task::block_in_place(|| Cluster::start(151, 3));
    let addrs: Vec<String> = cluster.nodes.iter().map(NodeAddrs::client_addr).collect();
    let client = flymq_tests::cluster::client_for_addrs(&addrs, Duration::from_secs(10)).await;
    wait_until_members(&client, 3).await;
    client.create_topic("shared", 1).await.expect("create");
    let mut last = 0;
    for i in 0..10 {
        last = produce_retrying(&client, "shared", 0, format!("s{i:02}")).await;
    }
    for addr in &addrs {
        let one = flymq_tests::cluster::client_for_addrs(std::slice::from_ref(addr), Duration::from_secs(10)).await;
        assert_eq!(
            read_until_offset(last, || read_all_from(&one, "shared")).await.len(),
            10
        );
    }

    // A broker of "another cluster" (another secret) seeded with this one.
    let stranger = NodeAddrs::on("127.0.0.154");
    let dir = tempfile::tempdir().expect("tmp");
    let proc = start_broker(
        3,
        &stranger,
        &cluster.seeds,
        dir.path(),
        &[("FLYMQ_CLUSTER_SECRET", "a-different-clusters-secret-000000")],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < deadline {
        assert!(!is_node_ready(&stranger), "a broker with another secret became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = proc.log_text();
    assert!(log.contains("cluster secret"), "the refusal is not explained:\n{log}");
    assert!(!log.contains("a-different-clusters-secret"), "the secret was logged");
    let status = client.cluster_status().await.expect("status");
    assert_eq!(status.nodes.len(), 3, "the stranger was added: {status:?}");
    // The members keep serving.
    produce_retrying(&client, "shared", 0, "after".into()).await;
    assert!(
        !cluster.logs().contains(flymq_tests::cluster::TEST_CLUSTER_SECRET),
        "a broker logged the secret"
    );
}

#[test]
fn cluster_mode_without_secret_or_tls_refuses_to_start() {
    let node = NodeAddrs::on("127.0.0.161");
    let dir = tempfile::tempdir().expect("tmp");
    let args = [
        "--data-dir".to_owned(),
        dir.path().display().to_string(),
        "--bind-addr".to_owned(),
        node.client_addr(),
        "--set".to_owned(),
        format!("cluster_addr={}", node.cluster_addr()),
        "--set".to_owned(),
        format!("health_addr={}", node.health_addr()),
        "--set".to_owned(),
        format!("metrics_addr=127.0.0.161:{}", node.metrics),
        "--set".to_owned(),
        format!("admin_addr=127.0.0.161:{}", node.admin),
    ];
    let env = vec![
        ("FLYMQ_SEEDS".to_owned(), node.cluster_addr()),
        ("FLYMQ_NODE_ID".to_owned(), "0".to_owned()),
    ];
    let err = match flymq_tests::try_spawn_flymq_env(args, env) {
        Ok(_) => panic!("a cluster broker without TLS or a cluster secret started"),
        Err(err) => format!("{err:#}"),
    };
    for fix in ["FLYMQ_CLUSTER_SECRET", "cluster_secret_file", "TLS"] {
        assert!(err.contains(fix), "the refusal does not name {fix}: {err}");
    }
    // Nothing was left listening.
    wait_until("the port is free", Duration::from_secs(5), || {
        http_get(node.health_addr(), "/health").is_none()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_only_admin_gets_the_cluster_status_through_a_follower() {
    const ADMIN_PASSWORD: &str = "bootstrap-admin-pw-4711";
    let pki = tempfile::tempdir().expect("tmp");
    let ips: Vec<String> = (144..147).map(|i| format!("127.0.0.{i}")).collect();
    let (ca, cert, key) = write_pki(pki.path(), &ips, &["ops", "mallory"]);
    let paths = tls_paths(&ca, &cert, &key);
    let mut env = mutual_tls_env(&paths);
    env.extend([
        ("FLYMQ_TLS_CLIENT_AUTH", "optional"),
        ("FLYMQ_AUTH_ENABLED", "true"),
        ("FLYMQ_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ]);
    let cluster = tokio::task::block_in_place(|| Cluster::start_with(144, 3, &env));
    let admin_at = |i: usize| format!("{}:{}", cluster.nodes[i].ip, cluster.nodes[i].admin);
    let tls_as = |user: Option<&str>| ClientTlsOptions {
        ca_file: Some(ca.clone()),
        client_cert_file: user.map(|u| pki.path().join(format!("{u}.crt"))),
        client_key_file: user.map(|u| pki.path().join(format!("{u}.key"))),
        ..ClientTlsOptions::default()
    };
    let connect = |i: usize, user: Option<&str>, credentials: Option<Credentials>| {
        let options = AdminOptions {
            tls: Some(tls_as(user)),
            credentials,
            ..AdminOptions::default()
        };
        let addr = admin_at(i);
        async move { AdminClient::connect_with(&addr, options).await.expect("admin connects") }
    };

    // The bootstrap admin (password) creates "ops" without a password: a
    // user only its certificate can stand for.
    let root = connect(0, None, Some(Credentials::new("admin", ADMIN_PASSWORD))).await;
    let healthy = |s: &ClusterStatusReply| s.members.len() == 3 && s.members.iter().all(|m| m.health == "up");
    let mut status = root.cluster_status().await.expect("status");
    for _ in 0..100 {
        if healthy(&status) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = root.cluster_status().await.expect("status");
    }
    assert!(healthy(&status), "{status:?}\n{}", cluster.logs());
    root.upsert_user("ops", vec!["admin".into()], "")
        .await
        .expect("certificate-only user");
    let leader = status
        .members
        .iter()
        .find(|m| m.is_metadata_leader)
        .map(|m| m.node_id)
        .expect("a metadata leader");
    let follower = (0..3).find(|i| *i as u64 != leader).expect("a follower");

    // Through a follower, with no credentials but the certificate: the
    // follower checks the caller, the metadata leader answers.
    let ops = connect(follower, Some("ops"), None).await;
    let mut asked = ops.cluster_status().await;
    for _ in 0..100 {
        if asked.is_ok() {
            break;
        }
        // The new user reaches the follower's copy of the metadata shortly.
        tokio::time::sleep(Duration::from_millis(100)).await;
        asked = ops.cluster_status().await;
    }
    let reply = asked.unwrap_or_else(|e| panic!("ops was refused: {e}\n{}", cluster.logs()));
    assert_eq!(reply.node_id, leader, "answered by the metadata leader: {reply:?}");
    assert!(healthy(&reply), "{reply:?}");

    // A certificate of a user that does not exist, or no identity at all,
    // is refused by the follower; nothing is forwarded for them.
    let mallory = connect(follower, Some("mallory"), None).await;
    let err = mallory.cluster_status().await.expect_err("mallory is refused");
    assert!(
        matches!(
            err.admin_code(),
            Some(tonic::Code::PermissionDenied | tonic::Code::Unauthenticated)
        ),
        "{err}"
    );
    let nobody = connect(follower, None, None).await;
    let err = nobody
        .cluster_status()
        .await
        .expect_err("an anonymous caller is refused");
    assert_eq!(err.admin_code(), Some(tonic::Code::Unauthenticated), "{err}");
    assert!(
        !cluster.logs().contains(ADMIN_PASSWORD),
        "a broker logged the admin password"
    );
}
