//! The schema registry on a standalone broker (WIRE.md §10): versions per
//! name with a backward compatibility check, PRODUCE_WITH_SCHEMA writing
//! only what the schema accepts (in both request layouts), VALIDATE_SCHEMA,
//! DELETE_SCHEMA, persistence across a restart, and the bad-input cases.

mod common;

use bytes::Bytes;
use common::{RawClient, error_text};
use flymq_broker::testing::TestBroker;
use flymq_proto::*;

const ORDER_V1: &str = r#"{"type": "object",
    "properties": {"id": {"type": "integer"}, "item": {"type": "string"}},
    "required": ["id"]}"#;
const ORDER_V2: &str = r#"{"type": "object",
    "properties": {"id": {"type": "integer"}, "item": {"type": "string"}, "note": {"type": "string"}},
    "required": ["id"]}"#;

/// A frame with a hand-made payload.
fn raw_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    encode_frame(opcode as u8, 0, payload, &mut out);
    out.to_vec()
}

fn register(name: &str, schema_type: &str, definition: &str) -> Request {
    Request::RegisterSchema(RegisterSchemaRequest {
        name: name.into(),
        schema_type: schema_type.into(),
        definition: Bytes::from(definition.to_owned()),
    })
}

fn produce(topic: &str, schema: &str, data: &str) -> Request {
    Request::ProduceWithSchema(ProduceWithSchemaRequest {
        topic: topic.into(),
        data: Bytes::from(data.to_owned()),
        schema_name: schema.into(),
    })
}

async fn registered(c: &mut RawClient, name: &str, schema_type: &str, definition: &str) -> SchemaEntry {
    match c.call(register(name, schema_type, definition)).await {
        Response::RegisterSchema(entry) => entry,
        other => panic!("REGISTER_SCHEMA answered {other:?}"),
    }
}

async fn list(c: &mut RawClient, filter: &str) -> Vec<(String, String, u32)> {
    match c
        .call(Request::ListSchemas(ListSchemasRequest { filter: filter.into() }))
        .await
    {
        Response::ListSchemas(r) => r
            .schemas
            .into_iter()
            .map(|e| (e.name, e.schema_type, e.version))
            .collect(),
        other => panic!("LIST_SCHEMAS answered {other:?}"),
    }
}

async fn values(c: &mut RawClient, topic: &str) -> Vec<String> {
    match c
        .call(Request::Fetch(FetchRequest {
            topic: topic.into(),
            partition: 0,
            offset: 0,
            max_messages: 100,
            filter: String::new(),
        }))
        .await
    {
        Response::Fetch(f) => f
            .records
            .iter()
            .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
            .collect(),
        other => panic!("FETCH answered {other:?}"),
    }
}

#[tokio::test]
async fn versions_are_registered_listed_fetched_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;

    let v1 = registered(&mut c, "orders", "json", ORDER_V1).await;
    assert_eq!(
        (v1.name.as_str(), v1.schema_type.as_str(), v1.version),
        ("orders", "json", 1)
    );
    // The same definition again is the same version (idempotent).
    assert_eq!(registered(&mut c, "orders", "JSON", ORDER_V1).await.version, 1);
    assert_eq!(registered(&mut c, "orders", "json", ORDER_V2).await.version, 2);
    let avro = r#"{"type": "record", "name": "Reading", "fields": [{"name": "c", "type": "double"}]}"#;
    assert_eq!(registered(&mut c, "sensors/room1/temp", "avro", avro).await.version, 1);
    let proto = "syntax = \"proto3\"; message Click { string page = 1; }";
    let entry = registered(&mut c, "clicks", "proto", proto).await;
    assert_eq!((entry.schema_type.as_str(), entry.version), ("protobuf", 1));

    let all = list(&mut c, "").await;
    assert_eq!(
        all,
        [
            ("clicks".to_string(), "protobuf".to_string(), 1),
            ("orders".into(), "json".into(), 1),
            ("orders".into(), "json".into(), 2),
            ("sensors/room1/temp".into(), "avro".into(), 1),
        ]
    );
    assert_eq!(list(&mut c, "orders").await.len(), 2);
    assert!(list(&mut c, "order").await.is_empty(), "the filter is an exact name");

    // GET_SCHEMA answers in the list layout with one entry; 0 = latest.
    for (version, expected) in [(0, 2), (1, 1)] {
        match c
            .call(Request::GetSchema(SchemaVersionRequest {
                name: "orders".into(),
                version,
            }))
            .await
        {
            Response::GetSchema(r) => assert_eq!(r.schemas[0].version, expected),
            other => panic!("GET_SCHEMA answered {other:?}"),
        }
    }
    let missing = |version| {
        Request::GetSchema(SchemaVersionRequest {
            name: if version == 0 {
                "nothing".into()
            } else {
                "orders".into()
            },
            version,
        })
    };
    assert_eq!(error_text(c.call(missing(7)).await), "schema not found: orders v7");
    assert_eq!(
        error_text(c.call(missing(0)).await),
        "no schema found for topic: nothing"
    );

    drop(c);
    broker.shutdown().await;
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    assert_eq!(list(&mut c, "").await, all, "schemas survive a restart");
    // Versions continue after a restart.
    let v3 = r#"{"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}"#;
    assert_eq!(registered(&mut c, "orders", "json", v3).await.version, 3);
    broker.shutdown().await;
}

