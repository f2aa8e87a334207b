//! JSON Schema (drafts 4 to 2020-12, by the `jsonschema` crate). Messages
//! are JSON documents. References to other documents (`$ref` to a URL or a
//! file) are not fetched: such a schema is refused when registered.

use serde_json::{Map, Value};

use super::shown;

pub struct JsonSchema {
    definition: Value,
    validator: jsonschema::Validator,
}

impl JsonSchema {
    pub fn compile(definition: &str) -> Result<Self, String> {
        let definition: Value = serde_json::from_str(definition).map_err(|e| format!("not valid JSON: {e}"))?;
        if !definition.is_object() {
            return Err("a JSON schema must be a JSON object".into());
        }
        let validator = jsonschema::validator_for(&definition).map_err(|e| e.to_string())?;
        Ok(Self { definition, validator })
    }

    pub fn validate(&self, message: &[u8]) -> Vec<String> {
        let instance: Value = match serde_json::from_slice(message) {
            Ok(instance) => instance,
            Err(e) => return vec![format!("(root): the message is not valid JSON: {e}")],
        };
        self.validator
            .iter_errors(&instance)
            .map(|error| format!("{}: {error}", shown(&error.instance_path().to_string())))
            .collect()
    }
}

/// Structural rules (conservative; a schema using other keywords is
/// compared on these only): a property may not become required, a type
/// may not be dropped from what a field accepts (integer to number is a
/// widening), an enum may not lose values or appear, and with
/// `additionalProperties: false` a property may not be removed. Nested
/// `properties` and `items` are compared the same way.
pub fn backward_problems(old: &JsonSchema, new: &JsonSchema) -> Vec<String> {
    let mut problems = Vec::new();
    compare(&old.definition, &new.definition, "", &mut problems);
    problems
}

fn compare(old: &Value, new: &Value, path: &str, problems: &mut Vec<String>) {
    let at = shown(path);
    match (types(old), types(new)) {
        (_, None) => {}
        (None, Some(new_types)) => problems.push(format!(
            "{at}: now limited to type {}, any type was accepted before",
            new_types.join(" or ")
        )),
        (Some(old_types), Some(new_types)) => {
            for t in old_types {
                let widened = t == "integer" && new_types.contains(&"number");
                if !new_types.contains(&t) && !widened {
                    problems.push(format!("{at}: type '{t}' is no longer accepted"));
                }
            }
        }
    }
    let old_required = required(old);
    for name in required(new) {
        if !old_required.contains(&name) {
            problems.push(format!("{at}: property '{name}' is now required"));
        }
    }
    match (
        old.get("enum").and_then(Value::as_array),
        new.get("enum").and_then(Value::as_array),
    ) {
        (_, None) => {}
        (None, Some(_)) => problems.push(format!("{at}: now limited to an enum")),
        (Some(old_values), Some(new_values)) => {
            for value in old_values.iter().filter(|v| !new_values.contains(v)) {
                problems.push(format!("{at}: enum value {value} was removed"));
            }
        }
    }
    let empty = Map::new();
    let old_props = properties(old).unwrap_or(&empty);
    let new_props = properties(new).unwrap_or(&empty);
    for (name, new_prop) in new_props {
        if let Some(old_prop) = old_props.get(name) {
            compare(old_prop, new_prop, &format!("{path}/{name}"), problems);
        }
    }
    if new.get("additionalProperties") == Some(&Value::Bool(false)) {
        for name in old_props.keys().filter(|n| !new_props.contains_key(*n)) {
            problems.push(format!(
                "{at}: property '{name}' was removed while additionalProperties is false"
            ));
        }
    }
    if let (Some(old_items), Some(new_items)) = (old.get("items"), new.get("items"))
        && old_items.is_object()
        && new_items.is_object()
    {
        compare(old_items, new_items, &format!("{path}/items"), problems);
    }
}

/// The types a schema names (`None`: no `type` keyword, any type).
fn types(schema: &Value) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(list) => Some(list.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn required(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}
