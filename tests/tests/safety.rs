//! Replication safety on a cluster of real `flymq` processes (127.0.0.x
//! play the role of pod IPs): lost volumes, topics writable on creation,
//! per-connection order through a follower, deterministic retention.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flymq_client::Client;
use flymq_proto::{ClusterMetadataRequest, ConsumeRequest, CreateTopicRequest, ProduceRequest, Request, Response};
use flymq_tests::cluster::{Cluster, assert_holds_acked, client_for, read_all, read_until_offset};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Produces `n` records to partition 0 of `topic` one at a time; returns
/// every acknowledged `(offset, value)`.
async fn produce_n(client: &Client, topic: &str, prefix: &str, n: usize, cluster: &Cluster) -> Vec<(u64, String)> {
    let mut acked = Vec::new();
    for i in 0..n {
        let value = format!("{prefix}-{i:06}");
        match client.produce_to_partition(topic, 0, "", value.clone()).await {
            Ok(meta) => acked.push((meta.offset, value)),
            Err(e) => panic!("produce {value}: {e}\n{}", cluster.logs()),
        }
    }
    acked
}

/// Sends `requests` in one write on one connection; returns the responses in order.
async fn pipeline(addr: &str, requests: &[Request]) -> Vec<Response> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut bytes = Vec::new();
    for r in requests {
        bytes.extend_from_slice(&r.to_frame_bytes().expect("encode"));
    }
    stream.write_all(&bytes).await.expect("write");
    let mut buf = bytes::BytesMut::new();
    let mut out = Vec::new();
    while out.len() < requests.len() {
        if let Some(frame) = flymq_proto::Frame::decode(&mut buf).expect("frame") {
            out.push(Response::decode_frame(&frame).expect("response"));
            continue;
        }
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read_buf(&mut buf))
            .await
            .expect("response within 30 s")
            .expect("read");
        assert!(n > 0, "broker closed the connection after {} responses", out.len());
    }
    out
}

fn produce(topic: &str, partition: i32, value: &str) -> Request {
    Request::Produce(ProduceRequest {
        topic: topic.into(),
        key: bytes::Bytes::new(),
        value: bytes::Bytes::from(value.to_owned()),
        partition,
    })
}

