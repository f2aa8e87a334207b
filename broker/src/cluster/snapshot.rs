//! Snapshots in bounded memory.
//!
//! - **Building** a partition snapshot costs nothing: the partition's data
//!   already is its state machine, so a snapshot records the applied log id,
//!   the membership and the partition state at that point. The records
//!   (stored batches below that state's log end, which never change except
//!   for retention cutting at the front) are read from RocksDB when the
//!   snapshot is sent. A metadata snapshot (topics, offsets) is small and is
//!   encoded when built.
//! - **Sending** streams the snapshot in 1 MiB chunks produced by a blocking
//!   thread through a channel of a few chunks, so a sender holds at most a
//!   few MiB whatever the partition's size.
//! - **Receiving** writes the chunks to a file in the data directory
//!   (`snapshots/`), with a time limit per chunk (progress), not for the
//!   whole transfer.
//! - **Installing** first records a marker naming the file (synced), then
//!   replaces the group's data (a partition's records are written to SST
//!   files that RocksDB ingests, bypassing the memtables), and finally
//!   writes the partition state, the applied pointer and the membership and
//!   deletes the marker in one synced batch. A crash in between leaves the
//!   marker: the next start redoes the install from the file before the
//!   group opens, so the data and the applied pointer always agree.
//!
//! The stream is a sequence of `Item`s, each a big-endian u32 length and a
//! postcard value.
//!
//! With encryption at rest the stream carries plaintext (the sender opens
//! its batches and meta values; the transport is protected by TLS or the
//! cluster secret), the received file is sealed frame by frame
//! (`snapshot_file`), and installing seals everything again with this
//! broker's own key, so brokers need not share a key.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::log_store::{TAG_APPLIED, TAG_MEMBERSHIP, meta_key};
use super::snapshot_file::{self, SnapshotFileWriter};
use super::types::{SnapshotMeta, decode, encode, split_group};
use crate::storage::bulk_load::LogLoader;
use crate::storage::{CF_LOG, CF_META, CF_OFFSETS, CF_RAFT_META, PartitionState, Store, keys, prefix_end};

/// Bytes per streamed chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Chunks buffered between the reading thread and the network.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Meta keys of the generic values, which are sealed at rest.
const CLUSTER_VALUE_PREFIX: &[u8] = b"c/";
/// Tag of the "install in progress" marker in `raft_meta`.
const TAG_INSTALLING: u8 = b'i';
/// The largest item accepted from a stream (a record batch holds at most one
/// frame's worth of records).
const MAX_ITEM_BYTES: usize = 64 << 20;

fn io_err(e: impl fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// One element of a snapshot stream.
#[derive(Serialize, Deserialize)]
enum Item {
    /// The whole metadata group state: `meta` keys under `t/` and `c/`, and every `offsets` entry.
    Meta {
        meta: Vec<(Vec<u8>, Vec<u8>)>,
        offsets: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// One stored record batch of the partition.
    Batch {
        first_offset: u64,
        value: Vec<u8>,
    },
    /// The partition's state (after its batches).
    State {
        state: Vec<u8>,
    },
    End,
}

fn write_item(out: &mut Vec<u8>, item: &Item) -> io::Result<()> {
    let bytes = encode(item)?;
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Reads the items of a stream from `reader`.
struct ItemReader<R> {
    reader: R,
    done: bool,
}

impl<R: Read> Iterator for ItemReader<R> {
    type Item = io::Result<Item>;

    fn next(&mut self) -> Option<io::Result<Item>> {
        if self.done {
            return None;
        }
        let mut len = [0u8; 4];
        if let Err(err) = self.reader.read_exact(&mut len) {
            self.done = true;
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("snapshot stream ends without its end marker: {err}"),
            )));
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_ITEM_BYTES {
            self.done = true;
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("snapshot item of {len} bytes is larger than the limit"),
            )));
        }
        let mut bytes = vec![0u8; len];
        let item = self.reader.read_exact(&mut bytes).and_then(|()| decode::<Item>(&bytes));
        match item {
            Ok(Item::End) => {
                self.done = true;
                None
            }
            Ok(item) => Some(Ok(item)),
            Err(err) => {
                self.done = true;
                Some(Err(err))
            }
        }
    }
}

