//! Durability: acknowledged records and offsets survive a restart and a
//! `kill -9` of the `flymq` process, exactly once and in order.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::RawClient;
use flymq_broker::testing::TestBroker;
use flymq_proto::*;

/// Starts the real `flymq` binary (with `extra_args`) on loopback port 0
/// and returns it with its client address.
fn spawn_broker(data_dir: &Path, extra_args: &[&str]) -> (Child, SocketAddr) {
    spawn_broker_with(data_dir, extra_args, |_| {})
}

/// `spawn_broker`, with `environment` adjusting the command's environment.
fn spawn_broker_with(
    data_dir: &Path,
    extra_args: &[&str],
    environment: impl FnOnce(&mut Command),
) -> (Child, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flymq"));
    environment(&mut command);
    let mut child = command
        .args(["--data-dir", data_dir.to_str().unwrap(), "--bind-addr", "127.0.0.1:0"])
        .args(["--set", "metrics_addr=127.0.0.1:0", "--set", "health_addr=127.0.0.1:0"])
        .args(["--set", "admin_addr=127.0.0.1:0"])
        .args(extra_args)
        .env("FLYMQ_LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flymq");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains("FlyMQ broker ready") {
                let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
                let _ = tx.send(json["client"].as_str().unwrap().parse::<SocketAddr>().unwrap());
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("broker did not report ready");
    (child, addr)
}

async fn read_partition(c: &mut RawClient, topic: &str, partition: i32) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let r = c
            .call(Request::Fetch(FetchRequest {
                topic: topic.into(),
                partition,
                offset,
                max_messages: 1000,
                filter: String::new(),
            }))
            .await;
        let Response::Fetch(f) = r else { panic!("{r:?}") };
        if f.records.is_empty() {
            return out;
        }
        for rec in f.records {
            out.push((rec.offset, String::from_utf8(rec.value.to_vec()).unwrap()));
        }
        offset = f.next_offset;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_while_producing_then_check(dir.path(), &[], 0, Duration::from_millis(1500)).await;
}

/// With `acks=leader`, a one-at-a-time produce is committed by the
/// connection's own task when the writer is idle (`Writer::commit_in_place`):
/// its WAL write, not synced yet, survives the process's death all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_with_acks_leader() {
    let dir = tempfile::tempdir().unwrap();
    let leader = ["--acks", "leader"];
    kill_9_while_producing_then_check(dir.path(), &leader, 0, Duration::from_millis(1500)).await;
}

/// With the smallest memory budget and 4 KiB records, RocksDB flushes its
/// memtables several times a second, and a standalone broker reuses the
/// WAL files the flushes free (`StoreOptions::recycle_wal`): the WAL being
/// written at the kill overwrites older records, and recovery must stop at
/// the end of the new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_in_a_reused_wal_file() {
    let dir = tempfile::tempdir().unwrap();
    let small = ["--set", "memory_budget_mb=32"];
    kill_9_while_producing_then_check(dir.path(), &small, 4096, Duration::from_millis(3000)).await;
    // RocksDB's own log (LOG, and LOG.old.* after the restart) names the
    // WAL files it put aside for reuse.
    let mut recycled = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("LOG") {
            recycled += std::fs::read_to_string(&path)
                .unwrap()
                .matches("to recycle list")
                .count();
        }
    }
    assert!(recycled >= 2, "only {recycled} WAL files were put aside for reuse");
}

