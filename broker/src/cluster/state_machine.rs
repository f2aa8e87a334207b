//! The Raft state machine of one group, on top of the broker's shared
//! deterministic `StateMachine`.
//!
//! The metadata group applies the shared `MetaMachine` (topics, groups,
//! offsets); each partition group applies its own `PartitionMachine`, so
//! partitions apply in parallel. Each apply runs on a blocking thread and
//! writes the data and the group's applied pointer in one WriteBatch, so a
//! crash can never leave one without the other.
//!
//! Applies are written without RocksDB's WAL, since the Raft log already
//! holds every entry durably: writing the payload a second time to the WAL
//! cost about a tenth of a broker's CPU. Until RocksDB flushes them (every
//! column family at once), they exist only in memory; a crash loses them
//! and the group re-applies its entries from the applied pointer that was
//! flushed with the data. The log store never purges entries a flush has
//! not covered (`PurgeLimit`).

use std::io;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use rocksdb::WriteBatch;

use super::log_store::{TAG_APPLIED, TAG_MEMBERSHIP, meta_key};
use super::snapshot::{self, LocalSnapshot};
use super::stages;
use super::types::{
    CommandResults, LogId, META_GROUP, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig, decode,
    encode, split_group,
};
use crate::core::catalog::{Catalog, Publish};
use crate::core::command::Command;
use crate::core::state_machine::{MetaMachine, PartitionMachine};
use crate::storage::{
    BATCH_HEADER, BATCH_PUT_OVERHEAD, CF_META, CF_RAFT_META, PartitionState, StorageError, Store, in_place, keys,
};

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// State every group of one broker shares: the store, the metadata machine
/// (applied by the metadata group only) and the read catalog.
pub struct SharedState {
    pub store: Store,
    pub meta: parking_lot::Mutex<MetaMachine>,
    pub catalog: Arc<Catalog>,
}

impl SharedState {
    /// Reloads the metadata machine and the catalog from disk (after a
    /// snapshot install or a failed write).
    fn reload_meta(&self, machine: &mut MetaMachine) -> io::Result<()> {
        *machine = MetaMachine::load(self.store.clone()).map_err(io_err)?;
        self.catalog.reload_with(|| self.store.load_topics()).map_err(io_err)?;
        self.catalog.update_security(machine.security_state());
        Ok(())
    }

    /// Adds to `batch` the deletion of a partition's records and state on
    /// this broker (its replica moved away or its topic was deleted); see
    /// `GroupLogStore::destroy_with`.
    pub fn delete_partition_data(&self, batch: &mut WriteBatch, topic_id: u32, partition: u32) {
        let store = &self.store;
        store.delete_batches(batch, topic_id, partition, 0, u64::MAX);
        store.delete_partition_delayed(batch, topic_id, partition);
        store.delete_partition_txn_markers(batch, topic_id, partition);
        batch.delete_cf(&store.cf(CF_META), keys::partition_state_key(topic_id, partition));
    }

    /// Shows a dropped partition empty to readers.
    pub fn show_dropped(&self, topic_id: u32, partition: u32) {
        if let Some(topic) = self.catalog.topics().into_iter().find(|t| t.record.id == topic_id) {
            self.catalog.publish(vec![Publish::Partition {
                topic_id,
                name: topic.name().to_owned(),
                partition,
                state: PartitionState::default(),
            }]);
        }
    }
}

/// The machine a group applies to.
#[derive(Clone)]
enum Machine {
    /// The metadata group: the shared `MetaMachine`.
    Meta,
    /// A partition group: its own machine (no lock shared with other groups).
    Partition(Arc<parking_lot::Mutex<PartitionMachine>>),
}

#[derive(Clone)]
pub struct GroupStateMachine {
    group: u64,
    shared: Arc<SharedState>,
    machine: Machine,
}

/// How an apply's RocksDB write is made.
#[derive(Clone, Copy)]
enum WriteMode {
    /// On a blocking thread (`spawn_blocking`): the apply may read RocksDB.
    Blocking,
    /// On the async worker running the apply (see `write_in_place`).
    InPlace,
}

/// Writes an apply on the async worker that runs it. A memtable insert
/// takes microseconds; a hand-off to a blocking thread and back cost about
/// 90 µs of every replicated write (docs/benchmarks.md, stage trace). If
/// RocksDB would have to wait (a write stall), the write is made again with
/// the worker handed over to blocking work (`storage::in_place`).
fn write_in_place(store: &Store, batch: WriteBatch) -> Result<(), StorageError> {
    in_place::write_retrying_stalls(
        batch,
        |batch| store.write_unlogged_without_waiting(batch),
        |batch| store.write_unlogged(batch),
    )
}

