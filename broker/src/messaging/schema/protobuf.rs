//! Protobuf (`.proto` text compiled by `protox`, messages decoded by
//! `prost-reflect`). A schema's message type is the first message the file
//! defines; imports of Google's well-known types (`google/protobuf/*.proto`)
//! resolve, other imports do not. A message must decode as that type and
//! carry no field number the schema does not define (at any depth).

use std::collections::HashSet;

use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, ReflectMessage, Value};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::shown;

/// The name the definition is compiled under (shown in parse errors).
const FILE_NAME: &str = "schema.proto";

pub struct ProtobufSchema {
    message: MessageDescriptor,
}

/// Resolves the one file of a registered definition.
struct Definition(String);

impl FileResolver for Definition {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == FILE_NAME {
            File::from_source(FILE_NAME, &self.0)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

impl ProtobufSchema {
    pub fn compile(definition: &str) -> Result<Self, String> {
        let mut resolver = ChainFileResolver::new();
        resolver.add(Definition(definition.to_owned()));
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.open_file(FILE_NAME).map_err(|e| e.to_string())?;
        let pool = compiler.descriptor_pool();
        let message = pool
            .get_file_by_name(FILE_NAME)
            .and_then(|file| file.messages().next())
            .ok_or("the definition declares no message")?;
        Ok(Self { message })
    }

    pub fn validate(&self, message: &[u8]) -> Vec<String> {
        match DynamicMessage::decode(self.message.clone(), message) {
            Err(e) => vec![format!("(root): not a valid {} message: {e}", self.message.full_name())],
            Ok(decoded) => {
                let mut problems = Vec::new();
                unknown_fields(&decoded, "", &mut problems);
                problems
            }
        }
    }
}

/// Field numbers present in the message but not in the schema.
fn unknown_fields(message: &DynamicMessage, path: &str, problems: &mut Vec<String>) {
    for field in message.unknown_fields() {
        problems.push(format!(
            "{}: field number {} is not in the schema of {}",
            shown(path),
            field.number(),
            message.descriptor().full_name()
        ));
    }
    for (field, value) in message.fields() {
        let at = format!("{path}/{}", field.name());
        match value {
            Value::Message(inner) => unknown_fields(inner, &at, problems),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(inner) = item {
                        unknown_fields(inner, &format!("{at}/{i}"), problems);
                    }
                }
            }
            Value::Map(entries) => {
                for item in entries.values() {
                    if let Value::Message(inner) = item {
                        unknown_fields(inner, &at, problems);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Wire rules: a field number kept in the new version keeps its type and
/// its cardinality (singular, repeated, map); nested messages are compared
/// the same way. Adding and removing fields is allowed (an old field the
/// new schema lacks is skipped by readers).
pub fn backward_problems(old: &ProtobufSchema, new: &ProtobufSchema) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    compare(&old.message, &new.message, "", &mut problems, &mut seen);
    problems
}

fn compare(
    old: &MessageDescriptor,
    new: &MessageDescriptor,
    path: &str,
    problems: &mut Vec<String>,
    seen: &mut HashSet<(String, String)>,
) {
    // Recursive message types: compare each pair once.
    if !seen.insert((old.full_name().to_owned(), new.full_name().to_owned())) {
        return;
    }
    for old_field in old.fields() {
        let Some(new_field) = new.get_field(old_field.number()) else {
            continue;
        };
        let at = format!("{path}/{}", new_field.name());
        let shape = |f: &prost_reflect::FieldDescriptor| {
            if f.is_map() {
                "map"
            } else if f.is_list() {
                "repeated"
            } else {
                "singular"
            }
        };
        if shape(&old_field) != shape(&new_field) {
            problems.push(format!(
                "{at}: field {} changes from {} to {}",
                old_field.number(),
                shape(&old_field),
                shape(&new_field)
            ));
            continue;
        }
        match (old_field.kind(), new_field.kind()) {
            (Kind::Message(o), Kind::Message(n)) => compare(&o, &n, &at, problems, seen),
            (Kind::Enum(_), Kind::Enum(_)) => {}
            (o, n) if o == n => {}
            (o, n) => problems.push(format!(
                "{at}: field {} changes type from {o:?} to {n:?}",
                old_field.number()
            )),
        }
    }
}
