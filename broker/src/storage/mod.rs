//! RocksDB storage: column families, key encoding, partition logs, offsets.
//!
//! The store is deliberately dumb: it reads and it builds `WriteBatch`es.
//! All decisions (offsets, validation) are made by the state machine in
//! `core`, which is the only writer.

pub mod bulk_load;
pub mod crypto;
pub mod delayed;
pub mod in_place;
pub mod keys;
pub mod membership;
pub mod meta;
pub mod partition_log;
pub mod record_batch;
pub mod schemas;
pub mod security;
pub mod transactions;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BoundColumnFamily, ColumnFamilyDescriptor, DBWithThreadMode, MultiThreaded, Options, WriteBatch, WriteOptions,
};
use thiserror::Error;

pub use meta::{GroupOffsets, PartitionState, TopicConfig, TopicRecord};

type Db = DBWithThreadMode<MultiThreaded>;

/// Column families, as in DESIGN.md.
pub const CF_META: &str = "meta";
pub const CF_LOG: &str = "log";
pub const CF_OFFSETS: &str = "offsets";
/// Raft log entries of every group, keyed `[group id][index]` (cluster mode).
pub const CF_RAFT_LOG: &str = "raft_log";
/// Raft votes, purge points and applied pointers, keyed `[group id][tag]`.
pub const CF_RAFT_META: &str = "raft_meta";
pub(crate) const COLUMN_FAMILIES: [&str; 5] = [CF_META, CF_LOG, CF_OFFSETS, CF_RAFT_LOG, CF_RAFT_META];

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("cannot open the data directory {path}: {source}")]
    Open { path: PathBuf, source: rocksdb::Error },
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("storage I/O failed: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error(
        "a write without the write-ahead log was made on a store that reuses its WAL files \
         (a standalone broker's); RocksDB does not allow it"
    )]
    UnloggedWriteWithWalReuse,
    #[error("stored data is corrupt ({what}); the data directory may be damaged")]
    Corrupt { what: String },
    #[error("cannot decrypt or encrypt a {what}: {source}")]
    Crypto {
        what: String,
        #[source]
        source: flymq_security::CryptoError,
    },
    #[error(
        "the data directory {path} is encrypted (key ids {key_ids}) but no encryption key is configured; \
         set FLYMQ_ENCRYPTION_KEY or `encryption_key_file` to the key(s) it was written with"
    )]
    KeyMissing { path: PathBuf, key_ids: String },
    #[error("the encryption key does not match the data directory {path}: {source}")]
    WrongKey {
        path: PathBuf,
        #[source]
        source: flymq_security::CryptoError,
    },
    #[error(
        "the data directory {path} holds unencrypted data and an encryption key is configured; \
         existing data is never encrypted in place: start without FLYMQ_ENCRYPTION_KEY, or start this \
         broker on an empty data directory (a cluster member then copies its data from its peers)"
    )]
    PlaintextData { path: PathBuf },
}

impl From<StorageError> for std::io::Error {
    fn from(err: StorageError) -> Self {
        std::io::Error::other(err.to_string())
    }
}

/// The broker's single RocksDB instance.
#[derive(Clone)]
pub struct Store {
    db: Arc<Db>,
    path: PathBuf,
    /// WAL files are reused (`StoreOptions::recycle_wal`): no write may skip the WAL.
    recycles_wal: bool,
    /// Encryption at rest; `None` costs one branch per stored batch.
    at_rest: Option<crypto::AtRest>,
}

/// Whether and how a write goes through RocksDB's WAL.
#[derive(Clone, Copy)]
enum Wal {
    Synced,
    Unsynced,
    /// Durable only once a flush covers it (Raft applies).
    Off,
}

/// Bytes of a RocksDB `WriteBatch` header (sequence number and count).
pub const BATCH_HEADER: usize = 12;
/// Upper bound of what a `WriteBatch` adds to a put's key and value (tag,
/// column family id, two length varints), plus the key of a Raft log entry
/// or the nonce and tag of a sealed value.
pub const BATCH_PUT_OVERHEAD: usize = 64;

/// Target size of the `log` column family's SST files (also those a
/// snapshot install writes and ingests).
const LOG_FILE_BYTES: u64 = 64 << 20;

