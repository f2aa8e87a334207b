//! The Raft state machine of one group, on top of the broker's shared
//! deterministic `StateMachine`.
//!
//! All groups of a broker apply through one `StateMachine` (behind a mutex):
//! the metadata group applies topic and consumer-group commands, a partition
//! group applies its appends and truncations. Each apply writes the data and
//! the group's applied pointer in one WriteBatch, so a crash can never leave
//! one without the other.

use std::io;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use super::log_store::{TAG_APPLIED, TAG_MEMBERSHIP, meta_key};
use super::types::{
    CommandResults, LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig, decode, encode,
    split_group,
};
use crate::core::catalog::Catalog;
use crate::core::state_machine::StateMachine;
use crate::storage::{CF_LOG, CF_META, CF_OFFSETS, CF_RAFT_META, Store, keys, prefix_end};

/// State every group of one broker applies to.
pub struct SharedState {
    pub store: Store,
    pub machine: parking_lot::Mutex<StateMachine>,
    pub catalog: Arc<Catalog>,
}

impl SharedState {
    /// Reloads the in-memory state from disk (after a snapshot install or a failed write).
    fn reload(&self, machine: &mut StateMachine) -> io::Result<()> {
        *machine = StateMachine::load(self.store.clone()).map_err(io_err)?;
        self.catalog.reload(self.store.load_topics().map_err(io_err)?);
        Ok(())
    }
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A snapshot of the metadata group: topic records, cluster values and every
/// consumer-group offset.
#[derive(Serialize, Deserialize)]
struct MetaSnapshot {
    meta: Vec<(Vec<u8>, Vec<u8>)>,
    offsets: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A snapshot of one partition group: its state and every retained batch.
#[derive(Serialize, Deserialize)]
struct PartitionSnapshot {
    state: Option<Vec<u8>>,
    batches: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Clone)]
pub struct GroupStateMachine {
    group: u64,
    shared: Arc<SharedState>,
}

impl GroupStateMachine {
    pub fn new(group: u64, shared: Arc<SharedState>) -> Self {
        Self { group, shared }
    }

    fn read_applied(&self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let store = &self.shared.store;
        let cf = store.cf(CF_RAFT_META);
        let applied = match store
            .db()
            .get_cf(&cf, meta_key(self.group, TAG_APPLIED))
            .map_err(io_err)?
        {
            Some(bytes) => decode(&bytes)?,
            None => None,
        };
        let membership = match store
            .db()
            .get_cf(&cf, meta_key(self.group, TAG_MEMBERSHIP))
            .map_err(io_err)?
        {
            Some(bytes) => decode(&bytes)?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// Builds a snapshot of this group's current applied state.
    fn build(&self) -> io::Result<Option<Snapshot>> {
        let store = &self.shared.store;
        // The machine lock orders this with applies, so data and applied
        // pointer read from the RocksDB snapshot agree.
        let (db_snapshot, (applied, membership)) = {
            let _guard = self.shared.machine.lock();
            (store.db().snapshot(), self.read_applied()?)
        };
        if applied.is_none() {
            return Ok(None);
        }
        let data = match split_group(self.group) {
            None => {
                let meta_cf = store.cf(CF_META);
                let mut meta = Vec::new();
                for prefix in [keys::TOPIC_META_PREFIX, b"c/".as_slice()] {
                    for item in db_snapshot.iterator_cf(&meta_cf, IteratorMode::From(prefix, Direction::Forward)) {
                        let (k, v) = item.map_err(io_err)?;
                        if !k.starts_with(prefix) {
                            break;
                        }
                        meta.push((k.to_vec(), v.to_vec()));
                    }
                }
                let offsets_cf = store.cf(CF_OFFSETS);
                let offsets = db_snapshot
                    .iterator_cf(&offsets_cf, IteratorMode::Start)
                    .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io_err))
                    .collect::<io::Result<Vec<_>>>()?;
                encode(&MetaSnapshot { meta, offsets })?
            }
            Some((topic_id, partition)) => {
                let meta_cf = store.cf(CF_META);
                let state = db_snapshot
                    .get_cf(&meta_cf, keys::partition_state_key(topic_id, partition))
                    .map_err(io_err)?;
                let log_cf = store.cf(CF_LOG);
                let prefix = &keys::log_key(topic_id, partition, 0)[..8];
                let mut batches = Vec::new();
                for item in db_snapshot.iterator_cf(&log_cf, IteratorMode::From(prefix, Direction::Forward)) {
                    let (k, v) = item.map_err(io_err)?;
                    if !k.starts_with(prefix) {
                        break;
                    }
                    batches.push((k.to_vec(), v.to_vec()));
                }
                encode(&PartitionSnapshot { state, batches })?
            }
        };
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
            },
            snapshot: SnapshotData::new(data),
        }))
    }

    fn install(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let store = &self.shared.store;
        let mut batch = WriteBatch::default();
        match split_group(self.group) {
            None => {
                let snapshot: MetaSnapshot = decode(data)?;
                let meta_cf = store.cf(CF_META);
                // Topics the snapshot no longer has lose their data too.
                let keep: std::collections::HashSet<&[u8]> = snapshot.meta.iter().map(|(k, _)| k.as_slice()).collect();
                for (record, _) in store.load_topics().map_err(io_err)? {
                    if !keep.contains(keys::topic_meta_key(&record.name).as_slice()) {
                        store.delete_topic(&mut batch, &record);
                    }
                }
                for prefix in [keys::TOPIC_META_PREFIX, b"c/".as_slice()] {
                    batch.delete_range_cf(&meta_cf, prefix, prefix_end(prefix).as_slice());
                }
                for (k, v) in &snapshot.meta {
                    batch.put_cf(&meta_cf, k, v);
                }
                let offsets_cf = store.cf(CF_OFFSETS);
                for item in store.db().iterator_cf(&offsets_cf, IteratorMode::Start) {
                    let (k, _) = item.map_err(io_err)?;
                    batch.delete_cf(&offsets_cf, k);
                }
                for (k, v) in &snapshot.offsets {
                    batch.put_cf(&offsets_cf, k, v);
                }
            }
            Some((topic_id, partition)) => {
                let snapshot: PartitionSnapshot = decode(data)?;
                let log_cf = store.cf(CF_LOG);
                let prefix = keys::log_key(topic_id, partition, 0);
                batch.delete_range_cf(&log_cf, &prefix[..8], prefix_end(&prefix[..8]).as_slice());
                for (k, v) in &snapshot.batches {
                    batch.put_cf(&log_cf, k, v);
                }
                let meta_cf = store.cf(CF_META);
                let state_key = keys::partition_state_key(topic_id, partition);
                match &snapshot.state {
                    Some(state) => batch.put_cf(&meta_cf, state_key, state),
                    None => batch.delete_cf(&meta_cf, state_key),
                }
            }
        }
        let raft_cf = store.cf(CF_RAFT_META);
        batch.put_cf(&raft_cf, meta_key(self.group, TAG_APPLIED), encode(&meta.last_log_id)?);
        batch.put_cf(
            &raft_cf,
            meta_key(self.group, TAG_MEMBERSHIP),
            encode(&meta.last_membership)?,
        );
        let mut machine = self.shared.machine.lock();
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        store.db().write_opt(batch, &opts).map_err(io_err)?;
        self.shared.reload(&mut machine)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for GroupStateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let this = self.clone();
        let built = tokio::task::spawn_blocking(move || this.build())
            .await
            .map_err(io_err)??;
        built.ok_or_else(|| io::Error::other("nothing applied yet: no snapshot to build"))
    }
}

