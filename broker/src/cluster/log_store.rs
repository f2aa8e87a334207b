//! Raft log storage for every group on the broker's RocksDB (`raft_log` and
//! `raft_meta` column families, keys prefixed by the group id).
//!
//! `append` writes the entries at once (so they are readable when it
//! returns) and reports them durable only after the WAL is synced. Syncs are
//! group-committed: one thread serves every group, and one `fsync` covers all
//! appends that arrived while the previous one ran.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use crossbeam_channel::{Receiver, Sender};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use super::types::{Entry, LogId, TypeConfig, Vote, decode, encode};
use crate::storage::{CF_RAFT_LOG, CF_RAFT_META, Store};

const TAG_VOTE: u8 = b'v';
const TAG_PURGED: u8 = b'p';
const TAG_COMMITTED: u8 = b'c';
pub(crate) const TAG_APPLIED: u8 = b'a';
pub(crate) const TAG_MEMBERSHIP: u8 = b'm';

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

/// Group-commits WAL syncs for every group's appends.
#[derive(Clone)]
pub struct WalSyncer {
    tx: Sender<IOFlushed<TypeConfig>>,
}

impl WalSyncer {
    pub fn start(store: Store) -> io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("flymq-raft-sync".into())
            .spawn(move || sync_loop(store, rx))?;
        Ok(Self { tx })
    }

    fn request(&self, callback: IOFlushed<TypeConfig>) {
        if let Err(err) = self.tx.send(callback) {
            err.into_inner()
                .io_completed(Err(io::Error::other("the WAL sync thread has stopped")));
        }
    }
}

fn sync_loop(store: Store, rx: Receiver<IOFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let result = store.db().flush_wal(true);
        for callback in waiting {
            callback.io_completed(result.as_ref().map(|_| ()).map_err(io_err));
        }
    }
}

/// One group's view of the shared Raft log.
#[derive(Clone)]
pub struct GroupLogStore {
    group: u64,
    store: Store,
    syncer: WalSyncer,
}

impl GroupLogStore {
    pub fn new(group: u64, store: Store, syncer: WalSyncer) -> Self {
        Self { group, store, syncer }
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

    /// Deletes everything this group stored (the node left the group).
    pub fn destroy(&self) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        let log = self.store.cf(CF_RAFT_LOG);
        batch.delete_range_cf(&log, log_key(self.group, 0), log_key(self.group + 1, 0));
        let meta = self.store.cf(CF_RAFT_META);
        batch.delete_range_cf(&meta, meta_key(self.group, 0), meta_key(self.group + 1, 0));
        self.store.db().write(batch).map_err(io_err)
    }

    /// Whether this group has any Raft state on disk (it was initialised or joined).
    pub fn has_state(&self) -> io::Result<bool> {
        Ok(self.get_meta::<Vote>(TAG_VOTE)?.is_some() || self.last_entry()?.is_some())
    }

    fn last_entry(&self) -> io::Result<Option<Entry>> {
        let cf = self.store.cf(CF_RAFT_LOG);
        let end = log_key(self.group + 1, 0);
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
                Ok(Some(decode(&value)?))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for GroupLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x + 1,
            Bound::Unbounded => 0,
        };
        let cf = self.store.cf(CF_RAFT_LOG);
        let from = log_key(self.group, start);
        let mut out = Vec::new();
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
            if !range.contains(&index) {
                break;
            }
            out.push(decode(&value)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta(TAG_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for GroupLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.get_meta(TAG_PURGED)?;
        let last_log_id = match self.last_entry()? {
            Some(entry) => Some(entry.log_id),
            None => last_purged_log_id,
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
        self.put_meta(TAG_COMMITTED, &committed, false)
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
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(&cf, log_key(self.group, entry.log_id.index), encode(&entry)?);
        }
        // Written now so the entries are readable when this returns; durable
        // (and reported so) once the syncer's fsync covers them.
        self.store.db().write(batch).map_err(io_err)?;
        self.syncer.request(callback);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        let cf = self.store.cf(CF_RAFT_LOG);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&cf, log_key(self.group, from), log_key(self.group + 1, 0));
        self.store.db().write(batch).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // The purge point first: entries at or before it are ignored anyway.
        self.put_meta(TAG_PURGED, &log_id, false)?;
        let cf = self.store.cf(CF_RAFT_LOG);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&cf, log_key(self.group, 0), log_key(self.group, log_id.index + 1));
        self.store.db().write(batch).map_err(io_err)
    }
}
