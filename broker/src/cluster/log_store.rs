//! Raft log storage for every group on the broker's RocksDB (`raft_log` and
//! `raft_meta` column families, keys prefixed by the group id).
//!
//! One thread (`flymq-raft-log`) does every log write of every group: it
//! takes all waiting appends, writes them, runs one `flush_wal(sync)` and
//! only then reports them durable. One fsync thus covers the appends of
//! every partition that arrived meanwhile (group commit across groups), and
//! no RocksDB write runs on an async worker.
//!
//! Entries are readable the moment `append` returns, as openraft requires:
//! each group keeps its newest entries in memory (`LogCache`) until they are
//! written and the cache is over its budget. Replication to followers and
//! the state machine read recent entries from there, without a RocksDB read
//! or a decode.
//!
//! With encryption at rest each entry's value is sealed as a whole, bound
//! to its `[group][index]` key (`storage::crypto`); the keys and the
//! `raft_meta` values (votes, purge points, membership) stay plaintext.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use super::stages;
use super::types::{Entry, LogId, TypeConfig, Vote, decode, encode, encode_with_capacity, entry_size};
use crate::storage::crypto::{Domain, open_opt, seal_opt};
use crate::storage::{BATCH_HEADER, BATCH_PUT_OVERHEAD, CF_RAFT_LOG, CF_RAFT_META, Store};

const TAG_VOTE: u8 = b'v';
const TAG_PURGED: u8 = b'p';
const TAG_COMMITTED: u8 = b'c';
pub(crate) const TAG_APPLIED: u8 = b'a';
pub(crate) const TAG_MEMBERSHIP: u8 = b'm';

/// Entries a group keeps in memory once written (more while unwritten).
const CACHE_ENTRIES: usize = 1024;
/// Bytes of entries a group keeps in memory once written.
const CACHE_BYTES: usize = 16 << 20;
/// Most bytes `limited_get_log_entries` returns for one replication request.
const READ_LIMIT_BYTES: usize = 8 << 20;

pub(crate) fn log_key(group: u64, index: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

pub(crate) fn meta_key(group: u64, tag: u8) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key[8] = tag;
    key
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Work for the log writer thread, in the order the groups asked for it.
enum LogWrite {
    /// Entries to write; durable (and reported so) after the next WAL sync.
    Append {
        batch: WriteBatch,
        cache: Arc<parking_lot::Mutex<LogCache>>,
        last_index: u64,
        /// The cache's truncation count when the entries were cached.
        generation: u64,
        callback: IOFlushed<TypeConfig>,
        /// For `stages::mark` only.
        group: u64,
    },
    /// A truncation or purge: written in order with the appends before it.
    Apply {
        batch: WriteBatch,
        done: std::sync::mpsc::SyncSender<io::Result<()>>,
    },
}

/// The broker's log writer: group-commits WAL syncs for every group.
#[derive(Clone)]
pub struct WalSyncer {
    tx: Sender<LogWrite>,
}

impl WalSyncer {
    pub fn start(store: Store) -> io::Result<Self> {
        Self::start_joinable(store).map(|(syncer, _thread)| syncer)
    }

    /// Starts the writer; its thread ends (and releases the store) once
    /// every clone of the returned syncer is dropped.
    fn start_joinable(store: Store) -> io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("flymq-raft-log".into())
            .spawn(move || write_loop(store, rx))?;
        Ok((Self { tx }, thread))
    }

    fn send(&self, write: LogWrite) {
        if let Err(err) = self.tx.send(write) {
            let failure = || io::Error::other("the Raft log writer has stopped");
            match err.into_inner() {
                LogWrite::Append { callback, .. } => callback.io_completed(Err(failure())),
                LogWrite::Apply { done, .. } => {
                    let _ = done.send(Err(failure()));
                }
            }
        }
    }
}

/// Test fault (`FLYMQ_TEST_LOG_WRITE_DELAY_MS`): holds every batch of log
/// writes this long before writing it, so a test can kill a leader whose
/// followers acknowledged entries it has not written itself. Never set in
/// production; the broker logs a warning when it is.
fn test_write_delay() -> Option<std::time::Duration> {
    let ms: u64 = std::env::var("FLYMQ_TEST_LOG_WRITE_DELAY_MS").ok()?.parse().ok()?;
    tracing::warn!(delay_ms = ms, "test fault: Raft log writes are delayed");
    Some(std::time::Duration::from_millis(ms))
}