/// Produces records (with `key_padding` bytes of key each), one at a time
/// on each of four connections, into a new broker in `data_dir` for `run_for`, kills it with
/// SIGKILL, restarts it and checks every acknowledged record and a
/// committed offset are back, once each and in order.
async fn kill_9_while_producing_then_check(
    data_dir: &Path,
    extra_args: &[&str],
    key_padding: usize,
    run_for: Duration,
) {
    let (mut child, addr) = spawn_broker(data_dir, extra_args);
    let mut admin = RawClient::connect(addr).await;
    admin
        .call(Request::CreateTopic(CreateTopicRequest {
            topic: "crash".into(),
            partitions: 2,
        }))
        .await;
    admin
        .call(Request::Commit(CommitRequest {
            topic: "crash".into(),
            group_id: "g".into(),
            partition: 1,
            offset: 7,
        }))
        .await;

    // Four producers pipeline into both partitions until the broker dies.
    let mut producers = Vec::new();
    for p in 0..4 {
        producers.push(tokio::spawn(async move {
            let mut c = RawClient::connect(addr).await;
            let mut acked = Vec::new();
            for seq in 0.. {
                let value = format!("p{p}-{seq}");
                let req = Request::Produce(ProduceRequest {
                    topic: "crash".into(),
                    key: Bytes::from(vec![b'k'; key_padding]),
                    value: Bytes::from(value.clone()),
                    partition: p % 2,
                });
                let bytes = req.to_frame_bytes().unwrap();
                if tokio::io::AsyncWriteExt::write_all(&mut c.stream, &bytes)
                    .await
                    .is_err()
                {
                    break;
                }
                match c.read_frame().await.map(|f| Response::decode_frame(&f)) {
                    Some(Ok(Response::Produce(m))) => acked.push((m.partition, m.offset, value)),
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(run_for).await;
    child.kill().expect("kill -9");
    child.wait().unwrap();
    let mut acked = Vec::new();
    for p in producers {
        acked.extend(p.await.unwrap());
    }
    assert!(
        acked.len() > 100,
        "only {} records were acknowledged before the kill",
        acked.len()
    );

    let (mut child, addr) = spawn_broker(data_dir, extra_args);
    let mut c = RawClient::connect(addr).await;
    for partition in 0..2 {
        let stored = read_partition(&mut c, "crash", partition).await;
        // Offsets are dense from 0 and every stored value is unique.
        for (i, (offset, _)) in stored.iter().enumerate() {
            assert_eq!(*offset, i as u64);
        }
        let by_offset: HashMap<u64, &String> = stored.iter().map(|(o, v)| (*o, v)).collect();
        let mut seen = std::collections::HashSet::new();
        assert!(
            stored.iter().all(|(_, v)| seen.insert(v.clone())),
            "a record was stored twice"
        );
        for (p, offset, value) in acked.iter().filter(|(p, ..)| *p == partition) {
            assert_eq!(
                by_offset.get(offset).map(|v| v.as_str()),
                Some(value.as_str()),
                "acknowledged record lost: {p}/{offset}"
            );
        }
        // Each producer's records are in its send order.
        let mut last: HashMap<String, u64> = HashMap::new();
        for (_, value) in &stored {
            let (producer, seq) = value.split_once('-').unwrap();
            let seq: u64 = seq.parse().unwrap();
            if let Some(prev) = last.insert(producer.to_owned(), seq) {
                assert!(seq > prev, "{producer} out of order: {prev} then {seq}");
            }
        }
    }
    let r = c
        .call(Request::GetOffset(GroupPartitionRequest {
            topic: "crash".into(),
            group_id: "g".into(),
            partition: 1,
        }))
        .await;
    assert_eq!(r, Response::GetOffset(OffsetResponse { offset: 7 }));
    // New records continue after the recovered log end.
    let log_end = read_partition(&mut c, "crash", 0).await.len() as u64;
    let r = c
        .call(Request::Produce(ProduceRequest {
            topic: "crash".into(),
            value: Bytes::from_static(b"after"),
            partition: 0,
            ..Default::default()
        }))
        .await;
    let Response::Produce(m) = r else { panic!("{r:?}") };
    assert_eq!(m.offset, log_end);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn topics_records_and_offsets_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    c.call(Request::CreateTopic(CreateTopicRequest {
        topic: "keep".into(),
        partitions: 3,
    }))
    .await;
    for i in 0..10 {
        c.call(Request::Produce(ProduceRequest {
            topic: "keep".into(),
            value: Bytes::from(format!("{i}")),
            partition: 2,
            ..Default::default()
        }))
        .await;
    }
    c.call(Request::Commit(CommitRequest {
        topic: "keep".into(),
        group_id: "g".into(),
        partition: 2,
        offset: 4,
    }))
    .await;
    drop(c);
    broker.shutdown().await;

    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    let Response::ListTopics(list) = c.call(Request::ListTopics).await else {
        panic!()
    };
    assert_eq!(list.topics, vec!["keep".to_string()]);
    let values: Vec<String> = read_partition(&mut c, "keep", 2)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    let sub = Request::Subscribe(SubscribeRequest {
        topic: "keep".into(),
        group_id: "g".into(),
        partition: 2,
        mode: "commit".into(),
    });
    assert_eq!(c.call(sub).await, Response::Subscribe(OffsetResponse { offset: 4 }));
    broker.shutdown().await;
}

#[tokio::test]
async fn retention_by_size_drops_whole_old_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = flymq_broker::testing::test_config(dir.path());
    config.retention_bytes = 200;
    let broker = TestBroker::start_with(config).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    for i in 0..20 {
        c.call(Request::Produce(ProduceRequest {
            topic: "r".into(),
            value: Bytes::from(format!("value-{i:04}")),
            partition: 0,
            ..Default::default()
        }))
        .await;
    }
    let started = Instant::now();
    let dropped = flymq_broker::core::retention::enforce_once(broker.running().broker())
        .await
        .unwrap();
    assert!(dropped > 0 && dropped < 20, "dropped {dropped}");
    let stored = read_partition(&mut c, "r", 0).await;
    assert_eq!(stored.first().unwrap().0, dropped);
    assert_eq!(stored.last().unwrap().0, 19);
    let r = c
        .call(Request::Consume(ConsumeRequest {
            topic: "r".into(),
            partition: 0,
            offset: 0,
        }))
        .await;
    assert!(common::error_text(r).starts_with("EOF"));
    let sub = Request::Subscribe(SubscribeRequest {
        topic: "r".into(),
        group_id: String::new(),
        partition: 0,
        mode: "earliest".into(),
    });
    assert_eq!(
        c.call(sub).await,
        Response::Subscribe(OffsetResponse { offset: dropped })
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    broker.shutdown().await;
}

/// The broker starts its own image again with glibc's per-thread cache set
/// (`malloc_thread_cache`): same process, ready as usual. A `GLIBC_TUNABLES`
/// that already names the setting is left as it is, and 0 leaves glibc alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_broker_sizes_glibcs_thread_cache_unless_told_otherwise() {
    let tunables_of = |child: &Child| {
        let environ = std::fs::read(format!("/proc/{}/environ", child.id())).expect("read environ");
        String::from_utf8_lossy(&environ)
            .split('\0')
            .find_map(|v| v.strip_prefix("GLIBC_TUNABLES=").map(str::to_string))
    };
    let cases: [(&[&str], Option<&str>, Option<&str>); 3] = [
        (&[], None, Some("glibc.malloc.tcache_count=2000")),
        (
            &[],
            Some("glibc.malloc.tcache_count=7"),
            Some("glibc.malloc.tcache_count=7"),
        ),
        (&["--set", "malloc_thread_cache=0"], None, None),
    ];
    for (args, preset, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, addr) = spawn_broker_with(dir.path(), args, |command| match preset {
            Some(value) => {
                command.env("GLIBC_TUNABLES", value);
            }
            None => {
                command.env_remove("GLIBC_TUNABLES");
            }
        });
        assert_eq!(
            tunables_of(&child).as_deref(),
            expected,
            "args {args:?}, preset {preset:?}"
        );
        // Still named after its executable (`ps`, `pkill -x flymq`).
        let name = std::fs::read_to_string(format!("/proc/{}/comm", child.id())).expect("read comm");
        assert_eq!(name.trim(), "flymq");
        std::net::TcpStream::connect(addr).expect("the restarted broker serves");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
