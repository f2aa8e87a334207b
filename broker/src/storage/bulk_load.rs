//! Loading a partition's record batches straight into SST files that are
//! ingested into the `log` column family, bypassing the memtables and the
//! WAL: installing a snapshot of any size holds one SST block in memory,
//! not a memory budget's worth of memtables, and writes each byte once.

use std::path::{Path, PathBuf};

use rocksdb::{IngestExternalFileOptions, Options, SstFileWriter};

use super::{CF_LOG, LOG_FILE_BYTES, StorageError, Store, log_compression};

impl Store {
    /// Options for SST files of the `log` column family: the compression
    /// the column family uses.
    pub fn log_file_options(&self) -> Options {
        let mut options = Options::default();
        options.set_compression_type(log_compression(self.at_rest.is_some()));
        options
    }
}

/// Writes record batches (sealed when encryption at rest is on) to SST
/// files named `<base>.<n>.sst` and ingests each into the `log` column
/// family once it is full, and the last one in `finish`. Batches must come
/// in increasing key order, as a partition's snapshot stream sends them.
///
/// Ingested data gets sequence numbers above everything written before, so
/// a range deletion written first cannot hide it.
pub struct LogLoader<'a> {
    store: &'a Store,
    options: &'a Options,
    base: PathBuf,
    current: Option<(SstFileWriter<'a>, PathBuf)>,
    files: usize,
}

impl<'a> LogLoader<'a> {
    /// `options` come from `Store::log_file_options`.
    pub fn new(store: &'a Store, options: &'a Options, base: &Path) -> Self {
        Self {
            store,
            options,
            base: base.to_path_buf(),
            current: None,
            files: 0,
        }
    }

    /// Adds one plaintext batch value (format 1) under its `log` key
    /// (`keys::log_key`).
    pub fn put_batch(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let stored = self.store.stored_batch(key, value)?;
        if self.current.is_none() {
            let path = PathBuf::from(format!("{}.{}.sst", self.base.display(), self.files));
            self.files += 1;
            let writer = SstFileWriter::create(self.options);
            writer.open(&path)?;
            self.current = Some((writer, path));
        }
        let (writer, _) = self.current.as_mut().expect("opened above");
        writer.put(key, stored)?;
        if writer.file_size() >= LOG_FILE_BYTES {
            self.ingest_current()?;
        }
        Ok(())
    }

    /// Ingests the last file.
    pub fn finish(mut self) -> Result<(), StorageError> {
        self.ingest_current()
    }

    fn ingest_current(&mut self) -> Result<(), StorageError> {
        let Some((mut writer, path)) = self.current.take() else {
            return Ok(());
        };
        let result = writer.finish().and_then(|()| {
            let mut ingest = IngestExternalFileOptions::default();
            // Linked into the database, not copied: the file is in the
            // data directory already.
            ingest.set_move_files(true);
            self.store
                .db()
                .ingest_external_file_cf_opts(&self.store.cf(CF_LOG), &ingest, vec![&path])
        });
        // Gone after a successful move; left behind by a failure.
        let _ = std::fs::remove_file(&path);
        result.map_err(StorageError::from)
    }
}

impl Drop for LogLoader<'_> {
    /// An install that failed half-way leaves no file behind.
    fn drop(&mut self) {
        if let Some((_, path)) = self.current.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
