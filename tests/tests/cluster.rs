//! Replicated cluster tests: real `flymq` processes on distinct loopback
//! addresses (127.0.0.x play the role of pod IPs), `POD_IP` and `FLYMQ_SEEDS`
//! set as the operator sets them, only node 0 bootstrapping.
//!
//! Each test uses its own block of loopback addresses so tests can run in
//! parallel; ports are picked free on those addresses.

use std::collections::HashSet;
use std::time::Duration;

use flymq_client::Client;
use flymq_tests::cluster::{
    Cluster, NodeAddrs, TEST_CLUSTER_SECRET, assert_holds_acked, client_for, http_get, is_node_ready as is_ready,
    metric_value, metrics_text, produce_retrying, read_all, read_until_offset, start_broker as start, wait_until,
};

/// Three brokers join through the seeds; topics and consumer offsets
/// replicate; killing the partition leader with `kill -9` during continuous
/// produce elects a new leader and loses no acknowledged record; the killed
/// broker catches up after restart; a broker of another cluster is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_brokers_replicate_and_survive_leader_kill() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(11, 3));
    let all: Vec<&NodeAddrs> = cluster.nodes.iter().collect();

    // Every node sees the same membership.
    let client = client_for(&all).await;
    let status = client.cluster_status().await.expect("cluster status");
    assert_eq!(status.nodes.len(), 3, "{status:?}");

    // A topic created through node 1 is visible on node 2.
    let via_1 = client_for(&[&cluster.nodes[1]]).await;
    via_1.create_topic("orders", 1).await.expect("create topic");
    let via_2 = client_for(&[&cluster.nodes[2]]).await;
    let mut found = false;
    for _ in 0..50 {
        if via_2.list_topics().await.unwrap().contains(&"orders".to_owned()) {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "topic created on node 1 never reached node 2");
    let meta = via_2.topic_metadata("orders").await.unwrap();
    assert_eq!(meta.partitions[0].replicas.len(), 3, "replication factor 3: {meta:?}");

    // Consumer-group offsets are replicated.
    via_1
        .subscribe("orders", "g1", 0, flymq_client::StartFrom::Earliest)
        .await
        .unwrap();
    via_1.commit("orders", "g1", 0, 7).await.unwrap();
    let via_0 = client_for(&[&cluster.nodes[0]]).await;
    let mut committed = 0;
    for _ in 0..50 {
        committed = via_0.get_offset("orders", "g1", 0).await.unwrap_or(0);
        if committed == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(committed, 7, "offset committed via node 1 is not visible on node 0");

    // Continuous produce; no retries, so an acknowledged value is stored exactly once.
    let producer_addrs: Vec<NodeAddrs> = cluster.nodes.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let producer = tokio::spawn(async move {
        let refs: Vec<&NodeAddrs> = producer_addrs.iter().collect();
        let mut client = client_for(&refs).await;
        let mut acked = Vec::new();
        let mut seq = 0u64;
        while !*stop_rx.borrow_and_update() {
            let value = format!("v{seq:06}");
            seq += 1;
            match client.produce_to_partition("orders", 0, "", value.clone()).await {
                Ok(meta) => acked.push((meta.offset, value)),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if let Ok(c) = Client::connect(client.config().clone()).await {
                        client = c;
                    }
                }
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Kill -9 the partition's leader.
    let meta = via_2.topic_metadata("orders").await.unwrap();
    let leader_addr = meta.partitions[0].leader_addr.clone();
    let victim = cluster
        .index_of_client(&leader_addr)
        .unwrap_or_else(|| panic!("leader {leader_addr} is not one of the brokers"));
    cluster.procs[victim].as_mut().unwrap().kill9();
    tokio::time::sleep(Duration::from_secs(4)).await;

    // A new leader is elected among the survivors.
    let survivor = (0..3).find(|i| *i != victim).unwrap();
    let via_survivor = client_for(&[&cluster.nodes[survivor]]).await;
    let mut new_leader = String::new();
    for _ in 0..100 {
        let meta = via_survivor.topic_metadata("orders").await.unwrap();
        new_leader = meta.partitions[0].leader_addr.clone();
        if !new_leader.is_empty() && new_leader != leader_addr && meta.partitions[0].state == "online" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(new_leader, leader_addr, "no new leader after killing {leader_addr}");

    // The survivors' metrics saw the partition's leader change.
    let text = metrics_text(&cluster.nodes[survivor]);
    let changes = metric_value(&text, "flymq_raft_leader_changes_total{group=\"orders/0\"}");
    assert!(changes >= 2.0, "leader changes of orders/0: {changes}\n{text}");
    assert!(text.contains("flymq_raft_is_leader{group=\"meta\"}"), "{text}");
    assert!(text.contains("flymq_raft_commit_seconds_count"), "{text}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_tx.send(true).unwrap();
    let acked = producer.await.unwrap();
    assert!(acked.len() > 20, "too few acknowledged records: {}", acked.len());

    // Restart the killed broker: it catches up.
    let victim_node = cluster.nodes[victim].clone();
    cluster.procs[victim] = Some(start(
        victim as u32,
        &victim_node,
        &cluster.seeds,
        &cluster.dirs[victim],
        &[],
    ));
    tokio::task::block_in_place(|| {
        wait_until("the restarted broker is ready", Duration::from_secs(60), || {
            is_ready(&victim_node)
        })
    });
    let last_acked = acked.iter().map(|(o, _)| *o).max().unwrap();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let records = read_until_offset(last_acked, || read_all(node, "orders")).await;
        assert_holds_acked(&format!("node {i}"), &records, &acked);
    }

    // A broker configured for another cluster is refused and never becomes ready.
    let stranger = NodeAddrs::on("127.0.0.15");
    let stranger_dir = cluster.dirs[0].parent().unwrap().join("stranger");
    let mut stranger_proc = start(
        7,
        &stranger,
        &cluster.seeds,
        &stranger_dir,
        &[("FLYMQ_CLUSTER_ID", "some-other-cluster")],
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!is_ready(&stranger), "a broker of another cluster became ready");
    assert!(
        stranger_proc.log_text().contains("refusing to join"),
        "no refusal logged:\n{}",
        stranger_proc.log_text()
    );
    stranger_proc.kill9();
    let status = client_for(&all).await.cluster_status().await.unwrap();
    assert_eq!(status.nodes.len(), 3, "the stranger was added: {status:?}");
    let _ = cluster.status(0);

    // A graceful stop (SIGTERM, as in a rolling restart) hands the
    // partition's leadership over before the broker exits: another broker
    // leads as soon as it is gone, without waiting out an election.
    let meta = via_survivor.topic_metadata("orders").await.unwrap();
    let leader = cluster
        .index_of_client(&meta.partitions[0].leader_addr)
        .expect("orders/0 has a leader");
    let proc = cluster.procs[leader].as_mut().unwrap();
    let status = tokio::task::block_in_place(|| proc.terminate(Duration::from_secs(45)));
    assert!(
        status.is_some_and(|s| s.success()),
        "graceful stop failed: {status:?}\n{}",
        proc.log_text()
    );
    assert!(
        proc.log_text().contains("handed over leadership before stopping"),
        "{}",
        proc.log_text()
    );
    let others: Vec<&NodeAddrs> = (0..3).filter(|i| *i != leader).map(|i| &cluster.nodes[i]).collect();
    let meta = client_for(&others).await.topic_metadata("orders").await.unwrap();
    let now = &meta.partitions[0].leader_addr;
    assert!(
        others.iter().any(|n| &n.client_addr() == now),
        "no surviving broker leads orders/0 right after the graceful stop: {meta:?}"
    );
}

/// A broker restarted on a different address rejoins under the same id, and
/// one that was down while the log was purged catches up from a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_broker_catches_up_from_snapshot_on_a_new_address() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(21, 3));
    let all: Vec<&NodeAddrs> = cluster.nodes.iter().collect();
    let client = client_for(&all).await;
    client.create_topic("events", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Stop node 2, then write well past the snapshot threshold (200 entries).
    cluster.procs[2].as_mut().unwrap().kill9();
    let client = client_for(&all[..2]).await;
    let old = cluster.nodes[2].client_addr();
    for _ in 0..100 {
        let meta = client.topic_metadata("events").await.unwrap();
        if meta.partitions[0].leader_addr != old && meta.partitions[0].state == "online" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut acked = Vec::new();
    for i in 0..600 {
        let value = format!("e{i:05}");
        let meta = client
            .produce_to_partition("events", 0, "", value.clone())
            .await
            .unwrap();
        acked.push((meta.offset, value));
    }

    // Node 2 comes back on a new address with the same id and data.
    let moved = NodeAddrs::on("127.0.0.25");
    cluster.procs[2] = Some(start(2, &moved, &cluster.seeds, &cluster.dirs[2], &[]));
    tokio::task::block_in_place(|| {
        wait_until("the moved broker is ready", Duration::from_secs(60), || {
            is_ready(&moved)
        })
    });
    let last = acked.last().unwrap().0;
    // Generous (60 s): catching up on a loaded 2-core CI machine running two clusters.
    let records = read_until_offset(last, || read_all(&moved, "events")).await;
    if records != acked {
        for (i, proc) in cluster.procs.iter().enumerate() {
            if let Some(proc) = proc {
                eprintln!("---- node {i} log ----\n{}", proc.log_text());
            }
        }
    }
    assert_eq!(records, acked, "the moved broker did not catch up");

    // The cluster knows node 2 by its new address.
    let mut addr_updated = false;
    for _ in 0..600 {
        let status = client.cluster_status().await.unwrap();
        if status
            .nodes
            .iter()
            .any(|n| n.node_id == "2" && n.address == moved.client_addr())
        {
            addr_updated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(addr_updated, "membership still has node 2's old address");
}

/// Decommissioning a broker moves its replicas away (through the admin API)
/// and removes it: no partition is left under-replicated and the data stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decommission_moves_replicas_and_removes_the_broker() {
    let cluster = tokio::task::block_in_place(|| Cluster::start(31, 4));
    let admin_addr = format!("{}:{}", cluster.nodes[0].ip, cluster.nodes[0].admin);
    let admin = flymq_client::AdminClient::connect(&admin_addr, Duration::from_secs(5))
        .await
        .expect("admin API");
    let mut topic = flymq_client::admin::NewTopic::new("jobs", 4);
    topic.replication_factor = 3;
    admin.create_topic(topic).await.expect("create topic");
    let all: Vec<&NodeAddrs> = cluster.nodes.iter().collect();
    let client = client_for(&all).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Growing the topic starts replicated groups for the new partitions.
    let grown = admin.add_partitions("jobs", 6).await.expect("add partitions");
    assert_eq!(grown.partitions, 6);
    let retention = flymq_client::admin::TopicConfig {
        retention_ms: 86_400_000,
        retention_bytes: 0,
        message_ttl_ms: 0,
        max_deliveries: 0,
    };
    admin
        .update_topic_config("jobs", retention)
        .await
        .expect("update config");
    let other_admin = flymq_client::AdminClient::connect(
        &format!("{}:{}", cluster.nodes[2].ip, cluster.nodes[2].admin),
        Duration::from_secs(5),
    )
    .await
    .expect("admin API of node 2");
    let mut seen = None;
    for _ in 0..100 {
        let info = other_admin.describe_topic("jobs").await.unwrap();
        let done = info.partitions == 6
            && info.config == Some(retention)
            && info
                .partition_info
                .iter()
                .all(|p| p.has_leader && p.replicas.len() == 3);
        seen = Some(info);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let info = seen.unwrap();
    assert!(
        info.partitions == 6 && info.config == Some(retention),
        "node 2 does not see the grown topic: {info:?}"
    );
    assert!(
        info.partition_info
            .iter()
            .all(|p| p.has_leader && p.replicas.len() == 3),
        "a new partition has no leader or too few replicas: {info:?}"
    );
    for p in 0..6 {
        produce_retrying(&client, "jobs", p, format!("job-{p}")).await;
    }

    let moved = admin.decommission(3).await.expect("decommission node 3");
    assert!(
        moved > 0,
        "node 3 held no replica of 4 partitions with RF 3 on 4 brokers"
    );
    // Asked again (the operator does after its own restart mid-way): NotFound,
    // which it takes as done.
    match admin.decommission(3).await {
        Err(flymq_client::Error::Admin { code, message, .. }) => {
            assert_eq!(code, tonic::Code::NotFound, "{message}");
            assert!(message.contains("not a member"), "{message}");
        }
        other => panic!("a second decommission of node 3 answered {other:?}"),
    }

    let mut last = None;
    for _ in 0..100 {
        let status = admin.cluster_status().await.unwrap();
        let done = status.members.len() == 3 && status.under_replicated.is_empty();
        last = Some(status);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = last.unwrap();
    assert_eq!(status.members.len(), 3, "node 3 still a member: {status:?}");
    assert!(status.under_replicated.is_empty(), "under-replicated: {status:?}");
    let info = admin.describe_topic("jobs").await.unwrap();
    for p in &info.partition_info {
        assert!(
            !p.replicas.contains(&3),
            "partition {} still on node 3: {p:?}",
            p.partition
        );
        assert_eq!(p.replicas.len(), 3, "partition {} lost a replica: {p:?}", p.partition);
    }
    let survivors: Vec<&NodeAddrs> = cluster.nodes[..3].iter().collect();
    let client = client_for(&survivors).await;
    for p in 0..6 {
        let fetched = client.fetch("jobs", p, 0, 10, "").await.expect("fetch");
        assert_eq!(fetched.records.len(), 1, "partition {p} lost its record");
    }
}

/// Five brokers: every one joins, leaders spread, and losing two (a
/// minority) leaves the metadata group and a replication-factor-5 topic
/// available with no acknowledged record lost; the two catch up on return.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_brokers_survive_losing_two() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(41, 5));
    let admin_addr = format!("{}:{}", cluster.nodes[0].ip, cluster.nodes[0].admin);
    let admin = flymq_client::AdminClient::connect(&admin_addr, Duration::from_secs(5))
        .await
        .expect("admin API");
    let status = admin.cluster_status().await.unwrap();
    assert_eq!(status.members.len(), 5, "{status:?}");

    let mut spread = flymq_client::admin::NewTopic::new("spread", 5);
    spread.replication_factor = 3;
    let info = admin.create_topic(spread).await.expect("create spread");
    let preferred: HashSet<u64> = info
        .partition_info
        .iter()
        .filter_map(|p| p.replicas.first().copied())
        .collect();
    assert_eq!(
        preferred.len(),
        5,
        "5 partitions should prefer 5 different leaders: {info:?}"
    );

    // A target that is not a member is refused by name, in both forms.
    for (what, answer) in [
        ("--from 0 --to 99", admin.transfer_leadership_from(0, 99).await),
        ("--group 0 --to 99", admin.transfer_leadership(0, 99).await),
    ] {
        match answer {
            Err(flymq_client::Error::Admin { code, message, .. }) => {
                assert_eq!(code, tonic::Code::InvalidArgument, "{what}: {message}");
                assert!(message.contains("node 99 is not a member"), "{what}: {message}");
            }
            other => panic!("transfer-leader {what} answered {other:?}"),
        }
    }

    // Moving every group off a node sends each to the node asked for,
    // where that node is a voter of the group.
    let led_by_0 = async || {
        for _ in 0..100 {
            let info = admin.describe_topic("spread").await.expect("describe spread");
            if let Some(p) = info.partition_info.into_iter().find(|p| p.has_leader && p.leader == 0) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no partition of 'spread' is led by node 0");
    };
    let moved = led_by_0().await;
    // The highest other replica: not the one the broker picks unasked.
    let to = moved.replicas.iter().copied().filter(|r| *r != 0).max().unwrap();
    let transferred = admin
        .transfer_leadership_from(0, to)
        .await
        .expect("transfer-leader --from 0");
    assert!(transferred >= 1, "nothing transferred");
    let mut leader = None;
    for _ in 0..100 {
        let info = admin.describe_topic("spread").await.expect("describe spread");
        let p = &info.partition_info[moved.partition as usize];
        leader = p.has_leader.then_some(p.leader);
        if leader == Some(to) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        leader,
        Some(to),
        "partition {} of 'spread' was to move to node {to}",
        moved.partition
    );

    // Asked to move a node's groups to itself, they go to another voter:
    // the partition, now led by `to`, moves off it.
    let transferred = admin
        .transfer_leadership_from(to, to)
        .await
        .expect("transfer-leader --from N --to N");
    assert!(transferred >= 1, "node {to} led no group; {transferred} transferred");
    let mut leader = Some(to);
    for _ in 0..100 {
        let info = admin.describe_topic("spread").await.expect("describe spread");
        let p = &info.partition_info[moved.partition as usize];
        leader = p.has_leader.then_some(p.leader);
        if leader.is_some_and(|l| l != to) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        leader.is_some_and(|l| l != to && moved.replicas.contains(&l)),
        "partition {} of 'spread' was to move off node {to} to another replica: {leader:?}",
        moved.partition
    );

    let mut wide = flymq_client::admin::NewTopic::new("wide", 1);
    wide.replication_factor = 5;
    admin.create_topic(wide).await.expect("create wide");
    let all: Vec<&NodeAddrs> = cluster.nodes.iter().collect();
    let client = client_for(&all).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let value = format!("w{i:05}");
        acked.push((produce_retrying(&client, "wide", 0, value.clone()).await, value));
    }

    // Lose two brokers (one of them the partition's leader when possible).
    let meta = client.topic_metadata("wide").await.unwrap();
    let leader = cluster.index_of_client(&meta.partitions[0].leader_addr).unwrap_or(1);
    let victims = if leader == 0 {
        [0, 1]
    } else {
        [leader, (leader % 4) + 1]
    };
    for v in victims {
        cluster.procs[v].as_mut().unwrap().kill9();
    }
    let survivors: Vec<&NodeAddrs> = (0..5)
        .filter(|i| !victims.contains(i))
        .map(|i| &cluster.nodes[i])
        .collect();
    let client = client_for(&survivors).await;
    for i in 20..60 {
        let value = format!("w{i:05}");
        // Never resent: an acknowledged value must be stored exactly once.
        match client.produce_to_partition("wide", 0, "", value.clone()).await {
            Ok(meta) => acked.push((meta.offset, value)),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(
        acked.len() >= 40,
        "only {} writes acknowledged with 3 of 5 brokers",
        acked.len()
    );
    client
        .create_topic("after", 1)
        .await
        .expect("the metadata group still has a majority");

    // The two come back and catch up.
    for v in victims {
        let node = cluster.nodes[v].clone();
        cluster.procs[v] = Some(start(v as u32, &node, &cluster.seeds, &cluster.dirs[v], &[]));
    }
    let last = acked.iter().map(|(o, _)| *o).max().unwrap();
    for v in victims {
        let node = cluster.nodes[v].clone();
        tokio::task::block_in_place(|| {
            wait_until(&format!("node {v} is ready again"), Duration::from_secs(60), || {
                is_ready(&node)
            })
        });
        let records = read_until_offset(last, || read_all(&node, "wide")).await;
        assert_holds_acked(&format!("node {v}"), &records, &acked);
    }
}

/// Bad requests on the inter-broker port (9093) get clear statuses and
/// leave the broker serving: no envelope, another cluster's id, a stale
/// node id, an unknown group, undecodable Raft, AppendEntries-stream, forward, snapshot
/// and group-management payloads, joins from another cluster, and callers
/// without the cluster secret or with a wrong one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_inter_broker_requests_are_refused() {
    use flymq_proto::grpc::cluster::cluster_client::ClusterClient;
    use flymq_proto::grpc::cluster::{
        AppendMessage, Envelope, ForwardRequest, FrameRequest, JoinRequest, ManageRequest, NodeAddress, RaftKind,
        RaftRequest, SnapshotChunk,
    };
    use tonic::Code;

    let cluster = tokio::task::block_in_place(|| Cluster::start(51, 1));
    let node = &cluster.nodes[0];
    let health: serde_json::Value = serde_json::from_str(&http_get(node.health_addr(), "/health").unwrap().1).unwrap();
    let cluster_id = health["cluster_id"].as_str().unwrap().to_owned();
    assert!(!cluster_id.is_empty(), "{health}");
    // Raft addresses members: broker id and incarnation.
    let me = health["member_id"].as_u64().expect("member id in /health");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.cluster_addr()))
        .expect("endpoint")
        .connect()
        .await
        .expect("cluster port");
    let with_secret = |secret: Option<&'static str>| {
        move |mut request: tonic::Request<()>| {
            if let Some(secret) = secret {
                request
                    .metadata_mut()
                    .insert("x-flymq-cluster-secret", secret.parse().expect("ascii"));
            }
            Ok::<_, tonic::Status>(request)
        }
    };
    let mut rpc = ClusterClient::with_interceptor(channel.clone(), with_secret(Some(TEST_CLUSTER_SECRET)));
    let envelope = |cluster: &str, to: u64, group: u64| Envelope {
        cluster_id: cluster.to_owned(),
        from_node: 7,
        to_node: to,
        group_id: group,
    };
    let raft = |envelope: Option<Envelope>, kind: RaftKind, payload: &[u8]| RaftRequest {
        envelope,
        kind: kind as i32,
        payload: payload.to_vec().into(),
    };
    fn expect<T>(result: Result<tonic::Response<T>, tonic::Status>, code: Code, text: &str) {
        let Err(status) = result else {
            panic!("a bad request was accepted (expected {code:?} '{text}')");
        };
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(text), "'{}' lacks '{text}'", status.message());
    }

    // A caller without the cluster secret, or with another cluster's, is
    // refused before anything is looked at.
    for (secret, text) in [
        (None, "without the cluster secret"),
        (Some("another-clusters-secret-0123456789"), "wrong cluster secret"),
    ] {
        let mut stranger = ClusterClient::with_interceptor(channel.clone(), with_secret(secret));
        expect(
            stranger
                .raft(raft(Some(envelope(&cluster_id, me, 0)), RaftKind::Vote, b""))
                .await,
            Code::Unauthenticated,
            text,
        );
        expect(
            stranger
                .join(JoinRequest {
                    cluster_id: cluster_id.clone(),
                    node: None,
                })
                .await,
            Code::Unauthenticated,
            text,
        );
        expect(
            stranger
                .install_snapshot(tokio_stream::iter(Vec::<SnapshotChunk>::new()))
                .await,
            Code::Unauthenticated,
            text,
        );
        expect(
            stranger
                .append_stream(tokio_stream::iter(Vec::<AppendMessage>::new()))
                .await,
            Code::Unauthenticated,
            text,
        );
    }
    expect(
        rpc.raft(raft(None, RaftKind::Vote, b"")).await,
        Code::InvalidArgument,
        "without an envelope",
    );
    expect(
        rpc.raft(raft(Some(envelope("another-cluster", 0, 0)), RaftKind::Vote, b""))
            .await,
        Code::FailedPrecondition,
        "cluster id mismatch",
    );
    expect(
        rpc.raft(raft(Some(envelope(&cluster_id, 9, 0)), RaftKind::Vote, b""))
            .await,
        Code::FailedPrecondition,
        "now belongs to",
    );
    expect(
        rpc.raft(raft(Some(envelope(&cluster_id, me, 424242)), RaftKind::Vote, b""))
            .await,
        Code::NotFound,
        "group 424242 is not hosted",
    );
    for kind in [
        RaftKind::AppendEntries,
        RaftKind::Vote,
        RaftKind::PreVote,
        RaftKind::TransferLeader,
    ] {
        expect(
            rpc.raft(raft(Some(envelope(&cluster_id, me, 0)), kind, &[0xff; 64]))
                .await,
            Code::InvalidArgument,
            "undecodable payload",
        );
    }
    let mut unknown_kind = raft(Some(envelope(&cluster_id, me, 0)), RaftKind::Vote, b"");
    unknown_kind.kind = 999;
    expect(
        rpc.raft(unknown_kind).await,
        Code::InvalidArgument,
        "unknown Raft request kind",
    );
    expect(
        rpc.forward(ForwardRequest {
            envelope: Some(envelope(&cluster_id, me, 0)),
            commands: vec![0xff; 32],
            hops: 1,
        })
        .await,
        Code::InvalidArgument,
        "undecodable payload",
    );
    let garbage_snapshot = SnapshotChunk {
        envelope: Some(envelope(&cluster_id, me, 0)),
        header: vec![0xff; 16],
        data: vec![1, 2, 3],
    };
    expect(
        rpc.install_snapshot(tokio_stream::iter(vec![garbage_snapshot])).await,
        Code::InvalidArgument,
        "undecodable payload",
    );
    expect(
        rpc.install_snapshot(tokio_stream::iter(Vec::<SnapshotChunk>::new()))
            .await,
        Code::InvalidArgument,
        "empty snapshot stream",
    );
    // A pipelined AppendEntries stream is checked on its first message.
    let append = |envelope: Option<Envelope>, payload: &[u8]| {
        tokio_stream::iter(vec![AppendMessage {
            envelope,
            payload: payload.to_vec().into(),
        }])
    };
    expect(
        rpc.append_stream(tokio_stream::iter(Vec::<AppendMessage>::new())).await,
        Code::InvalidArgument,
        "empty AppendEntries stream",
    );
    expect(
        rpc.append_stream(futures::stream::pending::<AppendMessage>()).await,
        Code::DeadlineExceeded,
        "no first message within 5 s",
    );
    expect(
        rpc.append_stream(append(None, b"")).await,
        Code::InvalidArgument,
        "without an envelope",
    );
    expect(
        rpc.append_stream(append(Some(envelope("another-cluster", me, 0)), b""))
            .await,
        Code::FailedPrecondition,
        "cluster id mismatch",
    );
    expect(
        rpc.append_stream(append(Some(envelope(&cluster_id, 9, 0)), b"")).await,
        Code::FailedPrecondition,
        "now belongs to",
    );
    expect(
        rpc.append_stream(append(Some(envelope(&cluster_id, me, 424242)), b""))
            .await,
        Code::NotFound,
        "group 424242 is not hosted",
    );
    expect(
        rpc.append_stream(append(Some(envelope(&cluster_id, me, 0)), &[0xff; 64]))
            .await,
        Code::InvalidArgument,
        "undecodable payload",
    );
    expect(
        rpc.forward_frame(FrameRequest::default()).await,
        Code::Unimplemented,
        "",
    );
    // Group management: an op this broker cannot decode (what a newer
    // broker's op looks like to an older one), and one for a group it lacks.
    expect(
        rpc.manage(ManageRequest {
            envelope: Some(envelope(&cluster_id, me, 0)),
            op: vec![0xff; 8],
        })
        .await,
        Code::InvalidArgument,
        "undecodable payload",
    );
    // postcard `GroupOp::ReadIndex` (variant 2): the read index of the
    // metadata group, which this one-broker cluster leads.
    const READ_INDEX_OP: u8 = 2;
    expect(
        rpc.manage(ManageRequest {
            envelope: Some(envelope(&cluster_id, me, 424242)),
            op: vec![READ_INDEX_OP],
        })
        .await,
        Code::NotFound,
        "group 424242 is not hosted",
    );
    let read_index = rpc
        .manage(ManageRequest {
            envelope: Some(envelope(&cluster_id, me, 0)),
            op: vec![READ_INDEX_OP],
        })
        .await
        .expect("read index of the metadata group")
        .into_inner()
        .result;
    // A postcard u64 is a LEB128 varint; the metadata log has entries.
    let index = read_index
        .iter()
        .enumerate()
        .fold(0u64, |v, (i, b)| v | (u64::from(b & 0x7f) << (7 * i)));
    assert!(index > 0, "read index {index} ({read_index:?})");
    let stranger = NodeAddress {
        node_id: 9,
        cluster_addr: "127.0.0.59:1".into(),
        client_addr: "127.0.0.59:2".into(),
        admin_addr: "127.0.0.59:3".into(),
    };
    expect(
        rpc.join(JoinRequest {
            cluster_id: "another-cluster".into(),
            node: Some(stranger),
        })
        .await,
        Code::FailedPrecondition,
        "refusing to join",
    );
    expect(
        rpc.join(JoinRequest {
            cluster_id: cluster_id.clone(),
            node: None,
        })
        .await,
        Code::InvalidArgument,
        "join without a node",
    );

    // Still serving, with one member.
    assert!(is_ready(node));
    let client = client_for(&[node]).await;
    client
        .create_topic("still-fine", 1)
        .await
        .expect("create after bad requests");
    produce_retrying(&client, "still-fine", 0, "ok".into()).await;
    assert_eq!(client.cluster_status().await.unwrap().nodes.len(), 1);
}

/// No broker of `cluster` has a group open besides the metadata group.
fn assert_only_the_metadata_group(cluster: &Cluster) {
    for i in 0..cluster.nodes.len() {
        let groups = cluster.status(i)["groups"].as_array().cloned().unwrap_or_default();
        assert_eq!(groups.len(), 1, "node {i} opened a group besides metadata: {groups:?}");
    }
}

/// Creates `topic` with 3 partitions of 100 records each, then deletes it.
async fn create_fill_and_delete(client: &Client, topic: &str) {
    client.create_topic(topic, 3).await.expect("create");
    for partition in 0..3 {
        let records = (0..100).map(|i| (bytes::Bytes::new(), bytes::Bytes::from(format!("old-{i}"))));
        client
            .produce_batch(topic, Some(partition), records.collect())
            .await
            .expect("produce");
    }
    client.delete_topic(topic).await.expect("delete");
}

/// Deleting a topic drops every replica's records and Raft state: after
/// every broker logged the drop and all were killed with `kill -9` and
/// restarted, no broker opens a group of it again, the topic stays gone,
/// and a new topic of the same name starts empty at offset 0 everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_topic_stays_deleted_after_a_crash() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(211, 3));
    let nodes = cluster.nodes.clone();
    let all: Vec<&NodeAddrs> = nodes.iter().collect();
    let client = client_for(&all).await;
    create_fill_and_delete(&client, "gone").await;
    tokio::task::block_in_place(|| {
        wait_until("every broker dropped its 3 replicas", Duration::from_secs(60), || {
            cluster.procs.iter().all(|p| {
                let log = p.as_ref().expect("running").log_text();
                log.matches("stopped partition group (no longer a replica here)")
                    .count()
                    >= 3
            })
        })
    });
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.restart(i, &[]);
    }
    tokio::task::block_in_place(|| {
        wait_until("the restarted brokers are ready", Duration::from_secs(60), || {
            nodes.iter().all(is_ready)
        })
    });
    assert_only_the_metadata_group(&cluster);
    let client = client_for(&all).await;
    assert!(!client.list_topics().await.expect("list").contains(&"gone".to_owned()));
    client.create_topic("gone", 3).await.expect("create again");
    let first = produce_retrying(&client, "gone", 0, "new-0".into()).await;
    assert_eq!(first, 0, "the new topic starts at offset 0");
    for (i, node) in nodes.iter().enumerate() {
        let via = client_for(&[node]).await;
        let mut seen = Vec::new();
        for _ in 0..100 {
            // Errors (the new topic not yet known here) and an empty read
            // (not yet replicated) are retried.
            if let Ok(fetched) = via.fetch("gone", 0, 0, 1000, "").await
                && !fetched.records.is_empty()
            {
                seen = fetched.records.iter().map(|r| (r.offset, r.value.clone())).collect();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            seen,
            vec![(0, bytes::Bytes::from("new-0"))],
            "node {i}: {}",
            cluster.logs()
        );
        for partition in 1..3 {
            let mut fetched = via.fetch("gone", partition, 0, 1000, "").await;
            for _ in 0..100 {
                if fetched.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                fetched = via.fetch("gone", partition, 0, 1000, "").await;
            }
            let fetched = fetched.unwrap_or_else(|e| panic!("node {i} partition {partition}: {e}"));
            assert!(
                fetched.records.is_empty(),
                "node {i} partition {partition} holds old records"
            );
        }
    }
}

/// A broker that stopped after a topic's deletion was applied but before it
/// dropped its replicas (simulated by a test fault that keeps them) deletes
/// their Raft logs when it starts again: nothing of the deleted topic stays
/// on disk, and a topic of the same name starts empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_of_a_deleted_topic_left_by_a_stop_are_swept_at_start() {
    let mut cluster =
        tokio::task::block_in_place(|| Cluster::start_with(181, 3, &[("FLYMQ_TEST_KEEP_DROPPED_REPLICAS", "1")]));
    let nodes = cluster.nodes.clone();
    let all: Vec<&NodeAddrs> = nodes.iter().collect();
    let client = client_for(&all).await;
    create_fill_and_delete(&client, "left").await;
    tokio::task::block_in_place(|| {
        wait_until("every broker applied the deletion", Duration::from_secs(30), || {
            (0..3).all(|i| cluster.status(i)["topics"] == 0)
        })
    });
    for i in 0..3 {
        let groups = cluster.status(i)["groups"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            groups.len(),
            4,
            "node {i} kept its 3 replicas open (the test fault): {groups:?}"
        );
    }
    // A graceful stop flushes the applied deletion: the next start reads a
    // catalog without the topic, and Raft logs of its partitions.
    for i in 0..3 {
        let proc = cluster.procs[i].as_mut().expect("running");
        assert!(
            proc.terminate(Duration::from_secs(30)).is_some(),
            "node {i} did not stop"
        );
        cluster.procs[i] = None;
    }
    cluster.env.clear();
    for i in 0..3 {
        cluster.restart(i, &[]);
    }
    tokio::task::block_in_place(|| {
        wait_until("every broker swept the 3 replicas", Duration::from_secs(60), || {
            cluster.procs.iter().all(|p| {
                let log = p.as_ref().expect("running").log_text();
                log.matches("removed a deleted topic's replica left on disk").count() == 3
            })
        });
        wait_until("the restarted brokers are ready", Duration::from_secs(60), || {
            nodes.iter().all(is_ready)
        })
    });
    assert_only_the_metadata_group(&cluster);
    let client = client_for(&all).await;
    client.create_topic("left", 3).await.expect("create again");
    let first = produce_retrying(&client, "left", 0, "new-0".into()).await;
    assert_eq!(first, 0, "the new topic starts at offset 0");
    // Restarting again finds nothing left to sweep.
    for i in 0..3 {
        cluster.kill9(i);
        cluster.restart(i, &[]);
    }
    tokio::task::block_in_place(|| {
        wait_until("the brokers are ready again", Duration::from_secs(60), || {
            nodes.iter().all(is_ready)
        })
    });
    for (i, proc) in cluster.procs.iter().enumerate() {
        let log = proc.as_ref().expect("running").log_text();
        assert!(
            !log.contains("removed a deleted topic's replica"),
            "node {i} swept again: {log}"
        );
    }
}

/// Scale-down then scale-up with the volume kept (the FlyMQCluster's
/// default `storage.retention.whenScaled: Retain`): broker 3 is
/// decommissioned, its process stopped at once (the pod deleted, its
/// volume kept), and started again on the same data directory. It rejoins
/// the cluster as a voter, is ready only then, serves the data, takes
/// replicas of a new topic, and deletes the copies of the replicas moved
/// off it that its stop left on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decommissioned_broker_restarted_on_its_kept_volume_rejoins() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(91, 4));
    let admin = flymq_client::AdminClient::connect(&cluster.admin_addr(0), Duration::from_secs(5))
        .await
        .expect("admin API");
    let mut topic = flymq_client::admin::NewTopic::new("kept", 4);
    topic.replication_factor = 3;
    admin.create_topic(topic).await.expect("create topic");
    let all: Vec<&NodeAddrs> = cluster.nodes.iter().collect();
    let client = client_for(&all).await;
    for p in 0..4 {
        produce_retrying(&client, "kept", p, format!("kept-{p}")).await;
    }
    let moved = admin.decommission(3).await.expect("decommission node 3");
    assert!(moved > 0, "node 3 held no replica");
    // The pod goes away right after the decommission, before the broker
    // dropped the replicas moved off it (it waits 15 s to do so).
    let open_before = open_groups(&cluster, 3);
    cluster.kill9(3);

    cluster.restart(3, &[]);
    let node3 = cluster.nodes[3].clone();
    tokio::task::block_in_place(|| wait_until("node 3 is ready again", Duration::from_secs(90), || is_ready(&node3)));
    let status = admin.cluster_status().await.expect("cluster status");
    assert_eq!(
        status.members.len(),
        4,
        "node 3 reported ready without being a member: {status:?}\n{}",
        cluster.logs()
    );
    assert!(
        status.members.iter().any(|m| m.node_id == 3 && m.role == "voter"),
        "node 3 is not a voter: {status:?}"
    );

    // Node 3 serves the data of the replicas that stayed elsewhere.
    let via3 = client_for(&[&node3]).await;
    for p in 0..4 {
        let fetched = via3.fetch("kept", p, 0, 10, "").await.expect("fetch via node 3");
        assert_eq!(fetched.records.len(), 1, "partition {p} via node 3");
    }
    // A new topic's replicas land on it again.
    let mut topic = flymq_client::admin::NewTopic::new("after", 4);
    topic.replication_factor = 4;
    admin.create_topic(topic).await.expect("create a topic on 4 brokers");
    for p in 0..4 {
        produce_retrying(&via3, "after", p, format!("after-{p}")).await;
    }
    // The copies of the replicas moved off it are deleted: at the end only
    // the metadata group and the new topic's replicas are open there.
    let mut wanted: Vec<String> = std::iter::once("metadata".to_owned())
        .chain((0..4).map(|p| format!("after/{p}")))
        .collect();
    wanted.sort();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let open = open_groups(&cluster, 3);
        let log = cluster.procs[3].as_ref().expect("running").log_text();
        let reopened = log.matches("a replica moved to other brokers was left on disk").count();
        let removed = log
            .matches("stopped partition group (no longer a replica here)")
            .count();
        if open == wanted && (reopened, removed) == (moved as usize, moved as usize) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 3 still holds replicas moved off it: open {open:?} (before the stop {open_before:?}), \
             {reopened} reopened and {removed} removed of {moved} moved\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The names of the groups open on broker `i`, sorted.
fn open_groups(cluster: &Cluster, i: usize) -> Vec<String> {
    let mut names: Vec<String> = cluster.status(i)["groups"]
        .as_array()
        .map(|groups| {
            groups
                .iter()
                .filter_map(|g| g["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// ClusterStatus tells the same story whichever broker answers: a follower
/// forwards it to the metadata leader, which takes each partition's state
/// from that partition's leader. A killed broker shows down, and every
/// partition with a replica on it under-replicated, until it is back. The
/// metadata leader's own view of a partition it only follows (what it
/// reports in CLUSTER_METADATA) leaves the dead broker out of sync too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_status_from_a_follower_shows_a_dead_broker_and_its_partitions() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(36, 3));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let meta_leader = loop {
        if let Some(i) = (0..3).find(|i| cluster.status(*i)["role"].as_str() == Some("leader")) {
            break i;
        }
        assert!(std::time::Instant::now() < deadline, "no metadata leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (follower, victim) = ((meta_leader + 1) % 3, (meta_leader + 2) % 3);
    let admin = flymq_client::AdminClient::connect(&cluster.admin_addr(follower), Duration::from_secs(5))
        .await
        .expect("admin API of a follower");
    admin
        .create_topic(flymq_client::admin::NewTopic::new("watched", 3))
        .await
        .expect("create");
    let all: Vec<_> = cluster.nodes.iter().collect();
    let client = client_for(&all).await;
    for p in 0..3 {
        produce_retrying(&client, "watched", p, format!("record-{p}")).await;
    }
    let healthy = |s: &flymq_proto::grpc::admin::ClusterStatusReply| {
        s.members.len() == 3 && s.members.iter().all(|m| m.health == "up") && s.under_replicated.is_empty()
    };
    let mut last = None;
    wait_until_status(&admin, "every broker up, nothing under-replicated", &mut last, healthy).await;

    cluster.kill9(victim);
    let dead = |s: &flymq_proto::grpc::admin::ClusterStatusReply| {
        let health = |b: usize| {
            s.members
                .iter()
                .find(|m| m.node_id == b as u64)
                .map(|m| m.health.as_str())
        };
        let mut under = s.under_replicated.clone();
        under.sort();
        health(victim) == Some("down")
            && health(meta_leader) == Some("up")
            && health(follower) == Some("up")
            && under == ["watched/0", "watched/1", "watched/2"]
    };
    wait_until_status(
        &admin,
        "the killed broker down, its partitions under-replicated",
        &mut last,
        dead,
    )
    .await;
    let answered_by = last.as_ref().map(|s| s.node_id);
    assert_eq!(
        answered_by,
        Some(meta_leader as u64),
        "the follower forwards ClusterStatus to the metadata leader"
    );

    // A partition the metadata leader only follows: it cannot see how far
    // the replicas got, but it knows the victim is down, so its own
    // CLUSTER_METADATA leaves the victim out of the in-sync list (the view
    // ClusterStatus falls back on when a partition's leader cannot be asked,
    // e.g. an older broker during a rolling upgrade).
    let watched0 = last
        .as_ref()
        .and_then(|s| s.groups.iter().find(|g| g.name == "watched/0"))
        .expect("watched/0 in the status")
        .group_id;
    let from_meta_leader = client_for(&[&cluster.nodes[meta_leader]]).await;
    let label = |b: usize| b.to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let _ = admin.transfer_leadership(watched0, follower as u64).await;
        let partition = from_meta_leader
            .topic_metadata("watched")
            .await
            .ok()
            .and_then(|t| t.partitions.into_iter().find(|p| p.partition == 0));
        if let Some(p) = &partition
            && p.leader_id == label(follower)
        {
            let mut isr = p.isr.clone();
            isr.sort();
            let mut expected = vec![label(meta_leader), label(follower)];
            expected.sort();
            assert_eq!(
                isr, expected,
                "in-sync replicas of watched/0 as the metadata leader reports them"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "watched/0 never led by broker {follower}: {partition:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    tokio::task::block_in_place(|| cluster.restart(victim, &[]));
    wait_until_status(
        &admin,
        "the broker back up, nothing under-replicated",
        &mut last,
        healthy,
    )
    .await;
}

/// Polls `admin`'s ClusterStatus until `check` holds (30 s); keeps the
/// last answer in `last` for the failure message and later checks.
async fn wait_until_status(
    admin: &flymq_client::AdminClient,
    what: &str,
    last: &mut Option<flymq_proto::grpc::admin::ClusterStatusReply>,
    check: impl Fn(&flymq_proto::grpc::admin::ClusterStatusReply) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(status) = admin.cluster_status().await {
            let done = check(&status);
            *last = Some(status);
            if done {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}; last ClusterStatus: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
