//! AES-256-GCM encryption at rest with key ids and rotation.
//!
//! ## Keys
//!
//! A [`Keyring`] holds one or more 32-byte master keys. The first is the
//! *active* key (new writes); the others only decrypt, so a key can rotate:
//! put the new key first and keep the old one after it until nothing
//! written with it remains. The configuration syntax (the value of
//! `FLYMQ_ENCRYPTION_KEY`, or the contents of a key file) is a list of
//! entries separated by commas or newlines (blank lines and `#` comments
//! are ignored in files):
//!
//! ```text
//! <64 hex chars>                 key id derived from the key
//! <8 hex chars>:<64 hex chars>   explicit key id
//! ```
//!
//! A derived key id is the first 4 bytes of
//! `SHA-256("flymq/key-id/v1\0" || key)`, shown as 8 lowercase hex
//! characters. It reveals 32 bits of a hash of the key, not the key; it is
//! what error messages name, never the key material. Explicit ids let an
//! operator label keys (`00000001:…`, `00000002:…`).
//!
//! ## Sealed format (version 1)
//!
//! ```text
//! offset  size  field
//! 0       1     version = 0x01
//! 1       4     key id, big-endian
//! 5       16    session salt (random, per key and process start)
//! 21      8     counter, big-endian
//! 29      n     AES-256-GCM ciphertext of the n-byte plaintext
//! 29+n    16    GCM tag
//! ```
//!
//! Overhead: 45 bytes per sealed value. The GCM additional data is the
//! 29-byte header followed by the caller's `aad` (for example the topic,
//! partition and offset of a record, so a ciphertext cannot be moved to
//! another place undetected).
//!
//! ## Why nonces never repeat for a key
//!
//! Records are not encrypted under the master key directly. When a keyring
//! is created (once per process start), it draws a random 128-bit *session
//! salt* and derives a session subkey
//! `HKDF-SHA256(ikm = master key, salt = session salt, info = "flymq/at-rest/v1" || key id)`.
//! Under that subkey the 96-bit GCM nonce is `0x00000000 || counter`, with
//! a 64-bit counter that starts at 0 and is incremented under a lock for
//! every seal, so within a session no nonce repeats. After 2^32 seals the
//! session draws a new salt (a new subkey, counter back to 0), which also
//! keeps every subkey far below GCM's usage limits. Two sessions share a
//! subkey only if they draw the same 128-bit salt: with 2^32 sessions the
//! chance is below 2^-64. No state has to survive a restart (a crash cannot
//! make a counter go back), and the salt in each header lets any node
//! derive the subkey again to decrypt.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use parking_lot::Mutex;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Version byte of the sealed format.
pub const FORMAT_VERSION: u8 = 1;
/// Header bytes before the ciphertext.
pub const HEADER_LEN: usize = 1 + 4 + 16 + 8;
/// GCM tag bytes after the ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed value is longer than its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Seals under one session subkey before a new salt is drawn.
const REKEY_AFTER: u64 = 1 << 32;
/// Subkeys kept for decryption (one per key and session seen).
const MAX_CACHED_SUBKEYS: usize = 4096;

const KEY_ID_DOMAIN: &[u8] = b"flymq/key-id/v1\0";
const SUBKEY_INFO: &[u8] = b"flymq/at-rest/v1";
const CHECK_PLAINTEXT: &[u8] = b"flymq key check v1";
const CHECK_AAD: &[u8] = b"flymq/key-check";

/// A key id (4 bytes), shown as 8 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub u32);

impl KeyId {
    /// The id derived from a key: the first 4 bytes of
    /// `SHA-256("flymq/key-id/v1\0" || key)`.
    pub fn derive(key: &[u8; 32]) -> Self {
        let digest = Sha256::new().chain_update(KEY_ID_DOMAIN).chain_update(key).finalize();
        KeyId(u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]))
    }

    /// Parses 8 hex characters.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 8 {
            return None;
        }
        u32::from_str_radix(text, 16).ok().map(KeyId)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Errors of key parsing, sealing and opening. None of them carries key
