//! Encryption at rest on a real standalone broker (RocksDB in a temp dir,
//! listeners on port 0): no plaintext marker in any file of the data
//! directory, every record read back after a restart with the key, and
//! start-up refused for a wrong, missing or badly sized key, for a key on
//! plaintext data and for no key on encrypted data. Key rotation keeps old
//! records readable and seals new ones with the new key.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::RawClient;
use flymq_broker::StartError;
use flymq_broker::secrets::Secrets;
use flymq_broker::testing::{TestBroker, test_config};
use flymq_proto::*;
use flymq_security::{KeyId, Keyring};

const KEY_A: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";
const KEY_B: &str = "5f5e5d5c5b5a595857565554535251504f4e4d4c4b4a49484746454443424140";

fn secrets(spec: Option<&str>) -> Secrets {
    Secrets {
        keyring: spec.map(|s| Keyring::parse(s).expect("test key")),
        ..Secrets::default()
    }
}

async fn start(dir: &Path, spec: Option<&str>) -> Result<TestBroker, StartError> {
    TestBroker::start_with_secrets(test_config(dir), secrets(spec)).await
}

fn key_id(spec: &str) -> KeyId {
    Keyring::parse(spec).expect("key").active_key_id()
}

async fn produce(c: &mut RawClient, topic: &str, key: &str, value: &str) {
    let r = c
        .call(Request::Produce(ProduceRequest {
            topic: topic.into(),
            key: Bytes::from(key.to_owned()),
            value: Bytes::from(value.to_owned()),
            partition: 0,
        }))
        .await;
    assert!(!matches!(r, Response::Error(_)), "produce failed: {r:?}");
}

async fn read_all(c: &mut RawClient, topic: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let r = c
            .call(Request::Fetch(FetchRequest {
                topic: topic.into(),
                partition: 0,
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
            out.push((
                String::from_utf8(rec.key.to_vec()).unwrap(),
                String::from_utf8(rec.value.to_vec()).unwrap(),
            ));
        }
        offset = f.next_offset;
    }
}

/// Every file under `dir` (recursively) that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> (usize, Vec<String>) {
    let mut scanned = 0;
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_standalone_broker_stores_no_plaintext_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("PLAINTEXT-MARKER-{:016x}", rand::random::<u64>());
    let broker = start(dir.path(), Some(KEY_A)).await.expect("encrypted broker starts");
    let mut c = RawClient::connect(broker.client_addr()).await;
    let mut expected = Vec::new();
    for i in 0..200 {
        let (key, value) = (format!("key-{marker}-{i}"), format!("value-{i}-{marker}"));
        produce(&mut c, "secret-orders", &key, &value).await;
        expected.push((key, value));
    }
    let r = c
        .call(Request::Commit(CommitRequest {
            topic: "secret-orders".into(),
            group_id: "billing".into(),
            partition: 0,
            offset: 150,
        }))
        .await;
    assert!(!matches!(r, Response::Error(_)), "commit failed: {r:?}");
    // Flush memtables into SST files too, so both the WAL and SSTs are checked.
    let store = broker.running().broker().store().clone();
    store.flush_all().expect("flush");
    drop(store);
    drop(c);
    broker.shutdown().await;

    let (scanned, hits) = files_containing(dir.path(), marker.as_bytes());
    assert!(scanned >= 5, "expected RocksDB files to scan, found {scanned}");
    assert!(hits.is_empty(), "plaintext marker found in {hits:?}");
    // The same data without encryption does contain the marker: the scan works.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = start(plain_dir.path(), None).await.expect("plain broker");
    let mut c = RawClient::connect(plain.client_addr()).await;
    produce(&mut c, "secret-orders", "k", &marker).await;
    drop(c);
    plain.shutdown().await;
    assert!(!files_containing(plain_dir.path(), marker.as_bytes()).1.is_empty());

    let broker = start(dir.path(), Some(KEY_A)).await.expect("restart with the key");
    let mut c = RawClient::connect(broker.client_addr()).await;
    assert_eq!(read_all(&mut c, "secret-orders").await, expected);
    let r = c
        .call(Request::GetOffset(GroupPartitionRequest {
            topic: "secret-orders".into(),
            group_id: "billing".into(),
            partition: 0,
        }))
        .await;
    assert!(format!("{r:?}").contains("150"), "committed offset lost: {r:?}");
    drop(c);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_key_is_refused_naming_the_key_id_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let explicit_a = format!("00000001:{KEY_A}");
    let broker = start(dir.path(), Some(&explicit_a)).await.expect("starts");
    let mut c = RawClient::connect(broker.client_addr()).await;
    produce(&mut c, "t", "", "v").await;
    drop(c);
    broker.shutdown().await;

    // Same key id, other key material: the key check fails.
    let wrong = format!("00000001:{}", KEY_B);
    let err = start(dir.path(), Some(&wrong))
        .await
        .err()
        .expect("wrong key refused")
        .to_string();
    assert!(
        err.contains("00000001") && err.contains("wrong encryption key"),
        "{err}"
    );
    assert!(!err.contains(KEY_A) && !err.contains(KEY_B), "a key leaked: {err}");

    // Another key (another derived id): the stored key id is not configured.
    let err = start(dir.path(), Some(KEY_B))
        .await
        .err()
        .expect("other key refused")
        .to_string();
    assert!(err.contains("00000001") && err.contains("not configured"), "{err}");
    assert!(
        err.contains(&key_id(KEY_B).to_string()),
        "names the configured id: {err}"
    );
    assert!(!err.contains(KEY_A) && !err.contains(KEY_B), "a key leaked: {err}");

    // No key at all on encrypted data.
    let err = start(dir.path(), None).await.err().expect("no key refused").to_string();
    assert!(err.contains("is encrypted") && err.contains("00000001"), "{err}");

    // The right key still works afterwards.
    let broker = start(dir.path(), Some(&explicit_a)).await.expect("right key");
    let mut c = RawClient::connect(broker.client_addr()).await;
    assert_eq!(read_all(&mut c, "t").await, vec![(String::new(), "v".to_owned())]);
    drop(c);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_on_plaintext_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), None).await.expect("plain broker");
    let mut c = RawClient::connect(broker.client_addr()).await;
    produce(&mut c, "t", "", "plain").await;
    drop(c);
    broker.shutdown().await;
    let err = start(dir.path(), Some(KEY_A)).await.err().expect("refused").to_string();
    assert!(err.contains("holds unencrypted data"), "{err}");
    assert!(!err.contains(KEY_A), "{err}");
    // Still a working plaintext broker.
    let broker = start(dir.path(), None).await.expect("plain again");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_of_the_wrong_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("encryption.key");
    let short = &KEY_A[..62];
    std::fs::write(&key_file, format!("{short}\n")).unwrap();
    let config = flymq_broker::config::Config {
        encryption_key_file: Some(key_file),
        ..test_config(&dir.path().join("data"))
    };
    // The real start path: secrets from the environment and the key file.
    let err = flymq_broker::RunningBroker::start(&config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("62 characters") && err.contains("expected 64"), "{err}");
    assert!(!err.contains(short), "the key leaked: {err}");
    assert!(!dir.path().join("data").exists(), "nothing was stored");
}

