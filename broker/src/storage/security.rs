//! Stored security state and audit trail (`meta` column family):
//!
//! | key | value |
//! |---|---|
//! | `c/security_state` | users (password hashes only), custom roles, ACLs (JSON) |
//! | `c/audit_next` | the next audit sequence number (u64) |
//! | `a/[seq u64]` | one audit event (JSON) |
//!
//! `c/` keys travel with metadata snapshots; so does the `a/` prefix. Both
//! are sealed when encryption at rest is on.

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{CF_META, StorageError, Store};
use flymq_security::SecurityState;

const SECURITY_STATE: &str = "security_state";
const AUDIT_NEXT: &str = "audit_next";
/// Prefix of audit event keys.
pub const AUDIT_PREFIX: &[u8] = b"a/";

fn audit_key(seq: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[..2].copy_from_slice(AUDIT_PREFIX);
    key[2..].copy_from_slice(&seq.to_be_bytes());
    key
}

impl Store {
    /// The stored security state (empty when none was ever stored).
    pub fn load_security_state(&self) -> Result<SecurityState, StorageError> {
        match self.get_cluster_value(SECURITY_STATE)? {
            None => Ok(SecurityState::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                what: format!("security state: {e}"),
            }),
        }
    }

    pub fn put_security_state(&self, batch: &mut WriteBatch, state: &SecurityState) -> Result<(), StorageError> {
        // Plain data (strings, sets, maps with string keys): cannot fail.
        let json = serde_json::to_vec(state).unwrap_or_default();
        self.put_cluster_value(batch, SECURITY_STATE, &json)
    }

    /// The sequence number the next audit event gets.
    pub fn audit_next(&self) -> Result<u64, StorageError> {
        match self.get_cluster_value(AUDIT_NEXT)? {
            None => Ok(0),
            Some(bytes) => Ok(u64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| {
                StorageError::Corrupt {
                    what: "audit sequence number".into(),
                }
            })?)),
        }
    }

    /// Stores event `seq` and drops every event before `keep_from`.
    pub fn put_audit(
        &self,
        batch: &mut WriteBatch,
        seq: u64,
        event: &[u8],
        keep_from: u64,
    ) -> Result<(), StorageError> {
        let meta = self.cf(CF_META);
        let key = audit_key(seq);
        let stored = self.seal_meta_value(&key, event)?;
        batch.put_cf(&meta, key, stored);
        self.put_cluster_value(batch, AUDIT_NEXT, &(seq + 1).to_be_bytes())?;
        if keep_from > 0 {
            batch.delete_range_cf(&meta, audit_key(0), audit_key(keep_from));
        }
        Ok(())
    }

    /// Stored audit events, newest first, as (sequence number, JSON).
    pub fn audit_events(&self) -> impl Iterator<Item = Result<(u64, Vec<u8>), StorageError>> + '_ {
        let end = super::prefix_end(AUDIT_PREFIX);
        self.db()
            .iterator_cf(&self.cf(CF_META), IteratorMode::From(&end, Direction::Reverse))
            // The seek lands on `end` itself when such a key exists.
            .skip_while(move |item| item.as_ref().is_ok_and(|(key, _)| **key >= *end))
            .map_while(|item| match item {
                Err(e) => Some(Err(StorageError::from(e))),
                Ok((key, value)) => {
                    let seq: [u8; 8] = key.strip_prefix(AUDIT_PREFIX)?.try_into().ok()?;
                    Some(
                        self.open_meta_value(&key, &value)
                            .map(|plain| (u64::from_be_bytes(seq), plain.to_vec())),
                    )
                }
            })
    }
}