/// material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// No key in the configuration.
    #[error(
        "no encryption key given; set FLYMQ_ENCRYPTION_KEY to 64 hex characters (generate one with `openssl rand -hex 32`)"
    )]
    NoKey,
    /// A key entry has the wrong length.
    #[error("encryption key {which} has {chars} characters; expected 64 hex characters (32 bytes)")]
    BadKeyLength {
        /// `#<position>` and the key id when one was given.
        which: String,
        /// Characters found.
        chars: usize,
    },
    /// A key entry is not hexadecimal.
    #[error("encryption key {which} is not hexadecimal; expected 64 characters 0-9, a-f")]
    BadKeyHex {
        /// `#<position>` and the key id when one was given.
        which: String,
    },
    /// The id part of `id:key` is not 8 hex characters.
    #[error("the key id of encryption key #{position} is not 8 hex characters (format: <8 hex id>:<64 hex key>)")]
    BadKeyId {
        /// 1-based position in the list.
        position: usize,
    },
    /// Two entries have the same key id.
    #[error("key id {key_id} appears twice in the encryption key list")]
    DuplicateKeyId {
        /// The repeated id.
        key_id: KeyId,
    },
    /// The key file cannot be read.
    #[error("cannot read encryption key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The sealed value is shorter than header and tag.
    #[error("sealed value is truncated ({len} bytes; at least {OVERHEAD} expected)")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// The version byte is unknown.
    #[error("sealed value has unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// The value was sealed with a key the keyring does not have.
    #[error(
        "data was encrypted with key id {key_id}, which is not configured (configured key ids: {configured}); add that key after the active one in FLYMQ_ENCRYPTION_KEY"
    )]
    UnknownKeyId {
        /// The id in the header.
        key_id: KeyId,
        /// The ids the keyring has.
        configured: String,
    },
    /// Authentication failed: tampered or truncated data, wrong additional
    /// data, or a different key under the same id.
    #[error(
        "decryption with key id {key_id} failed: the data was modified, or the key with this id is not the one it was written with"
    )]
    Decrypt {
        /// The id in the header.
        key_id: KeyId,
    },
    /// A key check entry failed: the key configured under this id is not
    /// the one the data directory was written with.
    #[error(
        "wrong encryption key for key id {key_id}: it does not decrypt this node's key check; restore the key that was used with this data directory"
    )]
    WrongKey {
        /// The id.
        key_id: KeyId,
    },
    /// Encryption failed (plaintext beyond GCM's size limit).
    #[error("encryption failed: plaintext of {len} bytes is too large")]
    Encrypt {
        /// Plaintext length.
        len: usize,
    },
}

struct MasterKey {
    id: KeyId,
    key: Zeroizing<[u8; 32]>,
}

struct Session {
    salt: [u8; 16],
    cipher: Arc<Aes256Gcm>,
    next: u64,
}

/// The configured keys, the active key's session and a cache of derived
/// subkeys. Build one per process (`Arc`); `Debug` shows key ids only.
pub struct Keyring {
    /// Active key first.
    keys: Vec<MasterKey>,
    session: Mutex<Session>,
    subkeys: Mutex<SubkeyCache>,
}

/// Derived subkeys by (key id, session salt).
type SubkeyCache = HashMap<(KeyId, [u8; 16]), Arc<Aes256Gcm>>;

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active_key_id())
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

fn which(position: usize, id: Option<KeyId>) -> String {
    match id {
        Some(id) => format!("#{position} (key id {id})"),
        None => format!("#{position}"),
    }
}

fn derive_subkey(master: &MasterKey, salt: &[u8; 16]) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(Some(salt), master.key.as_ref());
    let mut info = Vec::with_capacity(SUBKEY_INFO.len() + 4);
    info.extend_from_slice(SUBKEY_INFO);
    info.extend_from_slice(&master.id.0.to_be_bytes());
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: cannot fail.
    let _ = hk.expand(&info, okm.as_mut());
    Aes256Gcm::new(okm.as_ref().into())
}

fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    salt
}

fn nonce_for(counter: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

impl Keyring {
    /// A keyring from raw keys, active first, with derived ids.
    pub fn from_keys(keys: impl IntoIterator<Item = [u8; 32]>) -> Result<Self, CryptoError> {
        let keys = keys
            .into_iter()
            .map(|k| MasterKey {
                id: KeyId::derive(&k),
                key: Zeroizing::new(k),
            })
            .collect();
        Self::build(keys)
    }

    /// Parses the configuration syntax (see the module documentation).
    pub fn parse(spec: &str) -> Result<Self, CryptoError> {
        let mut keys = Vec::new();
        let entries = spec
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (i, entry) in entries.enumerate() {
            let position = i + 1;
            let (id, hex_key) = match entry.split_once(':') {
                Some((id, key)) => {
                    let id = KeyId::parse(id.trim()).ok_or(CryptoError::BadKeyId { position })?;
                    (Some(id), key.trim())
                }
                None => (None, entry),
            };
            if hex_key.len() != 64 {
                return Err(CryptoError::BadKeyLength {
                    which: which(position, id),
                    chars: hex_key.chars().count(),
                });
            }
            let mut key = Zeroizing::new([0u8; 32]);
            // The hex crate's error would quote the offending character:
            // never let key material reach a message.
            hex::decode_to_slice(hex_key, key.as_mut()).map_err(|_| CryptoError::BadKeyHex {
                which: which(position, id),
            })?;
            let id = id.unwrap_or_else(|| KeyId::derive(&key));
            keys.push(MasterKey { id, key });
        }
        Self::build(keys)
    }

    /// Reads and parses a key file (same syntax; one entry per line).
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        })?);
        Self::parse(&text)
    }

    /// The keyring configured by `FLYMQ_ENCRYPTION_KEY` (`env_value`) or a
    /// key file; `Ok(None)` when neither is set (encryption off). Both at
    /// once is an error, so that a forgotten variable cannot silently win.
    pub fn from_sources(env_value: Option<&str>, key_file: Option<&Path>) -> Result<Option<Self>, CryptoError> {
        match (env_value.filter(|v| !v.trim().is_empty()), key_file) {
            (None, None) => Ok(None),
            (Some(spec), None) => Self::parse(spec).map(Some),
            (None, Some(path)) => Self::from_file(path).map(Some),
            (Some(_), Some(path)) => Err(CryptoError::KeyFile {
                path: path.display().to_string(),
                source: std::io::Error::other("both FLYMQ_ENCRYPTION_KEY and a key file are set; keep only one"),
            }),
        }
    }

    fn build(keys: Vec<MasterKey>) -> Result<Self, CryptoError> {
        let Some(active) = keys.first() else {
            return Err(CryptoError::NoKey);
        };
        let mut seen = std::collections::HashSet::new();
        for k in &keys {
            if !seen.insert(k.id) {
                return Err(CryptoError::DuplicateKeyId { key_id: k.id });
            }
        }
        let salt = random_salt();
        let cipher = Arc::new(derive_subkey(active, &salt));
        let mut subkeys = HashMap::new();
        subkeys.insert((active.id, salt), cipher.clone());
        Ok(Self {
            keys,
            session: Mutex::new(Session { salt, cipher, next: 0 }),
            subkeys: Mutex::new(subkeys),
        })
    }

    /// A fresh random key in the configuration syntax (64 hex characters).
    pub fn generate_key_hex() -> String {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        hex::encode(key.as_ref())
    }

    /// The id of the key new values are sealed with.
    pub fn active_key_id(&self) -> KeyId {
        self.keys[0].id
    }

    /// Every configured key id, active first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }

    fn configured(&self) -> String {
        self.key_ids()
            .iter()
            .map(KeyId::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Encrypts `plaintext` with the active key; `aad` is authenticated but
    /// not stored (the same `aad` must be given to [`Keyring::open`]).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (salt, cipher, counter) = {
            let mut session = self.session.lock();
            if session.next >= REKEY_AFTER {
                let salt = random_salt();
                let cipher = Arc::new(derive_subkey(&self.keys[0], &salt));
                self.remember(self.keys[0].id, salt, cipher.clone());
                *session = Session { salt, cipher, next: 0 };
            }
            let counter = session.next;
            session.next += 1;
            (session.salt, session.cipher.clone(), counter)
        };
        seal_with(&cipher, self.keys[0].id, &salt, counter, plaintext, aad)
    }

    /// Decrypts a value sealed by any key of the keyring; `aad` must equal
    /// the one given to [`Keyring::seal`]. Malformed input is an error,
    /// never a panic.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let header = parse_header(sealed)?;
        let cipher = self.subkey(header.key_id, &header.salt)?;
        open_with(&cipher, &header, sealed, aad)
    }

    /// The key id a sealed value names, without decrypting it.
    pub fn key_id_of(sealed: &[u8]) -> Result<KeyId, CryptoError> {
        parse_header(sealed).map(|h| h.key_id)
    }

    fn subkey(&self, key_id: KeyId, salt: &[u8; 16]) -> Result<Arc<Aes256Gcm>, CryptoError> {
        if let Some(cipher) = self.subkeys.lock().get(&(key_id, *salt)) {
            return Ok(cipher.clone());
        }
        let master = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKeyId {
                key_id,
                configured: self.configured(),
            })?;
        let cipher = Arc::new(derive_subkey(master, salt));
        self.remember(key_id, *salt, cipher.clone());
        Ok(cipher)
    }

    fn remember(&self, key_id: KeyId, salt: [u8; 16], cipher: Arc<Aes256Gcm>) {
        let mut cache = self.subkeys.lock();
        if cache.len() >= MAX_CACHED_SUBKEYS {
            cache.clear();
        }
        cache.insert((key_id, salt), cipher);
    }

    /// A [`KeyCheck`] with one entry per configured key, for the broker to
    /// store next to its data.
    pub fn key_check(&self) -> KeyCheck {
        let mut check = KeyCheck::default();
        self.update_key_check(&mut check);
        check
    }

    /// Adds entries for configured keys the check does not have yet (after
    /// a rotation added a key). Existing entries are kept.
    pub fn update_key_check(&self, check: &mut KeyCheck) {
        for key in &self.keys {
            if check.entries.contains_key(&key.id.to_string()) {
                continue;
            }
            // A one-off session: fresh salt, counter 0.
            let salt = random_salt();
            let cipher = derive_subkey(key, &salt);
            if let Ok(sealed) = seal_with(&cipher, key.id, &salt, 0, CHECK_PLAINTEXT, CHECK_AAD) {
                check.entries.insert(key.id.to_string(), sealed);
            }
        }
    }

    /// Verifies a stored [`KeyCheck`] at start-up: every key id it names
    /// must be configured and decrypt its entry. The error names the key id.
    pub fn verify_key_check(&self, check: &KeyCheck) -> Result<(), CryptoError> {
        for (id_text, sealed) in &check.entries {
            let key_id = Self::key_id_of(sealed)?;
            if KeyId::parse(id_text) != Some(key_id) {
                return Err(CryptoError::WrongKey { key_id });
            }
            match self.open(sealed, CHECK_AAD) {
                Ok(plain) if plain == CHECK_PLAINTEXT => {}
                Ok(_) | Err(CryptoError::Decrypt { .. }) => return Err(CryptoError::WrongKey { key_id }),
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }
}

/// Proof of which keys wrote a data directory: one known plaintext sealed
/// per key id. Store it (it holds no secret) and check it at start-up with
/// [`Keyring::verify_key_check`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyCheck {
    /// Sealed known plaintext, by key id (8 hex characters).
    pub entries: BTreeMap<String, Vec<u8>>,
}

