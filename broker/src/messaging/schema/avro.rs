//! Avro (by `apache-avro`). A message is either one Avro binary datum
//! (no container header) or, when it parses as JSON, the JSON form of a
//! value (records as objects, unions as the plain value or Avro's
//! `{"type": value}` wrapping, bytes and fixed as strings). JSON is checked
//! by a walk over the schema that names the field at fault; a binary
//! datum must decode completely.

use std::collections::HashMap;
use std::sync::Once;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::schema_compatibility::SchemaCompatibility;
use serde_json::Value;

use super::shown;

pub struct AvroSchema {
    root: Schema,
    /// Named types (records, enums, fixed) by full name, for `Ref`s.
    names: HashMap<Name, Schema>,
}

/// A datum's length prefixes are checked against this before anything is
/// allocated: no string or bytes value is longer than a whole frame, so a
/// 10-byte message cannot make the decoder allocate half a gigabyte (the
/// library's default limit).
fn limit_allocations() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        apache_avro::util::max_allocation_bytes(flymq_proto::MAX_PAYLOAD);
    });
}

impl AvroSchema {
    pub fn compile(definition: &str) -> Result<Self, String> {
        limit_allocations();
        let root = Schema::parse_str(definition).map_err(|e| e.to_string())?;
        let names = ResolvedSchema::try_from(&root)
            .map_err(|e| e.to_string())?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        Ok(Self { root, names })
    }

    fn root(&self) -> &Schema {
        &self.root
    }

    pub fn validate(&self, message: &[u8]) -> Vec<String> {
        if let Ok(json) = serde_json::from_slice::<Value>(message) {
            let mut problems = Vec::new();
            self.check(self.root(), &json, "", &mut problems);
            return problems;
        }
        let mut rest = message;
        let decoded = GenericDatumReader::builder(self.root())
            .build()
            .and_then(|reader| reader.read_value(&mut rest));
        match decoded {
            Err(e) => vec![format!("(root): not a valid Avro datum of this schema: {e}")],
            Ok(_) if !rest.is_empty() => vec![format!("(root): {} bytes left over after the Avro datum", rest.len())],
            Ok(_) => Vec::new(),
        }
    }

    fn named(&self, name: &Name) -> Option<&Schema> {
        self.names.get(name)
    }

    /// Adds what is wrong with `value` as a `schema` value at `path`.
    fn check(&self, schema: &Schema, value: &Value, path: &str, problems: &mut Vec<String>) {
        let mut expect = |what: &str| problems.push(format!("{}: expected {what}, found {}", shown(path), kind(value)));
        match schema {
            Schema::Null => {
                if !value.is_null() {
                    expect("null");
                }
            }
            Schema::Boolean => {
                if !value.is_boolean() {
                    expect("a boolean");
                }
            }
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                if value.as_i64().is_none_or(|n| i32::try_from(n).is_err()) {
                    expect("a 32-bit integer");
                }
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                if value.as_i64().is_none() {
                    expect("a 64-bit integer");
                }
            }
            Schema::Float | Schema::Double => {
                if !value.is_number() {
                    expect("a number");
                }
            }
            Schema::String | Schema::Uuid(_) => {
                if !value.is_string() {
                    expect("a string");
                }
            }
            Schema::Bytes | Schema::Decimal(_) | Schema::BigDecimal => {
                if !value.is_string() {
                    expect("bytes (a string)");
                }
            }
            Schema::Fixed(fixed) | Schema::Duration(fixed) => match value.as_str() {
                Some(s) if s.chars().count() == fixed.size => {}
                _ => expect(&format!("{} fixed bytes (a string of that length)", fixed.size)),
            },
            Schema::Enum(e) => match value.as_str() {
                Some(s) if e.symbols.iter().any(|sym| sym == s) => {}
                _ => expect(&format!("one of the symbols {}", e.symbols.join(", "))),
            },
            Schema::Array(array) => match value.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.check(&array.items, item, &format!("{path}/{i}"), problems);
                    }
                }
                None => expect("an array"),
            },
            Schema::Map(map) => match value.as_object() {
                Some(entries) => {
                    for (key, item) in entries {
                        self.check(&map.types, item, &format!("{path}/{key}"), problems);
                    }
                }
                None => expect("a map (an object)"),
            },
            Schema::Record(record) => match value.as_object() {
                Some(fields) => {
                    for field in &record.fields {
                        match fields.get(&field.name) {
                            Some(v) => self.check(&field.schema, v, &format!("{path}/{}", field.name), problems),
                            None if field.default.is_none() => problems.push(format!(
                                "{}: missing field '{}' (it has no default)",
                                shown(path),
                                field.name
                            )),
                            None => {}
                        }
                    }
                    for key in fields.keys().filter(|k| !record.fields.iter().any(|f| &f.name == *k)) {
                        problems.push(format!("{}: field '{key}' is not in the schema", shown(path)));
                    }
                }
                None => expect(&format!("a record {} (an object)", record.name)),
            },
            Schema::Union(union) => {
                let variants = union.variants();
                let fits = |schema: &Schema, v: &Value| {
                    let mut inner = Vec::new();
                    self.check(schema, v, path, &mut inner);
                    inner.is_empty()
                };
                if variants.iter().any(|s| fits(s, value)) {
                    return;
                }
                // Avro's JSON encoding wraps a non-null branch: {"<type>": value}.
                if let Some(obj) = value.as_object()
                    && obj.len() == 1
                    && let Some((branch, inner)) = obj.iter().next()
                    && variants.iter().any(|s| branch_name(s) == *branch && fits(s, inner))
                {
                    return;
                }
                let names: Vec<String> = variants.iter().map(branch_name).collect();
                expect(&format!("one of the union's types [{}]", names.join(", ")));
            }
            Schema::Ref { name } => match self.named(name) {
                Some(target) => self.check(target, value, path, problems),
                None => problems.push(format!("{}: the schema refers to unknown type {name}", shown(path))),
            },
        }
    }
}

/// The name a union branch has in Avro's JSON encoding.
fn branch_name(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => r.name.fullname(None),
        Schema::Enum(e) => e.name.fullname(None),
        Schema::Fixed(f) => f.name.fullname(None),
        Schema::Ref { name } => name.fullname(None),
        other => {
            let canonical = other.canonical_form();
            canonical.trim_matches('"').to_owned()
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Avro's schema resolution rules: the new schema, as a reader, must be
/// able to read data written with the old one.
pub fn backward_problems(old: &AvroSchema, new: &AvroSchema) -> Vec<String> {
    match SchemaCompatibility::can_read(old.root(), new.root()) {
        Ok(_) => Vec::new(),
        Err(e) => vec![e.to_string()],
    }
}