/// A snapshot as openraft carries it.
#[derive(Debug, Clone)]
pub enum SnapshotData {
    /// Built on this broker: what to stream, read when sent.
    Local(Arc<LocalSnapshot>),
    /// Received from a leader: a complete, synced file.
    Received(Arc<ReceivedFile>),
}

#[derive(Debug)]
pub enum LocalSnapshot {
    /// An encoded metadata stream (small).
    Meta(Vec<u8>),
    /// A partition at a point: its batches below `state.next_offset`.
    Partition {
        topic_id: u32,
        partition: u32,
        state: PartitionState,
    },
}

/// A received snapshot file; deleted when dropped unless an install that
/// may need to be redone still refers to it.
pub struct ReceivedFile {
    pub path: PathBuf,
    keep: AtomicBool,
}

impl fmt::Debug for ReceivedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReceivedFile({})", self.path.display())
    }
}

impl Drop for ReceivedFile {
    fn drop(&mut self) {
        if !self.keep.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where received snapshots are kept until installed.
pub fn snapshot_dir(store: &Store) -> PathBuf {
    store.path().join("snapshots")
}

/// Builds the metadata group's snapshot stream from a consistent view.
pub fn build_meta(store: &Store) -> io::Result<Vec<u8>> {
    let db_snapshot = store.db().snapshot();
    let meta_cf = store.cf(CF_META);
    let mut meta = Vec::new();
    for prefix in [
        keys::TOPIC_META_PREFIX,
        CLUSTER_VALUE_PREFIX,
        crate::storage::security::AUDIT_PREFIX,
    ] {
        for item in db_snapshot.iterator_cf(&meta_cf, IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = item.map_err(io_err)?;
            if !k.starts_with(prefix) {
                break;
            }
            let v = if k.starts_with(CLUSTER_VALUE_PREFIX) || k.starts_with(crate::storage::security::AUDIT_PREFIX) {
                store.open_meta_value(&k, &v).map_err(io_err)?
            } else {
                v.to_vec()
            };
            meta.push((k.to_vec(), v));
        }
    }
    let offsets_cf = store.cf(CF_OFFSETS);
    let offsets = db_snapshot
        .iterator_cf(&offsets_cf, IteratorMode::Start)
        .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io_err))
        .collect::<io::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    write_item(&mut out, &Item::Meta { meta, offsets })?;
    write_item(&mut out, &Item::End)?;
    Ok(out)
}

/// Streams `data` as chunks of at most about `CHUNK_BYTES`, produced on a
/// blocking thread (RocksDB or file reads) with a few chunks in flight.
pub fn stream(store: Store, data: SnapshotData) -> mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let result = produce_chunks(&store, &data, &tx);
        if let Err(err) = result {
            let _ = tx.blocking_send(Err(err));
        }
    });
    rx
}

fn produce_chunks(store: &Store, data: &SnapshotData, tx: &mpsc::Sender<io::Result<Vec<u8>>>) -> io::Result<()> {
    let send = |chunk: Vec<u8>| {
        tx.blocking_send(Ok(chunk))
            .map_err(|_| io::Error::other("snapshot transfer cancelled"))
    };
    match data {
        SnapshotData::Local(local) => match &**local {
            LocalSnapshot::Meta(bytes) => {
                for chunk in bytes.chunks(CHUNK_BYTES) {
                    send(chunk.to_vec())?;
                }
                Ok(())
            }
            LocalSnapshot::Partition {
                topic_id,
                partition,
                state,
            } => stream_partition(store, *topic_id, *partition, *state, send),
        },
        SnapshotData::Received(file) => {
            let mut reader = snapshot_file::open(&file.path, store.at_rest().cloned())?;
            loop {
                let mut chunk = vec![0u8; CHUNK_BYTES];
                let n = reader.read(&mut chunk)?;
                if n == 0 {
                    return Ok(());
                }
                chunk.truncate(n);
                send(chunk)?;
            }
        }
    }
}

