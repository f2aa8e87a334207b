//! The schema registry (WIRE.md §10): versions per name, stored in the
//! metadata group (`Command::RegisterSchema` / `DeleteSchema`), read from
//! this broker's copy. Registering checks the definition and its backward
//! compatibility with the latest version here, then proposes it on the
//! condition that the latest version is still that one, so two concurrent
//! registrations cannot both skip the check. Compiled schemas are cached
//! per version for PRODUCE_WITH_SCHEMA and VALIDATE_SCHEMA.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::broker::{Broker, now_ms, unexpected};
use super::command::{Applied, Command};
use super::error::{BrokerError, BrokerResult};
use super::names::validate_schema_name;
use crate::messaging::schema::{CompiledSchema, SchemaType};
use crate::storage::schemas::StoredSchema;

/// Largest schema definition accepted.
pub const MAX_DEFINITION_BYTES: usize = 256 * 1024;
/// Compiled schemas kept; the cache starts over when full.
const CACHE_ENTRIES: usize = 1024;
/// Registrations retried when another one got in between.
const REGISTER_ATTEMPTS: usize = 5;

/// Compiled schemas by (name, version); the registration time tells a
/// version apart from one re-registered under the same number after a delete.
#[derive(Default)]
pub struct SchemaCache {
    compiled: Mutex<HashMap<VersionKey, (i64, Arc<CompiledSchema>)>>,
    /// The latest version of each name used by PRODUCE_WITH_SCHEMA, valid
    /// while the catalog's schema epoch is the one it was read under (no
    /// storage read per produce).
    latest: Mutex<HashMap<String, (u64, Arc<Latest>)>>,
}

/// A name's latest version, compiled.
struct Latest {
    name: String,
    version: u32,
    compiled: Arc<CompiledSchema>,
}

/// (schema name, version).
type VersionKey = (String, u32);

impl SchemaCache {
    fn get(&self, stored: &StoredSchema) -> BrokerResult<Arc<CompiledSchema>> {
        let key = (stored.name.clone(), stored.version);
        if let Some((at, compiled)) = self.compiled.lock().get(&key)
            && *at == stored.registered_ms
        {
            return Ok(compiled.clone());
        }
        let compiled = Arc::new(compile(&stored.schema_type, &stored.definition)?);
        let mut cache = self.compiled.lock();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, (stored.registered_ms, compiled.clone()));
        Ok(compiled)
    }
}

fn compile(schema_type: &str, definition: &str) -> BrokerResult<CompiledSchema> {
    let schema_type = schema_type
        .parse::<SchemaType>()
        .map_err(|e| BrokerError::Schema(e.to_string()))?;
    CompiledSchema::compile(schema_type, definition).map_err(|e| BrokerError::Schema(e.to_string()))
}

fn not_found(name: &str, version: u32) -> BrokerError {
    BrokerError::SchemaNotFound(if version == 0 {
        format!("no schema found for topic: {name}")
    } else {
        format!("schema not found: {name} v{version}")
    })
}

impl Broker {
    /// Registers `definition` as the next version of `name` (or answers the
    /// latest version when it has this definition already). Returns the
    /// canonical type and the version.
    pub async fn register_schema(
        &self,
        name: &str,
        schema_type: &str,
        definition: &[u8],
    ) -> BrokerResult<(SchemaType, u32)> {
        validate_schema_name(name)?;
        let parsed_type = schema_type
            .parse::<SchemaType>()
            .map_err(|e| BrokerError::Schema(e.to_string()))?;
        if definition.len() > MAX_DEFINITION_BYTES {
            return Err(BrokerError::Schema(format!(
                "schema '{name}' is {} bytes; the largest definition accepted is {MAX_DEFINITION_BYTES} bytes",
                definition.len()
            )));
        }
        let definition = std::str::from_utf8(definition)
            .map_err(|_| BrokerError::Schema(format!("schema '{name}': the definition is not UTF-8 text")))?
            .to_owned();
        for _ in 0..REGISTER_ATTEMPTS {
            let previous = self.check_registration(name, parsed_type, &definition).await?;
            let command = Command::RegisterSchema {
                name: name.to_owned(),
                schema_type: parsed_type.as_str().to_owned(),
                definition: definition.clone(),
                registered_ms: now_ms(),
                previous,
            };
            match self.propose(command).await? {
                Applied::SchemaRegistered { version, .. } => return Ok((parsed_type, version)),
                // Our copy of the metadata was behind, or another
                // registration got in: check against the new latest.
                Applied::SchemaConflict { .. } => tokio::time::sleep(Duration::from_millis(50)).await,
                other => return Err(unexpected(other)),
            }
        }
        Err(BrokerError::Schema(format!(
            "schema '{name}' kept changing while registering it; retry"
        )))
    }

