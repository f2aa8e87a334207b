//! encode -> decode gives back the same value, for every request and response.

use std::collections::BTreeSet;

use bytes::BytesMut;

use super::samples;
use crate::*;

#[test]
fn every_request_round_trips_through_a_frame() {
    for req in samples::requests() {
        let mut buf = req.to_frame_bytes().unwrap();
        let frame = Frame::decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(frame.opcode, req.opcode().code());
        assert_eq!(frame.flags, FLAG_BINARY);
        assert_eq!(Request::decode_frame(&frame).as_ref(), Ok(&req));
        // The copying entry point agrees.
        assert_eq!(Request::decode(frame.opcode, &frame.payload), Ok(req));
    }
}

#[test]
fn every_request_opcode_has_a_sample() {
    let covered: BTreeSet<u8> = samples::requests().iter().map(|r| r.opcode().code()).collect();
    let expected: BTreeSet<u8> = Opcode::ALL
        .iter()
        .filter(|op| !matches!(op, Opcode::AuthResponse | Opcode::Error))
        .map(|op| op.code())
        .collect();
    assert_eq!(covered, expected);
}

#[test]
fn every_response_round_trips_through_a_frame() {
    for resp in samples::responses() {
        let mut buf = BytesMut::new();
        resp.encode_frame(&mut buf).unwrap();
        let frame = Frame::decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(frame.opcode, resp.opcode());
        assert_eq!(frame.flags, FLAG_BINARY);
        assert_eq!(Response::decode_frame(&frame).as_ref(), Ok(&resp));
        assert_eq!(Response::decode(frame.opcode, &frame.payload), Ok(resp));
    }
}

#[test]
fn every_response_opcode_has_a_sample() {
    let covered: BTreeSet<u8> = samples::responses().iter().map(Response::opcode).collect();
    // Every request is answered with its own opcode, except AUTH (0x71) and
    // CANCEL_DELAYED (reserved, no layout: only ever an error frame).
    let expected: BTreeSet<u8> = Opcode::ALL
        .iter()
        .filter(|op| !matches!(op, Opcode::Auth | Opcode::CancelDelayed))
        .map(|op| op.code())
        .collect();
    assert_eq!(covered, expected);
}

#[test]
fn ack_responses_are_a_single_one_byte() {
    for resp in [
        Response::CreateTopic,
        Response::Commit,
        Response::DeleteTopic,
        Response::ResetOffset,
        Response::DeleteGroup,
        Response::ClusterJoin,
        Response::ClusterLeave,
    ] {
        let mut out = BytesMut::new();
        resp.encode(&mut out).unwrap();
        assert_eq!(&out[..], &[1]);
        // Bodies are ignored on decode (clients ignore them; JOIN may be empty).
        assert_eq!(Response::decode(resp.opcode(), &[]), Ok(resp));
    }
}

#[test]
fn shared_records_round_trip_on_their_own() {
    fn rt<T: Wire + PartialEq + std::fmt::Debug>(v: T) {
        let mut out = BytesMut::new();
        v.write(&mut out).unwrap();
        let mut r = wire::Reader::new(out.freeze());
        assert_eq!(T::read(&mut r).unwrap(), v);
        assert!(r.is_empty());
    }
    rt(RecordMetadata::new("t", 0, 1, 2, b"", b"vv"));
    rt(FetchedRecord::default());
    rt(GroupRecord::default());
    rt(UserInfo::default());
    rt(AclInfo::default());
    rt(SchemaEntry::default());
    rt(DlqEntry::default());
    rt(ClusterMetadata::default());
    rt(AuditEvent::default());
    rt(OkMessage::ok("x"));
}
