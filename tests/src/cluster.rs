//! Helpers for tests that run several brokers as a cluster: HTTP probes,
//! waiting, and reading or writing one partition through a chosen broker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flymq_client::{Client, ClientConfig};

use crate::BrokerProcess;

/// `GET path` over plain HTTP/1.1: `(status, body)`, `None` when unreachable.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Some((status, body))
}

/// Whether `/health/ready` answers 200.
pub fn is_ready(health: SocketAddr) -> bool {
    http_get(health, "/health/ready").is_some_and(|(status, _)| status == 200)
}

/// Polls `check` every 100 ms; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A client bootstrapped from `client_addrs` (`host:port`).
pub async fn client_for_addrs(client_addrs: &[String], request_timeout: Duration) -> Client {
    let config = ClientConfig {
        bootstrap: client_addrs.to_vec(),
        connect_timeout: Duration::from_secs(2),
        request_timeout,
        connect_rounds: 2,
        ..ClientConfig::default()
    };
    Client::connect(config).await.expect("connect to the cluster")
}

/// Every `(offset, value)` of partition 0 of `topic`, read from the broker
/// `client` is connected to.
pub async fn read_all_from(client: &Client, topic: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let fetched = client.fetch(topic, 0, offset, 1000, "").await.expect("fetch");
        if fetched.records.is_empty() {
            break;
        }
        for r in &fetched.records {
            out.push((r.offset, String::from_utf8_lossy(&r.value).into_owned()));
        }
        offset = fetched.next_offset;
    }
    out
}

