//! Schema registry storage: one `meta` value per schema version,
//! `c/schema/<name>:<version, 10 digits>` → the version as JSON (sealed
//! like every `c/` value, and carried by metadata snapshots). Schema names
//! follow the topic name rules, which exclude `:`, so a name's versions are
//! exactly the keys under `c/schema/<name>:`, in version order.

use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{CF_META, StorageError, Store, keys};

const SCHEMA_NAME_PREFIX: &str = "schema/";

/// One registered version of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSchema {
    pub name: String,
    pub version: u32,
    /// `json`, `avro` or `protobuf`.
    pub schema_type: String,
    pub definition: String,
    pub registered_ms: i64,
}

fn version_name(name: &str, version: u32) -> String {
    format!("{SCHEMA_NAME_PREFIX}{name}:{version:010}")
}

impl Store {
    pub fn put_schema(&self, batch: &mut WriteBatch, schema: &StoredSchema) -> Result<(), StorageError> {
        // Strings and numbers: serialising cannot fail.
        let json = serde_json::to_vec(schema).unwrap_or_default();
        self.put_cluster_value(batch, &version_name(&schema.name, schema.version), &json)
    }

    pub fn delete_schema(&self, batch: &mut WriteBatch, name: &str, version: u32) {
        batch.delete_cf(&self.cf(CF_META), keys::cluster_key(&version_name(name, version)));
    }

    pub fn schema(&self, name: &str, version: u32) -> Result<Option<StoredSchema>, StorageError> {
        self.get_cluster_value(&version_name(name, version))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// The newest version of `name`.
    pub fn latest_schema(&self, name: &str) -> Result<Option<StoredSchema>, StorageError> {
        let prefix = keys::cluster_key(&format!("{SCHEMA_NAME_PREFIX}{name}:"));
        // `;` sorts right after `:`: seek to the last key before it.
        let mut end = prefix.clone();
        if let Some(last) = end.last_mut() {
            *last = b';';
        }
        let mut iter = self
            .db()
            .iterator_cf(&self.cf(CF_META), IteratorMode::From(&end, Direction::Reverse));
        match iter.next().transpose()? {
            Some((key, stored)) if key.starts_with(&prefix) => Ok(Some(decode(&self.open_meta_value(&key, &stored)?)?)),
            _ => Ok(None),
        }
    }

    /// Every version of `name` (of every schema when `None`), by name then version.
    pub fn schemas(&self, name: Option<&str>) -> Result<Vec<StoredSchema>, StorageError> {
        let prefix = match name {
            Some(name) => format!("{SCHEMA_NAME_PREFIX}{name}:"),
            None => SCHEMA_NAME_PREFIX.to_owned(),
        };
        self.cluster_values(&prefix)?
            .iter()
            .map(|(_, value)| decode(value))
            .collect()
    }
}

fn decode(bytes: &[u8]) -> Result<StoredSchema, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt {
        what: format!("schema version: {e}"),
    })
}
