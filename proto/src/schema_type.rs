//! The schema languages of the registry, named as on the wire
//! (`schema_type` of REGISTER_SCHEMA and the schema answers).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The kinds of schema the broker's registry accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaType {
    /// JSON Schema; a definition is a JSON object.
    Json,
    /// Apache Avro; a definition is an Avro schema in JSON.
    Avro,
    /// Protocol Buffers; a definition is `.proto` text (the first message is the record type).
    Protobuf,
}

/// A schema type name that is none of `json`, `avro`, `protobuf`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown schema type '{0}': use json, avro or protobuf")]
pub struct UnknownSchemaType(pub String);

impl SchemaType {
    /// The name sent on the wire and stored: `json`, `avro` or `protobuf`.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Json => "json",
            SchemaType::Avro => "avro",
            SchemaType::Protobuf => "protobuf",
        }
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchemaType {
    type Err = UnknownSchemaType;

    /// `json`, `avro`, `protobuf` or `proto`, in any case. The error quotes
    /// at most 40 characters of the text.
    fn from_str(text: &str) -> Result<Self, UnknownSchemaType> {
        match text.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(SchemaType::Json),
            "avro" => Ok(SchemaType::Avro),
            "protobuf" | "proto" => Ok(SchemaType::Protobuf),
            _ => Err(UnknownSchemaType(text.chars().take(40).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_types_parse_in_any_case_and_print_their_wire_name() {
        for (text, expected) in [
            ("json", SchemaType::Json),
            ("JSON", SchemaType::Json),
            (" Avro ", SchemaType::Avro),
            ("protobuf", SchemaType::Protobuf),
            ("proto", SchemaType::Protobuf),
        ] {
            assert_eq!(text.parse::<SchemaType>(), Ok(expected), "{text}");
        }
        assert_eq!(SchemaType::Protobuf.to_string(), "protobuf");
        let err = "xml".parse::<SchemaType>().unwrap_err();
        assert_eq!(err.to_string(), "unknown schema type 'xml': use json, avro or protobuf");
        let long = "y".repeat(500).parse::<SchemaType>().unwrap_err();
        assert_eq!(long.0.len(), 40, "the echoed name is cut short");
    }
}