#[tokio::test]
async fn produce_with_schema_writes_only_what_the_schema_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    registered(&mut c, "orders", "json", ORDER_V1).await;

    match c.call(produce("orders", "orders", r#"{"id": 1, "item": "tea"}"#)).await {
        Response::ProduceWithSchema(meta) => {
            assert_eq!((meta.offset, meta.key_size, meta.value_size), (0, -1, 24));
        }
        other => panic!("PRODUCE_WITH_SCHEMA answered {other:?}"),
    }
    let refused = error_text(c.call(produce("orders", "orders", r#"{"id": "one"}"#)).await);
    assert!(refused.starts_with("schema validation failed: [/id: "), "{refused}");
    assert!(refused.contains("(schema 'orders' version 1)"), "{refused}");
    let refused = error_text(c.call(produce("orders", "orders", r#"{"item": "tea"}"#)).await);
    assert!(refused.contains("\"id\" is a required property"), "{refused}");
    let refused = error_text(c.call(produce("orders", "orders", "not json")).await);
    assert!(refused.contains("not valid JSON"), "{refused}");
    let refused = error_text(c.call(produce("orders", "no-such-schema", r#"{"id": 1}"#)).await);
    assert_eq!(refused, "no schema found for topic: no-such-schema");

    // The Go client's layout (topic, schema, data) is accepted too.
    let mut go = bytes::BytesMut::new();
    for part in ["orders", "orders"] {
        go.extend_from_slice(&(part.len() as u16).to_be_bytes());
        go.extend_from_slice(part.as_bytes());
    }
    let data = br#"{"id": 2}"#;
    go.extend_from_slice(&(data.len() as u32).to_be_bytes());
    go.extend_from_slice(data);
    c.send_raw(&raw_frame(Opcode::ProduceWithSchema, &go)).await;
    match c.read_response().await {
        Response::ProduceWithSchema(meta) => assert_eq!(meta.offset, 1),
        other => panic!("Go-layout PRODUCE_WITH_SCHEMA answered {other:?}"),
    }

    // Only the valid records were written.
    assert_eq!(
        values(&mut c, "orders").await,
        [r#"{"id": 1, "item": "tea"}"#, r#"{"id": 2}"#]
    );
    // A refused record does not auto-create its topic.
    let refused = error_text(c.call(produce("fresh-topic", "orders", "{}")).await);
    assert!(refused.starts_with("schema validation failed"), "{refused}");
    match c.call(Request::ListTopics).await {
        Response::ListTopics(topics) => assert!(!topics.topics.contains(&"fresh-topic".to_string())),
        other => panic!("LIST_TOPICS answered {other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn a_schema_registered_earlier_on_the_connection_applies_to_a_pipelined_produce() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    c.send(&register("pipelined", "json", ORDER_V1)).await;
    c.send(&produce("pipelined", "pipelined", r#"{"id": 5}"#)).await;
    c.send(&produce("pipelined", "pipelined", r#"{"id": true}"#)).await;
    assert!(matches!(c.read_response().await, Response::RegisterSchema(_)));
    assert!(matches!(c.read_response().await, Response::ProduceWithSchema(_)));
    let refused = error_text(c.read_response().await);
    assert!(refused.starts_with("schema validation failed"), "{refused}");
    broker.shutdown().await;
}

#[tokio::test]
async fn validate_schema_reports_each_problem_and_unknown_names_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    registered(&mut c, "orders", "json", ORDER_V1).await;
    let validate = |name: &str, message: &str| {
        Request::ValidateSchema(ValidateSchemaRequest {
            name: name.into(),
            message: Bytes::from(message.to_owned()),
        })
    };
    match c.call(validate("orders", r#"{"id": 1}"#)).await {
        Response::ValidateSchema(r) => assert!(r.valid && r.errors.is_empty()),
        other => panic!("{other:?}"),
    }
    match c.call(validate("orders", r#"{"id": 1.5, "item": 3}"#)).await {
        Response::ValidateSchema(r) => {
            assert!(!r.valid);
            assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
            assert!(r.errors.iter().any(|e| e.starts_with("/id:")), "{:?}", r.errors);
            assert!(r.errors.iter().any(|e| e.starts_with("/item:")), "{:?}", r.errors);
        }
        other => panic!("{other:?}"),
    }
    // WIRE.md §10.4: no schema under the name → valid.
    match c.call(validate("unknown", "anything")).await {
        Response::ValidateSchema(r) => assert!(r.valid),
        other => panic!("{other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn bad_schemas_and_incompatible_versions_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    registered(&mut c, "orders", "json", ORDER_V1).await;
    let cases = [
        (register("orders", "xml", "<a/>"), "unknown schema type 'xml'"),
        (
            register("x", "json", "{not json"),
            "invalid json schema: not valid JSON",
        ),
        (register("x", "json", "[]"), "must be a JSON object"),
        (register("x", "avro", "{\"type\": \"nope\"}"), "invalid avro schema"),
        (register("x", "protobuf", "message {"), "invalid protobuf schema"),
        (register("x", "avro", ""), "invalid avro schema"),
        (register("bad name", "json", "{}"), "invalid schema name 'bad name'"),
        (register("a//b", "json", "{}"), "empty level"),
        (register("", "json", "{}"), "invalid schema name ''"),
        (
            register(
                "orders",
                "json",
                r#"{"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id", "item"]}"#,
            ),
            "schema 'orders' is not backward compatible with version 1",
        ),
        (
            register("orders", "avro", r#"{"type": "string"}"#),
            "type changes from json to avro",
        ),
    ];
    for (request, expected) in cases {
        let text = error_text(c.call(request.clone()).await);
        assert!(text.contains(expected), "{request:?}: {text}");
    }
    let huge = format!("{{\"description\": \"{}\"}}", "x".repeat(300 * 1024));
    let text = error_text(c.call(register("big", "json", &huge)).await);
    assert!(
        text.contains("the largest definition accepted is 262144 bytes"),
        "{text}"
    );
    let payload = [0, 1, b'x', 4, b'j', b's', b'o', b'n', 0, 0, 0, 2, 0xff, 0xfe];
    c.send_raw(&raw_frame(Opcode::RegisterSchema, &payload)).await;
    assert!(error_text(c.read_response().await).contains("not UTF-8"));
    // Nothing of that was stored, and the broker still serves.
    assert_eq!(list(&mut c, "").await, [("orders".to_string(), "json".to_string(), 1)]);
    broker.shutdown().await;
}

#[tokio::test]
async fn delete_schema_removes_one_version_or_all_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    registered(&mut c, "orders", "json", ORDER_V1).await;
    registered(&mut c, "orders", "json", ORDER_V2).await;
    let delete = |version| {
        Request::DeleteSchema(SchemaVersionRequest {
            name: "orders".into(),
            version,
        })
    };
    match c.call(delete(1)).await {
        Response::DeleteSchema(r) => assert!(r.success, "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        list(&mut c, "orders").await,
        [("orders".to_string(), "json".to_string(), 2)]
    );
    assert_eq!(error_text(c.call(delete(1)).await), "schema not found: orders v1");
    // A produce uses the latest version that is left.
    assert!(matches!(
        c.call(produce("orders", "orders", r#"{"id": 1, "note": "x"}"#)).await,
        Response::ProduceWithSchema(_)
    ));
    match c.call(delete(0)).await {
        Response::DeleteSchema(r) => assert_eq!(r.message, "deleted 1 version of schema 'orders'"),
        other => panic!("{other:?}"),
    }
    assert!(list(&mut c, "").await.is_empty());
    assert_eq!(error_text(c.call(delete(0)).await), "no schema found for topic: orders");
    // A name can be registered again from scratch, with any definition.
    let text = r#"{"type": "string"}"#;
    assert_eq!(registered(&mut c, "orders", "avro", text).await.version, 1);
    assert!(matches!(
        c.call(produce("orders", "orders", "\"plain\"")).await,
        Response::ProduceWithSchema(_)
    ));
    broker.shutdown().await;
}

/// Messages over 64 KiB are validated off the async workers
/// (`block_in_place`, on a multi-threaded runtime as the broker runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_are_validated_too() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    registered(&mut c, "orders", "json", ORDER_V1).await;
    let big_item = "x".repeat(200 * 1024);
    let valid = format!(r#"{{"id": 1, "item": "{big_item}"}}"#);
    assert!(matches!(
        c.call(produce("orders", "orders", &valid)).await,
        Response::ProduceWithSchema(_)
    ));
    let invalid = format!(r#"{{"id": "1", "item": "{big_item}"}}"#);
    let text = error_text(c.call(produce("orders", "orders", &invalid)).await);
    assert!(text.starts_with("schema validation failed: [/id:"), "{}", &text[..100]);
    broker.shutdown().await;
}