/// The batches of a partition below `state.next_offset` (from the current
/// start, which retention may have moved since the snapshot was built),
/// then the state.
fn stream_partition(
    store: &Store,
    topic_id: u32,
    partition: u32,
    state: PartitionState,
    send: impl Fn(Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let current_start = store
        .partition_state(topic_id, partition)
        .map_err(io_err)?
        .map_or(0, |s| s.start_offset);
    let start = state.start_offset.max(current_start).min(state.next_offset);
    let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
    let mut size = 0u64;
    let mut from = match store.batch_holding(topic_id, partition, start).map_err(io_err)? {
        Some(batch) => batch.first_offset,
        None => start,
    };
    // Read in bounded passes: each pass holds one iterator for a few MiB.
    loop {
        let mut last = None;
        let mut pass_bytes = 0usize;
        store.for_each_batch(topic_id, partition, from, state.next_offset, |first_offset, value| {
            size += value.len() as u64;
            pass_bytes += value.len();
            last = Some(first_offset);
            let item = Item::Batch {
                first_offset,
                value: value.to_vec(),
            };
            write_item(&mut chunk, &item)?;
            if chunk.len() >= CHUNK_BYTES {
                send(std::mem::take(&mut chunk))?;
            }
            Ok::<bool, io::Error>(pass_bytes < 64 << 20)
        })?;
        match last {
            Some(first) if pass_bytes >= 64 << 20 => from = first + 1,
            _ => break,
        }
    }
    let sent = PartitionState {
        start_offset: start,
        size_bytes: size,
        ..state
    };
    write_item(
        &mut chunk,
        &Item::State {
            state: sent.encode().to_vec(),
        },
    )?;
    write_item(&mut chunk, &Item::End)?;
    send(chunk)
}

/// A snapshot file being received (sealed when encryption is on).
pub struct FileWriter {
    file: SnapshotFileWriter,
    path: PathBuf,
}

impl FileWriter {
    pub fn create(store: &Store, group: u64) -> io::Result<Self> {
        let dir = snapshot_dir(store);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{group:016x}-{:016x}.snap", rand::random::<u64>()));
        let file = SnapshotFileWriter::create(&path, store.at_rest().cloned())?;
        Ok(Self { file, path })
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write(bytes)
    }

    /// Syncs the file; it is then complete.
    pub fn finish(self) -> io::Result<SnapshotData> {
        self.file.sync()?;
        Ok(SnapshotData::Received(Arc::new(ReceivedFile {
            path: self.path,
            keep: AtomicBool::new(false),
        })))
    }

    /// Removes a partly received file.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Installs a received snapshot of `group` (see the module docs). Returns
/// the installed partition state for a partition group.
pub fn install(
    store: &Store,
    group: u64,
    meta: &SnapshotMeta,
    data: &SnapshotData,
) -> io::Result<Option<PartitionState>> {
    let SnapshotData::Received(file) = data else {
        return Err(io::Error::other(
            "internal error: installing a snapshot that was not received",
        ));
    };
    file.keep.store(true, Ordering::SeqCst);
    let raft_cf = store.cf(CF_RAFT_META);
    let marker = encode(&(file.path.to_string_lossy().into_owned(), meta.clone()))?;
    let mut batch = WriteBatch::default();
    batch.put_cf(&raft_cf, meta_key(group, TAG_INSTALLING), marker);
    write(store, batch, true)?;
    let installed = redo(store, group, meta, &file.path)?;
    file.keep.store(false, Ordering::SeqCst);
    Ok(installed)
}

/// Finishes an install a crash interrupted, before `group` opens. Also
/// removes received files no install refers to.
pub fn recover(store: &Store, group: u64) -> io::Result<()> {
    let raft_cf = store.cf(CF_RAFT_META);
    let Some(marker) = store
        .db()
        .get_cf(&raft_cf, meta_key(group, TAG_INSTALLING))
        .map_err(io_err)?
    else {
        return Ok(());
    };
    let (path, meta): (String, SnapshotMeta) = decode(&marker)?;
    tracing::warn!(group, file = %path, "finishing a snapshot install interrupted by a crash");
    redo(store, group, &meta, Path::new(&path))?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

fn write(store: &Store, batch: WriteBatch, sync: bool) -> io::Result<()> {
    let mut opts = WriteOptions::default();
    opts.set_sync(sync);
    store.db().write_opt(batch, &opts).map_err(io_err)
}

/// Replaces the group's data with the file's, then writes the pointer.
fn redo(store: &Store, group: u64, meta: &SnapshotMeta, path: &Path) -> io::Result<Option<PartitionState>> {
    let reader = ItemReader {
        reader: snapshot_file::open(path, store.at_rest().cloned())?,
        done: false,
    };
    let mut batch = WriteBatch::default();
    let mut installed = None;
    match split_group(group) {
        None => {
            for item in reader {
                if let Item::Meta { meta, offsets } = item? {
                    replace_meta(store, &mut batch, &meta, &offsets)?;
                }
            }
        }
        Some((topic_id, partition)) => {
            let log_cf = store.cf(CF_LOG);
            let prefix = keys::log_key(topic_id, partition, 0);
            batch.delete_range_cf(&log_cf, &prefix[..8], prefix_end(&prefix[..8]).as_slice());
            store.delete_partition_delayed(&mut batch, topic_id, partition);
            store.delete_partition_txn_markers(&mut batch, topic_id, partition);
            // Written before the records are loaded, which then get later
            // sequence numbers: the deletions cannot hide them.
            write(store, std::mem::take(&mut batch), false)?;
            let file_options = store.log_file_options();
            let mut loader = LogLoader::new(store, &file_options, path);
            // The schedule of delayed records and the transaction markers
            // are derived from the records.
            let mut scheduled = std::collections::BTreeMap::new();
            let mut txns = std::collections::BTreeMap::new();
            for item in reader {
                match item? {
                    Item::Batch { first_offset, value } => {
                        crate::storage::delayed::pending_in_batch(&mut scheduled, first_offset, &value)
                            .map_err(io_err)?;
                        crate::storage::transactions::markers_in_batch(&mut txns, first_offset, &value)
                            .map_err(io_err)?;
                        let key = keys::log_key(topic_id, partition, first_offset);
                        loader.put_batch(&key, &value).map_err(io_err)?;
                    }
                    Item::State { state } => {
                        let state = PartitionState::decode(&state).ok_or_else(|| {
                            io::Error::new(io::ErrorKind::InvalidData, "bad partition state in snapshot")
                        })?;
                        store.put_partition_state(&mut batch, topic_id, partition, &state);
                        for (offset, due) in &scheduled {
                            store.put_delayed(&mut batch, topic_id, partition, *due, *offset);
                        }
                        for (seq, at) in &txns {
                            store.put_txn_marker(&mut batch, topic_id, partition, *seq, *at);
                        }
                        installed = Some(state);
                    }
                    Item::Meta { .. } | Item::End => {}
                }
            }
            loader.finish().map_err(io_err)?;
            if installed.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "partition snapshot without its state",
                ));
            }
        }
    }
    let raft_cf = store.cf(CF_RAFT_META);
    batch.put_cf(&raft_cf, meta_key(group, TAG_APPLIED), encode(&meta.last_log_id)?);
    batch.put_cf(
        &raft_cf,
        meta_key(group, TAG_MEMBERSHIP),
        encode(&meta.last_membership)?,
    );
    batch.delete_cf(&raft_cf, meta_key(group, TAG_INSTALLING));
    write(store, batch, true)?;
    Ok(installed)
}

