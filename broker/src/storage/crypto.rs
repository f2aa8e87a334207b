//! Encryption at rest for the store: which values are sealed, the
//! additional data that binds each ciphertext to its place, and the key
//! check that guards a data directory against a wrong, missing or newly
//! added key.
//!
//! The cipher is `flymq_security::Keyring` (AES-256-GCM, key ids, session
//! subkeys with a counter nonce: see docs/security.md, "Encryption at
//! rest"). This module only decides *what* is sealed and *with which*
//! additional data:
//!
//! | what | where | additional data |
//! |---|---|---|
//! | record batches (record keys, values, timestamps, flags) | `log` CF | domain `log` + the 16-byte log key + the batch header |
//! | Raft log entries (the whole postcard entry) | `raft_log` CF | domain `raft-log` + the 16-byte `[group][index]` key |
//! | generic meta values (`c/*`: cluster id, counters, security state) | `meta` CF | domain `meta` + the meta key |
//! | received snapshot files | `snapshots/*.snap` | domain `snapshot` + file name + frame number |
//!
//! A value sealed for one key (or one file frame) fails to open under any
//! other, so blocks cannot be swapped or replayed elsewhere undetected.
//!
//! Left in plaintext, because they hold no user data: topic records (name,
//! partition count, retention settings, replica placement), partition
//! states and committed consumer offsets (numbers), Raft votes, membership
//! and applied pointers, and every RocksDB *key* (topic and group names,
//! offsets). A record batch keeps its 13-byte header (record count, newest
//! timestamp) in plaintext, authenticated as additional data, so retention
//! and time seeks work without decrypting.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use flymq_security::crypto::OVERHEAD;
use flymq_security::{CryptoError, KeyCheck, Keyring};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions};

use super::record_batch::{BATCH_HEADER_LEN, FORMAT_PLAIN, FORMAT_SEALED};
use super::{CF_META, COLUMN_FAMILIES, Db, StorageError};

/// Where a sealed value lives: part of its additional data, so a value
/// sealed for one column family never opens in another (a `log` key and a
/// `raft_log` key are both 16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    Log,
    RaftLog,
    Meta,
    SnapshotFile,
}

impl Domain {
    fn tag(self) -> &'static [u8] {
        match self {
            Domain::Log => b"flymq/at-rest/log\0",
            Domain::RaftLog => b"flymq/at-rest/raft-log\0",
            Domain::Meta => b"flymq/at-rest/meta\0",
            Domain::SnapshotFile => b"flymq/at-rest/snapshot\0",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Domain::Log => "record batch",
            Domain::RaftLog => "Raft log entry",
            Domain::Meta => "metadata value",
            Domain::SnapshotFile => "snapshot file",
        }
    }
}

