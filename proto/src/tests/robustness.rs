//! Malformed, truncated, alternative and random input.

use bytes::{BufMut, Bytes, BytesMut};

use super::samples;
use crate::*;

fn payload_of(req: &Request) -> BytesMut {
    let mut out = BytesMut::new();
    req.encode(&mut out).unwrap();
    out
}

fn str16(out: &mut BytesMut, s: &str) {
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

// ---- unknown opcodes and short input -------------------------------------

#[test]
fn unknown_opcode_message_is_go_compatible() {
    for code in [0x0Cu8, 0x23, 0x67, 0x99, 0xFE, 0x71, 0xFF] {
        let err = Request::decode(code, &[]).unwrap_err();
        assert_eq!(err, DecodeError::UnknownOpcode(code));
        assert_eq!(err.to_string(), format!("unknown opcode: {code}"));
    }
    assert_eq!(
        Response::decode(0x0C, &[]).unwrap_err().to_string(),
        "unknown opcode: 12"
    );
}

#[test]
fn truncated_payloads_are_buffer_too_small() {
    let cases: Vec<(u8, Vec<u8>)> = vec![
        (0x01, vec![0, 2, b't', b'1', 0, 0, 0, 0, 0, 0, 0, 2, b'h']), // PRODUCE: value cut
        (0x01, vec![0, 2, b't', b'1', 0, 0, 0, 0, 0, 0, 0, 0]),       // PRODUCE: no partition
        (0x02, vec![0, 1, b't', 0, 0, 0, 0, 0, 0]),                   // CONSUME: offset cut
        (0x03, vec![0, 5, b't']),                                     // CREATE_TOPIC
        (0x05, vec![0, 1, b't', 0, 1, b'g', 0, 0, 0, 0, 6, b'l']),    // SUBSCRIBE: mode cut
        (0x07, vec![0, 1, b't', 0, 0, 0, 0]),                         // FETCH
        (0x10, vec![0, 1, b'n', 4, b'j', b's', b'o', b'n', 0, 0, 0, 9]), // REGISTER_SCHEMA
        (0x43, vec![0, 2, b't', b'x']),                               // PRODUCE_TX
        (0x70, vec![0, 1, b'u']),                                     // AUTH
        (0x09, vec![]),                                               // DELETE_TOPIC
        (0x66, vec![0, 1, b't', 0, 0, 0, 0, 0, 0, 0]),                // SEEK_TO_TIMESTAMP
    ];
    for (op, payload) in cases {
        let err = Request::decode(op, &payload).unwrap_err();
        assert_eq!(err, DecodeError::BufferTooSmall, "opcode 0x{op:02x}");
        assert_eq!(err.to_string(), "buffer too small");
    }
}

#[test]
fn every_prefix_of_every_sample_decodes_or_errors_without_panicking() {
    for req in samples::requests() {
        let full = payload_of(&req);
        for cut in 0..full.len() {
            let _ = Request::decode(req.opcode().code(), &full[..cut]);
        }
    }
    for resp in samples::responses() {
        let mut full = BytesMut::new();
        resp.encode(&mut full).unwrap();
        for cut in 0..full.len() {
            let _ = Response::decode(resp.opcode(), &full[..cut]);
        }
    }
}

#[test]
fn trailing_bytes_are_ignored() {
    let req = Request::Consume(ConsumeRequest {
        topic: "t".into(),
        partition: 0,
        offset: 3,
    });
    let mut payload = payload_of(&req);
    payload.put_slice(b"junk");
    assert_eq!(Request::decode(0x02, &payload), Ok(req));
}

/// Tiny deterministic PRNG (xorshift64*), so the fuzz test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_input_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for opcode in 0..=255u8 {
        for _ in 0..200 {
            let len = rng.below(48);
            let data = rng.bytes(len);
            let _ = Request::decode(opcode, &data);
            let _ = Response::decode(opcode, &data);
        }
    }
    // Mutations of valid payloads reach deeper into each layout.
    let valid: Vec<(u8, BytesMut)> = samples::requests()
        .iter()
        .map(|r| (r.opcode().code(), payload_of(r)))
        .chain(samples::responses().iter().map(|r| {
            let mut out = BytesMut::new();
            r.encode(&mut out).unwrap();
            (r.opcode(), out)
        }))
        .collect();
    for (opcode, payload) in &valid {
        for _ in 0..300 {
            let mut data = payload.to_vec();
            if data.is_empty() {
                data.push(0);
            }
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            data.truncate(rng.below(data.len() + 1).max(data.len() / 2));
            let _ = Request::decode(*opcode, &data);
            let _ = Response::decode(*opcode, &data);
        }
    }
    // Random frames.
    for _ in 0..2000 {
        let len = rng.below(24);
        let mut data = rng.bytes(len);
        if !data.is_empty() && rng.below(2) == 0 {
            data[0] = MAGIC;
        }
        let mut buf = BytesMut::from(&data[..]);
        if let Ok(Some(frame)) = Frame::decode(&mut buf) {
            let _ = frame.decompressed_payload();
        }
    }
}