impl RaftStateMachine<TypeConfig> for GroupStateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        self.read_applied()
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut commands = Vec::new();
        let mut spans = Vec::new();
        let mut last_applied = None;
        let mut last_membership = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            let start = commands.len();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => commands.extend(batch.0),
                EntryPayload::Membership(membership) => {
                    last_membership = Some(StoredMembership::new(Some(entry.log_id), membership));
                }
            }
            last_applied = Some(entry.log_id);
            spans.push((responder, start..commands.len()));
        }
        let Some(last_applied) = last_applied else {
            return Ok(());
        };
        let store = &self.shared.store;
        let results = {
            let mut machine = self.shared.machine.lock();
            let output = machine.apply_all(commands);
            let mut batch = output.batch;
            let raft_cf = store.cf(CF_RAFT_META);
            batch.put_cf(
                &raft_cf,
                meta_key(self.group, TAG_APPLIED),
                encode(&Some(last_applied))?,
            );
            if let Some(membership) = &last_membership {
                batch.put_cf(&raft_cf, meta_key(self.group, TAG_MEMBERSHIP), encode(membership)?);
            }
            // Not synced: the entries are durable in the Raft log, and a crash
            // re-applies from the last applied pointer written with this data.
            if let Err(err) = store.db().write(batch) {
                tracing::error!(group = self.group, error = %err, "applying committed entries failed");
                let _ = self.shared.reload(&mut machine);
                return Err(io_err(err));
            }
            self.shared.catalog.publish(output.publish);
            output.results
        };
        let mut results = results.into_iter().map(|r| r.map_err(|e| e.to_string()));
        for (responder, span) in spans {
            let mine: CommandResults = results.by_ref().take(span.len()).collect();
            if let Some(responder) = responder {
                responder.send(mine);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), io::Error> {
        let this = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || this.install(&meta, snapshot.get_ref()))
            .await
            .map_err(io_err)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        // Built on demand: a snapshot of the current applied state covers at
        // least as much as any earlier one, and nothing has to be kept on disk.
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.build())
            .await
            .map_err(io_err)?
    }
}