/// `domain tag || parts...`
fn aad(domain: Domain, parts: &[&[u8]]) -> Vec<u8> {
    let len = domain.tag().len() + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(domain.tag());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// The meta key of the data directory's key check (outside the `t/` and
/// `c/` ranges the metadata snapshot copies: each broker has its own).
pub const KEY_CHECK_KEY: &[u8] = b"k/encryption-key-check";

/// The store's cipher: present when encryption at rest is on.
#[derive(Clone, Debug)]
pub struct AtRest {
    keyring: Arc<Keyring>,
}

impl AtRest {
    pub fn new(keyring: Arc<Keyring>) -> Self {
        Self { keyring }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    fn crypto_err(domain: Domain, key: &[u8], source: CryptoError) -> StorageError {
        StorageError::Crypto {
            what: format!("{} at key {}", domain.describe(), printable_key(key)),
            source,
        }
    }

    /// Seals `value` stored under `key` in `domain`.
    pub fn seal(&self, domain: Domain, key: &[u8], value: &[u8]) -> Result<Vec<u8>, StorageError> {
        self.keyring
            .seal(value, &aad(domain, &[key]))
            .map_err(|e| Self::crypto_err(domain, key, e))
    }

    /// Opens a value sealed by [`AtRest::seal`] with the same `domain` and `key`.
    pub fn open(&self, domain: Domain, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StorageError> {
        self.keyring
            .open(sealed, &aad(domain, &[key]))
            .map_err(|e| Self::crypto_err(domain, key, e))
    }

    /// A stored batch for `log_key`: the plaintext header with the format
    /// byte set to sealed, then the records sealed, with the key and the
    /// header as additional data. One seal per batch, not per record.
    pub fn seal_batch(&self, log_key: &[u8], batch: &[u8]) -> Result<Vec<u8>, StorageError> {
        let (header, records) = split_batch(batch).ok_or_else(|| StorageError::Corrupt {
            what: format!("record batch to store at key {} is truncated", printable_key(log_key)),
        })?;
        let mut sealed_header = [0u8; BATCH_HEADER_LEN];
        sealed_header.copy_from_slice(header);
        sealed_header[0] = FORMAT_SEALED;
        let body = self
            .keyring
            .seal(records, &aad(Domain::Log, &[log_key, &sealed_header]))
            .map_err(|e| Self::crypto_err(Domain::Log, log_key, e))?;
        let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
        out.extend_from_slice(&sealed_header);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The plaintext batch (format 1) of a value stored by [`AtRest::seal_batch`].
    pub fn open_batch(&self, log_key: &[u8], stored: &[u8]) -> Result<Vec<u8>, StorageError> {
        let (header, body) = split_batch(stored).ok_or_else(|| StorageError::Corrupt {
            what: format!("stored record batch at key {} is truncated", printable_key(log_key)),
        })?;
        if header[0] != FORMAT_SEALED {
            return Err(StorageError::Corrupt {
                what: format!(
                    "record batch at key {} is not encrypted in an encrypted data directory",
                    printable_key(log_key)
                ),
            });
        }
        let records = self
            .keyring
            .open(body, &aad(Domain::Log, &[log_key, header]))
            .map_err(|e| Self::crypto_err(Domain::Log, log_key, e))?;
        let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
        out.push(FORMAT_PLAIN);
        out.extend_from_slice(&header[1..]);
        out.extend_from_slice(&records);
        Ok(out)
    }

    /// Seals frame `index` of snapshot file `name`.
    pub fn seal_frame(&self, name: &str, index: u64, bytes: &[u8]) -> Result<Vec<u8>, StorageError> {
        self.keyring
            .seal(
                bytes,
                &aad(Domain::SnapshotFile, &[name.as_bytes(), &index.to_be_bytes()]),
            )
            .map_err(|e| Self::crypto_err(Domain::SnapshotFile, name.as_bytes(), e))
    }

    /// Opens frame `index` of snapshot file `name`.
    pub fn open_frame(&self, name: &str, index: u64, sealed: &[u8]) -> Result<Vec<u8>, StorageError> {
        self.keyring
            .open(
                sealed,
                &aad(Domain::SnapshotFile, &[name.as_bytes(), &index.to_be_bytes()]),
            )
            .map_err(|e| Self::crypto_err(Domain::SnapshotFile, name.as_bytes(), e))
    }
}

fn split_batch(value: &[u8]) -> Option<(&[u8], &[u8])> {
    (value.len() >= BATCH_HEADER_LEN).then(|| value.split_at(BATCH_HEADER_LEN))
}

/// Bytes of the plaintext batch a stored batch value holds (what partition
/// sizes and retention count, identical on every replica whatever its key).
pub fn plain_batch_len(stored: &[u8]) -> u64 {
    match stored.first() {
        Some(&FORMAT_SEALED) => stored.len().saturating_sub(OVERHEAD) as u64,
        _ => stored.len() as u64,
    }
}

/// Seals with `at_rest` when present; borrows the plaintext otherwise.
pub fn seal_opt<'a>(
    at_rest: Option<&AtRest>,
    domain: Domain,
    key: &[u8],
    value: &'a [u8],
) -> Result<Cow<'a, [u8]>, StorageError> {
    match at_rest {
        None => Ok(Cow::Borrowed(value)),
        Some(at_rest) => at_rest.seal(domain, key, value).map(Cow::Owned),
    }
}

/// Opens with `at_rest` when present; borrows the stored bytes otherwise.
pub fn open_opt<'a>(
    at_rest: Option<&AtRest>,
    domain: Domain,
    key: &[u8],
    stored: &'a [u8],
) -> Result<Cow<'a, [u8]>, StorageError> {
    match at_rest {
        None => Ok(Cow::Borrowed(stored)),
        Some(at_rest) => at_rest.open(domain, key, stored).map(Cow::Owned),
    }
}