fn write_loop(store: Store, rx: Receiver<LogWrite>) {
    let delay = test_write_delay();
    while let Ok(first) = rx.recv() {
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let mut appended = Vec::new();
        for write in waiting {
            match write {
                LogWrite::Append {
                    batch,
                    cache,
                    last_index,
                    generation,
                    callback,
                    group,
                } => {
                    stages::mark("log_write_started", group, last_index);
                    let result = store.db().write(batch).map_err(io_err);
                    appended.push((result, cache, last_index, generation, callback, group));
                }
                LogWrite::Apply { batch, done } => {
                    let _ = done.send(store.db().write(batch).map_err(io_err));
                }
            }
        }
        if appended.is_empty() {
            continue;
        }
        let synced = store.db().flush_wal(true).map_err(io_err);
        for (written, cache, last_index, generation, callback, group) in appended {
            let result = match (&written, &synced) {
                (Ok(()), Ok(())) => {
                    stages::mark("log_synced", group, last_index);
                    cache.lock().written(last_index, generation);
                    Ok(())
                }
                (Err(e), _) | (_, Err(e)) => Err(io::Error::other(e.to_string())),
            };
            callback.io_completed(result);
        }
    }
}

/// The newest entries of one group, contiguous by index.
#[derive(Default)]
pub struct LogCache {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
    /// Entries up to this index are in RocksDB.
    written: u64,
    /// Truncations so far: a write of entries cached before the latest one
    /// says nothing about the entries that replaced them.
    generation: u64,
}

impl LogCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn push(&mut self, entry: Entry, size: usize) {
        // A new entry must follow the cached ones; otherwise start over
        // (only written entries can be dropped: openraft appends right
        // after its last log id, so a gap means the cache holds older ones).
        if self
            .entries
            .back()
            .is_some_and(|(e, _)| e.log_id.index + 1 != entry.log_id.index)
        {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.entries.push_back((entry, size));
        self.evict();
    }

    /// Entries up to `index`, cached in `generation`, are in RocksDB.
    fn written(&mut self, index: u64, generation: u64) {
        if generation == self.generation {
            self.written = self.written.max(index);
            self.evict();
        }
    }

    /// Drops the oldest written entries beyond the budget.
    fn evict(&mut self) {
        while (self.entries.len() > CACHE_ENTRIES || self.bytes > CACHE_BYTES)
            && self
                .entries
                .front()
                .is_some_and(|(e, _)| e.log_id.index <= self.written)
        {
            if let Some((_, size)) = self.entries.pop_front() {
                self.bytes -= size;
            }
        }
    }

    /// Removes entries from `from` on (a conflicting suffix): entries
    /// cached later at those indexes are not written until their own write.
    fn truncate(&mut self, from: u64) {
        self.generation += 1;
        self.written = self.written.min(from.saturating_sub(1));
        self.retain(|index| index < from);
    }

    /// Removes entries up to `index` (purged).
    fn purge(&mut self, index: u64) {
        self.retain(|i| i > index);
    }

    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.entries.retain(|(e, _)| keep(e.log_id.index));
        self.bytes = self.entries.iter().map(|(_, s)| s).sum();
    }
}

/// How far a purge may remove entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurgeLimit {
    /// Never past the group's applied pointer as flushed to SST files. The
    /// state machine writes without RocksDB's WAL, so the entries applied
    /// since the last flush are the only copy a crash would leave of them:
    /// they stay until a flush covers them (RocksDB flushes when the
    /// memtables or the WAL reach their budget, so this lag is bounded) and
    /// a later purge removes them.
    FlushedApplies,
    /// As far as openraft asks (a log store without a state machine writing
    /// beside it: openraft's conformance tests).
    #[cfg(test)]
    Unlimited,
}

/// One group's view of the shared Raft log.
#[derive(Clone)]
pub struct GroupLogStore {
    group: u64,
    store: Store,
    syncer: WalSyncer,
    cache: Arc<parking_lot::Mutex<LogCache>>,
    purge_limit: PurgeLimit,
}