// ---- optional and alternative layouts --------------------------------------

#[test]
fn fetch_filter_is_optional() {
    let mut p = BytesMut::new();
    str16(&mut p, "t");
    p.put_i32(0);
    p.put_u64(9);
    p.put_i32(5);
    let expected = Request::Fetch(FetchRequest {
        topic: "t".into(),
        partition: 0,
        offset: 9,
        max_messages: 5,
        filter: String::new(),
    });
    assert_eq!(Request::decode(0x07, &p), Ok(expected));
}

#[test]
fn reset_offset_reads_the_offset_only_for_mode_offset() {
    let mut latest = BytesMut::new();
    str16(&mut latest, "t");
    str16(&mut latest, "g");
    latest.put_i32(0);
    latest.put_u8(6);
    latest.put_slice(b"latest");
    latest.put_u64(55); // Java appends an unused offset: ignored
    let Request::ResetOffset(r) = Request::decode(0x61, &latest).unwrap() else {
        panic!("wrong variant");
    };
    assert_eq!((r.mode.as_str(), r.offset), ("latest", 0));

    let mut offset = BytesMut::new();
    str16(&mut offset, "t");
    str16(&mut offset, "g");
    offset.put_i32(0);
    offset.put_u8(6);
    offset.put_slice(b"offset");
    assert_eq!(Request::decode(0x61, &offset), Err(DecodeError::BufferTooSmall));
    offset.put_u64(55);
    let Request::ResetOffset(r) = Request::decode(0x61, &offset).unwrap() else {
        panic!("wrong variant");
    };
    assert_eq!(r.offset, 55);
}

#[test]
fn empty_payloads_mean_empty_filters() {
    assert_eq!(
        Request::decode(0x12, &[]),
        Ok(Request::ListSchemas(ListSchemasRequest::default()))
    );
    assert_eq!(
        Request::decode(0x53, &[]),
        Ok(Request::ClusterMetadata(ClusterMetadataRequest::default()))
    );
    // Empty-layout requests ignore whatever payload they carry (§8.5).
    assert_eq!(Request::decode(0x08, b"ignored"), Ok(Request::ListTopics));
}

#[test]
fn user_request_enabled_byte_is_optional() {
    let full = payload_of(&Request::UserCreate(UserRequest {
        username: "u".into(),
        password: "p".into(),
        enabled: true,
        ..Default::default()
    }));
    let without_enabled = &full[..full.len() - 1];
    let Request::UserCreate(u) = Request::decode(0x73, without_enabled).unwrap() else {
        panic!("wrong variant");
    };
    assert!(!u.enabled);
    assert_eq!(u.username, "u");
}

#[test]
fn produce_with_schema_accepts_both_layouts() {
    let expected = Request::ProduceWithSchema(ProduceWithSchemaRequest {
        topic: "users".into(),
        data: Bytes::from_static(b"{\"a\":1}"),
        schema_name: "user-schema".into(),
    });
    // pyflymq / Java: topic, data, schema.
    let mut py = BytesMut::new();
    str16(&mut py, "users");
    py.put_u32(7);
    py.put_slice(b"{\"a\":1}");
    str16(&mut py, "user-schema");
    assert_eq!(Request::decode(0x14, &py), Ok(expected.clone()));
    // Go: topic, schema, data (trailing bytes allowed).
    let mut go = BytesMut::new();
    str16(&mut go, "users");
    str16(&mut go, "user-schema");
    go.put_u32(7);
    go.put_slice(b"{\"a\":1}");
    assert_eq!(Request::decode(0x14, &go), Ok(expected.clone()));
    go.put_slice(b"xx");
    assert_eq!(Request::decode(0x14, &go), Ok(expected));
    // Neither layout.
    assert_eq!(
        Request::decode(0x14, &[0, 1, b't', 0, 9]),
        Err(DecodeError::BufferTooSmall)
    );
}

