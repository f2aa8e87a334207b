//! Schema registry operations (WIRE.md §10): REGISTER_SCHEMA, GET_SCHEMA,
//! LIST_SCHEMAS, VALIDATE_SCHEMA, DELETE_SCHEMA and PRODUCE_WITH_SCHEMA.
//!
//! Schemas are stored by the broker under a name, with versions 1, 2, 3…
//! per name; a new version must be backward compatible with the latest
//! one. PRODUCE_WITH_SCHEMA writes a record only when the latest version of
//! the named schema accepts it; otherwise the call fails with
//! [`Error::SchemaValidation`] and nothing is written.

use bytes::Bytes;
use flymq_proto::{
    ListSchemasRequest, ProduceWithSchemaRequest, RecordMetadata, RegisterSchemaRequest, Request, Response,
    SchemaEntry, SchemaVersionRequest, ValidateSchemaRequest, ValidateSchemaResponse,
};

use crate::client::{Client, unexpected};
use crate::error::{Error, Result};

pub use flymq_proto::{SchemaType, UnknownSchemaType};

impl Client {
    /// Registers `definition` as the next version of the schema `name`
    /// (REGISTER_SCHEMA) and returns its version number (1 for a new name).
    /// Registering the latest version's definition again returns that
    /// version. The broker refuses a definition that does not parse and one
    /// that is not backward compatible with the latest version
    /// ([`Error::Server`] with the reason).
    ///
    /// ```no_run
    /// # async fn example(client: flymq_client::Client) -> flymq_client::Result<()> {
    /// use flymq_client::SchemaType;
    ///
    /// let definition = r#"{"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}"#;
    /// let version = client.register_schema("orders", SchemaType::Json, definition).await?;
    /// client.produce_with_schema("orders", "orders", r#"{"id": 7}"#).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn register_schema(
        &self,
        name: &str,
        schema_type: SchemaType,
        definition: impl Into<Bytes>,
    ) -> Result<u32> {
        let req = Request::RegisterSchema(RegisterSchemaRequest {
            name: name.to_owned(),
            schema_type: schema_type.as_str().to_owned(),
            definition: definition.into(),
        });
        match self.request(&req).await? {
            Response::RegisterSchema(entry) => Ok(entry.version),
            other => Err(unexpected("REGISTER_SCHEMA", &other)),
        }
    }

    /// Name, type and version number of version `version` of the schema
    /// `name`, or of its latest version when `version` is 0 (GET_SCHEMA).
    /// The wire reply carries no definition text. A missing schema or
    /// version is an error ([`Error::is_schema_not_found`]).
    pub async fn get_schema(&self, name: &str, version: u32) -> Result<SchemaEntry> {
        let req = Request::GetSchema(SchemaVersionRequest {
            name: name.to_owned(),
            version,
        });
        match self.request(&req).await? {
            Response::GetSchema(list) => list.schemas.into_iter().next().ok_or_else(|| Error::Server {
                op: "GET_SCHEMA",
                message: if version == 0 {
                    format!("no schema found for topic: {name}")
                } else {
                    format!("schema not found: {name} v{version}")
                },
            }),
            other => Err(unexpected("GET_SCHEMA", &other)),
        }
    }

    /// Every stored version of every schema, or of the schema named
    /// `filter` (an exact name; empty = all), one entry per version
    /// (LIST_SCHEMAS).
    pub async fn list_schemas(&self, filter: &str) -> Result<Vec<SchemaEntry>> {
        let req = Request::ListSchemas(ListSchemasRequest {
            filter: filter.to_owned(),
        });
        match self.request(&req).await? {
            Response::ListSchemas(list) => Ok(list.schemas),
            other => Err(unexpected("LIST_SCHEMAS", &other)),
        }
    }

    /// Checks `message` against the latest version of the schema `name`
    /// without writing it (VALIDATE_SCHEMA): `valid`, and one text per
    /// problem (for JSON, `/field: reason`). A name without any schema
    /// validates everything (WIRE.md §10.4).
    pub async fn validate_schema(&self, name: &str, message: impl Into<Bytes>) -> Result<ValidateSchemaResponse> {
        let req = Request::ValidateSchema(ValidateSchemaRequest {
            name: name.to_owned(),
            message: message.into(),
        });
        match self.request(&req).await? {
            Response::ValidateSchema(result) => Ok(result),
            other => Err(unexpected("VALIDATE_SCHEMA", &other)),
        }
    }

    /// Appends `value` (no key; the broker picks the partition) if the
    /// latest version of the schema `schema_name` accepts it
    /// (PRODUCE_WITH_SCHEMA). A rejected record is
    /// [`Error::SchemaValidation`] naming each problem, and nothing is
    /// written; an unknown schema is [`Error::Server`]
    /// ([`Error::is_schema_not_found`]).
    pub async fn produce_with_schema(
        &self,
        topic: &str,
        schema_name: &str,
        value: impl Into<Bytes>,
    ) -> Result<RecordMetadata> {
        let req = Request::ProduceWithSchema(ProduceWithSchemaRequest {
            topic: topic.to_owned(),
            data: value.into(),
            schema_name: schema_name.to_owned(),
        });
        match self.request(&req).await? {
            Response::ProduceWithSchema(meta) => Ok(meta),
            other => Err(unexpected("PRODUCE_WITH_SCHEMA", &other)),
        }
    }

    /// Deletes version `version` of the schema `name`, or every version of
    /// it when `version` is 0 (DELETE_SCHEMA); returns the broker's message
    /// (`deleted 2 versions of schema 'orders'`). Records already written
    /// are not affected. A missing schema or version is an error
    /// ([`Error::is_schema_not_found`]).
    pub async fn delete_schema(&self, name: &str, version: u32) -> Result<String> {
        let req = Request::DeleteSchema(SchemaVersionRequest {
            name: name.to_owned(),
            version,
        });
        match self.request(&req).await? {
            Response::DeleteSchema(reply) if reply.success => Ok(reply.message),
            Response::DeleteSchema(reply) => Err(Error::Server {
                op: "DELETE_SCHEMA",
                message: if reply.message.is_empty() {
                    format!("deleting schema '{name}' was refused")
                } else {
                    reply.message
                },
            }),
            other => Err(unexpected("DELETE_SCHEMA", &other)),
        }
    }
}
