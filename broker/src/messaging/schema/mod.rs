//! Schema formats of the registry (WIRE.md §10): parsing a definition,
//! validating a message against it, and checking that a new version is
//! backward compatible with the previous one (consumers using the new
//! version can read messages written with the old one).
//!
//! Pure functions, no storage: `core::schemas` stores versions in the
//! metadata group and caches compiled schemas.

mod avro;
mod json;
mod protobuf;

use thiserror::Error;

/// Most problems reported for one message or one compatibility check.
const MAX_PROBLEMS: usize = 20;
/// Longest text of one reported problem.
const MAX_PROBLEM_CHARS: usize = 300;

pub use flymq_proto::SchemaType;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaError {
    #[error("invalid {kind} schema: {reason}")]
    Invalid { kind: &'static str, reason: String },
    #[error("not backward compatible with version {previous}: {}", .problems.join("; "))]
    Incompatible { previous: u32, problems: Vec<String> },
}

/// A parsed schema, ready to validate messages.
pub enum CompiledSchema {
    Json(json::JsonSchema),
    Avro(avro::AvroSchema),
    Protobuf(protobuf::ProtobufSchema),
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CompiledSchema({})", self.schema_type().as_str())
    }
}

impl CompiledSchema {
    /// Parses `definition` as a schema of `schema_type`.
    pub fn compile(schema_type: SchemaType, definition: &str) -> Result<Self, SchemaError> {
        let invalid = |reason: String| SchemaError::Invalid {
            kind: schema_type.as_str(),
            reason: clip(&reason),
        };
        Ok(match schema_type {
            SchemaType::Json => Self::Json(json::JsonSchema::compile(definition).map_err(invalid)?),
            SchemaType::Avro => Self::Avro(avro::AvroSchema::compile(definition).map_err(invalid)?),
            SchemaType::Protobuf => Self::Protobuf(protobuf::ProtobufSchema::compile(definition).map_err(invalid)?),
        })
    }

    pub fn schema_type(&self) -> SchemaType {
        match self {
            Self::Json(_) => SchemaType::Json,
            Self::Avro(_) => SchemaType::Avro,
            Self::Protobuf(_) => SchemaType::Protobuf,
        }
    }

    /// What is wrong with `message` (empty: valid), each problem naming
    /// the field it is about.
    pub fn validate(&self, message: &[u8]) -> Vec<String> {
        let mut problems = match self {
            Self::Json(schema) => schema.validate(message),
            Self::Avro(schema) => schema.validate(message),
            Self::Protobuf(schema) => schema.validate(message),
        };
        tidy(&mut problems);
        problems
    }

    /// Ok when consumers using `self` can read every message `previous`
    /// (version `previous_version`) accepted, as far as the rules of the
    /// format tell (docs/messaging.md#schema-registry lists them).
    pub fn check_backward(&self, previous: &CompiledSchema, previous_version: u32) -> Result<(), SchemaError> {
        let mut problems = match (previous, self) {
            (Self::Json(old), Self::Json(new)) => json::backward_problems(old, new),
            (Self::Avro(old), Self::Avro(new)) => avro::backward_problems(old, new),
            (Self::Protobuf(old), Self::Protobuf(new)) => protobuf::backward_problems(old, new),
            (old, new) => vec![format!(
                "the type changes from {} to {}",
                old.schema_type().as_str(),
                new.schema_type().as_str()
            )],
        };
        tidy(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SchemaError::Incompatible {
                previous: previous_version,
                problems,
            })
        }
    }
}

/// Caps the number and length of reported problems (a message with
/// thousands of bad fields must not make a megabyte error frame).
fn tidy(problems: &mut Vec<String>) {
    let total = problems.len();
    problems.truncate(MAX_PROBLEMS);
    for problem in problems.iter_mut() {
        *problem = clip(problem);
    }
    if total > MAX_PROBLEMS {
        problems.push(format!("... and {} more", total - MAX_PROBLEMS));
    }
}

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_PROBLEM_CHARS {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(MAX_PROBLEM_CHARS).collect();
    clipped.push('…');
    clipped
}

/// A field path for messages: `(root)` for the message itself.
fn shown(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

#[cfg(test)]
mod tests;