/// The metadata group's state replaced by a snapshot's: topics the snapshot
/// no longer has lose their records too.
fn replace_meta(
    store: &Store,
    batch: &mut WriteBatch,
    meta: &[(Vec<u8>, Vec<u8>)],
    offsets: &[(Vec<u8>, Vec<u8>)],
) -> io::Result<()> {
    let meta_cf = store.cf(CF_META);
    let keep: std::collections::HashSet<&[u8]> = meta.iter().map(|(k, _)| k.as_slice()).collect();
    for (record, _) in store.load_topics().map_err(io_err)? {
        if !keep.contains(keys::topic_meta_key(&record.name).as_slice()) {
            store.delete_topic(batch, &record);
        }
    }
    for prefix in [
        keys::TOPIC_META_PREFIX,
        CLUSTER_VALUE_PREFIX,
        crate::storage::security::AUDIT_PREFIX,
    ] {
        batch.delete_range_cf(&meta_cf, prefix, prefix_end(prefix).as_slice());
    }
    for (k, v) in meta {
        if k.starts_with(CLUSTER_VALUE_PREFIX) || k.starts_with(crate::storage::security::AUDIT_PREFIX) {
            batch.put_cf(&meta_cf, k, store.seal_meta_value(k, v).map_err(io_err)?);
        } else {
            batch.put_cf(&meta_cf, k, v);
        }
    }
    let offsets_cf = store.cf(CF_OFFSETS);
    for item in store.db().iterator_cf(&offsets_cf, IteratorMode::Start) {
        let (k, _) = item.map_err(io_err)?;
        batch.delete_cf(&offsets_cf, k);
    }
    for (k, v) in offsets {
        batch.put_cf(&offsets_cf, k, v);
    }
    Ok(())
}

