//! RocksDB writes made on the async worker that needs them, instead of a
//! hand-off to a blocking thread and back. A memtable insert (and a WAL
//! write into the page cache) takes microseconds; each hand-off wakes a
//! parked thread, which on this VM costs tens of microseconds
//! (docs/benchmarks.md). A write that has to wait (a write stall, a WAL
//! sync) is made with the worker handed over to blocking work
//! (`block_in_place`), so the worker's other tasks move to other workers
//! meanwhile.

use rocksdb::WriteBatch;

use super::StorageError;

/// Largest batch written in place with a copy kept for a retry; a larger
/// one is written with the worker handed over at once.
pub const IN_PLACE_COPY_BYTES: usize = 256 << 10;

/// Whether this thread may call `block_in_place`: it needs a multi-thread
/// runtime (unit tests run others; plain threads have none).
fn may_block_in_place() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Runs `work`, which blocks (a WAL sync), with the worker handed over when
/// called on an async worker.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    if may_block_in_place() {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// Writes `batch` in place: `try_now` writes unless it would wait
/// (`Ok(false)`: nothing written), `wait` writes whatever it takes and is
/// called with the worker handed over.
pub fn write_retrying_stalls(
    batch: WriteBatch,
    try_now: impl FnOnce(WriteBatch) -> Result<bool, StorageError>,
    wait: impl FnOnce(WriteBatch) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    if !may_block_in_place() {
        return wait(batch);
    }
    if batch.size_in_bytes() > IN_PLACE_COPY_BYTES {
        return tokio::task::block_in_place(|| wait(batch));
    }
    // RocksDB consumes the batch even when it refuses to wait.
    let copy = batch.data().to_vec();
    if try_now(batch)? {
        return Ok(());
    }
    tokio::task::block_in_place(|| wait(WriteBatch::from_data(&copy)))
}