/// The key id each stored batch of the `log` column family was sealed
/// with, in key order (read with RocksDB directly).
fn batch_key_ids(dir: &Path) -> Vec<KeyId> {
    let cfs = ["meta", "log", "offsets", "raft_log", "raft_meta"];
    let db = rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), dir, cfs, false).unwrap();
    let log = db.cf_handle("log").unwrap();
    db.iterator_cf(log, rocksdb::IteratorMode::Start)
        .map(|item| {
            let (_, value) = item.unwrap();
            assert_eq!(value[0], 2, "a stored batch is sealed (format 2)");
            Keyring::key_id_of(&value[13..]).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_old_records_readable_and_seals_new_ones_with_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), Some(KEY_A)).await.expect("starts with A");
    let mut c = RawClient::connect(broker.client_addr()).await;
    produce(&mut c, "t", "", "old-1").await;
    produce(&mut c, "t", "", "old-2").await;
    drop(c);
    broker.shutdown().await;

    let rotated = format!("{},{KEY_A}", KEY_B);
    let broker = start(dir.path(), Some(&rotated)).await.expect("starts with B,A");
    let mut c = RawClient::connect(broker.client_addr()).await;
    produce(&mut c, "t", "", "new-1").await;
    let values: Vec<String> = read_all(&mut c, "t").await.into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, ["old-1", "old-2", "new-1"]);
    drop(c);
    broker.shutdown().await;

    let ids = batch_key_ids(dir.path());
    assert_eq!(ids.first(), Some(&key_id(KEY_A)), "old batches: {ids:?}");
    assert_eq!(ids.last(), Some(&key_id(KEY_B)), "new batches: {ids:?}");

    // A is still needed (old data and the key check): B alone is refused, naming A.
    let err = start(dir.path(), Some(KEY_B)).await.err().expect("refused").to_string();
    assert!(err.contains(&key_id(KEY_A).to_string()), "{err}");

    let broker = start(dir.path(), Some(&rotated)).await.expect("restart with B,A");
    let mut c = RawClient::connect(broker.client_addr()).await;
    assert_eq!(read_all(&mut c, "t").await.len(), 3);
    drop(c);
    broker.shutdown().await;
}