/// A key for messages: text when printable, hex otherwise.
fn printable_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => text.to_owned(),
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// At open: compares the configured keys with the data directory's key
/// check. A directory is either encrypted (it has a key check) or not; it
/// never silently turns into a mix of both.
///
/// - key and check: every key id of the check must be configured and
///   decrypt its entry (the error names the key id); keys added by a
///   rotation are added to the check.
/// - key, no check: only an empty directory may start encrypting (the check
///   is written before any data).
/// - check, no key: refused.
pub(super) fn check_keys(db: &Db, path: &Path, at_rest: Option<&AtRest>) -> Result<(), StorageError> {
    let meta = db.cf_handle(CF_META).ok_or_else(|| StorageError::Corrupt {
        what: "meta column family missing".into(),
    })?;
    let stored = db.get_cf(&meta, KEY_CHECK_KEY)?;
    let stored: Option<KeyCheck> = stored
        .map(|bytes| serde_json::from_slice(&bytes))
        .transpose()
        .map_err(|e| StorageError::Corrupt {
            what: format!("encryption key check: {e}"),
        })?;
    let write_check = |check: &KeyCheck| -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        // A plain struct of strings and byte vectors always serialises.
        batch.put_cf(&meta, KEY_CHECK_KEY, serde_json::to_vec(check).unwrap_or_default());
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        db.write_opt(batch, &opts)?;
        Ok(())
    };
    match (at_rest, stored) {
        (None, None) => Ok(()),
        (None, Some(check)) => Err(StorageError::KeyMissing {
            path: path.to_path_buf(),
            key_ids: join_ids(check.key_ids()),
        }),
        (Some(at_rest), Some(mut check)) => {
            let keyring = at_rest.keyring();
            keyring
                .verify_key_check(&check)
                .map_err(|source| StorageError::WrongKey {
                    path: path.to_path_buf(),
                    source,
                })?;
            let before = check.entries.len();
            keyring.update_key_check(&mut check);
            if check.entries.len() != before {
                tracing::info!(
                    key_ids = %join_ids(check.key_ids()),
                    active = %keyring.active_key_id(),
                    "encryption key check updated for newly configured keys"
                );
                write_check(&check)?;
            }
            Ok(())
        }
        (Some(at_rest), None) => {
            if !is_empty(db)? {
                return Err(StorageError::PlaintextData {
                    path: path.to_path_buf(),
                });
            }
            write_check(&at_rest.keyring().key_check())
        }
    }
}

fn join_ids(ids: Vec<flymq_security::KeyId>) -> String {
    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn is_empty(db: &Db) -> Result<bool, StorageError> {
    for name in COLUMN_FAMILIES {
        let Some(cf) = db.cf_handle(name) else { continue };
        if let Some(item) = db.iterator_cf(&cf, IteratorMode::Start).next() {
            item?;
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record_batch::{BatchBuilder, BatchReader, read_header};

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn at_rest() -> AtRest {
        AtRest::new(Arc::new(Keyring::parse(K1).expect("key")))
    }

    #[test]
    fn batches_round_trip_keep_their_header_and_are_bound_to_their_key() {
        let at_rest = at_rest();
        let mut builder = BatchBuilder::new();
        builder.push(7, 0, b"the-key", b"secret value");
        builder.push(9, 1, b"", b"another");
        let plain = builder.finish();
        let sealed = at_rest.seal_batch(b"key-a", &plain).expect("seal");
        assert_eq!(plain_batch_len(&sealed), plain.len() as u64);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            read_header(&sealed).expect("header"),
            read_header(&plain).expect("header")
        );
        assert!(
            BatchReader::new(&sealed).is_err(),
            "a sealed batch is never parsed as records"
        );
        assert_eq!(at_rest.open_batch(b"key-a", &sealed).expect("open"), plain);
        // Moved to another key, or its plaintext header changed: refused.
        assert!(at_rest.open_batch(b"key-b", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered[5] ^= 1;
        assert!(at_rest.open_batch(b"key-a", &tampered).is_err());
        // A plaintext batch where a sealed one is expected: refused.
        assert!(at_rest.open_batch(b"key-a", &plain).is_err());
    }

    #[test]
    fn domains_separate_equal_keys() {
        let at_rest = at_rest();
        let sealed = at_rest.seal(Domain::RaftLog, b"0123456789abcdef", b"v").expect("seal");
        assert_eq!(
            at_rest
                .open(Domain::RaftLog, b"0123456789abcdef", &sealed)
                .expect("open"),
            b"v"
        );
        let err = at_rest.open(Domain::Log, b"0123456789abcdef", &sealed).unwrap_err();
        assert!(err.to_string().contains("record batch"), "{err}");
        assert!(!err.to_string().contains(K1), "{err}");
    }
}
