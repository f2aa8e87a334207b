//! Encryption at rest in a 3-broker cluster of real `flymq` processes: the
//! records, the Raft log of every group and the snapshot a lagging broker
//! installs leave no plaintext in any file of any data directory, and
//! every broker reads every record back after a full restart with the key.
//! (The standalone cases and the refusals are in broker/tests/encryption.rs.)

use std::path::Path;
use std::time::Duration;

use flymq_tests::cluster::{Cluster, NodeAddrs, client_for, is_node_ready, read_all, read_until_offset, wait_until};

const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// Files under `dir` (recursively) whose bytes contain `needle`, and how
/// many files were scanned.
fn files_containing(dir: &Path, needle: &[u8]) -> (usize, Vec<String>) {
    let mut scanned = 0;
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            scanned += 1;
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(path.display().to_string());
            }
        }
    }
    (scanned, hits)
}

async fn produce(client: &flymq_client::Client, key: String, value: String) -> u64 {
    let mut last = None;
    for _ in 0..50 {
        match client
            .produce_to_partition("vault", 0, key.clone(), value.clone())
            .await
        {
            Ok(meta) => return meta.offset,
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("produce kept failing: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encrypted_cluster_leaves_no_plaintext_in_records_raft_logs_or_snapshots() {
    let marker = format!("CLUSTER-PLAINTEXT-MARKER-{:016x}", rand::random::<u64>());
    // Snapshots every 20 entries, so the leaders purge their Raft logs and
    // a broker that was down catches up from a snapshot.
    let env = [("FLYMQ_ENCRYPTION_KEY", KEY), ("FLYMQ_RAFT_SNAPSHOT_LOGS", "20")];
    let mut cluster = tokio::task::block_in_place(|| Cluster::start_with(141, 3, &env));
    let nodes = cluster.nodes.clone();
    let all: Vec<&NodeAddrs> = nodes.iter().collect();
    let client = client_for(&all).await;
    client.create_topic("vault", 1).await.expect("create");
    let mut acked = Vec::new();
    for i in 0..40 {
        let value = format!("v{i:04}-{marker}");
        let offset = produce(&client, format!("k{i}-{marker}"), value.clone()).await;
        acked.push((offset, value));
    }

    // Node 2 misses the next 200 entries.
    cluster.kill9(2);
    let survivors = client_for(&all[..2]).await;
    for i in 40..240 {
        let value = format!("v{i:04}-{marker}");
        let offset = produce(&survivors, format!("k{i}-{marker}"), value.clone()).await;
        acked.push((offset, value));
    }
    cluster.restart(2, &[]);
    let last = acked.last().expect("acked").0;
    let records = read_until_offset(last, || read_all(&cluster.nodes[2], "vault")).await;
    assert_eq!(records, acked, "node 2 did not catch up:\n{}", cluster.logs());
    let log = cluster.procs[2].as_ref().expect("running").log_text();
    assert!(
        log.contains("snapshot"),
        "node 2 was expected to install a snapshot:\n{log}"
    );

    // Stop every broker, then scan every file of every data directory.
    for proc in cluster.procs.iter_mut().flatten() {
        assert!(
            proc.terminate(Duration::from_secs(30)).is_some(),
            "a broker did not stop"
        );
    }
    for i in 0..3 {
        cluster.procs[i] = None;
    }
    for dir in &cluster.dirs {
        let (scanned, hits) = files_containing(dir, marker.as_bytes());
        assert!(
            scanned >= 5,
            "expected RocksDB files in {}, found {scanned}",
            dir.display()
        );
        assert!(hits.is_empty(), "plaintext marker found in {hits:?}");
    }

    // Everything reads back, from every broker, after a restart with the key.
    for i in 0..3 {
        cluster.restart(i, &[]);
    }
    for (i, node) in cluster.nodes.iter().enumerate() {
        tokio::task::block_in_place(|| {
            wait_until(&format!("node {i} is ready again"), Duration::from_secs(60), || {
                is_node_ready(node)
            })
        });
    }
    for (i, node) in cluster.nodes.iter().enumerate() {
        let records = read_until_offset(last, || read_all(node, "vault")).await;
        assert_eq!(records, acked, "node {i} after the restart:\n{}", cluster.logs());
    }
}

/// The real `flymq` process started with another key than its data
/// directory's exits before it is ready, naming the key id, never the key.
#[test]
fn a_broker_process_started_with_another_key_refuses_naming_the_key_id() {
    let dir = tempfile::tempdir().expect("tmp");
    let args = |dir: &Path| -> Vec<String> {
        [
            "--data-dir",
            &dir.to_string_lossy(),
            "--bind-addr",
            "127.0.0.1:0",
            "--set",
            "metrics_addr=127.0.0.1:0",
            "--set",
            "health_addr=127.0.0.1:0",
            "--set",
            "admin_addr=127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let with_key = |key: &str| vec![("FLYMQ_ENCRYPTION_KEY".to_owned(), key.to_owned())];
    let labelled = format!("0000abcd:{KEY}");
    let mut broker = flymq_tests::try_spawn_flymq_env(args(dir.path()), with_key(&labelled)).expect("starts");
    assert!(broker.terminate(Duration::from_secs(30)).is_some(), "did not stop");
    drop(broker);

    let other = format!("0000abcd:{}", "11".repeat(32));
    let err = match flymq_tests::try_spawn_flymq_env(args(dir.path()), with_key(&other)) {
        Ok(_) => panic!("the broker started with another key"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.contains("0000abcd") && err.contains("wrong encryption key"),
        "{err}"
    );
    assert!(
        !err.contains(KEY) && !err.contains(&"11".repeat(32)),
        "a key leaked: {err}"
    );

    let err = match flymq_tests::try_spawn_flymq_env(args(dir.path()), Vec::new()) {
        Ok(_) => panic!("the broker started without its key"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("0000abcd") && err.contains("is encrypted"), "{err}");
}