impl GroupLogStore {
    pub fn new(group: u64, store: Store, syncer: WalSyncer) -> Self {
        Self {
            group,
            store,
            syncer,
            cache: Arc::default(),
            purge_limit: PurgeLimit::FlushedApplies,
        }
    }

    #[cfg(test)]
    fn with_purge_limit(mut self, limit: PurgeLimit) -> Self {
        self.purge_limit = limit;
        self
    }

    /// Where a purge asked to reach `log_id` may actually stop.
    fn purge_point(&self, log_id: LogId) -> io::Result<Option<LogId>> {
        match self.purge_limit {
            #[cfg(test)]
            PurgeLimit::Unlimited => Ok(Some(log_id)),
            PurgeLimit::FlushedApplies => {
                let flushed: Option<LogId> = match self
                    .store
                    .get_persisted(CF_RAFT_META, &meta_key(self.group, TAG_APPLIED))
                    .map_err(io_err)?
                {
                    Some(bytes) => decode(&bytes)?,
                    None => None,
                };
                Ok(flushed.map(|applied| if applied.index < log_id.index { applied } else { log_id }))
            }
        }
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, tag: u8) -> io::Result<Option<T>> {
        let cf = self.store.cf(CF_RAFT_META);
        match self.store.db().get_cf(&cf, meta_key(self.group, tag)).map_err(io_err)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, tag: u8, value: &T, sync: bool) -> io::Result<()> {
        let cf = self.store.cf(CF_RAFT_META);
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        let mut batch = WriteBatch::default();
        batch.put_cf(&cf, meta_key(self.group, tag), encode(value)?);
        self.store.db().write_opt(batch, &opts).map_err(io_err)
    }

    /// Writes `batch` through the log writer, after the appends queued
    /// before it, and waits for it (on a blocking thread).
    async fn write_in_order(&self, batch: WriteBatch) -> io::Result<()> {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.syncer.send(LogWrite::Apply { batch, done });
        tokio::task::spawn_blocking(move || {
            wait.recv()
                .unwrap_or_else(|_| Err(io::Error::other("the Raft log writer has stopped")))
        })
        .await
        .map_err(io_err)?
    }

    /// Deletes everything this group stored (the node left the group; its
    /// Raft instance has stopped), in one batch with `data` (the deletion
    /// of the group's state-machine data), written through the log writer
    /// after every append queued before it: none lands after the delete.
    ///
    /// One logged batch, so a crash keeps all of it or none. Applies are
    /// written without the WAL and a crash may lose some of them; since the
    /// Raft state goes with the data, nothing is replayed on top of a
    /// delete, and without the delete the group is as it was (its applied
    /// pointer and data are flushed together).
    pub async fn destroy_with(&self, mut data: WriteBatch) -> io::Result<()> {
        let log = self.store.cf(CF_RAFT_LOG);
        data.delete_range_cf(&log, log_key(self.group, 0), log_key(self.group + 1, 0));
        let meta = self.store.cf(CF_RAFT_META);
        data.delete_range_cf(&meta, meta_key(self.group, 0), meta_key(self.group + 1, 0));
        *self.cache.lock() = LogCache::default();
        self.write_in_order(data).await
    }

    /// Whether this group has any Raft state on disk (it was initialised or joined).
    pub fn has_state(&self) -> io::Result<bool> {
        Ok(!self.cache.lock().entries.is_empty() || Self::group_has_state(&self.store, self.group)?)
    }