#[test]
fn replay_dlq_accepts_both_shapes() {
    let mut by_offset = BytesMut::new();
    str16(&mut by_offset, "orders");
    by_offset.put_u64(42);
    assert_eq!(
        Request::decode(0x21, &by_offset),
        Ok(Request::ReplayDlq(ReplayDlqRequest {
            topic: "orders".into(),
            target: DlqTarget::Offset(42),
        }))
    );

    let mut by_id = BytesMut::new();
    str16(&mut by_id, "orders");
    str16(&mut by_id, "msg-1");
    assert_eq!(
        Request::decode(0x21, &by_id),
        Ok(Request::ReplayDlq(ReplayDlqRequest {
            topic: "orders".into(),
            target: DlqTarget::MessageId("msg-1".into()),
        }))
    );

    // Exactly 8 bytes left but starting with u16 6: a 6-byte id.
    let mut six = BytesMut::new();
    str16(&mut six, "orders");
    str16(&mut six, "abcdef");
    assert_eq!(
        Request::decode(0x21, &six),
        Ok(Request::ReplayDlq(ReplayDlqRequest {
            topic: "orders".into(),
            target: DlqTarget::MessageId("abcdef".into()),
        }))
    );

    // An offset that would read back as an id is refused, not mis-sent.
    let ambiguous = Request::ReplayDlq(ReplayDlqRequest {
        topic: "t".into(),
        target: DlqTarget::Offset(6 << 48),
    });
    assert!(matches!(ambiguous.to_frame_bytes(), Err(EncodeError::InvalidValue(_))));
}

#[test]
fn produce_batch_count_must_match() {
    let header = |count: u32| {
        let mut p = BytesMut::new();
        str16(&mut p, "t");
        p.put_i32(0);
        p.put_u32(count);
        p
    };
    let record = |p: &mut BytesMut| {
        p.put_u32(0);
        p.put_u32(1);
        p.put_u8(b'v');
    };
    assert!(matches!(
        Request::decode(0x90, &header(0)),
        Err(DecodeError::InvalidFormat(_))
    ));
    let mut short = header(2);
    record(&mut short);
    assert!(matches!(
        Request::decode(0x90, &short),
        Err(DecodeError::InvalidFormat(_))
    ));
    let mut long = header(1);
    record(&mut long);
    record(&mut long);
    assert!(matches!(
        Request::decode(0x90, &long),
        Err(DecodeError::InvalidFormat(_))
    ));
    let mut forged = header(u32::MAX);
    record(&mut forged);
    assert!(matches!(
        Request::decode(0x90, &forged),
        Err(DecodeError::InvalidFormat(_))
    ));
    let mut ok = header(2);
    record(&mut ok);
    record(&mut ok);
    let Request::ProduceBatch(b) = Request::decode(0x90, &ok).unwrap() else {
        panic!("wrong variant");
    };
    assert_eq!(b.records.len(), 2);
    assert!(
        Request::ProduceBatch(ProduceBatchRequest::default())
            .to_frame_bytes()
            .is_err()
    );
}

// ---- zero copy ---------------------------------------------------------------

fn is_within(inner: &Bytes, outer: &Bytes) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

#[test]
fn hot_path_decoding_slices_the_payload() {
    let produce = Request::Produce(ProduceRequest {
        topic: "t".into(),
        key: Bytes::from_static(b"key"),
        value: Bytes::from(vec![7u8; 1000]),
        partition: 0,
    });
    let payload = payload_of(&produce).freeze();
    let Request::Produce(p) = Request::decode_bytes(0x01, payload.clone()).unwrap() else {
        panic!("wrong variant");
    };
    assert!(is_within(&p.key, &payload) && is_within(&p.value, &payload));

    let batch = samples::requests()
        .into_iter()
        .find(|r| r.opcode() == Opcode::ProduceBatch)
        .unwrap();
    let payload = payload_of(&batch).freeze();
    let Request::ProduceBatch(b) = Request::decode_bytes(0x90, payload.clone()).unwrap() else {
        panic!("wrong variant");
    };
    assert!(b.records.iter().all(|r| is_within(&r.value, &payload)));

    let fetch = samples::responses().into_iter().find(|r| r.opcode() == 0x07).unwrap();
    let mut out = BytesMut::new();
    fetch.encode(&mut out).unwrap();
    let payload = out.freeze();
    let Response::Fetch(f) = Response::decode_bytes(0x07, payload.clone()).unwrap() else {
        panic!("wrong variant");
    };
    assert!(f.records.iter().all(|r| is_within(&r.value, &payload)));
}

// ---- compression -------------------------------------------------------------