impl KeyCheck {
    /// The key ids the check covers.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.entries.keys().filter_map(|k| KeyId::parse(k)).collect()
    }

    /// Forgets a retired key (once no data sealed with it remains), so
    /// start-up no longer requires it.
    pub fn retire(&mut self, key_id: KeyId) -> bool {
        self.entries.remove(&key_id.to_string()).is_some()
    }
}

struct Header {
    key_id: KeyId,
    salt: [u8; 16],
    counter: u64,
}

fn parse_header(sealed: &[u8]) -> Result<Header, CryptoError> {
    if sealed.len() < OVERHEAD {
        return Err(CryptoError::Truncated { len: sealed.len() });
    }
    if sealed[0] != FORMAT_VERSION {
        return Err(CryptoError::UnsupportedVersion(sealed[0]));
    }
    let mut id = [0u8; 4];
    id.copy_from_slice(&sealed[1..5]);
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&sealed[5..21]);
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&sealed[21..29]);
    Ok(Header {
        key_id: KeyId(u32::from_be_bytes(id)),
        salt,
        counter: u64::from_be_bytes(counter),
    })
}

fn full_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(header.len() + aad.len());
    full.extend_from_slice(header);
    full.extend_from_slice(aad);
    full
}

fn seal_with(
    cipher: &Aes256Gcm,
    key_id: KeyId,
    salt: &[u8; 16],
    counter: u64,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&key_id.0.to_be_bytes());
    out.extend_from_slice(salt);
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(plaintext);
    let aad = full_aad(&out[..HEADER_LEN], aad);
    let nonce = nonce_for(counter);
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut out[HEADER_LEN..])
        .map_err(|_| CryptoError::Encrypt { len: plaintext.len() })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