    /// Every group with Raft state in `store` (log entries, vote, applied
    /// pointer or membership), whether it is open or not.
    pub fn stored_groups(store: &Store) -> io::Result<BTreeSet<u64>> {
        let mut groups = BTreeSet::new();
        for (cf, key_len) in [(CF_RAFT_META, 9), (CF_RAFT_LOG, 16)] {
            let cf = store.cf(cf);
            // One seek per group: from the first key of the group after the last one found.
            let mut from = 0u64;
            loop {
                let start = from.to_be_bytes();
                let mut it = store
                    .db()
                    .iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward));
                let Some(item) = it.next() else { break };
                let (key, _) = item.map_err(io_err)?;
                let mut prefix = [0u8; 8];
                let n = key.len().min(8);
                prefix[..n].copy_from_slice(&key[..n]);
                let group = u64::from_be_bytes(prefix);
                // Other keys share the column family (the incarnation, the cluster id).
                if key.len() == key_len {
                    groups.insert(group);
                }
                match group.checked_add(1) {
                    Some(next) => from = next,
                    None => break,
                }
            }
        }
        Ok(groups)
    }

    /// `has_state` of `group`, before any log store is opened for it.
    pub fn group_has_state(store: &Store, group: u64) -> io::Result<bool> {
        let cf = store.cf(CF_RAFT_META);
        let voted = store
            .db()
            .get_cf(&cf, meta_key(group, TAG_VOTE))
            .map_err(io_err)?
            .is_some();
        let log = store.cf(CF_RAFT_LOG);
        let mut it = store
            .db()
            .iterator_cf(&log, IteratorMode::From(&log_key(group, 0), Direction::Forward));
        let logged = match it.next() {
            Some(item) => item.map_err(io_err)?.0[..8] == group.to_be_bytes(),
            None => false,
        };
        Ok(voted || logged)
    }

    fn last_stored_entry(&self) -> io::Result<Option<Entry>> {
        let cf = self.store.cf(CF_RAFT_LOG);
        // The last key at or before this group's highest possible key (no
        // entry has index u64::MAX). Seeking back from the next group's
        // first key instead would land on that key itself when the next
        // group has an entry 0, and find this group's log empty.
        let end = log_key(self.group, u64::MAX);
        let mut it = self
            .store
            .db()
            .iterator_cf(&cf, IteratorMode::From(&end, Direction::Reverse));
        match it.next() {
            Some(item) => {
                let (key, value) = item.map_err(io_err)?;
                if key[..8] != self.group.to_be_bytes() {
                    return Ok(None);
                }
                Ok(Some(self.decode_entry(&key, &value)?))
            }
            None => Ok(None),
        }
    }

    /// An entry read from `raft_log`, decrypted when encryption is on.
    fn decode_entry(&self, key: &[u8], stored: &[u8]) -> io::Result<Entry> {
        decode(&open_opt(self.store.at_rest(), Domain::RaftLog, key, stored).map_err(io_err)?)
    }

    /// Entries `[start, end)` (end `None`: to the last), at most `max_bytes`
    /// of them after the first, checked to be what the log holds: no hole,
    /// and (for a full read) nothing missing at the end that the log has
    /// (entries before the first one found are not in the log: the scan
    /// starts at `start`). openraft applies
    /// what this returns without checking it, so a short read would skip
    /// committed entries on this replica only.
    fn read(&self, start: u64, end: Option<u64>, max_bytes: usize) -> io::Result<Vec<Entry>> {
        let out = self.read_unchecked(start, end, max_bytes)?;
        let missing = |what: String| {
            tracing::error!(group = self.group, start, ?end, "Raft log read incomplete: {what}");
            Err(io::Error::other(format!(
                "Raft log of group {:#x} is missing entries: {what}",
                self.group
            )))
        };
        if let Some(pair) = out.windows(2).find(|w| w[0].log_id.index + 1 != w[1].log_id.index) {
            return missing(format!(
                "entry {} follows entry {}",
                pair[1].log_id.index, pair[0].log_id.index
            ));
        }
        if let Some(end) = end
            && max_bytes == usize::MAX
        {
            let got_to = out.last().map_or(start, |e| e.log_id.index + 1);
            if got_to < end && self.has_entry(got_to)? {
                return missing(format!(
                    "the read up to {end} stops at {got_to}, and the log has entry {got_to}"
                ));
            }
        }
        Ok(out)
    }

    /// Whether the log holds entry `index` (cached or stored).
    fn has_entry(&self, index: u64) -> io::Result<bool> {
        let cached = {
            let cache = self.cache.lock();
            match (cache.entries.front(), cache.entries.back()) {
                (Some((first, _)), Some((last, _))) => (first.log_id.index..=last.log_id.index).contains(&index),
                _ => false,
            }
        };
        let cf = self.store.cf(CF_RAFT_LOG);
        Ok(cached
            || self
                .store
                .db()
                .get_cf(&cf, log_key(self.group, index))
                .map_err(io_err)?
                .is_some())
    }

    fn read_unchecked(&self, start: u64, end: Option<u64>, max_bytes: usize) -> io::Result<Vec<Entry>> {
        let in_range = |i: u64| end.is_none_or(|e| i < e);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let cached_from = {
            let cache = self.cache.lock();
            match cache.first_index() {
                Some(first) if first <= start => {
                    for (entry, size) in cache.entries.iter().skip((start - first) as usize) {
                        if !in_range(entry.log_id.index) || (!out.is_empty() && bytes + size > max_bytes) {
                            break;
                        }
                        bytes += size;
                        out.push(entry.clone());
                    }
                    return Ok(out);
                }
                first => first,
            }
        };
        let cf = self.store.cf(CF_RAFT_LOG);
        let from = log_key(self.group, start);
        for item in self
            .store
            .db()
            .iterator_cf(&cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) = item.map_err(io_err)?;
            if key[..8] != self.group.to_be_bytes() {
                break;
            }
            let index = u64::from_be_bytes(key[8..16].try_into().map_err(io_err)?);
            if !in_range(index) || cached_from.is_some_and(|c| index >= c) {
                break;
            }
            if !out.is_empty() && bytes + value.len() > max_bytes {
                return Ok(out);
            }
            bytes += value.len();
            out.push(self.decode_entry(&key, &value)?);
        }
        // The rest (if any) from the cache. Stored entries stop before the
        // cache starts when the log begins in the cache; a gap between the
        // two is a hole, which `read` reports.
        if cached_from.is_some() {
            let next = out.last().map_or(start, |e: &Entry| e.log_id.index + 1);
            let cache = self.cache.lock();
            if let Some(first) = cache.first_index() {
                for (entry, size) in cache.entries.iter().skip(next.saturating_sub(first) as usize) {
                    if !in_range(entry.log_id.index) || (!out.is_empty() && bytes + size > max_bytes) {
                        break;
                    }
                    bytes += size;
                    out.push(entry.clone());
                }
            }
        }
        Ok(out)
    }
}

