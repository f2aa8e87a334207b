//! A randomized fault test in the spirit of Jepsen: bounded, seeded and
//! reproducible. Brokers run as processes on loopback addresses; clients
//! produce uniquely valued records and commit consumer offsets while a
//! nemesis kills brokers with SIGKILL, pauses them with SIGSTOP, wipes a
//! broker's volume and restarts brokers on new addresses. A checker then
//! asserts that:
//!
//! - every acknowledged record is readable exactly once, from every
//!   replica, and the replicas hold the same records in the same order;
//! - on each connection, acknowledged offsets of a partition only grow
//!   (the connection's order is kept);
//! - a committed consumer offset never goes back (read on the connection
//!   that committed it, and from every broker at the end);
//! - at no time do two clusters answer (every broker reports the same
//!   cluster id, or none while it is joining).
//!
//! A short run is part of the suite. A long one:
//! `FLYMQ_JEPSEN_ROUNDS=60 FLYMQ_JEPSEN_BROKERS=5 cargo test --release -p flymq-tests --test jepsen`.
//! `FLYMQ_JEPSEN_SEED=<n>` replays a run. Network partitions are exercised
//! by `tests/tests/partition.rs` (Linux network namespaces, root only).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flymq_tests::cluster::{Cluster, NodeAddrs, client_for_addrs, http_get, is_node_ready, read_all_from, wait_until};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TOPIC: &str = "jepsen";
const PARTITIONS: i32 = 3;
const PARTITION_COUNT: u32 = 3;
/// Each client commits its own consumer group (`checker-<client>`), so the
/// group's committed offsets come from one connection and must only grow.
fn group_of(client: usize) -> String {
    format!("checker-{client}")
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What one client saw acknowledged.
#[derive(Default)]
struct History {
    /// `(partition, offset, value)` in acknowledgement order.
    produced: Vec<(i32, u64, String)>,
    /// `(partition, offset)` of acknowledged commits of this client's group, in order.
    committed: Vec<(i32, u64)>,
    /// Operations that failed (unknown outcome); counted for the report.
    failed: u64,
    /// `(partition, offset)` of commits that failed: they may have been
    /// applied, so a later read may show them.
    commit_unknown: Vec<(i32, u64)>,
    /// Values whose produce failed (unknown outcome), for failure reports.
    produce_unknown: Vec<String>,
}

/// One client: produces to a random partition through one connection
/// (reconnecting to a random live broker when it breaks), commits its
/// progress as a consumer offset, and checks its commits read back.
async fn run_client(
    id: usize,
    addrs: Arc<parking_lot::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> History {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut history = History::default();
    let mut seq = 0u64;
    let mut client = None;
    let mut last_commit: HashMap<i32, u64> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        let c = match &client {
            Some(c) => c,
            None => {
                let all = addrs.lock().clone();
                let pick = all[rng.random_range(0..all.len())].clone();
                let config = flymq_client::ClientConfig {
                    bootstrap: vec![pick],
                    connect_timeout: Duration::from_secs(2),
                    request_timeout: Duration::from_secs(10),
                    connect_rounds: 1,
                    ..flymq_client::ClientConfig::default()
                };
                match flymq_client::Client::connect(config).await {
                    Ok(c) => client = Some(c),
                    // That broker is down right now: pick another.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
                continue;
            }
        };
        let partition = rng.random_range(0..PARTITIONS);
        seq += 1;
        let value = format!("c{id:02}-{seq:08}");
        match c.produce_to_partition(TOPIC, partition, "", value.clone()).await {
            Ok(meta) => {
                history.produced.push((partition, meta.offset, value));
                // Commit the next offset to read, then read it back on this connection.
                let next = meta.offset + 1;
                let group = group_of(id);
                if last_commit.get(&partition).is_none_or(|c| *c < next) {
                    match c.commit(TOPIC, &group, partition, next).await {
                        Ok(()) => {
                            history.committed.push((partition, next));
                            last_commit.insert(partition, next);
                            // Read back on the same connection: never older than the
                            // commit, unless an earlier commit of this client whose
                            // outcome it never learned (a timeout) took effect late.
                            if let Ok(read) = c.get_offset(TOPIC, &group, partition).await {
                                let late = history.commit_unknown.contains(&(partition, read));
                                assert!(
                                    read >= next || late,
                                    "client {id}: committed offset of partition {partition} went back: \
                                     committed {next}, read back {read} (commits with an unknown outcome: \
                                     {:?})",
                                    history.commit_unknown
                                );
                            }
                        }
                        Err(_) => {
                            history.failed += 1;
                            history.commit_unknown.push((partition, next));
                        }
                    }
                }
            }
            Err(_) => {
                history.failed += 1;
                history.produce_unknown.push(value);
                client = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    history
}

/// Every broker that answers reports the same cluster id (or none yet).
fn assert_one_cluster(cluster: &Cluster, expected: &str) {
    for (i, node) in cluster.nodes.iter().enumerate() {
        if cluster.procs[i].is_none() {
            continue;
        }
        if let Some((_, body)) = http_get(node.health_addr(), "/health")
            && let Ok(health) = serde_json::from_str::<serde_json::Value>(&body)
        {
            let id = health["cluster_id"].as_str().unwrap_or_default();
            assert!(
                id.is_empty() || id == expected,
                "two clusters answer: node {i} reports '{id}', the cluster is '{expected}'"
            );
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Pause,
    Wipe,
    Move,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_faults_lose_no_acknowledged_write() {
    let seed = env_or("FLYMQ_JEPSEN_SEED", rand::random::<u64>() % 1_000_000);
    let rounds = env_or("FLYMQ_JEPSEN_ROUNDS", 6);
    let brokers = env_or("FLYMQ_JEPSEN_BROKERS", 3) as usize;
    let clients = env_or("FLYMQ_JEPSEN_CLIENTS", 4) as usize;
    println!(
        "jepsen: seed {seed}, {rounds} rounds, {brokers} brokers, {clients} clients (replay with FLYMQ_JEPSEN_SEED={seed})"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(121, brokers));
    let cluster_id = cluster.status(0)["cluster_id"].as_str().unwrap().to_owned();
    let all: Vec<&NodeAddrs> = cluster.nodes.iter().collect();
    let admin = flymq_tests::cluster::client_for(&all).await;
    admin.create_topic(TOPIC, PARTITION_COUNT).await.expect("create topic");

    let addrs = Arc::new(parking_lot::Mutex::new(
        cluster.nodes.iter().map(NodeAddrs::client_addr).collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            tokio::spawn(run_client(
                i,
                addrs.clone(),
                stop.clone(),
                seed.wrapping_add(i as u64 + 1),
            ))
        })
        .collect();

    let mut next_ip = 121 + brokers as u8 + 10;
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
        let victim = rng.random_range(0..brokers);
        let fault = match rng.random_range(0..4) {
            0 => Fault::Kill,
            1 => Fault::Pause,
            2 => Fault::Wipe,
            _ => Fault::Move,
        };
        println!("jepsen: round {round}: {fault:?} node {victim}");
        match fault {
            Fault::Pause => {
                let pid = cluster.procs[victim].as_ref().map(|p| p.pid()).unwrap_or_default();
                let _ = std::process::Command::new("kill")
                    .args(["-STOP", &pid.to_string()])
                    .status();
                tokio::time::sleep(Duration::from_millis(rng.random_range(1000..4000))).await;
                let _ = std::process::Command::new("kill")
                    .args(["-CONT", &pid.to_string()])
                    .status();
            }
            Fault::Kill | Fault::Wipe | Fault::Move => {
                cluster.kill9(victim);
                assert_one_cluster(&cluster, &cluster_id);
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..3000))).await;
                if matches!(fault, Fault::Wipe) {
                    cluster.wipe(victim);
                }
                if matches!(fault, Fault::Move) {
                    cluster.nodes[victim] = NodeAddrs::on(&format!("127.0.0.{next_ip}"));
                    next_ip += 1;
                    addrs.lock()[victim] = cluster.nodes[victim].client_addr();
                }
                cluster.restart(victim, &[]);
            }
        }
        // One fault at a time: wait until everyone is back before the next.
        let node = cluster.nodes[victim].clone();
        tokio::task::block_in_place(|| {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !is_node_ready(&node) {
                assert_one_cluster(&cluster, &cluster_id);
                assert!(
                    Instant::now() < deadline,
                    "node {victim} not ready 120 s after {fault:?}\n{}",
                    cluster.logs()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        assert_one_cluster(&cluster, &cluster_id);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut histories = Vec::new();
    for w in workers {
        histories.push(w.await.expect("client task"));
    }
    tokio::task::block_in_place(|| {
        for (i, node) in cluster.nodes.iter().enumerate() {
            wait_until(&format!("node {i} ready at the end"), Duration::from_secs(120), || {
                is_node_ready(node)
            });
        }
    });
    // `FLYMQ_JEPSEN_LOG_DIR=<dir>` keeps every broker's log of the run
    // (also of killed processes) for diagnosing a failure.
    if let Ok(dir) = std::env::var("FLYMQ_JEPSEN_LOG_DIR") {
        let path = std::path::Path::new(&dir).join(format!("jepsen-{seed}.log"));
        let text = format!("{}\n{}", cluster.past_logs.join("\n"), cluster.logs());
        std::fs::write(&path, text).expect("write the brokers' logs");
        println!("jepsen: brokers' logs in {}", path.display());
    }
    check(&cluster, &histories).await;
    let produced: usize = histories.iter().map(|h| h.produced.len()).sum();
    let failed: u64 = histories.iter().map(|h| h.failed).sum();
    println!("jepsen: seed {seed}: {produced} records acknowledged, {failed} operations failed; all checks passed");
    assert!(
        produced > 100,
        "too little was acknowledged to check anything: {produced}"
    );
}

async fn check(cluster: &Cluster, histories: &[History]) {
    // Per connection, a partition's acknowledged offsets only grow.
    for (id, h) in histories.iter().enumerate() {
        let mut last: HashMap<i32, u64> = HashMap::new();
        for (p, offset, value) in &h.produced {
            if let Some(prev) = last.insert(*p, *offset) {
                assert!(
                    *offset > prev,
                    "client {id}: {value} acknowledged at {p}/{offset} after {p}/{prev}"
                );
            }
        }
    }
    let mut acked: BTreeMap<i32, BTreeMap<u64, String>> = BTreeMap::new();
    for h in histories {
        for (p, offset, value) in &h.produced {
            let previous = acked.entry(*p).or_default().insert(*offset, value.clone());
            assert!(
                previous.is_none(),
                "two records acknowledged at {p}/{offset}: {previous:?} and {value}"
            );
        }
    }
    for partition in 0..PARTITIONS {
        let expected = acked.get(&partition).cloned().unwrap_or_default();
        let last = expected.keys().next_back().copied().unwrap_or(0);
        let mut copies = Vec::new();
        for node in &cluster.nodes {
            let client = client_for_addrs(&[node.client_addr()], Duration::from_secs(10)).await;
            let mut records = Vec::new();
            for _ in 0..600 {
                records = read_partition(&client, partition).await;
                if records.last().is_some_and(|(o, _)| *o >= last) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            copies.push(records);
        }
        let unknown: Vec<&String> = histories.iter().flat_map(|h| &h.produce_unknown).collect();
        // Each broker's view of its Raft groups (term, leader, apply and
        // replication lag), to tell a stalled replica from a divergent one.
        let raft_state: Vec<String> = cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let metrics = format!("{}:{}", node.ip, node.metrics).parse().ok();
                let text = metrics.and_then(|addr| http_get(addr, "/metrics")).map(|(_, t)| t);
                let lines: Vec<&str> = text
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .filter(|l| l.starts_with("flymq_raft_") && !l.starts_with("flymq_raft_commit"))
                    .collect();
                format!("node {i} raft: {}", lines.join(" | "))
            })
            .collect();
        // Every replica is read before checking, so a failure shows them all.
        let around = |offset: u64| {
            copies
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let near: Vec<_> = c
                        .iter()
                        .filter(|(o, _)| o.abs_diff(offset) <= 6)
                        .map(|(o, v)| format!("{o}:{v}"))
                        .collect();
                    format!("node {i}: {}", near.join(" "))
                })
                .chain(std::iter::once(format!(
                    "produces with an unknown outcome: {unknown:?}"
                )))
                .chain(raft_state.iter().cloned())
                .collect::<Vec<_>>()
                .join("\n")
        };
        for (i, records) in copies.iter().enumerate() {
            let by_offset: BTreeMap<u64, &String> = records.iter().map(|(o, v)| (*o, v)).collect();
            for (offset, value) in &expected {
                if by_offset.get(offset).copied() != Some(value) {
                    // Where the record is, if anywhere: tells a wrong
                    // acknowledgement from a lost record.
                    let found: Vec<String> = copies
                        .iter()
                        .enumerate()
                        .flat_map(|(n, c)| {
                            c.iter()
                                .filter(|(_, v)| v == value)
                                .map(move |(o, _)| format!("node {n} at {o}"))
                        })
                        .collect();
                    panic!(
                        "node {i}: acknowledged record {partition}/{offset} ({value}) is missing or different \
                         (found: {}); records near it:\n{}",
                        if found.is_empty() {
                            "nowhere in this partition".to_owned()
                        } else {
                            found.join(", ")
                        },
                        around(*offset)
                    );
                }
            }
            let mut seen = std::collections::HashMap::new();
            for (offset, value) in records {
                if let Some(first) = seen.insert(value, *offset) {
                    panic!(
                        "node {i}: {value} stored twice (at {partition}/{first} and {partition}/{offset}); \
                         records near the second:\n{}",
                        around(*offset)
                    );
                }
            }
        }
        for (i, copy) in copies.iter().enumerate().skip(1) {
            assert_eq!(copy, &copies[0], "replicas 0 and {i} of partition {partition} differ");
        }
        // Every client's last acknowledged commit is there on every broker.
        for (id, h) in histories.iter().enumerate() {
            let Some(committed) = h
                .committed
                .iter()
                .filter(|(p, _)| *p == partition)
                .map(|(_, o)| *o)
                .max()
            else {
                continue;
            };
            for node in &cluster.nodes {
                let client = client_for_addrs(&[node.client_addr()], Duration::from_secs(10)).await;
                let mut read = 0;
                for _ in 0..100 {
                    read = client.get_offset(TOPIC, &group_of(id), partition).await.unwrap_or(0);
                    if read >= committed {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // A later commit that failed may still have been applied.
                let possibly_applied = h.commit_unknown.iter().any(|(p, o)| *p == partition && *o == read);
                assert!(
                    read == committed || (read > committed && possibly_applied),
                    "partition {partition}, group {}: last commit {committed}, {} reads {read} \
                     (commits with an unknown outcome: {:?})",
                    group_of(id),
                    node.client_addr(),
                    h.commit_unknown
                );
            }
        }
    }
}

async fn read_partition(client: &flymq_client::Client, partition: i32) -> Vec<(u64, String)> {
    if partition == 0 {
        return read_all_from(client, TOPIC).await;
    }
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let Ok(fetched) = client.fetch(TOPIC, partition, offset, 1000, "").await else {
            return out;
        };
        if fetched.records.is_empty() {
            return out;
        }
        for r in &fetched.records {
            out.push((r.offset, String::from_utf8_lossy(&r.value).into_owned()));
        }
        offset = fetched.next_offset;
    }
}