/// Level-0 files of the `log` and `raft_log` column families that start a
/// compaction (RocksDB's default is 4). Every flush holds keys of every
/// partition (or group), so each level-0 file overlaps the whole of level 1
/// and a compaction rewrites all of it: fewer, larger compactions rewrite
/// it less often. Measured on 3 brokers, PRODUCE_BATCH: 8 % more messages
/// per CPU second than with 4 (docs/benchmarks.md). RocksDB slows writes
/// at 20 such files, so there is room.
const APPEND_ONLY_L0_FILES: i32 = 8;

/// The `log` column family's compression: ciphertext does not compress,
/// so encrypted data skips the work.
fn log_compression(encrypted: bool) -> rocksdb::DBCompressionType {
    if encrypted {
        rocksdb::DBCompressionType::None
    } else {
        rocksdb::DBCompressionType::Lz4
    }
}

/// WAL files kept for reuse when `StoreOptions::recycle_wal` is on.
const RECYCLED_WAL_FILES: usize = 4;

/// Memory RocksDB may use, and how its WAL is written.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// All memtables together (`db_write_buffer_size`); each column family's
    /// memtable is at most a quarter of it, capped at 64 MiB.
    pub memtable_bytes: usize,
    /// The block cache for reads.
    pub block_cache_bytes: usize,
    /// Reuse old WAL files instead of creating new ones
    /// (`recycle_log_file_num`): a sync of a WAL that overwrites allocated
    /// blocks does not have to journal the file's new size, so each
    /// `acks=all` commit's fdatasync is cheaper. RocksDB refuses writes
    /// without the WAL on such a database, so only for a store that never
    /// makes them (a standalone broker; a cluster's Raft applies do).
    pub recycle_wal: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self::for_budget(512 << 20)
    }
}

impl StoreOptions {
    /// How a memory budget (`memory_budget_mb`) is shared: half for
    /// memtables, an eighth for the block cache; the rest is left to the
    /// process (connections, Raft, snapshot chunks).
    pub fn for_budget(bytes: usize) -> Self {
        Self {
            memtable_bytes: (bytes / 2).max(8 << 20),
            block_cache_bytes: (bytes / 8).max(4 << 20),
            recycle_wal: false,
        }
    }
}

