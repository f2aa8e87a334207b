//! The per-stage trace of replicated writes (`flymq::stages` log target and
//! `scripts/stage-trace.py`): three real brokers log their stages, and the
//! script finds every write on the leader and a follower, in causal order.

use std::path::Path;
use std::process::Command;

use flymq_tests::cluster::{Cluster, NodeAddrs, client_for, produce_retrying};

const WRITES: usize = 30;

/// Stages every write must reach.
const SEEN_THROUGH: [&str; 4] = [
    "leader log_synced",
    "follower append_received",
    "follower log_synced",
    "leader responded",
];

/// Copies every broker's log so far into `dir` (with mangled lines added)
/// and runs `scripts/stage-trace.py` on the copies; its standard output.
fn run_script(cluster: &Cluster, dir: &Path) -> String {
    let files: Vec<String> = cluster
        .procs
        .iter()
        .enumerate()
        .map(|(i, broker)| {
            let path = dir.join(format!("broker-{i}.log"));
            // Lines cut short or mangled, as a log copied mid-write has:
            // the script skips them.
            let mangled = concat!(
                "{\"target\":\"flymq::stages\",\"stage\":\"log_queued\"\n",
                "{\"target\":\"flymq::stages\",\"stage\":\"log_queued\",\"timestamp\":\"soon\"}\n",
                "not json \"flymq::stages\"\n",
            );
            let log = format!("{mangled}{}\n{mangled}", broker.as_ref().expect("running").log_text());
            std::fs::write(&path, log).unwrap();
            path.to_string_lossy().into_owned()
        })
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stage-trace.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(&files)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stage-trace.py failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The script's table as (stage, median µs, writes) rows.
fn parse_table(output: &str) -> Vec<(String, f64, usize)> {
    output
        .lines()
        .filter(|line| line.starts_with("| leader ") || line.starts_with("| follower "))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (
                cells[1].to_owned(),
                cells[2].parse().expect("median"),
                cells[4].parse().expect("writes"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stage_trace_times_every_replicated_write_on_the_leader_and_a_follower() {
    let env = [("FLYMQ_LOG_LEVEL", "info,flymq::stages=trace")];
    let cluster = tokio::task::block_in_place(|| Cluster::start_with(201, 3, &env));
    let all: Vec<&NodeAddrs> = cluster.nodes.iter().collect();
    let client = client_for(&all).await;
    client.create_topic("traced", 1).await.expect("create topic");
    for i in 0..WRITES {
        produce_retrying(&client, "traced", 0, format!("value-{i}")).await;
    }

    // The reply can reach the client before the test harness has read the
    // last stage lines from the brokers' stderr: read until every write is
    // seen through, for a few seconds at most.
    let logs = tempfile::tempdir().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (stdout, rows) = loop {
        let stdout = run_script(&cluster, logs.path());
        let rows = parse_table(&stdout);
        let complete = SEEN_THROUGH
            .iter()
            .all(|stage| rows.iter().any(|(name, _, writes)| name == stage && *writes >= WRITES));
        if complete || std::time::Instant::now() > deadline {
            break (stdout, rows);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let row = |stage: &str| {
        rows.iter()
            .find(|(name, _, _)| name == stage)
            .unwrap_or_else(|| panic!("no row '{stage}' in:\n{stdout}"))
    };
    // Every produced record is one write, seen through to its reply.
    for stage in SEEN_THROUGH {
        assert!(
            row(stage).2 >= WRITES,
            "{stage}: fewer than {WRITES} writes in:\n{stdout}"
        );
    }
    // Causal order holds write by write, so it holds for the medians.
    let chain = [
        "leader log_queued",
        "leader append_sent",
        "follower append_received",
        "follower log_synced",
        "follower append_answered",
        "leader append_replied",
        "leader apply_started",
        "leader apply_written",
        "leader responded",
    ];
    for pair in chain.windows(2) {
        assert!(
            row(pair[0]).1 <= row(pair[1]).1,
            "{} after {}:\n{stdout}",
            pair[0],
            pair[1]
        );
    }
}
