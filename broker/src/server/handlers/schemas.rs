//! Schema registry operations (WIRE.md §10): REGISTER_SCHEMA, GET_SCHEMA,
//! LIST_SCHEMAS, VALIDATE_SCHEMA and DELETE_SCHEMA. PRODUCE_WITH_SCHEMA is
//! a produce (`produce.rs`).

use std::sync::Arc;

use flymq_proto::{
    ListSchemasRequest, OkMessage, RegisterSchemaRequest, Response, SchemaEntry, SchemaListResponse,
    SchemaVersionRequest, ValidateSchemaRequest, ValidateSchemaResponse,
};

use crate::core::Broker;
use crate::server::dispatch::{Answer, blocking};
use crate::storage::schemas::StoredSchema;

fn entry(stored: StoredSchema) -> SchemaEntry {
    SchemaEntry {
        name: stored.name,
        schema_type: stored.schema_type,
        version: stored.version,
    }
}

pub async fn register(broker: Arc<Broker>, req: RegisterSchemaRequest) -> Answer {
    match broker
        .register_schema(&req.name, &req.schema_type, &req.definition)
        .await
    {
        Ok((schema_type, version)) => Answer::Response(Response::RegisterSchema(SchemaEntry {
            name: req.name,
            schema_type: schema_type.as_str().to_owned(),
            version,
        })),
        Err(err) => Answer::error(err),
    }
}

/// Answered in the LIST_SCHEMAS layout with one entry (WIRE.md §10.2).
pub async fn get(broker: Arc<Broker>, req: SchemaVersionRequest) -> Answer {
    Answer::from_result(broker.read_schema(&req.name, req.version).await.map(|stored| {
        Response::GetSchema(SchemaListResponse {
            schemas: vec![entry(stored)],
        })
    }))
}

pub async fn list(broker: Arc<Broker>, req: ListSchemasRequest) -> Answer {
    Answer::from_result(broker.list_schemas(&req.filter).await.map(|found| {
        Response::ListSchemas(SchemaListResponse {
            schemas: found.into_iter().map(entry).collect(),
        })
    }))
}

pub async fn validate(broker: Arc<Broker>, req: ValidateSchemaRequest) -> Answer {
    blocking(move || {
        Answer::from_result(broker.validate_against_schema(&req.name, &req.message).map(|errors| {
            Response::ValidateSchema(ValidateSchemaResponse {
                valid: errors.is_empty(),
                errors,
            })
        }))
    })
    .await
}

/// Version 0 deletes every version (WIRE.md §10.6).
pub async fn delete(broker: Arc<Broker>, req: SchemaVersionRequest) -> Answer {
    match broker.delete_schema(&req.name, req.version).await {
        Ok(count) => Answer::Response(Response::DeleteSchema(OkMessage::ok(match count {
            1 => format!("deleted 1 version of schema '{}'", req.name),
            n => format!("deleted {n} versions of schema '{}'", req.name),
        }))),
        Err(err) => Answer::error(err),
    }
}