impl Store {
    /// Opens (or creates) the database in `dir` with the default memory budget.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// Opens (or creates) the unencrypted database in `dir`.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Self, StorageError> {
        Self::open_with_keys(dir, options, None)
    }

    /// Opens (or creates) the database in `dir`, encrypted with `keyring`
    /// when one is given. Refuses a wrong or missing key, a key on a
    /// plaintext directory and no key on an encrypted one (`crypto::check_keys`).
    pub fn open_with_keys(
        dir: &Path,
        options: StoreOptions,
        keyring: Option<Arc<flymq_security::Keyring>>,
    ) -> Result<Self, StorageError> {
        let at_rest = keyring.map(crypto::AtRest::new);
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        opts.set_max_background_jobs(2);
        // Log records are written once and read mostly in order: big memtables
        // and few levels keep write amplification low.
        let memtable = (options.memtable_bytes / 4).min(64 << 20);
        opts.set_write_buffer_size(memtable);
        opts.set_max_write_buffer_number(4);
        opts.set_keep_log_file_num(4);
        if options.recycle_wal {
            opts.set_recycle_log_file_num(RECYCLED_WAL_FILES);
        }
        // One budget for every column family's memtables: RocksDB flushes
        // the largest when the total reaches it.
        opts.set_db_write_buffer_size(options.memtable_bytes);
        // Raft applies are written without the WAL (the Raft log is their
        // WAL, see `write_unlogged`): flushing every column family together
        // keeps the data and the applied pointers they are written with
        // consistent on disk.
        opts.set_atomic_flush(true);
        let cache = rocksdb::Cache::new_lru_cache(options.block_cache_bytes);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);

        let mut cf_opts = Options::default();
        cf_opts.set_write_buffer_size(memtable);
        cf_opts.set_max_write_buffer_number(4);
        cf_opts.set_block_based_table_factory(&table);
        let mut log_opts = cf_opts.clone();
        log_opts.set_target_file_size_base(LOG_FILE_BYTES);
        log_opts.set_compression_type(log_compression(at_rest.is_some()));
        log_opts.set_level_zero_file_num_compaction_trigger(APPEND_ONLY_L0_FILES);
        let mut raft_log_opts = cf_opts.clone();
        raft_log_opts.set_level_zero_file_num_compaction_trigger(APPEND_ONLY_L0_FILES);
        // Record batches are large values; point lookups are seeks, so no bloom filter.
        let descriptors = COLUMN_FAMILIES.iter().map(|name| {
            let cf_opts = if *name == CF_LOG {
                log_opts.clone()
            } else if *name == CF_RAFT_LOG {
                raft_log_opts.clone()
            } else {
                cf_opts.clone()
            };
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = Db::open_cf_descriptors(&opts, dir, descriptors).map_err(|source| StorageError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        crypto::check_keys(&db, dir, at_rest.as_ref())?;
        Ok(Self {
            db: Arc::new(db),
            path: dir.to_path_buf(),
            recycles_wal: options.recycle_wal,
            at_rest,
        })
    }

    /// The cipher, when encryption at rest is on.
    pub fn at_rest(&self) -> Option<&crypto::AtRest> {
        self.at_rest.as_ref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn cf(&self, name: &str) -> Arc<BoundColumnFamily<'_>> {
        // The column families are created at open, so the handle always exists.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| unreachable!("column family {name} missing"))
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Writes a batch; with `sync` the call returns only after the WAL is on disk.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let wal = if sync { Wal::Synced } else { Wal::Unsynced };
        self.write_waiting(batch, wal)
    }

    /// `write` without a sync, unless RocksDB would have to wait (a write
    /// stall): then nothing is written and the answer is `Ok(false)`.
    pub fn write_without_waiting(&self, batch: WriteBatch) -> Result<bool, StorageError> {
        self.write_unless_stalled(batch, Wal::Unsynced)
    }

    /// `write` without a sync, from an async worker (`in_place`): in place
    /// unless RocksDB would have to wait.
    pub fn write_in_place(&self, batch: WriteBatch) -> Result<(), StorageError> {
        in_place::write_retrying_stalls(
            batch,
            |batch| self.write_without_waiting(batch),
            |batch| self.write(batch, false),
        )
    }

    /// Writes a batch without RocksDB's WAL: it is durable only once the
    /// memtables are flushed (`flush_all`, or RocksDB's own flushes, which
    /// take every column family at once). For Raft applies only: their
    /// entries stay in the synced Raft log until a flush covers them (the
    /// log store's purge limit), so a crash re-applies what it lost.
    pub fn write_unlogged(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.write_waiting(batch, Wal::Off)
    }

    /// `write_unlogged` unless RocksDB would have to wait (a write stall):
    /// then nothing is written and the answer is `Ok(false)`.
    pub fn write_unlogged_without_waiting(&self, batch: WriteBatch) -> Result<bool, StorageError> {
        self.write_unless_stalled(batch, Wal::Off)
    }

    fn write_waiting(&self, batch: WriteBatch, wal: Wal) -> Result<(), StorageError> {
        self.db.write_opt(batch, &self.write_options(wal, false)?)?;
        Ok(())
    }

    fn write_unless_stalled(&self, batch: WriteBatch, wal: Wal) -> Result<bool, StorageError> {
        match self.db.write_opt(batch, &self.write_options(wal, true)?) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == rocksdb::ErrorKind::Incomplete => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    fn write_options(&self, wal: Wal, no_slowdown: bool) -> Result<WriteOptions, StorageError> {
        let mut opts = WriteOptions::default();
        match wal {
            Wal::Synced => opts.set_sync(true),
            Wal::Unsynced => {}
            // RocksDB would refuse it too, with a message about its options.
            Wal::Off if self.recycles_wal => return Err(StorageError::UnloggedWriteWithWalReuse),
            Wal::Off => opts.disable_wal(true),
        }
        opts.set_no_slowdown(no_slowdown);
        Ok(opts)
    }

    /// Flushes every column family's memtable into SST files, atomically,
    /// so writes made without the WAL are durable afterwards.
    pub fn flush_all(&self) -> Result<(), StorageError> {
        let handles: Vec<_> = COLUMN_FAMILIES.iter().map(|name| self.cf(name)).collect();
        let refs: Vec<_> = handles.iter().collect();
        self.db.flush_cfs_opt(&refs, &rocksdb::FlushOptions::default())?;
        Ok(())
    }

    /// Reads `key` as stored in SST files only: what survives a crash of
    /// writes made without the WAL (an older value, or none, while a newer
    /// one is still in a memtable).
    pub fn get_persisted(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_read_tier(rocksdb::ReadTier::Persisted);
        Ok(self.db.get_cf_opt(&self.cf(cf), key, &opts)?)
    }

    /// Makes every write so far durable (used with `acks=leader`).
    pub fn sync_wal(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// For a process about to exit while other handles to the database may
    /// still exist: syncs the WAL and stops RocksDB's background flushes and
    /// compactions, so none is running when the process tears down (RocksDB
    /// can abort if its threads outlive its static state).
    pub fn quiesce(&self) {
        // Writes made without the WAL (Raft applies) would otherwise be
        // re-applied from the Raft log at the next start.
        if let Err(err) = self.flush_all() {
            tracing::warn!(error = %err, "flushing the memtables at shutdown failed");
        }
        if let Err(err) = self.db.flush_wal(true) {
            tracing::warn!(error = %err, "syncing the WAL at shutdown failed");
        }
        self.db.cancel_all_background_work(true);
    }

    /// Approximate bytes on disk (SST files plus live memtables).
    pub fn approximate_size(&self) -> u64 {
        COLUMN_FAMILIES
            .iter()
            .map(|name| {
                let cf = self.cf(name);
                let sst = self
                    .db
                    .property_int_value_cf(&cf, "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten();
                let mem = self
                    .db
                    .property_int_value_cf(&cf, "rocksdb.cur-size-all-mem-tables")
                    .ok()
                    .flatten();
                sst.unwrap_or(0) + mem.unwrap_or(0)
            })
            .sum()
    }
}

/// The smallest key greater than every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &[u8]) -> WriteBatch {
        let mut batch = WriteBatch::default();
        batch.put(key, b"v");
        batch
    }

    #[test]
    fn the_append_only_column_families_compact_later_than_the_others() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(Store::open(dir.path()).expect("open"));
        // RocksDB records each column family's options in its OPTIONS file.
        let options = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with("OPTIONS-"))
            .map(|e| std::fs::read_to_string(e.path()).expect("read OPTIONS"))
            .expect("an OPTIONS file");
        let trigger_of = |cf: &str| {
            let section = options
                .split("[CFOptions \"")
                .find(|s| s.starts_with(&format!("{cf}\"")))
                .unwrap_or_else(|| panic!("no options of {cf}"));
            section
                .lines()
                .find_map(|l| l.trim().strip_prefix("level0_file_num_compaction_trigger="))
                .map(str::to_string)
                .expect("trigger")
        };
        assert_eq!(trigger_of(CF_LOG), APPEND_ONLY_L0_FILES.to_string());
        assert_eq!(trigger_of(CF_RAFT_LOG), APPEND_ONLY_L0_FILES.to_string());
        assert_eq!(trigger_of(CF_META), "4");
    }

    #[test]
    fn every_write_variant_lands_on_a_store_without_wal_reuse() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        store.write(put(b"synced"), true).expect("synced write");
        store.write(put(b"unsynced"), false).expect("unsynced write");
        assert!(store.write_without_waiting(put(b"no-wait")).expect("write"));
        store.write_unlogged(put(b"unlogged")).expect("unlogged write");
        assert!(
            store
                .write_unlogged_without_waiting(put(b"unlogged-no-wait"))
                .expect("write")
        );
        for key in [
            &b"synced"[..],
            b"unsynced",
            b"no-wait",
            b"unlogged",
            b"unlogged-no-wait",
        ] {
            assert_eq!(store.db().get(key).expect("read").as_deref(), Some(&b"v"[..]));
        }
    }

    #[test]
    fn a_store_reusing_wal_files_refuses_unlogged_writes_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = StoreOptions {
            recycle_wal: true,
            ..StoreOptions::default()
        };
        let store = Store::open_with(dir.path(), options).expect("open");
        store.write(put(b"logged"), true).expect("logged writes are fine");
        for refused in [
            store.write_unlogged(put(b"a")).map(|()| true),
            store.write_unlogged_without_waiting(put(b"b")),
        ] {
            let err = refused.expect_err("refused");
            assert!(matches!(err, StorageError::UnloggedWriteWithWalReuse), "{err}");
            assert!(err.to_string().contains("reuses its WAL files"), "{err}");
        }
        assert_eq!(store.db().get(b"a").expect("read"), None);
    }
}