/// Polls a broker's `/health` until it is ready, asserting meanwhile that it
/// never reports a cluster id other than `cluster_id` (no second cluster).
fn wait_ready_in_cluster(cluster: &Cluster, i: usize, cluster_id: &str, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    let mut saw_not_ready = false;
    loop {
        let health = cluster.status(i);
        let id = health["cluster_id"].as_str().unwrap_or_default();
        assert!(
            id.is_empty() || id == cluster_id,
            "node {i} reports cluster '{id}', not '{cluster_id}': a second cluster formed\n{}",
            cluster.logs()
        );
        if health["status"] == "ready" {
            assert!(saw_not_ready || Instant::now() < deadline);
            return health;
        }
        saw_not_ready = true;
        assert!(
            Instant::now() < deadline,
            "node {i} not ready after {timeout:?}: {health}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A broker whose volume is lost comes back as a new incarnation of its
/// node id: it never creates a second cluster (node 0) nor votes with a
/// forgotten log, is not ready until caught up, and then serves every
/// acknowledged record.
async fn wiped_broker_rejoins(first_ip: u8, victim: usize) {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(first_ip, 3));
    let all: Vec<_> = cluster.nodes.iter().collect();
    let client = client_for(&all).await;
    client.create_topic("kept", 1).await.expect("create");
    let mut acked = produce_n(&client, "kept", "1-before", 300, &cluster).await;
    let cluster_id = cluster.status(0)["cluster_id"].as_str().unwrap().to_owned();
    let old_incarnation = cluster.status(victim)["incarnation"].as_str().unwrap().to_owned();

    cluster.kill9(victim);
    cluster.wipe(victim);
    // Writes go on while it is away.
    let survivors: Vec<_> = (0..3).filter(|i| *i != victim).map(|i| &cluster.nodes[i]).collect();
    let survivors_client = client_for(&survivors).await;
    acked.extend(produce_n(&survivors_client, "kept", "2-away", 100, &cluster).await);

    cluster.restart(victim, &[]);
    let health =
        tokio::task::block_in_place(|| wait_ready_in_cluster(&cluster, victim, &cluster_id, Duration::from_secs(90)));
    let incarnation = health["incarnation"].as_str().unwrap().to_owned();
    assert_ne!(
        incarnation, old_incarnation,
        "a wiped broker must be a new incarnation: {health}"
    );
    // Ready means caught up: the metadata and the partition are there.
    let via_victim = client_for(&[&cluster.nodes[victim]]).await;
    assert!(
        via_victim.list_topics().await.unwrap().contains(&"kept".to_owned()),
        "the rejoined broker lists no topics: {health}"
    );
    let last = acked.last().unwrap().0;
    let records = read_until_offset(last, || read_all(&cluster.nodes[victim], "kept")).await;
    assert_holds_acked(&format!("wiped node {victim}"), &records, &acked);

    // One cluster of three: the old incarnation is gone from the membership
    // and from the partition's replicas, and everyone is a voter.
    let admin = flymq_client::AdminClient::connect(&cluster.admin_addr((victim + 1) % 3), Duration::from_secs(5))
        .await
        .expect("admin");
    wait_until_async(
        "the old incarnation is replaced everywhere",
        Duration::from_secs(60),
        || {
            let admin = &admin;
            async move {
                let status = admin.cluster_status().await.expect("status");
                let members_ok = status.members.len() == 3 && status.members.iter().all(|m| m.role == "voter");
                let group_ok = status
                    .groups
                    .iter()
                    .filter(|g| g.name == "kept/0")
                    .all(|g| g.has_leader && g.voters.len() == 3 && g.in_sync.len() == 3);
                members_ok && group_ok
            }
        },
    )
    .await;
    // And it takes part in writes again.
    acked.extend(produce_n(&via_victim, "kept", "3-after", 50, &cluster).await);
    assert_every_replica_holds_exactly(&cluster, "kept", &acked).await;
}

/// Asserts that every broker of `cluster` holds exactly the acknowledged
/// records of partition 0 of `topic`, in order (waiting for each to catch up).
async fn assert_every_replica_holds_exactly(cluster: &Cluster, topic: &str, acked: &[(u64, String)]) {
    let last = acked.last().expect("acknowledged records").0;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let records = read_until_offset(last, || read_all(node, topic)).await;
        assert_holds_acked(&format!("node {i}"), &records, acked);
        assert_eq!(
            records.len(),
            acked.len(),
            "node {i} holds exactly the acknowledged records: {records:?}"
        );
    }
}

async fn wait_until_async<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wiped_broker_0_rejoins_instead_of_starting_a_new_cluster() {
    wiped_broker_rejoins(61, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wiped_broker_2_rejoins_as_a_new_incarnation() {
    wiped_broker_rejoins(71, 2).await;
}

/// `cluster_bootstrap: never`: a broker 0 with an empty volume and no
/// reachable cluster waits for one instead of creating it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_never_waits_for_an_existing_cluster() {
    let root = tempfile::tempdir().unwrap();
    let node = flymq_tests::cluster::NodeAddrs::on("127.0.0.78");
    let mut proc = flymq_tests::cluster::start_broker(
        0,
        &node,
        &node.cluster_addr(),
        &root.path().join("node-0"),
        &[("FLYMQ_CLUSTER_BOOTSTRAP", "never")],
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let health: serde_json::Value =
        serde_json::from_str(&flymq_tests::cluster::http_get(node.health_addr(), "/health").unwrap().1).unwrap();
    assert_ne!(health["status"], "ready", "{health}");
    assert_eq!(health["cluster_id"], "", "no cluster may be created: {health}");
    proc.kill9();
}

/// A topic is writable when CREATE_TOPIC answers, on every broker, without
/// retrying; and requests pipelined through a follower take effect in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_topics_are_writable_and_pipelines_keep_their_order() {
    let cluster = tokio::task::block_in_place(|| Cluster::start(81, 3));
    for (i, node) in cluster.nodes.iter().enumerate() {
        let client = client_for(&[node]).await;
        for t in 0..3 {
            let topic = format!("fresh-{i}-{t}");
            client.create_topic(&topic, 3).await.expect("create");
            for p in 0..3 {
                if let Err(e) = client.produce_to_partition(&topic, p, "", "first").await {
                    panic!(
                        "first produce to {topic}/{p} through node {i} failed: {e}\n{}",
                        cluster.logs()
                    );
                }
            }
        }
    }

    // Through every broker (a follower or a leader of each partition):
    // CREATE_TOPIC(8) then a produce to partition 7 then a consume of it,
    // in one write; then an auto-created topic's produce and consume.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let topic = format!("piped-{i}");
        let responses = pipeline(
            &node.client_addr(),
            &[
                Request::CreateTopic(CreateTopicRequest {
                    topic: topic.clone(),
                    partitions: 8,
                }),
                produce(&topic, 7, "hello"),
                Request::Consume(ConsumeRequest {
                    topic: topic.clone(),
                    partition: 7,
                    offset: 0,
                }),
                produce(&format!("auto-{i}"), 0, "auto"),
                Request::Consume(ConsumeRequest {
                    topic: format!("auto-{i}"),
                    partition: 0,
                    offset: 0,
                }),
                Request::ClusterMetadata(ClusterMetadataRequest { topic: topic.clone() }),
            ],
        )
        .await;
        assert!(
            matches!(responses[0], Response::CreateTopic),
            "node {i}: {:?}",
            responses[0]
        );
        assert!(
            matches!(responses[1], Response::Produce(_)),
            "node {i}: {:?}\n{}",
            responses[1],
            cluster.logs()
        );
        match &responses[2] {
            Response::Consume(r) => assert_eq!(&r.value[..], b"hello", "node {i}"),
            // Through a broker without a replica of partition 7 the read is redirected.
            Response::Error(e) if e.message.starts_with("not leader") => {}
            other => panic!("node {i}: the consume did not see the produce before it: {other:?}"),
        }
        assert!(
            matches!(responses[3], Response::Produce(_)),
            "node {i}: {:?}",
            responses[3]
        );
        match &responses[4] {
            Response::Consume(r) => assert_eq!(&r.value[..], b"auto", "node {i}"),
            Response::Error(e) if e.message.starts_with("not leader") => {}
            other => panic!("node {i}: the consume did not see the auto-created topic's record: {other:?}"),
        }
        match &responses[5] {
            Response::ClusterMetadata(m) => assert_eq!(m.topics[0].partitions.len(), 8, "node {i}"),
            other => panic!("node {i}: {other:?}"),
        }
    }
}

/// Retention is a replicated truncation applied identically everywhere:
/// after it ran, every replica holds exactly the same records.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_hold_the_same_records_after_retention() {
    let cluster = tokio::task::block_in_place(|| {
        Cluster::start_with(
            91,
            3,
            &[
                ("FLYMQ_RETENTION_BYTES", "200000"),
                ("FLYMQ_RETENTION_CHECK_INTERVAL_MS", "300"),
            ],
        )
    });
    let all: Vec<_> = cluster.nodes.iter().collect();
    let client = client_for(&all).await;
    client.create_topic("sized", 1).await.expect("create");
    // Four pipelined writers through different brokers.
    let mut writers = Vec::new();
    for w in 0..4 {
        let addr = cluster.nodes[w % 3].client_addr();
        writers.push(tokio::spawn(async move {
            for chunk in 0..30 {
                let requests: Vec<Request> = (0..64)
                    .map(|i| produce("sized", 0, &format!("w{w}-{chunk:03}-{i:03}-{}", "x".repeat(40))))
                    .collect();
                for r in pipeline(&addr, &requests).await {
                    assert!(matches!(r, Response::Produce(_)), "{r:?}");
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    // Wait until retention has cut the partition on every replica and the
    // replicas agree.
    let mut copies: Vec<Vec<(u64, String)>> = Vec::new();
    for _ in 0..100 {
        copies.clear();
        for node in &cluster.nodes {
            copies.push(read_all(node, "sized").await);
        }
        let first_offsets: Vec<Option<u64>> = copies.iter().map(|c| c.first().map(|r| r.0)).collect();
        let lasts: Vec<Option<u64>> = copies.iter().map(|c| c.last().map(|r| r.0)).collect();
        let cut = first_offsets.iter().all(|f| f.is_some_and(|o| o > 0));
        if cut && first_offsets.windows(2).all(|w| w[0] == w[1]) && lasts.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(copies[0].first().is_some_and(|r| r.0 > 0), "retention never ran");
    let as_map = |c: &Vec<(u64, String)>| c.iter().cloned().collect::<BTreeMap<u64, String>>();
    assert_eq!(
        as_map(&copies[0]),
        as_map(&copies[1]),
        "replicas 0 and 1 differ after retention"
    );
    assert_eq!(
        as_map(&copies[0]),
        as_map(&copies[2]),
        "replicas 0 and 2 differ after retention"
    );
    assert_eq!(copies[0].last().unwrap().0, 4 * 30 * 64 - 1);
}

/// A leader killed between replicating entries and writing them itself.
/// Broker 0 runs with its Raft log writes held back 1.5 s
/// (`FLYMQ_TEST_LOG_WRITE_DELAY_MS`, a test fault), leads every group, and
/// acknowledges produces its two followers have stored while it has not.
/// Killed inside that window and restarted at once, its disk lacks entries
/// it acknowledged: every replica must still end with exactly the
/// acknowledged records, at the acknowledged offsets (the restarted broker
/// gets them back from the others). This run does not make the restarted
/// broker resume leadership before the others elect a new leader (booting
/// takes longer than an election), so it does not by itself show why
/// `enable_leader_restore` is off; docs/replication.md#openraft does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_killed_before_writing_what_it_acknowledged_loses_nothing() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(101, 3));
    tokio::task::block_in_place(|| {
        cluster.kill9(0);
        cluster.restart(0, &[("FLYMQ_TEST_LOG_WRITE_DELAY_MS", "1500")]);
    });
    let cluster_id = cluster.status(1)["cluster_id"].as_str().unwrap().to_owned();
    tokio::task::block_in_place(|| wait_ready_in_cluster(&cluster, 0, &cluster_id, Duration::from_secs(90)));
    let client = client_for(&cluster.nodes.iter().collect::<Vec<_>>()).await;
    client.create_topic("window", 1).await.expect("create");
    let mut acked = produce_n(&client, "window", "0-warmup", 5, &cluster).await;

    // Every group led by broker 0.
    let admin = flymq_client::AdminClient::connect(&cluster.admin_addr(1), Duration::from_secs(5))
        .await
        .expect("admin");
    let via_0 = client_for(&[&cluster.nodes[0]]).await;
    wait_until_async("broker 0 leads the partition", Duration::from_secs(60), || {
        let (admin, via_0) = (&admin, &via_0);
        async move {
            for from in [1, 2] {
                let _ = admin.transfer_leadership_from(from, 0).await;
            }
            matches!(via_0.topic_metadata("window").await, Ok(m)
                if m.partitions.iter().all(|p| p.leader_id == "0"))
        }
    })
    .await;
    assert!(
        cluster.procs[0].as_ref().unwrap().log_text().contains("test fault"),
        "broker 0 runs with delayed log writes"
    );

    // Acknowledged by the followers while broker 0's own writes wait; then
    // broker 0 dies inside the window and comes straight back.
    let window = Instant::now();
    acked.extend(produce_n(&via_0, "window", "1-unwritten", 5, &cluster).await);
    // Acknowledged well inside the 1.5 s broker 0's writer holds them.
    assert!(
        window.elapsed() < Duration::from_millis(1_200),
        "the produces took {:?}: the kill may miss the window",
        window.elapsed()
    );
    tokio::task::block_in_place(|| {
        cluster.kill9(0);
        cluster.restart(0, &[]);
    });
    tokio::task::block_in_place(|| wait_ready_in_cluster(&cluster, 0, &cluster_id, Duration::from_secs(90)));
    let client = client_for(&cluster.nodes.iter().collect::<Vec<_>>()).await;
    acked.extend(produce_n(&client, "window", "2-after", 5, &cluster).await);

    assert_every_replica_holds_exactly(&cluster, "window", &acked).await;
}

/// Every broker killed at once, after many snapshots and log purges.
/// Raft applies are written without RocksDB's WAL (the Raft log is their
/// WAL), so a `kill -9` loses every apply not yet flushed, on all three
/// replicas at once: the brokers must re-apply them from their Raft logs,
/// which therefore must not have been purged past what was flushed. With
/// snapshots every 200 entries, 1200 single-record entries are purged many
/// times over while nothing is flushed (the memtables are far from full).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_broker_killed_at_once_keeps_every_acknowledged_record_and_offset() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(131, 3));
    let all: Vec<_> = cluster.nodes.iter().collect();
    let client = client_for(&all).await;
    client.create_topic("durable", 1).await.expect("create");
    let acked = produce_n(&client, "durable", "r", 1200, &cluster).await;
    client.commit("durable", "readers", 0, 700).await.expect("commit");
    drop(client);

    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.restart(i, &[]);
    }
    tokio::task::block_in_place(|| {
        for (i, node) in cluster.nodes.iter().enumerate() {
            flymq_tests::cluster::wait_until(&format!("node {i} is ready again"), Duration::from_secs(60), || {
                flymq_tests::cluster::is_node_ready(node)
            });
        }
    });
    let last = acked.last().unwrap().0;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let records = read_until_offset(last, || read_all(node, "durable")).await;
        if records.len() != acked.len() {
            eprintln!("{}", cluster.logs());
        }
        assert_holds_acked(&format!("node {i}"), &records, &acked);
        assert_eq!(records.len(), acked.len(), "node {i} holds records nobody acknowledged");
    }
    let client = client_for(&cluster.nodes.iter().collect::<Vec<_>>()).await;
    assert_eq!(
        client
            .get_offset("durable", "readers", 0)
            .await
            .expect("committed offset"),
        700,
        "the committed offset survives"
    );
}

/// A client reads back the offset it committed, through any broker: here
/// through the metadata leader it was connected to, paused while another
/// broker took over and took the commit. Its read is sent while it is still
/// paused, so it is the first thing the deposed leader handles when it
/// resumes, before it hears of the new leader: it must not answer from its
/// own, older copy of the offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_offsets_read_back_through_a_deposed_metadata_leader() {
    let cluster = tokio::task::block_in_place(|| Cluster::start(64, 3));
    let all: Vec<_> = cluster.nodes.iter().collect();
    let admin = client_for(&all).await;
    admin.create_topic("readback", 1).await.expect("create");
    admin.commit("readback", "g", 0, 1).await.expect("first commit");
    for round in 1..=3u64 {
        let status = |i: usize| cluster.status(i)["role"].as_str().unwrap_or_default().to_owned();
        let leader = wait_for_metadata_leader(&cluster, &[0, 1, 2]).await;
        let on_leader =
            flymq_tests::cluster::client_for_addrs(&[cluster.nodes[leader].client_addr()], Duration::from_secs(30))
                .await;
        assert_eq!(
            on_leader.get_offset("readback", "g", 0).await.expect("warm-up read"),
            round
        );

        let pid = cluster.procs[leader].as_ref().expect("running").pid().to_string();
        let signal = |sig: &str| {
            let ok = std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .expect("kill");
            assert!(ok.success(), "kill {sig} {pid}");
        };
        signal("-STOP");
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let new_leader = wait_for_metadata_leader(&cluster, &others).await;
        assert_eq!(status(new_leader), "leader");
        let elsewhere =
            flymq_tests::cluster::client_for_addrs(&[cluster.nodes[new_leader].client_addr()], Duration::from_secs(10))
                .await;
        let committed = round + 1;
        elsewhere
            .commit("readback", "g", 0, committed)
            .await
            .expect("commit on the new leader");

        let read = tokio::spawn(async move { on_leader.get_offset("readback", "g", 0).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        signal("-CONT");
        let read = read.await.expect("read task");
        match read {
            Ok(offset) => assert_eq!(
                offset,
                committed,
                "round {round}: the deposed leader answered an older offset\n{}",
                cluster.logs()
            ),
            Err(e) => panic!("round {round}: read through the deposed leader failed: {e}"),
        }
    }
}

/// The broker among `candidates` that reports leading the metadata.
async fn wait_for_metadata_leader(cluster: &Cluster, candidates: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for &i in candidates {
            if cluster.status(i)["role"].as_str() == Some("leader") {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no metadata leader among {candidates:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A broker whose volume is lost again before its new incarnation caught
/// up on its partitions still rejoins: a partition leader waiting for the
/// dead incarnation to catch up must not hold up the next one's join (the
/// liveness failure of the long fault run, seed 640918).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_wiped_again_before_it_caught_up_rejoins() {
    replica_lost_again_before_it_caught_up(84, SecondLoss::Wipe).await;
}

/// The same, but the second time the pod only moves (same volume, new IP):
/// the partition leader must reach the new replica at its new address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_replica_that_moved_before_it_caught_up_catches_up() {
    replica_lost_again_before_it_caught_up(87, SecondLoss::Move).await;
}

enum SecondLoss {
    /// Killed and its volume wiped again.
    Wipe,
    /// Killed and started on the next loopback address with its volume.
    Move,
}

/// Three brokers on 127.0.0.`first_ip`..+2 (a move takes +3): one loses its
/// volume, and its new incarnation is lost again (`second`) as soon as it
/// joined, before it caught up on a large partition led by the metadata
/// leader. It must become ready and serve every acknowledged record.
async fn replica_lost_again_before_it_caught_up(first_ip: u8, second: SecondLoss) {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(first_ip, 3));
    let cluster_id = cluster.status(0)["cluster_id"].as_str().unwrap().to_owned();
    let meta_leader = wait_for_metadata_leader(&cluster, &[0, 1, 2]).await;
    let victim = (meta_leader + 1) % 3;
    let client =
        flymq_tests::cluster::client_for_addrs(&[cluster.nodes[meta_leader].client_addr()], Duration::from_secs(30))
            .await;
    client.create_topic("big", 3).await.expect("create");
    // The partition the metadata leader leads: while that leader waits for
    // a replica there, it must still answer the next incarnation's join.
    let partition = wait_for_partition_led_by(&cluster, meta_leader, "big", 3).await;
    // More entries (5,200) than a leader lets a new replica lag before it
    // counts it caught up, and 20 MiB, so catching up takes a while.
    let mut last = 0;
    for i in 0..5200u32 {
        let value = bytes::Bytes::from(vec![b'a' + (i % 26) as u8; 4 << 10]);
        let reply = client
            .produce_batch("big", Some(partition), vec![(bytes::Bytes::new(), value)])
            .await
            .unwrap_or_else(|e| panic!("record {i}: {e}"));
        last = reply.base_offset;
    }
    let acked = BTreeMap::from([(partition, last)]);

    // Wipe the victim; its new incarnation joins, and is killed and wiped
    // again as soon as it is a member, before its partitions caught up.
    cluster.kill9(victim);
    cluster.wipe(victim);
    cluster.restart(victim, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let joined = cluster.procs[victim]
            .as_ref()
            .expect("running")
            .log_lines()
            .iter()
            .any(|l| l.contains("joined the cluster"));
        if joined {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new incarnation never joined\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let caught_up_before_kill = cluster.status(victim)["status"] == "ready";
    cluster.kill9(victim);
    match second {
        SecondLoss::Wipe => cluster.wipe(victim),
        SecondLoss::Move => {
            cluster.nodes[victim] = flymq_tests::cluster::NodeAddrs::on(&format!("127.0.0.{}", first_ip + 3));
        }
    }
    // Leaders of its partitions are now waiting for a replica that is gone
    // (or no longer at the address they know).
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart(victim, &[]);
    let health =
        tokio::task::block_in_place(|| wait_ready_in_cluster(&cluster, victim, &cluster_id, Duration::from_secs(90)));
    assert!(
        !caught_up_before_kill,
        "the second incarnation was ready before it was killed: the test did not test the race"
    );

    // Ready means caught up: every acknowledged record is on the third incarnation.
    for (partition, last) in acked {
        let via_victim = client_for(&[&cluster.nodes[victim]]).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = via_victim.fetch("big", partition, last, 1, "").await;
            if let Ok(records) = &got
                && records.records.iter().any(|r| r.offset == last)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partition {partition}: offset {last} not readable from the rejoined broker: {got:?}\n{health}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The incarnation that died before it caught up is dropped from the
    // partition's membership, not kept as a learner the leader replicates to.
    if matches!(second, SecondLoss::Move) {
        return;
    }
    let leader = meta_leader;
    wait_until_async(
        "the dead incarnation is dropped from the partition",
        Duration::from_secs(60),
        || {
            let lines = cluster.procs[leader].as_ref().expect("running").log_lines();
            async move { lines.iter().any(|l| l.contains("dropped replicas no longer assigned")) }
        },
    )
    .await;
}

/// The partition of `topic` whose group `broker` reports leading.
async fn wait_for_partition_led_by(cluster: &Cluster, broker: usize, topic: &str, partitions: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = cluster.status(broker);
        for p in 0..partitions {
            let name = format!("{topic}/{p}");
            let led_here = status["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|g| g["name"].as_str() == Some(name.as_str()) && g["leader"].as_u64() == Some(broker as u64));
            if led_here {
                return p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "broker {broker} leads no partition of {topic}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two of five brokers lose their volumes at once: both new incarnations
/// join concurrently (each waits for its own metadata catch-up, neither
/// holds the other up), become ready only when caught up, replace their
/// old incarnations everywhere and hold every acknowledged record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_brokers_wiped_at_once_both_rejoin() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(95, 5));
    let cluster_id = cluster.status(0)["cluster_id"].as_str().unwrap().to_owned();
    let admin = flymq_client::AdminClient::connect(&cluster.admin_addr(0), Duration::from_secs(10))
        .await
        .expect("admin");
    // Every broker holds a replica of each partition, so losing two keeps a
    // majority of every group (metadata and partitions).
    admin
        .create_topic(flymq_client::admin::NewTopic::new("kept", 2).replication_factor(5))
        .await
        .expect("create");
    let all: Vec<_> = cluster.nodes.iter().collect();
    let client = client_for(&all).await;
    let mut acked = produce_n(&client, "kept", "1-before", 300, &cluster).await;
    let victims = [1, 3];
    let old_incarnations: Vec<String> = victims
        .iter()
        .map(|v| cluster.status(*v)["incarnation"].as_str().unwrap().to_owned())
        .collect();

    for v in victims {
        cluster.kill9(v);
        cluster.wipe(v);
    }
    let survivors: Vec<_> = [0, 2, 4].iter().map(|i| &cluster.nodes[*i]).collect();
    let survivors_client = client_for(&survivors).await;
    acked.extend(produce_n(&survivors_client, "kept", "2-away", 100, &cluster).await);

    for v in victims {
        cluster.restart(v, &[]);
    }
    for (v, old) in victims.iter().zip(&old_incarnations) {
        let health =
            tokio::task::block_in_place(|| wait_ready_in_cluster(&cluster, *v, &cluster_id, Duration::from_secs(120)));
        assert_ne!(
            health["incarnation"].as_str(),
            Some(old.as_str()),
            "node {v} must come back as a new incarnation: {health}"
        );
    }
    // Ready means caught up: every acknowledged record is on both.
    let last = acked.last().unwrap().0;
    for v in victims {
        let records = read_until_offset(last, || read_all(&cluster.nodes[v], "kept")).await;
        assert_holds_acked(&format!("wiped node {v}"), &records, &acked);
    }
    wait_until_async(
        "both old incarnations are replaced everywhere",
        Duration::from_secs(60),
        || {
            let admin = &admin;
            async move {
                let status = admin.cluster_status().await.expect("status");
                let members_ok = status.members.len() == 5 && status.members.iter().all(|m| m.role == "voter");
                let groups: Vec<_> = status.groups.iter().filter(|g| g.name.starts_with("kept/")).collect();
                let groups_ok = groups.len() == 2
                    && groups
                        .iter()
                        .all(|g| g.has_leader && g.voters.len() == 5 && g.in_sync.len() == 5);
                members_ok && groups_ok
            }
        },
    )
    .await;
    // Both take part in writes again: every replica holds exactly what was acknowledged.
    let via_victims = client_for(&[&cluster.nodes[1], &cluster.nodes[3]]).await;
    acked.extend(produce_n(&via_victims, "kept", "3-after", 50, &cluster).await);
    assert_every_replica_holds_exactly(&cluster, "kept", &acked).await;
}
