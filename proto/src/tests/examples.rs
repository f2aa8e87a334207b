//! Byte-exact checks against the worked examples and layouts in WIRE.md.

use bytes::{Bytes, BytesMut};

use crate::*;

const PRODUCE_REQ: &[u8] = &[
    0xaf, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x12, // header
    0x00, 0x02, 0x74, 0x31, // topic "t1"
    0x00, 0x00, 0x00, 0x00, // no key
    0x00, 0x00, 0x00, 0x02, 0x68, 0x69, // value "hi"
    0xff, 0xff, 0xff, 0xff, // partition -1
];

const PRODUCE_RESP: &[u8] = &[
    0xaf, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x20, // header
    0x00, 0x02, 0x74, 0x31, // topic
    0x00, 0x00, 0x00, 0x00, // partition 0
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // offset 7
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // timestamp 1700000000000
    0xff, 0xff, 0xff, 0xff, // key_size -1
    0x00, 0x00, 0x00, 0x02, // value_size 2
];

fn produce_t1_hi() -> Request {
    Request::Produce(ProduceRequest {
        topic: "t1".into(),
        key: Bytes::new(),
        value: Bytes::from_static(b"hi"),
        partition: -1,
    })
}

#[test]
fn produce_request_bytes_match_wire_md() {
    assert_eq!(&produce_t1_hi().to_frame_bytes().unwrap()[..], PRODUCE_REQ);
    let mut buf = BytesMut::from(PRODUCE_REQ);
    let frame = Frame::decode(&mut buf).unwrap().unwrap();
    assert_eq!(Request::decode_frame(&frame), Ok(produce_t1_hi()));
}

#[test]
fn produce_response_bytes_match_wire_md() {
    let resp = Response::Produce(RecordMetadata::new("t1", 0, 7, 1_700_000_000_000, b"", b"hi"));
    let mut out = BytesMut::new();
    resp.encode_frame(&mut out).unwrap();
    assert_eq!(&out[..], PRODUCE_RESP);
    assert_eq!(Response::decode(0x01, &PRODUCE_RESP[HEADER_LEN..]), Ok(resp));
}

#[test]
fn error_frame_bytes_match_wire_md() {
    let mut expected = vec![0xaf, 0x01, 0xff, 0x01, 0x00, 0x00, 0x00, 0x19];
    expected.extend_from_slice(&[0, 0, 0, 1, 0x00, 0x13]);
    expected.extend_from_slice(b"topic not found: t9");
    let mut out = BytesMut::new();
    Response::error("topic not found: t9").encode_frame(&mut out).unwrap();
    assert_eq!(&out[..], &expected[..]);
}

#[test]
fn auth_is_answered_with_opcode_0x71_and_str8_roles() {
    let resp = Response::Auth(AuthResponse {
        success: true,
        username: "al".into(),
        roles: vec!["admin".into()],
        error: String::new(),
    });
    assert_eq!(resp.opcode(), 0x71);
    let mut out = BytesMut::new();
    resp.encode(&mut out).unwrap();
    assert_eq!(
        &out[..],
        &[1, 0, 2, b'a', b'l', 0, 0, 0, 1, 5, b'a', b'd', b'm', b'i', b'n', 0, 0]
    );
}

#[test]
fn unauthenticated_whoami_matches_wire_md() {
    let mut out = BytesMut::new();
    Response::Whoami(WhoamiResponse::default()).encode(&mut out).unwrap();
    assert_eq!(&out[..], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn replay_dlq_reply_uses_a_u32_length() {
    let mut out = BytesMut::new();
    Response::ReplayDlq(ReplayDlqResponse {
        success: true,
        message: "ok".into(),
    })
    .encode(&mut out)
    .unwrap();
    assert_eq!(&out[..], &[1, 0, 0, 0, 2, b'o', b'k']);
}

#[test]
fn subscribe_mode_is_str8() {
    let mut out = BytesMut::new();
    Request::Subscribe(SubscribeRequest {
        topic: "t".into(),
        group_id: "g".into(),
        partition: 0,
        mode: "latest".into(),
    })
    .encode(&mut out)
    .unwrap();
    assert_eq!(
        &out[..],
        &[
            0, 1, b't', 0, 1, b'g', 0, 0, 0, 0, 6, b'l', b'a', b't', b'e', b's', b't'
        ]
    );
}

#[test]
fn produce_batch_layout() {
    let req = Request::ProduceBatch(ProduceBatchRequest {
        topic: "t".into(),
        partition: -1,
        records: vec![BatchRecord {
            key: Bytes::new(),
            value: Bytes::from_static(b"v"),
        }],
    });
    let mut out = BytesMut::new();
    req.encode(&mut out).unwrap();
    assert_eq!(
        &out[..],
        &[
            0, 1, b't', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, b'v'
        ]
    );
    assert_eq!(req.opcode().code(), 0x90);
}