    /// Parses the definition and checks it against the latest version
    /// here (CPU work and a store read: off the async workers). Returns
    /// that version (0: none).
    async fn check_registration(&self, name: &str, schema_type: SchemaType, definition: &str) -> BrokerResult<u32> {
        let definition = definition.to_owned();
        let (store, cache) = (self.store.clone(), self.schemas.clone());
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let new = CompiledSchema::compile(schema_type, &definition)
                .map_err(|e| BrokerError::Schema(format!("schema '{name}': {e}")))?;
            let Some(latest) = store.latest_schema(&name)? else {
                return Ok(0);
            };
            if latest.schema_type == schema_type.as_str() && latest.definition == definition {
                return Ok(latest.version);
            }
            let old = cache.get(&latest)?;
            new.check_backward(&old, latest.version)
                .map_err(|e| BrokerError::Schema(format!("schema '{name}' is {e}")))?;
            Ok(latest.version)
        })
        .await
        .map_err(|e| BrokerError::Storage(format!("internal error: schema check failed: {e}")))?
    }

    /// GET_SCHEMA: version `version` of `name` (0: the latest); linearizable.
    pub async fn read_schema(&self, name: &str, version: u32) -> BrokerResult<StoredSchema> {
        self.metadata_barrier().await?;
        let owned = name.to_owned();
        let found = self
            .read_store("the schema", move |store| match version {
                0 => store.latest_schema(&owned),
                v => store.schema(&owned, v),
            })
            .await?;
        found.ok_or_else(|| not_found(name, version))
    }

    /// LIST_SCHEMAS: every version of the schema named `filter` (of all
    /// schemas when empty); linearizable.
    pub async fn list_schemas(&self, filter: &str) -> BrokerResult<Vec<StoredSchema>> {
        self.metadata_barrier().await?;
        let filter = filter.to_owned();
        self.read_store("the schemas", move |store| {
            store.schemas((!filter.is_empty()).then_some(filter.as_str()))
        })
        .await
    }

    /// Deletes one version of `name`, or all of them (`version` 0).
    /// Returns how many were deleted.
    pub async fn delete_schema(&self, name: &str, version: u32) -> BrokerResult<u32> {
        validate_schema_name(name)?;
        match self
            .propose(Command::DeleteSchema {
                name: name.to_owned(),
                version,
            })
            .await?
        {
            Applied::SchemaDeleted { versions } => Ok(versions),
            other => Err(unexpected(other)),
        }
    }

    /// The problems `message` has against the latest version of `name`
    /// (none: valid). No schema under the name: valid (WIRE.md §10.4).
    pub fn validate_against_schema(&self, name: &str, message: &[u8]) -> BrokerResult<Vec<String>> {
        self.replicator.check_metadata_fresh()?;
        match self.store.latest_schema(name)? {
            None => Ok(Vec::new()),
            Some(stored) => Ok(self.schemas.get(&stored)?.validate(message)),
        }
    }

    /// PRODUCE_WITH_SCHEMA's check: the schema must exist and accept the message.
    pub fn check_schema(&self, name: &str, message: &[u8]) -> BrokerResult<()> {
        let latest = self.latest_compiled(name)?;
        let problems = latest.compiled.validate(message);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BrokerError::SchemaValidation {
                schema: latest.name.clone(),
                version: latest.version,
                problems,
            })
        }
    }

    /// The latest version of `name`, from the cache while no schema
    /// changed here since it was read (the epoch is read before the store,
    /// so a change in between only makes the next call read again).
    fn latest_compiled(&self, name: &str) -> BrokerResult<Arc<Latest>> {
        self.replicator.check_metadata_fresh()?;
        let epoch = self.catalog.schema_epoch();
        if let Some((at, latest)) = self.schemas.latest.lock().get(name)
            && *at == epoch
        {
            return Ok(latest.clone());
        }
        let stored = self.store.latest_schema(name)?.ok_or_else(|| not_found(name, 0))?;
        let latest = Arc::new(Latest {
            compiled: self.schemas.get(&stored)?,
            name: stored.name,
            version: stored.version,
        });
        let mut cache = self.schemas.latest.lock();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(name.to_owned(), (epoch, latest.clone()));
        Ok(latest)
    }
}