/// Bytes to allocate for the write of `entries`' apply: their records, and
/// room for each entry's stored-batch key and header, a partition state or
/// two and the applied pointer. Allocated once, RocksDB does not regrow (and
/// copy) a batch of MiBs as puts are added; a batch that outgrows it (a
/// metadata apply, a delivery of many delayed records) still grows.
fn apply_batch_capacity(entries: &[PendingEntry]) -> usize {
    let per_entry = 4 * BATCH_PUT_OVERHEAD;
    let commands = entries
        .iter()
        .map(|e| per_entry + e.commands.iter().map(Command::size_hint).sum::<usize>())
        .sum::<usize>();
    BATCH_HEADER + 2 * BATCH_PUT_OVERHEAD + commands
}

/// An entry to apply: its commands (none for blank and membership entries).
struct PendingEntry {
    commands: Arc<Vec<Command>>,
    responder: Option<EntryResponderOf>,
}

type EntryResponderOf = openraft::storage::ApplyResponder<TypeConfig>;

impl GroupStateMachine {
    /// The state machine of `group`, loading a partition's state from disk
    /// (after finishing a snapshot install a crash interrupted).
    pub fn open(group: u64, shared: Arc<SharedState>) -> io::Result<Self> {
        snapshot::recover(&shared.store, group)?;
        if group == META_GROUP {
            // The metadata may have changed under the machine loaded at start.
            let mut meta = shared.meta.lock();
            shared.reload_meta(&mut meta)?;
        }
        let machine = match split_group(group) {
            None => Machine::Meta,
            Some((topic_id, partition)) => {
                let name = shared
                    .catalog
                    .topics()
                    .into_iter()
                    .find(|t| t.record.id == topic_id)
                    .map_or_else(|| format!("topic#{topic_id}"), |t| t.name().to_owned());
                let machine =
                    PartitionMachine::load(shared.store.clone(), topic_id, partition, name).map_err(io_err)?;
                Machine::Partition(Arc::new(parking_lot::Mutex::new(machine)))
            }
        };
        Ok(Self { group, shared, machine })
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

    /// Whether `entries` only append records to a partition: no command
    /// reads RocksDB, so the apply can run in place (`WriteMode::InPlace`).
    fn only_appends(&self, entries: &[PendingEntry]) -> bool {
        matches!(self.machine, Machine::Partition(_))
            && entries
                .iter()
                .all(|e| e.commands.iter().all(|c| matches!(c, Command::Append { .. })))
    }

    /// Applies entries: every command, a stored batch per entry, and the
    /// applied pointer in the same WriteBatch, written as `mode` says.
    /// Returns each entry's results.
    fn apply_entries(
        &self,
        entries: &[PendingEntry],
        last_applied: LogId,
        last_membership: Option<StoredMembership>,
        mode: WriteMode,
    ) -> io::Result<Vec<CommandResults>> {
        let store = &self.shared.store;
        let mut batch = WriteBatch::with_capacity_bytes(apply_batch_capacity(entries));
        let mut publish = Vec::new();
        let mut results = Vec::with_capacity(entries.len());
        let write = |batch: &mut WriteBatch| -> io::Result<()> {
            let raft_cf = store.cf(CF_RAFT_META);
            batch.put_cf(
                &raft_cf,
                meta_key(self.group, TAG_APPLIED),
                encode(&Some(last_applied))?,
            );
            if let Some(membership) = &last_membership {
                batch.put_cf(&raft_cf, meta_key(self.group, TAG_MEMBERSHIP), encode(membership)?);
            }
            // Without the WAL: the entries are durable in the Raft log, which
            // keeps them until a flush has made this write durable (the log
            // store's purge limit); a crash re-applies from the applied
            // pointer flushed with the data.
            let batch = std::mem::take(batch);
            match mode {
                WriteMode::Blocking => store.write_unlogged(batch),
                WriteMode::InPlace => write_in_place(store, batch),
            }
            .map_err(io_err)
        };
        match &self.machine {
            Machine::Meta => {
                let mut machine = self.shared.meta.lock();
                for entry in entries.iter() {
                    results.push(
                        entry
                            .commands
                            .iter()
                            .map(|c| {
                                machine
                                    .apply(&mut batch, &mut publish, c.clone())
                                    .map_err(|e| e.to_string())
                            })
                            .collect(),
                    );
                }
                if let Err(err) = write(&mut batch) {
                    tracing::error!(group = self.group, error = %err, "applying committed entries failed");
                    let _ = self.shared.reload_meta(&mut machine);
                    return Err(err);
                }
                self.shared.catalog.publish(publish);
            }
            Machine::Partition(machine) => {
                let mut machine = machine.lock();
                for entry in entries.iter() {
                    results.push(
                        entry
                            .commands
                            .iter()
                            .map(|c| machine.apply(&mut batch, &mut publish, c).map_err(|e| e.to_string()))
                            .collect(),
                    );
                    // One stored batch per entry: the same records on every replica.
                    if let Err(err) = machine.end_entry(&mut batch, &mut publish) {
                        tracing::error!(group = self.group, error = %err, "storing committed entries failed");
                        self.reload_partition(&mut machine)?;
                        return Err(io_err(err));
                    }
                }
                if let Err(err) = write(&mut batch) {
                    tracing::error!(group = self.group, error = %err, "applying committed entries failed");
                    self.reload_partition(&mut machine)?;
                    return Err(err);
                }
                self.shared.catalog.publish(publish);
            }
        }
        Ok(results)
    }

    fn reload_partition(&self, machine: &mut PartitionMachine) -> io::Result<()> {
        let Some((topic_id, partition)) = split_group(self.group) else {
            return Ok(());
        };
        let name = self
            .shared
            .catalog
            .topics()
            .into_iter()
            .find(|t| t.record.id == topic_id)
            .map_or_else(|| format!("topic#{topic_id}"), |t| t.name().to_owned());
        *machine =
            PartitionMachine::load(self.shared.store.clone(), topic_id, partition, name.clone()).map_err(io_err)?;
        self.shared.catalog.publish(vec![Publish::Partition {
            topic_id,
            name,
            partition,
            state: machine.state(),
        }]);
        Ok(())
    }

    /// A snapshot of this group's current applied state (see `snapshot.rs`:
    /// a partition's records are read when the snapshot is sent). With
    /// nothing applied it is the empty state (`last_log_id` none).
    fn build(&self) -> io::Result<Snapshot> {
        // Holding the machine's lock orders this with applies, so the data
        // and the applied pointer agree.
        let (data, (applied, membership)) = match &self.machine {
            Machine::Meta => {
                let _guard = self.shared.meta.lock();
                let applied = self.read_applied()?;
                let bytes = snapshot::build_meta(&self.shared.store)?;
                (LocalSnapshot::Meta(bytes), applied)
            }
            Machine::Partition(machine) => {
                let machine = machine.lock();
                let applied = self.read_applied()?;
                let (topic_id, partition) = split_group(self.group).unwrap_or_default();
                (
                    LocalSnapshot::Partition {
                        topic_id,
                        partition,
                        state: machine.state(),
                    },
                    applied,
                )
            }
        };
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
            },
            snapshot: SnapshotData::Local(Arc::new(data)),
        })
    }

    fn install(&self, meta: &SnapshotMeta, data: &SnapshotData) -> io::Result<()> {
        let store = &self.shared.store;
        match &self.machine {
            Machine::Meta => {
                let mut machine = self.shared.meta.lock();
                snapshot::install(store, self.group, meta, data)?;
                self.shared.reload_meta(&mut machine)?;
            }
            Machine::Partition(machine) => {
                let mut machine = machine.lock();
                snapshot::install(store, self.group, meta, data)?;
                self.reload_partition(&mut machine)?;
                let state = machine.state();
                tracing::info!(
                    group = self.group,
                    last_log = ?meta.last_log_id,
                    start_offset = state.start_offset,
                    next_offset = state.next_offset,
                    "installed a partition snapshot"
                );
            }
        }
        // The install is written with the WAL; flushing it makes its applied
        // pointer visible to the log store's purge limit, which only counts
        // flushed applies (the log below the snapshot is purged next).
        store.flush_all().map_err(io_err)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for GroupStateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.build())
            .await
            .map_err(io_err)?
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
        let mut pending = Vec::new();
        let mut last_applied = None;
        let mut last_membership = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            let commands = match entry.payload {
                EntryPayload::Blank => Arc::default(),
                EntryPayload::Normal(batch) => batch.0,
                EntryPayload::Membership(membership) => {
                    last_membership = Some(StoredMembership::new(Some(entry.log_id), membership));
                    Arc::default()
                }
            };
            last_applied = Some(entry.log_id);
            pending.push(PendingEntry { commands, responder });
        }
        let Some(last_applied) = last_applied else {
            return Ok(());
        };
        let (group, index) = (self.group, last_applied.index);
        stages::mark("apply_started", group, index);
        let (pending, results) = if self.only_appends(&pending) {
            stages::mark("apply_running", group, index);
            let results = self.apply_entries(&pending, last_applied, last_membership, WriteMode::InPlace);
            stages::mark("apply_written", group, index);
            (pending, results)
        } else {
            // RocksDB writes and reads (truncation, metadata) off the async workers.
            let this = self.clone();
            tokio::task::spawn_blocking(move || {
                stages::mark("apply_running", group, index);
                let results = this.apply_entries(&pending, last_applied, last_membership, WriteMode::Blocking);
                stages::mark("apply_written", group, index);
                (pending, results)
            })
            .await
            .map_err(io_err)?
        };
        stages::mark("apply_done", group, index);
        for (entry, results) in pending.into_iter().zip(results?) {
            if let Some(responder) = entry.responder {
                responder.send(results);
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
        tokio::task::spawn_blocking(move || this.install(&meta, &snapshot))
            .await
            .map_err(io_err)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        // Built on demand: a snapshot of the current applied state covers at
        // least as much as any earlier one, and nothing has to be kept on disk.
        let this = self.clone();
        let built = tokio::task::spawn_blocking(move || this.build())
            .await
            .map_err(io_err)??;
        Ok(built.meta.last_log_id.is_some().then_some(built))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::in_place::write_retrying_stalls;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("open");
        (dir, store)
    }

    fn batch_of(store: &Store, keys: std::ops::Range<u32>, value_len: usize) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for k in keys {
            batch.put_cf(&store.cf(CF_META), k.to_be_bytes(), vec![k as u8; value_len]);
        }
        batch
    }

    fn holds(store: &Store, keys: std::ops::Range<u32>, value_len: usize) -> bool {
        keys.into_iter().all(|k| {
            store.db().get_cf(&store.cf(CF_META), k.to_be_bytes()).expect("get") == Some(vec![k as u8; value_len])
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_apply_that_does_not_stall_is_written_in_place() {
        let (_dir, store) = store();
        write_in_place(&store, batch_of(&store, 0..10, 100)).expect("write");
        assert!(holds(&store, 0..10, 100));
    }

    /// When RocksDB would stall, nothing was written: the whole batch is
    /// written again, from its copy, by the waiting write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_apply_is_written_again_whole() {
        let (_dir, store) = store();
        let batch = batch_of(&store, 0..50, 1_000);
        let mut tried = false;
        write_retrying_stalls(
            batch,
            |_dropped| {
                tried = true;
                Ok(false)
            },
            |batch| store.write_unlogged(batch),
        )
        .expect("write");
        assert!(tried, "tried without waiting first");
        assert!(holds(&store, 0..50, 1_000));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_apply_waits_at_once_and_a_storage_error_is_returned() {
        let (_dir, store) = store();
        let batch = batch_of(&store, 0..4, in_place::IN_PLACE_COPY_BYTES / 2);
        write_retrying_stalls(batch, |_| panic!("not tried in place"), |b| store.write_unlogged(b)).expect("write");
        assert!(holds(&store, 0..4, in_place::IN_PLACE_COPY_BYTES / 2));
        let failed = write_retrying_stalls(
            batch_of(&store, 0..1, 10),
            |_| Err(StorageError::Corrupt { what: "test".into() }),
            |_| panic!("an error is not a stall"),
        );
        assert!(failed.is_err());
    }

    /// `block_in_place` panics outside a multi-thread runtime: there the
    /// write just waits.
    #[tokio::test(flavor = "current_thread")]
    async fn a_current_thread_runtime_writes_without_block_in_place() {
        let (_dir, store) = store();
        write_in_place(&store, batch_of(&store, 0..10, 100)).expect("write");
        let large = batch_of(&store, 10..14, in_place::IN_PLACE_COPY_BYTES / 2);
        write_in_place(&store, large).expect("write");
        assert!(holds(&store, 0..10, 100) && holds(&store, 10..14, in_place::IN_PLACE_COPY_BYTES / 2));
    }
}
