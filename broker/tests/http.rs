//! Health and metrics endpoints.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::RawClient;
use flymq_broker::testing::TestBroker;
use flymq_proto::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn health_endpoints_report_liveness_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    assert_eq!(get(broker.health_addr(), "/health/live").await.0, 200);
    assert_eq!(get(broker.health_addr(), "/health/ready").await.0, 200);
    let (status, body) = get(broker.health_addr(), "/health").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "ready");
    assert_eq!(get(broker.health_addr(), "/nope").await.0, 404);
    broker.running().broker().set_ready(false);
    assert_eq!(get(broker.health_addr(), "/health/ready").await.0, 503);
    broker.shutdown().await;
}

#[tokio::test]
async fn metrics_count_traffic_per_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    for _ in 0..3 {
        c.call(Request::Produce(ProduceRequest {
            topic: "m".into(),
            value: Bytes::from_static(b"12345"),
            partition: -1,
            ..Default::default()
        }))
        .await;
    }
    c.call(Request::Fetch(FetchRequest {
        topic: "m".into(),
        partition: 0,
        offset: 0,
        max_messages: 10,
        filter: String::new(),
    }))
    .await;
    c.call(Request::Commit(CommitRequest {
        topic: "m".into(),
        group_id: "g".into(),
        partition: 0,
        offset: 1,
    }))
    .await;
    c.call(Request::Consume(ConsumeRequest {
        topic: "missing".into(),
        partition: 0,
        offset: 0,
    }))
    .await;
    let (status, body) = get(broker.metrics_addr(), "/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "flymq_messages_produced_total{topic=\"m\"} 3",
        "flymq_bytes_produced_total{topic=\"m\"} 15",
        "flymq_messages_consumed_total{topic=\"m\"} 3",
        "flymq_active_connections 1",
        "flymq_consumer_group_lag{topic=\"m\",group=\"g\",partition=\"0\"} 2",
        "flymq_request_errors_total{opcode=\"CONSUME\"} 1",
        "flymq_produce_latency_seconds_count 3",
        "flymq_storage_size_bytes",
    ] {
        assert!(body.contains(expected), "missing `{expected}` in:\n{body}");
    }
    broker.shutdown().await;
}