/// Reads with `read` every 100 ms, for up to 60 s, until the records reach
/// offset `last` (a replica catching up); returns the last read.
pub async fn read_until_offset<F, Fut>(last: u64, mut read: F) -> Vec<(u64, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<(u64, String)>>,
{
    let mut records = Vec::new();
    for _ in 0..600 {
        records = read().await;
        if records.last().is_some_and(|(o, _)| *o >= last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    records
}

/// Produces one record, retrying while a partition elects its leader.
pub async fn produce_retrying(client: &Client, topic: &str, partition: i32, value: String) -> u64 {
    let mut last = None;
    for _ in 0..50 {
        match client.produce_to_partition(topic, partition, "", value.clone()).await {
            Ok(meta) => return meta.offset,
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("produce to {topic}/{partition} kept failing: {last:?}");
}

/// Checks that `records` (read from one broker) hold every acknowledged
/// `(offset, value)`, store no value twice, and keep values in order.
pub fn assert_holds_acked(who: &str, records: &[(u64, String)], acked: &[(u64, String)]) {
    let by_offset: std::collections::BTreeMap<u64, &str> = records.iter().map(|(o, v)| (*o, v.as_str())).collect();
    for (offset, value) in acked {
        assert_eq!(
            by_offset.get(offset).copied(),
            Some(value.as_str()),
            "{who}: acknowledged record at offset {offset} is missing or different"
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (_, value) in records {
        assert!(seen.insert(value.clone()), "{who}: {value} stored twice");
    }
    let values: Vec<&String> = records.iter().map(|(_, v)| v).collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]), "{who}: records out of order");
}

/// One broker's addresses.
#[derive(Clone, Debug)]
pub struct NodeAddrs {
    pub ip: String,
    pub client: u16,
    pub cluster: u16,
    pub metrics: u16,
    pub health: u16,
    pub admin: u16,
}

pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NodeAddrs {
    /// Five distinct free ports on `ip`. The listeners are held until all
    /// five are chosen: binding and dropping one at a time can hand out the
    /// same port twice (a broker then fails with "Address already in use").
    pub fn on(ip: &str) -> Self {
        let listeners: Vec<TcpListener> = (0..5).map(|_| TcpListener::bind(format!("{ip}:0")).unwrap()).collect();
        let port = |i: usize| listeners[i].local_addr().unwrap().port();
        Self {
            ip: ip.to_owned(),
            client: port(0),
            cluster: port(1),
            metrics: port(2),
            health: port(3),
            admin: port(4),
        }
    }
    pub fn client_addr(&self) -> String {
        format!("{}:{}", self.ip, self.client)
    }
    pub fn cluster_addr(&self) -> String {
        format!("{}:{}", self.ip, self.cluster)
    }
    pub fn health_addr(&self) -> SocketAddr {
        format!("{}:{}", self.ip, self.health).parse().unwrap()
    }
}

pub fn is_node_ready(addrs: &NodeAddrs) -> bool {
    is_ready(addrs.health_addr())
}

pub async fn client_for(addrs: &[&NodeAddrs]) -> Client {
    let bootstrap: Vec<String> = addrs.iter().map(|a| a.client_addr()).collect();
    client_for_addrs(&bootstrap, Duration::from_secs(10)).await
}

/// Every value in partition 0 of `topic`, read from one broker.
pub async fn read_all(addrs: &NodeAddrs, topic: &str) -> Vec<(u64, String)> {
    read_all_from(&client_for(&[addrs]).await, topic).await
}

pub fn metrics_text(addrs: &NodeAddrs) -> String {
    let addr: SocketAddr = format!("{}:{}", addrs.ip, addrs.metrics).parse().unwrap();
    http_get(addr, "/metrics").expect("metrics endpoint").1
}

/// The value of one sample (`name{labels}`), 0 when absent.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The inter-broker secret every test cluster shares (brokers in cluster
/// mode refuse to start without one, or TLS). Tests of a peer from another
/// cluster pass a different `FLYMQ_CLUSTER_SECRET` in `extra_env`.
pub const TEST_CLUSTER_SECRET: &str = "flymq-test-cluster-secret-0123456789";

/// Starts broker `id` with its data in `dir`.
pub fn start_broker(id: u32, addrs: &NodeAddrs, seeds: &str, dir: &Path, extra_env: &[(&str, &str)]) -> BrokerProcess {
    let args = [
        "--data-dir".to_owned(),
        dir.to_string_lossy().into_owned(),
        "--bind-addr".to_owned(),
        addrs.client_addr(),
        "--set".to_owned(),
        format!("cluster_addr={}", addrs.cluster_addr()),
        "--set".to_owned(),
        format!("metrics_addr={}:{}", addrs.ip, addrs.metrics),
        "--set".to_owned(),
        format!("health_addr={}", addrs.health_addr()),
        "--set".to_owned(),
        format!("admin_addr={}:{}", addrs.ip, addrs.admin),
    ];
    // Snapshots every 200 entries (so restarts catch up from them); a test may override it.
    let mut env = vec![
        ("FLYMQ_RAFT_SNAPSHOT_LOGS".to_owned(), "200".to_owned()),
        ("FLYMQ_NODE_ID".to_owned(), id.to_string()),
        ("POD_IP".to_owned(), addrs.ip.clone()),
        ("FLYMQ_SEEDS".to_owned(), seeds.to_owned()),
        ("FLYMQ_CLUSTER_SECRET".to_owned(), TEST_CLUSTER_SECRET.to_owned()),
    ];
    // Later entries win: `extra_env` may replace any of the above.
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    crate::try_spawn_flymq_env(args, env).unwrap_or_else(|e| panic!("node {id} did not start: {e:#}"))
}

pub struct Cluster {
    pub nodes: Vec<NodeAddrs>,
    pub dirs: Vec<PathBuf>,
    pub procs: Vec<Option<BrokerProcess>>,
    pub seeds: String,
    /// Extra environment every broker of this cluster starts with.
    pub env: Vec<(String, String)>,
    /// Logs of broker processes killed by `kill9`, for failure reports.
    pub past_logs: Vec<String>,
    _root: tempfile::TempDir,
}

impl Cluster {
    /// `n` brokers on 127.0.0.`first_ip`.., each with its own data directory; waits until all are ready.
    pub fn start(first_ip: u8, n: usize) -> Self {
        Self::start_with(first_ip, n, &[])
    }

    /// Like `start`, every broker with `env` added (e.g. `FLYMQ_RETENTION_BYTES`).
    pub fn start_with(first_ip: u8, n: usize, env: &[(&str, &str)]) -> Self {
        let root = tempfile::tempdir().unwrap();
        let nodes: Vec<NodeAddrs> = (0..n)
            .map(|i| NodeAddrs::on(&format!("127.0.0.{}", first_ip as usize + i)))
            .collect();
        let seeds = nodes.iter().map(NodeAddrs::cluster_addr).collect::<Vec<_>>().join(",");
        let dirs: Vec<PathBuf> = (0..n).map(|i| root.path().join(format!("node-{i}"))).collect();
        let procs = (0..n)
            .map(|i| Some(start_broker(i as u32, &nodes[i], &seeds, &dirs[i], env)))
            .collect();
        let cluster = Self {
            nodes,
            dirs,
            procs,
            seeds,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            past_logs: Vec::new(),
            _root: root,
        };
        for (i, node) in cluster.nodes.iter().enumerate() {
            wait_until(&format!("node {i} is ready"), Duration::from_secs(60), || {
                is_node_ready(node)
            });
        }
        cluster
    }

    pub fn status(&self, i: usize) -> serde_json::Value {
        let (_, body) = http_get(self.nodes[i].health_addr(), "/health").expect("health");
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    }

    pub fn index_of_client(&self, addr: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.client_addr() == addr)
    }

    /// Kills broker `i` with SIGKILL (no shutdown at all).
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut proc) = self.procs[i].take() {
            proc.kill9();
            let log = proc.log_text();
            self.past_logs.push(format!("--- node {i} (killed) ---\n{log}"));
        }
    }

    /// Starts broker `i` again with its data directory (and `extra` env).
    pub fn restart(&mut self, i: usize, extra: &[(&str, &str)]) {
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.extend_from_slice(extra);
        // Seeds name the brokers where they are now, as Kubernetes DNS
        // names resolve to a moved pod's new IP.
        self.seeds = self
            .nodes
            .iter()
            .map(NodeAddrs::cluster_addr)
            .collect::<Vec<_>>()
            .join(",");
        self.procs[i] = Some(start_broker(i as u32, &self.nodes[i], &self.seeds, &self.dirs[i], &env));
    }

    /// Deletes broker `i`'s data directory (a lost volume); kill it first.
    pub fn wipe(&mut self, i: usize) {
        assert!(self.procs[i].is_none(), "wipe a running broker's volume: kill it first");
        std::fs::remove_dir_all(&self.dirs[i]).expect("wipe the data directory");
    }

    pub fn admin_addr(&self, i: usize) -> String {
        format!("{}:{}", self.nodes[i].ip, self.nodes[i].admin)
    }

    /// Every broker's log, for failure messages.
    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Some(p) => format!("--- node {i} ---\n{}", p.log_text()),
                None => format!("--- node {i} --- (not running)"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
