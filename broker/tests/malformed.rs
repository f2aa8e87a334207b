//! Malformed input gets an error frame or a closed connection as WIRE.md
//! asks, and never affects the broker or other connections.

mod common;

use bytes::Bytes;
use common::{RawClient, error_text};
use flymq_broker::testing::TestBroker;
use flymq_proto::*;

fn header(magic: u8, version: u8, opcode: u8, len: u32) -> Vec<u8> {
    let mut h = vec![magic, version, opcode, 0x01];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

async fn assert_broker_healthy(broker: &TestBroker) {
    let mut c = RawClient::connect(broker.client_addr()).await;
    let r = c
        .call(Request::Produce(ProduceRequest {
            topic: "health".into(),
            value: Bytes::from_static(b"ok"),
            partition: -1,
            ..Default::default()
        }))
        .await;
    assert!(matches!(r, Response::Produce(_)), "{r:?}");
}

#[tokio::test]
async fn framing_errors_close_the_connection_without_an_error_frame() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad magic", header(0xAB, 1, 0x08, 0)),
        ("bad version", header(0xAF, 2, 0x08, 0)),
        // Rejected from the header alone: the broker must not wait for 32 MiB.
        ("oversized length", header(0xAF, 1, 0x01, 33_554_433)),
        ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
    ];
    for (name, bytes) in cases {
        let mut c = RawClient::connect(broker.client_addr()).await;
        c.send_raw(&bytes).await;
        assert!(c.is_closed().await, "{name}: connection should be closed");
    }
    assert_broker_healthy(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn bad_payloads_get_error_frames_and_the_connection_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;

    // Unknown opcode.
    c.send_raw(&header(0xAF, 1, 200, 0)).await;
    assert_eq!(error_text(c.read_response().await), "unknown opcode: 200");

    // Truncated PRODUCE payload (topic length says 10, only 3 bytes follow).
    let mut bytes = header(0xAF, 1, 0x01, 5);
    bytes.extend_from_slice(&[0x00, 0x0A, b'a', b'b', b'c']);
    c.send_raw(&bytes).await;
    assert_eq!(error_text(c.read_response().await), "buffer too small");

    // A bytes32 whose length runs past the payload.
    let mut payload = vec![0x00, 0x01, b't'];
    payload.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut bytes = header(0xAF, 1, 0x01, payload.len() as u32);
    bytes.extend_from_slice(&payload);
    c.send_raw(&bytes).await;
    assert_eq!(error_text(c.read_response().await), "buffer too small");

    // Invalid UTF-8 in a topic name.
    let mut payload = vec![0x00, 0x02, 0xFF, 0xFE];
    payload.extend_from_slice(&0i32.to_be_bytes());
    let mut bytes = header(0xAF, 1, 0x03, payload.len() as u32);
    bytes.extend_from_slice(&payload);
    c.send_raw(&bytes).await;
    let err = error_text(c.read_response().await);
    assert!(!err.is_empty());

    // Unsupported compression code (LZ4).
    let mut bytes = vec![0xAF, 1, 0x08, 0x04];
    bytes.extend_from_slice(&0u32.to_be_bytes());
    c.send_raw(&bytes).await;
    let err = error_text(c.read_response().await);
    assert!(err.to_lowercase().contains("compression"), "{err}");

    // A gzip-compressed request is accepted (Java and Go send these).
    let request = Request::CreateTopic(CreateTopicRequest {
        topic: "zipped".into(),
        partitions: 1,
    });
    let mut plain = bytes::BytesMut::new();
    request.encode(&mut plain).unwrap();
    let zipped = gzip_compress(&plain).unwrap();
    let mut bytes = vec![0xAF, 1, 0x03, 0x03];
    bytes.extend_from_slice(&(zipped.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&zipped);
    c.send_raw(&bytes).await;
    assert_eq!(c.read_response().await, Response::CreateTopic);

    // Too-large message: a clear error, nothing stored.
    let big = Bytes::from(vec![b'x'; 9 << 20]);
    let r = c
        .call(Request::Produce(ProduceRequest {
            topic: "zipped".into(),
            value: big,
            partition: 0,
            ..Default::default()
        }))
        .await;
    let err = error_text(r);
    assert!(err.starts_with("invalid request: message too large"), "{err}");

    // The same connection still works.
    let Response::ListTopics(list) = c.call(Request::ListTopics).await else {
        panic!()
    };
    assert_eq!(list.topics, vec!["zipped".to_string()]);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_connection_closed_mid_frame_does_not_disturb_others() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut steady = RawClient::connect(broker.client_addr()).await;
    for _ in 0..20 {
        let mut c = RawClient::connect(broker.client_addr()).await;
        // Header announces 100 bytes; send 10 and hang up.
        let mut bytes = header(0xAF, 1, 0x01, 100);
        bytes.extend_from_slice(&[0u8; 10]);
        c.send_raw(&bytes).await;
        drop(c);
        assert!(matches!(
            steady.call(Request::ListTopics).await,
            Response::ListTopics(_)
        ));
    }
    assert_broker_healthy(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn random_payloads_for_every_opcode_never_break_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    // A deterministic xorshift stream: every opcode gets short random payloads.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for opcode in 0u8..=255 {
        for _ in 0..3 {
            let len = (next() % 40) as usize;
            let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let mut bytes = header(0xAF, 1, opcode, len as u32);
            bytes.extend_from_slice(&payload);
            c.send_raw(&bytes).await;
            let frame = c
                .read_frame()
                .await
                .expect("broker closed the connection on a well-framed request");
            assert!(frame.payload.len() <= MAX_PAYLOAD);
        }
    }
    assert_broker_healthy(&broker).await;
    broker.shutdown().await;
}
