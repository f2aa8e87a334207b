use super::*;

const PERSON_JSON: &str = r#"{
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}}
    },
    "required": ["name"]
}"#;

const PERSON_AVRO: &str = r#"{
    "type": "record", "name": "Person", "namespace": "demo",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "age", "type": "int"},
        {"name": "email", "type": ["null", "string"], "default": null}
    ]
}"#;

const PERSON_PROTO: &str = r#"
syntax = "proto3";
package demo;
message Person {
  string name = 1;
  int32 age = 2;
  Address address = 3;
}
message Address { string city = 1; }
"#;

fn compile(t: SchemaType, definition: &str) -> CompiledSchema {
    CompiledSchema::compile(t, definition).expect("compiles")
}

#[test]
fn definitions_that_do_not_parse_are_refused_with_the_reason() {
    let cases = [
        (SchemaType::Json, "{not json", "not valid JSON"),
        (SchemaType::Json, "[1, 2]", "must be a JSON object"),
        (SchemaType::Json, r#"{"type": 5}"#, "invalid json schema"),
        (
            SchemaType::Avro,
            r#"{"type": "record", "name": "X"}"#,
            "invalid avro schema",
        ),
        (SchemaType::Avro, "", "invalid avro schema"),
        (SchemaType::Protobuf, "message {", "invalid protobuf schema"),
        (SchemaType::Protobuf, "syntax = \"proto3\";", "declares no message"),
        (
            SchemaType::Protobuf,
            "syntax = \"proto3\"; import \"other.proto\"; message A { int32 a = 1; }",
            "other.proto",
        ),
    ];
    for (t, definition, expected) in cases {
        let err = CompiledSchema::compile(t, definition).unwrap_err().to_string();
        assert!(err.contains(expected), "{t:?} {definition:?}: {err}");
    }
}

#[test]
fn json_messages_are_checked_and_errors_name_the_field() {
    let schema = compile(SchemaType::Json, PERSON_JSON);
    assert!(schema.validate(br#"{"name": "ada", "age": 36}"#).is_empty());
    let problems = schema.validate(br#"{"name": "ada", "age": "old"}"#);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("/age:"), "{problems:?}");
    let problems = schema.validate(br#"{"age": 3}"#);
    assert!(
        problems[0].contains("(root)") && problems[0].contains("name"),
        "{problems:?}"
    );
    let problems = schema.validate(br#"{"name": "x", "tags": ["a", 7]}"#);
    assert!(problems[0].starts_with("/tags/1:"), "{problems:?}");
    let problems = schema.validate(b"not json");
    assert!(problems[0].contains("not valid JSON"), "{problems:?}");
}

#[test]
fn many_problems_are_capped() {
    let schema = compile(SchemaType::Json, r#"{"type": "array", "items": {"type": "integer"}}"#);
    let message = format!("[{}]", vec!["\"x\""; 100].join(","));
    let problems = schema.validate(message.as_bytes());
    assert_eq!(problems.len(), 21, "{problems:?}");
    assert_eq!(problems[20], "... and 80 more");
}

#[test]
fn avro_json_and_binary_messages_are_checked() {
    let schema = compile(SchemaType::Avro, PERSON_AVRO);
    assert!(schema.validate(br#"{"name": "ada", "age": 36}"#).is_empty());
    assert!(
        schema
            .validate(br#"{"name": "ada", "age": 36, "email": {"string": "a@b"}}"#)
            .is_empty()
    );
    assert!(
        schema
            .validate(br#"{"name": "ada", "age": 36, "email": "a@b"}"#)
            .is_empty()
    );
    let problems = schema.validate(br#"{"name": "ada", "age": 3000000000}"#);
    assert!(
        problems[0].starts_with("/age: expected a 32-bit integer"),
        "{problems:?}"
    );
    let problems = schema.validate(br#"{"age": 1, "extra": true}"#);
    assert!(
        problems.iter().any(|p| p.contains("missing field 'name'")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("field 'extra' is not in the schema")),
        "{problems:?}"
    );

    // Binary datum: string "ada" (len 3 zigzag = 6), int 36 (72), union branch 0 (null).
    let datum = [6, b'a', b'd', b'a', 72, 0];
    assert!(schema.validate(&datum).is_empty());
    let problems = schema.validate(&[6, b'a', b'd', b'a', 72, 0, 0]);
    assert!(problems[0].contains("left over"), "{problems:?}");
    let problems = schema.validate(&[6, b'a']);
    assert!(problems[0].contains("not a valid Avro datum"), "{problems:?}");
}

#[test]
fn protobuf_messages_must_decode_without_unknown_fields() {
    let schema = compile(SchemaType::Protobuf, PERSON_PROTO);
    // name = "ada" (field 1, LEN), age = 36 (field 2, VARINT), address.city = "x".
    let good = [0x0a, 3, b'a', b'd', b'a', 0x10, 36, 0x1a, 3, 0x0a, 1, b'x'];
    assert!(schema.validate(&good).is_empty(), "{:?}", schema.validate(&good));
    // Field 9 is not in the schema.
    let problems = schema.validate(&[0x48, 1]);
    assert!(problems[0].contains("field number 9"), "{problems:?}");
    // Unknown field inside the nested message.
    let problems = schema.validate(&[0x1a, 2, 0x10, 1]);
    assert!(problems[0].starts_with("/address:"), "{problems:?}");
    // Field 1 with the wrong wire type (VARINT instead of LEN).
    let problems = schema.validate(&[0x08, 1]);
    assert!(problems[0].contains("not a valid demo.Person message"), "{problems:?}");
}

#[test]
fn json_compatibility_rules() {
    let v1 = compile(SchemaType::Json, PERSON_JSON);
    let optional_field_added = compile(
        SchemaType::Json,
        r#"{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "number"},
            "city": {"type": "string"}}, "required": ["name"]}"#,
    );
    assert!(optional_field_added.check_backward(&v1, 1).is_ok());
    let newly_required = compile(
        SchemaType::Json,
        r#"{"type": "object", "properties": {"name": {"type": "string"}, "city": {"type": "string"}},
            "required": ["name", "city"]}"#,
    );
    let err = newly_required.check_backward(&v1, 1).unwrap_err().to_string();
    assert!(err.contains("not backward compatible with version 1"), "{err}");
    assert!(err.contains("property 'city' is now required"), "{err}");
    let narrowed = compile(
        SchemaType::Json,
        r#"{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "string"}}}"#,
    );
    let err = narrowed.check_backward(&v1, 1).unwrap_err().to_string();
    assert!(err.contains("/age: type 'integer' is no longer accepted"), "{err}");
    let closed = compile(
        SchemaType::Json,
        r#"{"type": "object", "properties": {"name": {"type": "string"}}, "additionalProperties": false}"#,
    );
    let err = closed.check_backward(&v1, 1).unwrap_err().to_string();
    assert!(err.contains("property 'age' was removed"), "{err}");
}

#[test]
fn avro_compatibility_follows_schema_resolution() {
    let v1 = compile(SchemaType::Avro, PERSON_AVRO);
    let with_default = compile(
        SchemaType::Avro,
        r#"{"type": "record", "name": "Person", "namespace": "demo", "fields": [
            {"name": "name", "type": "string"}, {"name": "age", "type": "long"},
            {"name": "email", "type": ["null", "string"], "default": null},
            {"name": "city", "type": "string", "default": "?"}]}"#,
    );
    assert!(with_default.check_backward(&v1, 1).is_ok());
    let without_default = compile(
        SchemaType::Avro,
        r#"{"type": "record", "name": "Person", "namespace": "demo", "fields": [
            {"name": "name", "type": "string"}, {"name": "city", "type": "string"}]}"#,
    );
    assert!(without_default.check_backward(&v1, 1).is_err());
    let other_type = compile(SchemaType::Json, PERSON_JSON);
    let err = other_type.check_backward(&v1, 1).unwrap_err().to_string();
    assert!(err.contains("type changes from avro to json"), "{err}");
}

#[test]
fn protobuf_compatibility_keeps_field_types() {
    let v1 = compile(SchemaType::Protobuf, PERSON_PROTO);
    let added = compile(
        SchemaType::Protobuf,
        "syntax = \"proto3\"; message P { string name = 1; int32 age = 2; string city = 4; }",
    );
    assert!(added.check_backward(&v1, 1).is_ok());
    let changed = compile(
        SchemaType::Protobuf,
        "syntax = \"proto3\"; message P { string name = 1; string age = 2; repeated string address = 3; }",
    );
    let err = changed.check_backward(&v1, 1).unwrap_err().to_string();
    assert!(err.contains("/age: field 2 changes type from int32 to string"), "{err}");
    assert!(
        err.contains("/address: field 3 changes from singular to repeated"),
        "{err}"
    );
}