fn range_of<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(x) => *x,
        Bound::Excluded(x) => x + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(x) => Some(x + 1),
        Bound::Excluded(x) => Some(*x),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for GroupLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = range_of(&range);
        self.read(start, end, usize::MAX)
    }

    /// A prefix of at most `READ_LIMIT_BYTES` (at least one entry), so one
    /// AppendEntries stays well under the transport's message limit.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, io::Error> {
        self.read(start, Some(end), READ_LIMIT_BYTES)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta(TAG_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for GroupLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.get_meta(TAG_PURGED)?;
        let cached_last = self.cache.lock().entries.back().map(|(e, _)| e.log_id);
        let last_log_id = match cached_last {
            Some(id) => Some(id),
            None => match self.last_stored_entry()? {
                Some(entry) => Some(entry.log_id),
                None => last_purged_log_id,
            },
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // A vote must be on disk before it is acted on.
        let this = self.clone();
        let vote = *vote;
        tokio::task::spawn_blocking(move || this.put_meta(TAG_VOTE, &vote, true))
            .await
            .map_err(io_err)?
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not synced: it only lets a restart apply committed entries sooner.
        // Written through the log writer (no RocksDB write on this thread).
        let cf = self.store.cf(CF_RAFT_META);
        let mut batch = WriteBatch::default();
        batch.put_cf(&cf, meta_key(self.group, TAG_COMMITTED), encode(&committed)?);
        let (done, _ignored) = std::sync::mpsc::sync_channel(1);
        self.syncer.send(LogWrite::Apply { batch, done });
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta::<Option<LogId>>(TAG_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.store.cf(CF_RAFT_LOG);
        let encoded = entries
            .into_iter()
            .map(|entry| Ok((encode_with_capacity(&entry, entry_size(&entry))?, entry)))
            .collect::<io::Result<Vec<_>>>()?;
        // Sized for every entry, so RocksDB never regrows (and copies) the batch.
        let capacity = encoded
            .iter()
            .map(|(bytes, _)| bytes.len() + BATCH_PUT_OVERHEAD)
            .sum::<usize>();
        let mut batch = WriteBatch::with_capacity_bytes(BATCH_HEADER + capacity);
        let mut last_index = 0;
        let generation = {
            let mut cache = self.cache.lock();
            let at_rest = self.store.at_rest();
            for (bytes, entry) in encoded {
                let key = log_key(self.group, entry.log_id.index);
                batch.put_cf(
                    &cf,
                    key,
                    seal_opt(at_rest, Domain::RaftLog, &key, &bytes).map_err(io_err)?,
                );
                last_index = entry.log_id.index;
                cache.push(entry, bytes.len());
            }
            cache.generation
        };
        // Readable now (from the cache); durable once the writer's fsync covers it.
        stages::mark("log_queued", self.group, last_index);
        self.syncer.send(LogWrite::Append {
            batch,
            cache: self.cache.clone(),
            last_index,
            generation,
            callback,
            group: self.group,
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        self.cache.lock().truncate(from);
        let cf = self.store.cf(CF_RAFT_LOG);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&cf, log_key(self.group, from), log_key(self.group + 1, 0));
        self.write_in_order(batch).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // openraft reads nothing at or before `log_id` again; entries kept
        // on disk past it (see `PurgeLimit`) are for a restart only.
        self.cache.lock().purge(log_id.index);
        let this = self.clone();
        let (point, purged) = tokio::task::spawn_blocking(move || {
            let purged: Option<LogId> = this.get_meta(TAG_PURGED)?;
            Ok::<_, io::Error>((this.purge_point(log_id)?, purged))
        })
        .await
        .map_err(io_err)??;
        let Some(point) = point.filter(|p| purged.is_none_or(|done| done.index < p.index)) else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        // The purge point first: entries at or before it are ignored anyway.
        batch.put_cf(
            &self.store.cf(CF_RAFT_META),
            meta_key(self.group, TAG_PURGED),
            encode(&point)?,
        );
        batch.delete_range_cf(
            &self.store.cf(CF_RAFT_LOG),
            log_key(self.group, 0),
            log_key(self.group, point.index + 1),
        );
        self.write_in_order(batch).await
    }
}

#[cfg(test)]
mod tests {
    //! openraft's own storage conformance tests, run on the log store (and
    //! a partition group's state machine) over a real RocksDB.

    use std::sync::Arc;

    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};

    use super::*;
    use crate::cluster::identity;
    use crate::cluster::state_machine::{GroupStateMachine, SharedState};
    use crate::cluster::types::{META_GROUP, partition_group};
    use crate::core::catalog::Catalog;
    use crate::core::state_machine::MetaMachine;

    struct Builder;

    /// What a test keeps besides the stores: its directory and the log
    /// writer thread, joined at the end so that RocksDB is closed before
    /// the test process exits (a database still open in another thread at
    /// exit aborts the process).
    struct Guard {
        _dir: tempfile::TempDir,
        writer: std::thread::JoinHandle<()>,
    }

    impl Guard {
        /// Waits for the writer to stop: call once every log store is dropped.
        fn finish(self) {
            self.writer.join().unwrap();
        }
    }

    impl StoreBuilder<TypeConfig, GroupLogStore, GroupStateMachine, Guard> for Builder {
        async fn build(&self) -> Result<(Guard, GroupLogStore, GroupStateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let shared = Arc::new(SharedState {
                store: store.clone(),
                meta: parking_lot::Mutex::new(MetaMachine::load(store.clone()).unwrap()),
                catalog: Arc::new(Catalog::load(Vec::new())),
            });
            let group = partition_group(1, 0);
            let (syncer, writer) = WalSyncer::start_joinable(store.clone()).unwrap();
            let log = GroupLogStore::new(group, store, syncer).with_purge_limit(PurgeLimit::Unlimited);
            let machine = GroupStateMachine::open(group, shared).unwrap();
            Ok((Guard { _dir: dir, writer }, log, machine))
        }
    }

    type S = Suite<TypeConfig, GroupLogStore, GroupStateMachine, Builder, Guard>;

    async fn run<F, Fu>(name: &str, test: F)
    where
        F: Fn(GroupLogStore, GroupStateMachine) -> Fu,
        Fu: std::future::Future<Output = Result<(), io::Error>>,
    {
        let (guard, log, machine) = Builder.build().await.unwrap();
        if let Err(err) = test(log, machine).await {
            panic!("openraft storage test {name} failed: {err}");
        }
        guard.finish();
    }

    macro_rules! conformance {
        ($($test:ident),* $(,)?) => {
            $(run(stringify!($test), S::$test).await;)*
        };
    }

    #[tokio::test]
    async fn the_log_store_passes_openraft_conformance_tests() {
        conformance!(
            last_membership_in_log_initial,
            last_membership_in_log,
            last_membership_in_log_multi_step,
            get_membership_initial,
            get_membership_from_log_and_empty_sm,
            get_membership_from_empty_log_and_sm,
            get_membership_from_log_le_sm_last_applied,
            get_membership_from_log_gt_sm_last_applied_1,
            get_membership_from_log_gt_sm_last_applied_2,
            get_initial_state_membership_from_empty_log_and_sm,
            get_initial_state_membership_from_sm_inlog_is_smaller,
            get_initial_state_membership_from_log_insm_is_smaller,
            get_initial_state_without_init,
            get_initial_state_with_state,
            get_initial_state_last_log_gt_sm,
            get_initial_state_last_log_lt_sm,
            get_initial_state_inverted_log_order,
            get_initial_state_conflict_at_same_index,
            get_initial_state_log_ids,
            get_initial_state_re_apply_committed,
            save_vote,
            get_log_entries,
            limited_get_log_entries,
            leader_bounded_stream,
            entries_stream,
            try_get_log_entry,
            log_reader_reads_new_entries,
            initial_logs,
            get_log_state,
            get_log_id,
            last_id_in_log,
            last_applied_state,
            purge_logs_upto_0,
            purge_logs_upto_5,
            purge_logs_upto_20,
            delete_logs_after_11,
            delete_logs_after_5,
            delete_logs_after_0,
            delete_logs_after_none,
            append_to_log,
            apply_single,
            apply_multiple,
        );
    }

    fn blank(index: u64) -> Entry {
        openraft::testing::blank_ent::<TypeConfig>(1, 0, index)
    }

    /// Appends `entries` and waits until they are reported durable.
    async fn append_durably(log: &mut GroupLogStore, entries: impl Iterator<Item = Entry> + Send) {
        use openraft::type_config::TypeConfigExt;
        let (tx, rx) = TypeConfig::oneshot();
        log.append(entries, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
    }

    #[test]
    fn a_write_of_entries_that_a_truncation_replaced_does_not_mark_their_replacements_written() {
        let mut cache = LogCache::default();
        for i in 1..=5 {
            cache.push(blank(i), 10);
        }
        let before = cache.generation;
        cache.truncate(3);
        cache.push(blank(3), 10);
        cache.push(blank(4), 10);
        // The write of the old entries 1..=5 completes after the truncation.
        cache.written(5, before);
        assert_eq!(cache.written, 0, "entries 3 and 4 now cached are not written yet");
        cache.written(4, cache.generation);
        assert_eq!(cache.written, 4);
    }

    #[tokio::test]
    async fn a_read_across_a_hole_in_the_stored_log_is_an_error_not_a_shorter_answer() {
        let (guard, mut log, machine) = Builder.build().await.unwrap();
        append_durably(&mut log, (1..=5).map(blank)).await;
        // A fresh view of the group (nothing cached), and entry 3 lost.
        let mut fresh = GroupLogStore::new(log.group, log.store.clone(), log.syncer.clone());
        {
            let cf = log.store.cf(CF_RAFT_LOG);
            log.store.db().delete_cf(&cf, log_key(log.group, 3)).unwrap();
        }
        let read = fresh.try_get_log_entries(1..6).await;
        assert!(read.is_err(), "a hole must not be skipped: {read:?}");
        let read = fresh.try_get_log_entries(1..3).await.unwrap();
        assert_eq!(read.len(), 2, "the entries before the hole are readable");
        drop((log, fresh, machine));
        guard.finish();
    }

    /// What a restart of this group would find: its purge point and the
    /// first entry still stored.
    async fn stored_start(log: &GroupLogStore) -> (Option<u64>, Option<u64>) {
        let mut fresh = GroupLogStore::new(log.group, log.store.clone(), log.syncer.clone());
        let purged = fresh.get_log_state().await.unwrap().last_purged_log_id.map(|l| l.index);
        let first = fresh
            .try_get_log_entries(0..100)
            .await
            .unwrap()
            .first()
            .map(|e| e.log_id.index);
        (purged, first)
    }

    #[tokio::test]
    async fn a_purge_keeps_the_entries_whose_applies_are_not_flushed_yet() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (syncer, writer) = WalSyncer::start_joinable(store.clone()).unwrap();
        let group = partition_group(1, 0);
        let mut log = GroupLogStore::new(group, store.clone(), syncer.clone());
        append_durably(&mut log, (1..=10).map(blank)).await;
        let applied_up_to = |index: u64| {
            // As the state machine writes it: without the WAL.
            let mut batch = WriteBatch::default();
            let applied = Some(openraft::testing::log_id::<TypeConfig>(1, 0, index));
            batch.put_cf(
                &store.cf(CF_RAFT_META),
                meta_key(group, TAG_APPLIED),
                encode(&applied).unwrap(),
            );
            store.write_unlogged(batch).unwrap();
        };
        let purge_to = |index: u64| openraft::testing::log_id::<TypeConfig>(1, 0, index);

        applied_up_to(8);
        log.purge(purge_to(7)).await.unwrap();
        assert_eq!(
            stored_start(&log).await,
            (None, Some(1)),
            "no apply is flushed: a crash re-applies from the start, so every entry stays"
        );

        store.flush_all().unwrap();
        applied_up_to(10);
        log.purge(purge_to(9)).await.unwrap();
        assert_eq!(
            stored_start(&log).await,
            (Some(8), Some(9)),
            "purged up to the flushed applied pointer (8), not to 9"
        );

        store.flush_all().unwrap();
        log.purge(purge_to(9)).await.unwrap();
        assert_eq!(
            stored_start(&log).await,
            (Some(9), Some(10)),
            "the rest once a flush covers it"
        );
        drop((log, syncer));
        writer.join().unwrap();
    }

    #[tokio::test]
    async fn stored_groups_lists_every_group_with_raft_state_and_forgets_destroyed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (syncer, writer) = WalSyncer::start_joinable(store.clone()).unwrap();
        // The broker's own keys in raft_meta are not groups.
        identity::load_or_stamp_incarnation(&store, false).unwrap();
        identity::stamp_cluster_id(&store, "flymq-test").unwrap();
        assert!(GroupLogStore::stored_groups(&store).unwrap().is_empty());

        let logged = partition_group(1, 0);
        let mut log = GroupLogStore::new(logged, store.clone(), syncer.clone());
        append_durably(&mut log, (1..=3).map(blank)).await;
        let voted = partition_group(1, 2);
        let mut voter = GroupLogStore::new(voted, store.clone(), syncer.clone());
        voter.save_vote(&Vote::new(1, 1)).await.unwrap();
        let meta = GroupLogStore::new(META_GROUP, store.clone(), syncer.clone());
        meta.put_meta(
            TAG_APPLIED,
            &Some(openraft::testing::log_id::<TypeConfig>(1, 0, 1)),
            true,
        )
        .unwrap();
        assert_eq!(
            GroupLogStore::stored_groups(&store).unwrap(),
            BTreeSet::from([META_GROUP, logged, voted])
        );

        log.destroy_with(WriteBatch::default()).await.unwrap();
        assert_eq!(
            GroupLogStore::stored_groups(&store).unwrap(),
            BTreeSet::from([META_GROUP, voted])
        );
        drop((log, voter, meta, syncer));
        writer.join().unwrap();
    }

    #[tokio::test]
    async fn a_reopened_log_finds_its_last_entry_when_the_next_group_has_an_entry_zero() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (syncer, writer) = WalSyncer::start_joinable(store.clone()).unwrap();
        let group = partition_group(1, 0);
        for (id, last) in [(group, 7), (group + 1, 3)] {
            let mut log = GroupLogStore::new(id, store.clone(), syncer.clone());
            append_durably(&mut log, (0..=last).map(blank)).await;
        }
        // After a restart (nothing cached) each group still finds its own log.
        for (id, last) in [(group, 7), (group + 1, 3)] {
            let mut reopened = GroupLogStore::new(id, store.clone(), syncer.clone());
            let state = reopened.get_log_state().await.unwrap();
            assert_eq!(state.last_log_id.map(|l| l.index), Some(last), "group {id:#x}");
        }
        drop(syncer);
        writer.join().unwrap();
    }
}
