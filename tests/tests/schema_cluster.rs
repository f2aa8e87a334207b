//! The schema registry on a 3-broker cluster (issue 12, item 5): versions
//! live in the metadata group, so a schema registered through one broker
//! validates produces on every broker, registration goes on while the
//! broker it was sent to is killed, a restarted broker has every version,
//! and two conflicting registrations on different brokers cannot both pass
//! the compatibility check.

use std::time::{Duration, Instant};

use bytes::Bytes;
use flymq_client::{Client, Request, Response};
use flymq_proto::{ListSchemasRequest, ProduceWithSchemaRequest, RegisterSchemaRequest};
use flymq_tests::cluster::{Cluster, client_for};

const V1: &str = r#"{"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}"#;
const X_STRING: &str = r#"{"type": "object",
    "properties": {"id": {"type": "integer"}, "x": {"type": "string"}}, "required": ["id"]}"#;
const X_INTEGER: &str = r#"{"type": "object",
    "properties": {"id": {"type": "integer"}, "x": {"type": "integer"}}, "required": ["id"]}"#;

fn register(definition: &str) -> Request {
    Request::RegisterSchema(RegisterSchemaRequest {
        name: "orders".into(),
        schema_type: "json".into(),
        definition: Bytes::from(definition.to_owned()),
    })
}

fn produce(data: &str) -> Request {
    Request::ProduceWithSchema(ProduceWithSchemaRequest {
        topic: "orders".into(),
        data: Bytes::from(data.to_owned()),
        schema_name: "orders".into(),
    })
}

/// The versions of "orders" this broker lists.
async fn versions(client: &Client) -> Vec<u32> {
    match client
        .request(&Request::ListSchemas(ListSchemasRequest {
            filter: "orders".into(),
        }))
        .await
    {
        Ok(Response::ListSchemas(r)) => r.schemas.iter().map(|e| e.version).collect(),
        _ => Vec::new(),
    }
}

async fn wait_for_versions(client: &Client, expected: &[u32], who: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = versions(client).await;
        if found == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{who} lists versions {found:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// REGISTER_SCHEMA, retried while the cluster elects a leader.
async fn register_retrying(client: &Client, definition: &str) -> Result<u32, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.request(&register(definition)).await {
            Ok(Response::RegisterSchema(entry)) => return Ok(entry.version),
            // A refusal names the schema; anything else (an election, a
            // killed broker) is retried.
            Err(e) if e.to_string().contains("schema 'orders'") => return Err(e.to_string()),
            other if Instant::now() >= deadline => panic!("registration kept failing: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_registered_on_one_broker_governs_every_broker() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(241, 3));
    let c0 = client_for(&[&cluster.nodes[0]]).await;
    let c1 = client_for(&[&cluster.nodes[1]]).await;
    let c2 = client_for(&[&cluster.nodes[2]]).await;
    c0.create_topic("orders", 1).await.expect("create topic");
    assert_eq!(register_retrying(&c0, V1).await, Ok(1));

    for (i, client) in [&c0, &c1, &c2].into_iter().enumerate() {
        wait_for_versions(client, &[1], &format!("broker {i}")).await;
        match client.request(&produce(r#"{"id": "not a number"}"#)).await {
            Err(e) => assert!(e.to_string().contains("schema validation failed: [/id:"), "{e}"),
            other => panic!("broker {i} accepted an invalid record: {other:?}"),
        }
        match client.request(&produce(&format!("{{\"id\": {i}}}"))).await {
            Ok(Response::ProduceWithSchema(_)) => {}
            other => panic!("broker {i} refused a valid record: {other:?}"),
        }
    }

    // Kill broker 0; the others register the next version.
    tokio::task::block_in_place(|| cluster.kill9(0));
    assert_eq!(register_retrying(&c1, X_STRING).await, Ok(2));
    wait_for_versions(&c2, &[1, 2], "broker 2").await;
    tokio::task::block_in_place(|| cluster.restart(0, &[]));
    let c0 = client_for(&[&cluster.nodes[0]]).await;
    wait_for_versions(&c0, &[1, 2], "restarted broker 0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicting_registrations_on_two_brokers_cannot_both_pass() {
    let cluster = tokio::task::block_in_place(|| Cluster::start(244, 3));
    let c1 = client_for(&[&cluster.nodes[1]]).await;
    let c2 = client_for(&[&cluster.nodes[2]]).await;
    assert_eq!(register_retrying(&c1, V1).await, Ok(1));
    wait_for_versions(&c2, &[1], "broker 2").await;
    // Each is compatible with version 1, not with the other: whichever is
    // applied second must be checked against the first and refused.
    let (a, b) = tokio::join!(register_retrying(&c1, X_STRING), register_retrying(&c2, X_INTEGER));
    let outcomes = [a.clone(), b.clone()];
    assert_eq!(outcomes.iter().filter(|r| r == &&Ok(2)).count(), 1, "{outcomes:?}");
    let refused = outcomes.iter().find_map(|r| r.clone().err()).expect("one refused");
    assert!(refused.contains("not backward compatible with version 2"), "{refused}");
    wait_for_versions(&c1, &[1, 2], "broker 1").await;
    wait_for_versions(&c2, &[1, 2], "broker 2").await;
}