fn open_with(cipher: &Aes256Gcm, header: &Header, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let body_end = sealed.len() - TAG_LEN;
    let mut plain = sealed[HEADER_LEN..body_end].to_vec();
    let tag = Tag::from_slice(&sealed[body_end..]);
    let aad = full_aad(&sealed[..HEADER_LEN], aad);
    let nonce = nonce_for(header.counter);
    cipher
        .decrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut plain, tag)
        .map_err(|_| CryptoError::Decrypt { key_id: header.key_id })?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000";

    #[test]
    fn round_trip_and_overhead() {
        let ring = Keyring::parse(K1).expect("key");
        let sealed = ring.seal(b"hello", b"orders/0/42").expect("seal");
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(sealed[0], FORMAT_VERSION);
        assert_eq!(Keyring::key_id_of(&sealed).expect("header"), ring.active_key_id());
        assert_eq!(ring.open(&sealed, b"orders/0/42").expect("open"), b"hello");
        assert!(matches!(
            ring.open(&sealed, b"orders/0/43"),
            Err(CryptoError::Decrypt { .. })
        ));
        let empty = ring.seal(b"", b"").expect("seal");
        assert_eq!(ring.open(&empty, b"").expect("open"), b"");
    }

    #[test]
    fn nonces_are_unique_within_a_session_and_sessions_differ() {
        let ring = Keyring::parse(K1).expect("key");
        let a = ring.seal(b"same", b"").expect("seal");
        let b = ring.seal(b"same", b"").expect("seal");
        assert_eq!(a[5..21], b[5..21], "same session salt");
        assert_ne!(a[21..29], b[21..29], "different counters");
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..], "different ciphertexts");
        let other_process = Keyring::parse(K1).expect("key");
        let c = other_process.seal(b"same", b"").expect("seal");
        assert_ne!(a[5..21], c[5..21], "a new keyring draws a new salt");
        // Both decrypt everywhere.
        assert_eq!(other_process.open(&a, b"").expect("open"), b"same");
        assert_eq!(ring.open(&c, b"").expect("open"), b"same");
    }

    #[test]
    fn rotation_new_writes_use_new_key_old_still_read() {
        let old = Keyring::parse(K1).expect("key");
        let sealed_old = old.seal(b"v1", b"").expect("seal");
        let rotated = Keyring::parse(&format!("{K2},{K1}")).expect("keys");
        assert_eq!(rotated.key_ids(), vec![KeyId::derive(&hex32(K2)), old.active_key_id()]);
        let sealed_new = rotated.seal(b"v2", b"").expect("seal");
        assert_eq!(Keyring::key_id_of(&sealed_new).expect("h"), rotated.active_key_id());
        assert_eq!(rotated.open(&sealed_old, b"").expect("old data"), b"v1");
        let err = old.open(&sealed_new, b"").unwrap_err().to_string();
        assert!(
            err.contains(&rotated.active_key_id().to_string()) && err.contains("not configured"),
            "{err}"
        );
    }

    fn hex32(text: &str) -> [u8; 32] {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text, &mut key).expect("hex");
        key
    }

    #[test]
    fn explicit_ids_and_key_files() {
        let ring = Keyring::parse(&format!("00000002:{K2}\n00000001:{K1}")).expect("keys");
        assert_eq!(ring.key_ids(), vec![KeyId(2), KeyId(1)]);
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("# rotated 2025-01\n00000002:{K2}\n\n00000001:{K1}\n")).expect("write");
        let from_file = Keyring::from_file(&path).expect("file");
        assert_eq!(from_file.key_ids(), ring.key_ids());
        let sealed = ring.seal(b"x", b"").expect("seal");
        assert_eq!(from_file.open(&sealed, b"").expect("open"), b"x");
        let err = Keyring::from_file(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn sources() {
        assert!(Keyring::from_sources(None, None).expect("none").is_none());
        assert!(Keyring::from_sources(Some("  "), None).expect("blank").is_none());
        assert!(Keyring::from_sources(Some(K1), None).expect("env").is_some());
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("key");
        std::fs::write(&path, K2).expect("write");
        let ring = Keyring::from_sources(None, Some(&path)).expect("file").expect("some");
        assert_eq!(ring.active_key_id(), KeyId::derive(&hex32(K2)));
        let err = Keyring::from_sources(Some(K1), Some(&path)).unwrap_err().to_string();
        assert!(err.contains("keep only one") && !err.contains(K1), "{err}");
    }

    #[test]
    fn bad_keys_are_named_never_shown() {
        let secretish = &K1[..63];
        let err = Keyring::parse(secretish).unwrap_err().to_string();
        assert!(err.contains("#1") && err.contains("63 characters"), "{err}");
        assert!(!err.contains(secretish));
        let bad_hex = format!("{}zz", &K1[..62]);
        let err = Keyring::parse(&format!("{K2},{bad_hex}")).unwrap_err().to_string();
        assert!(err.contains("#2") && err.contains("not hexadecimal"), "{err}");
        assert!(!err.contains(&bad_hex) && !err.contains('z'), "{err}");
        let err = Keyring::parse(&format!("0000000a:{}", &K1[..10]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key id 0000000a") && err.contains("10 characters"),
            "{err}"
        );
        assert!(!err.contains(&K1[..10]), "{err}");
        let err = Keyring::parse(&format!("xyz:{K1}")).unwrap_err().to_string();
        assert!(err.contains("#1") && !err.contains(K1), "{err}");
        assert!(matches!(Keyring::parse(" , \n"), Err(CryptoError::NoKey)));
        assert!(matches!(
            Keyring::parse(&format!("{K1},{K1}")),
            Err(CryptoError::DuplicateKeyId { .. })
        ));
        let debug = format!("{:?}", Keyring::parse(K1).expect("key"));
        assert!(!debug.contains(K1) && debug.contains("key_ids"), "{debug}");
    }

    #[test]
    fn key_check_detects_wrong_and_missing_keys() {
        let ring = Keyring::parse(&format!("00000001:{K1}")).expect("key");
        let check = ring.key_check();
        assert_eq!(check.key_ids(), vec![KeyId(1)]);
        ring.verify_key_check(&check).expect("same key");
        // Same id, other key material: the error names the id.
        let wrong = Keyring::parse(&format!("00000001:{K2}")).expect("key");
        let err = wrong.verify_key_check(&check).unwrap_err();
        assert!(matches!(err, CryptoError::WrongKey { key_id: KeyId(1) }), "{err}");
        assert!(err.to_string().contains("00000001"), "{err}");
        assert!(!err.to_string().contains(K2) && !err.to_string().contains(K1));
        // Derived ids: a different key has a different id, so the check's
        // id is missing.
        let derived = Keyring::parse(K1).expect("key");
        let check = derived.key_check();
        let err = Keyring::parse(K2).expect("key").verify_key_check(&check).unwrap_err();
        assert!(
            matches!(err, CryptoError::UnknownKeyId { key_id, .. } if key_id == derived.active_key_id()),
            "{err}"
        );
        // Rotation: add the new key, update the check, retire the old one.
        let rotated = Keyring::parse(&format!("{K2},{K1}")).expect("keys");
        let mut check = check;
        rotated.update_key_check(&mut check);
        assert_eq!(check.entries.len(), 2);
        rotated.verify_key_check(&check).expect("both keys present");
        assert!(check.retire(derived.active_key_id()));
        Keyring::parse(K2)
            .expect("key")
            .verify_key_check(&check)
            .expect("old key retired");
        let json = serde_json::to_string(&check).expect("serialize");
        assert_eq!(serde_json::from_str::<KeyCheck>(&json).expect("deserialize"), check);
    }

    /// Every truncation and every single-bit flip of a sealed value is an
    /// error, never a panic and never a wrong plaintext.
    #[test]
    fn truncated_and_tampered_values_are_errors() {
        let ring = Keyring::parse(K1).expect("key");
        let sealed = ring.seal(b"a record value of some length", b"aad").expect("seal");
        for len in 0..sealed.len() {
            assert!(ring.open(&sealed[..len], b"aad").is_err(), "truncated to {len}");
        }
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[byte] ^= 1 << bit;
                assert!(ring.open(&bad, b"aad").is_err(), "flip byte {byte} bit {bit}");
            }
        }
        let mut extended = sealed.clone();
        extended.push(0);
        assert!(ring.open(&extended, b"aad").is_err());
        // Random garbage of many lengths.
        let mut rng = rand::rng();
        for len in 0..200 {
            let mut junk = vec![0u8; len];
            rng.fill_bytes(&mut junk);
            if let Some(first) = junk.first_mut() {
                *first = FORMAT_VERSION;
            }
            assert!(ring.open(&junk, b"").is_err());
        }
        assert!(matches!(
            ring.open(&[2u8; OVERHEAD], b""),
            Err(CryptoError::UnsupportedVersion(2))
        ));
    }

    /// Throughput of seal/open on this machine (run on purpose:
    /// `cargo test --release -p flymq-security seal_throughput -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn seal_throughput() {
        let ring = Keyring::parse(K1).expect("key");
        for size in [100usize, 1024, 16 * 1024] {
            let value = vec![7u8; size];
            let rounds = (64 * 1024 * 1024 / size).max(1000);
            let start = std::time::Instant::now();
            let mut last = Vec::new();
            for _ in 0..rounds {
                last = ring.seal(&value, b"topic/0/123").expect("seal");
            }
            let sealed = start.elapsed();
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                ring.open(&last, b"topic/0/123").expect("open");
            }
            let opened = start.elapsed();
            let mb = (rounds * size) as f64 / 1e6;
            println!(
                "{size:>6} B: seal {:>7.0} MB/s {:>9.0} values/s, open {:>7.0} MB/s",
                mb / sealed.as_secs_f64(),
                rounds as f64 / sealed.as_secs_f64(),
                mb / opened.as_secs_f64()
            );
        }
    }

    #[test]
    fn concurrent_seals_never_share_a_nonce() {
        let ring = Arc::new(Keyring::parse(K1).expect("key"));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ring = ring.clone();
                std::thread::spawn(move || {
                    (0..500)
                        .map(|_| {
                            let s = ring.seal(b"x", b"").expect("seal");
                            u64::from_be_bytes(s[21..29].try_into().expect("8 bytes"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut counters: Vec<u64> = threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
        counters.sort_unstable();
        counters.dedup();
        assert_eq!(counters.len(), 2000);
    }
}
