//! A real network partition: three brokers, each in its own Linux network
//! namespace behind a bridge (as pods on a node), cut apart with blackhole
//! routes so packets are silently dropped, then healed.
//!
//! Needs root (or CAP_NET_ADMIN) and `ip` from iproute2; without them the
//! test says it was skipped and passes.

use std::process::Command;
use std::time::Duration;

use flymq_tests::cluster::{
    assert_holds_acked, client_for_addrs as client_for, is_ready, produce_retrying, read_all_from as read_all,
    read_until_offset, wait_until,
};
use flymq_tests::{BrokerProcess, try_spawn_flymq_wrapped};

/// Three namespaces on one bridge, removed on drop.
struct Net {
    bridge: String,
    namespaces: Vec<String>,
    /// `10.213.<n>.`: node i has `<prefix><i + 1>`, the host side `<prefix>254`.
    prefix: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    fn create(nodes: usize) -> Result<Self, String> {
        let tag = std::process::id() % 10_000;
        let mut net = Net {
            bridge: format!("fmbr{tag}"),
            namespaces: Vec::new(),
            prefix: format!("10.213.{}.", tag % 250),
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        ip(&["addr", "add", &format!("{}254/24", net.prefix), "dev", &net.bridge])?;
        for i in 0..nodes {
            let ns = format!("fmns{tag}-{i}");
            ip(&["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            let host_end = format!("fmv{tag}-{i}");
            ip(&[
                "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &host_end, "master", &net.bridge])?;
            ip(&["link", "set", &host_end, "up"])?;
            let inside = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &ns, "ip"];
                all.extend_from_slice(args);
                ip(&all)
            };
            inside(&["addr", "add", &format!("{}/24", net.addr(i)), "dev", "eth0"])?;
            inside(&["link", "set", "eth0", "up"])?;
            inside(&["link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn addr(&self, node: usize) -> String {
        format!("{}{}", self.prefix, node + 1)
    }

    /// Adds (`add`) or removes (`del`) blackhole routes between `node` and every other node.
    fn cut(&self, node: usize, op: &str) {
        for other in 0..self.namespaces.len() {
            if other == node {
                continue;
            }
            for (from, to) in [(node, other), (other, node)] {
                let route = format!("{}/32", self.addr(to));
                ip(&[
                    "netns",
                    "exec",
                    &self.namespaces[from],
                    "ip",
                    "route",
                    op,
                    "blackhole",
                    &route,
                ])
                .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Broker `node` inside its namespace, on the default ports of its own address.
fn start(net: &Net, node: usize, data: &std::path::Path) -> BrokerProcess {
    let me = net.addr(node);
    let seeds: Vec<String> = (0..net.namespaces.len())
        .map(|i| format!("{}:9093", net.addr(i)))
        .collect();
    let args = vec![
        "--data-dir".to_owned(),
        data.join(format!("node-{node}")).to_string_lossy().into_owned(),
        "--bind-addr".to_owned(),
        format!("{me}:9092"),
        "--set".to_owned(),
        format!("cluster_addr={me}:9093"),
        "--set".to_owned(),
        format!("metrics_addr={me}:9094"),
        "--set".to_owned(),
        format!("health_addr={me}:9095"),
        "--set".to_owned(),
        format!("admin_addr={me}:9096"),
    ];
    let env = vec![
        ("FLYMQ_NODE_ID".to_owned(), node.to_string()),
        ("POD_IP".to_owned(), me.clone()),
        ("FLYMQ_SEEDS".to_owned(), seeds.join(",")),
        (
            "FLYMQ_CLUSTER_SECRET".to_owned(),
            flymq_tests::cluster::TEST_CLUSTER_SECRET.to_owned(),
        ),
    ];
    let wrapper = ["ip", "netns", "exec", net.namespaces[node].as_str()];
    try_spawn_flymq_wrapped(&wrapper, args, env).unwrap_or_else(|e| panic!("node {node} did not start: {e:#}"))
}

/// Sends values `e<i>` once each (never resent, so an acknowledged value
/// must be stored exactly once) and records the acknowledged ones.
async fn produce_each_once(client: &flymq_client::Client, range: std::ops::Range<u32>, acked: &mut Vec<(u64, String)>) {
    for i in range {
        let value = format!("e{i:05}");
        if let Ok(meta) = client.produce_to_partition("events", 0, "", value.clone()).await {
            acked.push((meta.offset, value));
        }
    }
}

/// The minority side stops acknowledging writes, the majority elects a new
/// leader and goes on, and after healing the minority catches up with every
/// acknowledged record exactly once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minority_stops_acknowledging_and_catches_up_after_healing() {
    let net = match Net::create(3) {
        Ok(net) => net,
        Err(why) => {
            println!("skipped: network namespaces are not available here ({why}); run as root with iproute2");
            return;
        }
    };
    let data = tempfile::tempdir().unwrap();
    let procs: Vec<BrokerProcess> = (0..3).map(|i| start(&net, i, data.path())).collect();
    let client_addr = |i: usize| format!("{}:9092", net.addr(i));
    tokio::task::block_in_place(|| {
        for i in 0..3 {
            let health = format!("{}:9095", net.addr(i)).parse().unwrap();
            wait_until(&format!("node {i} is ready"), Duration::from_secs(60), || {
                is_ready(health)
            });
        }
    });
    let everyone: Vec<String> = (0..3).map(client_addr).collect();
    let client = client_for(&everyone, Duration::from_secs(10)).await;
    client.create_topic("events", 1).await.expect("create topic");
    produce_retrying(&client, "events", 0, "e00000".to_owned()).await;
    let mut acked = vec![(0, "e00000".to_owned())];
    produce_each_once(&client, 1..50, &mut acked).await;

    // Cut the partition's leader off from the other two brokers.
    let meta = client.topic_metadata("events").await.unwrap();
    let leader_addr = meta.partitions[0].leader_addr.clone();
    let minority = (0..3)
        .find(|i| client_addr(*i) == leader_addr)
        .unwrap_or_else(|| panic!("leader {leader_addr} is not one of the brokers"));
    net.cut(minority, "add");

    // The minority cannot commit: nothing written through it is acknowledged.
    let isolated = client_for(&[client_addr(minority)], Duration::from_secs(2)).await;
    for i in 0..3 {
        let attempt = isolated.produce_to_partition("events", 0, "", format!("lost{i}")).await;
        assert!(
            attempt.is_err(),
            "the isolated broker acknowledged a write: {attempt:?}"
        );
        // A cut-off leader refuses (or times out); it never redirects clients to itself.
        let text = format!("{attempt:?}");
        assert!(
            !text.contains(&format!("leader_addr: Some(\"{}\")", client_addr(minority))),
            "the isolated broker sent the client back to itself: {text}"
        );
    }

    // The majority elects a leader and keeps acknowledging.
    let majority: Vec<String> = (0..3).filter(|i| *i != minority).map(client_addr).collect();
    let majority_client = client_for(&majority, Duration::from_secs(5)).await;
    let mut new_leader = String::new();
    for _ in 0..300 {
        if let Ok(meta) = majority_client.topic_metadata("events").await {
            new_leader = meta.partitions[0].leader_addr.clone();
            if majority.contains(&new_leader) && meta.partitions[0].state == "online" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        majority.contains(&new_leader),
        "the majority did not elect a new leader (leader: {new_leader})"
    );
    let before = acked.len();
    produce_each_once(&majority_client, 50..150, &mut acked).await;
    assert!(
        acked.len() - before >= 90,
        "the majority acknowledged only {} of 100 writes",
        acked.len() - before
    );

    // Heal: the old leader steps down and catches up.
    net.cut(minority, "del");
    let last = acked.iter().map(|(o, _)| *o).max().unwrap();
    let rejoined = client_for(&[client_addr(minority)], Duration::from_secs(5)).await;
    let records = read_until_offset(last, || read_all(&rejoined, "events")).await;
    if records.last().is_none_or(|(o, _)| *o < last) {
        for (i, p) in procs.iter().enumerate() {
            eprintln!("---- node {i} log ----\n{}", p.log_text());
        }
    }
    assert_holds_acked("the healed broker", &records, &acked);
    assert!(
        records.iter().all(|(_, v)| !v.starts_with("lost")),
        "a write the minority never acknowledged became visible"
    );
    let majority_records = read_all(&majority_client, "events").await;
    assert_eq!(records, majority_records, "the healed broker differs from the majority");
    drop(procs);
}