/// Deletes received snapshot files that no pending install refers to
/// (left by a crash during a transfer).
pub fn remove_stale_files(store: &Store) {
    let dir = snapshot_dir(store);
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let raft_cf = store.cf(CF_RAFT_META);
    let mut referenced = std::collections::HashSet::new();
    for item in store.db().iterator_cf(&raft_cf, IteratorMode::Start) {
        let Ok((key, value)) = item else { break };
        if key.len() == 9
            && key[8] == TAG_INSTALLING
            && let Ok((path, _)) = decode::<(String, SnapshotMeta)>(&value)
        {
            referenced.insert(PathBuf::from(path));
        }
    }
    for entry in entries.flatten() {
        let path = entry.path();
        if !referenced.contains(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::impls::leader_id_adv::LeaderId;

    use super::*;
    use crate::cluster::types::{LogId, partition_group};
    use crate::storage::StoreOptions;
    use crate::storage::record_batch::BatchBuilder;

    const TOPIC: u32 = 7;
    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn open(dir: &Path, encrypted: bool) -> Store {
        let keyring = encrypted.then(|| Arc::new(flymq_security::Keyring::parse(KEY).expect("key")));
        Store::open_with_keys(dir, StoreOptions::for_budget(64 << 20), keyring).expect("open store")
    }

    /// A batch of one record whose value names its offset.
    fn batch_value(offset: u64, tag: &str) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        builder.push(1_000, 0, b"k", format!("{tag}-{offset}-{}", "x".repeat(200)).as_bytes());
        builder.finish()
    }

    /// Writes one-record batches at `offsets` to `partition` and its state.
    fn fill(store: &Store, partition: u32, offsets: std::ops::Range<u64>, tag: &str) -> PartitionState {
        let mut batch = WriteBatch::default();
        let mut size = 0;
        for offset in offsets.clone() {
            let value = batch_value(offset, tag);
            size += value.len() as u64;
            store
                .put_batch(&mut batch, TOPIC, partition, offset, &value)
                .expect("put");
        }
        let state = PartitionState {
            next_offset: offsets.end,
            start_offset: offsets.start,
            size_bytes: size,
            last_timestamp: 1_000,
        };
        store.put_partition_state(&mut batch, TOPIC, partition, &state);
        store.db().write(batch).expect("write");
        state
    }

    fn stored(store: &Store, partition: u32) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        store
            .for_each_batch::<io::Error>(TOPIC, partition, 0, u64::MAX, |offset, value| {
                out.push((offset, value.to_vec()));
                Ok(true)
            })
            .expect("read");
        out
    }

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(LeaderId { term: 1, node_id: 0 }, index)),
            last_membership: Default::default(),
        }
    }

    /// Streams `partition` of `from` into a received file of `to`.
    async fn transfer(from: &Store, to: &Store, partition: u32, state: PartitionState) -> SnapshotData {
        let local = SnapshotData::Local(Arc::new(LocalSnapshot::Partition {
            topic_id: TOPIC,
            partition,
            state,
        }));
        let mut chunks = stream(from.clone(), local);
        let mut file = FileWriter::create(to, partition_group(TOPIC, partition)).expect("create file");
        while let Some(chunk) = chunks.recv().await {
            file.write(&chunk.expect("chunk")).expect("write chunk");
        }
        file.finish().expect("finish file")
    }

    fn leftover_files(store: &Store) -> Vec<PathBuf> {
        std::fs::read_dir(snapshot_dir(store))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    async fn install_replaces_the_partition(encrypted: bool) {
        let (a, b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let (leader, follower) = (open(a.path(), encrypted), open(b.path(), encrypted));
        let state = fill(&leader, 0, 100..3_100, "new");
        // The follower's stale copy: overlapping offsets with other values,
        // and offsets past the snapshot's end that must go.
        fill(&follower, 0, 0..4_000, "old");
        fill(&follower, 1, 0..50, "other");
        let data = transfer(&leader, &follower, 0, state).await;

        let installed = install(&follower, partition_group(TOPIC, 0), &meta(42), &data).expect("install");
        assert_eq!(installed.map(|s| s.next_offset), Some(3_100));
        assert_eq!(
            stored(&follower, 0),
            stored(&leader, 0),
            "the records are the snapshot's"
        );
        assert_eq!(stored(&follower, 1).len(), 50, "another partition is untouched");
        assert_eq!(
            follower.partition_state(TOPIC, 0).expect("state"),
            leader.partition_state(TOPIC, 0).expect("state")
        );
        drop(data);
        assert_eq!(leftover_files(&follower), Vec::<PathBuf>::new(), "no file is left");

        // And after a restart (the ingested files are part of the database).
        drop(follower);
        let follower = open(b.path(), encrypted);
        assert_eq!(stored(&follower, 0), stored(&leader, 0));
    }

    #[tokio::test]
    async fn installing_a_partition_replaces_its_records() {
        install_replaces_the_partition(false).await;
    }

    #[tokio::test]
    async fn installing_an_encrypted_partition_replaces_its_records() {
        install_replaces_the_partition(true).await;
    }

    /// A crash after the marker (and after part of the records were
    /// loaded, leaving a half-written SST file) is finished by `recover`.
    #[tokio::test]
    async fn an_install_cut_short_by_a_crash_is_finished_at_the_next_start() {
        let (a, b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let (leader, follower) = (open(a.path(), false), open(b.path(), false));
        let state = fill(&leader, 0, 0..2_000, "new");
        fill(&follower, 0, 0..10, "old");
        let group = partition_group(TOPIC, 0);
        let SnapshotData::Received(file) = transfer(&leader, &follower, 0, state).await else {
            panic!("received");
        };
        file.keep.store(true, Ordering::SeqCst);
        let path = file.path.clone();
        drop(file);
        let mut batch = WriteBatch::default();
        let marker = encode(&(path.to_string_lossy().into_owned(), meta(9))).expect("encode");
        batch.put_cf(&follower.cf(CF_RAFT_META), meta_key(group, TAG_INSTALLING), marker);
        write(&follower, batch, true).expect("marker");
        std::fs::write(format!("{}.0.sst", path.display()), b"half written").expect("partial file");
        drop(follower);

        let follower = open(b.path(), false);
        recover(&follower, group).expect("recover");
        assert_eq!(stored(&follower, 0), stored(&leader, 0));
        let applied = follower
            .db()
            .get_cf(&follower.cf(CF_RAFT_META), meta_key(group, TAG_APPLIED))
            .expect("get")
            .expect("applied pointer");
        assert_eq!(decode::<Option<LogId>>(&applied).expect("decode"), meta(9).last_log_id);
        remove_stale_files(&follower);
        assert_eq!(leftover_files(&follower), Vec::<PathBuf>::new());
    }

    /// A stream whose batches go backwards is refused, and leaves no file.
    #[tokio::test]
    async fn a_stream_with_batches_out_of_order_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), false);
        let group = partition_group(TOPIC, 0);
        let mut bytes = Vec::new();
        for offset in [5, 3] {
            let item = Item::Batch {
                first_offset: offset,
                value: batch_value(offset, "x"),
            };
            write_item(&mut bytes, &item).expect("item");
        }
        write_item(&mut bytes, &Item::End).expect("end");
        let mut file = FileWriter::create(&store, group).expect("create");
        file.write(&bytes).expect("write");
        let data = file.finish().expect("finish");
        let err = install(&store, group, &meta(1), &data).expect_err("out of order");
        assert!(err.to_string().contains("order"), "{err}");
        let sst: Vec<_> = leftover_files(&store)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".sst"))
            .collect();
        assert!(sst.is_empty(), "{sst:?}");
    }
}