#[test]
fn gzip_request_is_decoded() {
    let req = Request::Produce(ProduceRequest {
        topic: "zipped".into(),
        value: Bytes::from(vec![b'a'; 4096]),
        partition: -1,
        ..Default::default()
    });
    let gz = gzip_compress(&payload_of(&req)).unwrap();
    let mut buf = BytesMut::new();
    encode_frame(0x01, FLAG_BINARY | COMPRESSION_GZIP, &gz, &mut buf);
    let frame = Frame::decode(&mut buf).unwrap().unwrap();
    assert_eq!(Request::decode_frame(&frame), Ok(req));
}

#[test]
fn non_gzip_compression_is_a_per_request_error() {
    let mut buf = BytesMut::new();
    encode_frame(0x08, FLAG_BINARY | 0x04, b"", &mut buf);
    let frame = Frame::decode(&mut buf).unwrap().unwrap(); // framing is fine
    assert_eq!(
        Request::decode_frame(&frame),
        Err(DecodeError::UnsupportedCompression(0x04))
    );
}

// ---- encoding limits ---------------------------------------------------------

#[test]
fn strings_longer_than_their_prefix_are_rejected() {
    let long_topic = Request::Produce(ProduceRequest {
        topic: "t".repeat(65_536),
        ..Default::default()
    });
    assert!(matches!(
        long_topic.to_frame_bytes(),
        Err(EncodeError::StringTooLong {
            kind: "str16",
            len: 65_536,
            max: 65_535
        })
    ));
    let long_mode = Request::Subscribe(SubscribeRequest {
        mode: "m".repeat(256),
        ..Default::default()
    });
    assert!(matches!(
        long_mode.to_frame_bytes(),
        Err(EncodeError::StringTooLong { kind: "str8", .. })
    ));
    let long_role = Response::Auth(AuthResponse {
        roles: vec!["r".repeat(300)],
        ..Default::default()
    });
    let mut out = BytesMut::new();
    assert!(long_role.encode(&mut out).is_err());

    // A failed request encode leaves the buffer as it was.
    let mut out = BytesMut::from(&b"keep"[..]);
    assert!(long_topic.encode_frame(&mut out).is_err());
    assert_eq!(&out[..], b"keep");
}

#[test]
fn failed_response_encoding_leaves_a_valid_error_frame() {
    let too_long = Response::ListTopics(ListTopicsResponse {
        topics: vec!["x".repeat(70_000)],
    });
    let mut out = BytesMut::from(&b"prev"[..]);
    let err = too_long.encode_frame(&mut out).unwrap_err();
    assert!(matches!(err, EncodeError::StringTooLong { .. }));
    assert_eq!(&out[..4], b"prev");
    let mut rest = out.split_off(4);
    let frame = Frame::decode(&mut rest).unwrap().unwrap();
    assert!(rest.is_empty());
    let Response::Error(e) = Response::decode_frame(&frame).unwrap() else {
        panic!("expected an error frame");
    };
    assert_eq!(e.code, 1);
    assert!(e.message.contains("str16"), "{}", e.message);

    let too_big = Response::Consume(ConsumeResponse {
        key: Bytes::new(),
        value: Bytes::from(vec![0u8; MAX_PAYLOAD]),
    });
    let mut out = BytesMut::new();
    assert!(matches!(
        too_big.encode_frame(&mut out),
        Err(EncodeError::PayloadTooLarge(_))
    ));
    let frame = Frame::decode(&mut out).unwrap().unwrap();
    assert_eq!(frame.opcode, 0xFF);
}

// ---- error payload fallbacks (§5.1) -------------------------------------------

#[test]
fn error_payload_fallbacks() {
    let decode = |p: &[u8]| match Response::decode(0xFF, p) {
        Ok(Response::Error(e)) => e,
        other => panic!("unexpected {other:?}"),
    };
    // Standard form.
    let mut p = vec![0, 0, 0, 1, 0, 3];
    p.extend_from_slice(b"abcXYZ");
    assert_eq!(decode(&p), ErrorResponse::new("abc"));
    // Shorter than 6 bytes: plain text.
    assert_eq!(decode(b"EOF").message, "EOF");
    assert_eq!(decode(b"").message, "");
    // Length overruns: everything after byte 6.
    assert_eq!(decode(&[0, 0, 0, 1, 0, 50, b'a', b'b']).message, "ab");
    // Go's raw-text form A: the first 6 bytes are swallowed, as in pyflymq.
    assert_eq!(decode(b"topic not found").message, "not found");
    // Invalid UTF-8 does not fail.
    assert_eq!(decode(&[0, 0, 0, 1, 0, 1, 0xff]).message, "\u{fffd}");
}
