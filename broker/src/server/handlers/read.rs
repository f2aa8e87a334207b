//! CONSUME (0x02, 0x0A), FETCH (0x07, 0x0B) and SEEK_TO_TIMESTAMP (0x66).

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use flymq_proto::{
    ConsumeRequest, ConsumeResponse, FetchRequest, FetchResponseWriter, OffsetResponse, Opcode, Response,
    SeekToTimestampRequest,
};

use crate::core::{Broker, FetchLimits};
use crate::messaging::filter::RecordFilter;
use crate::server::dispatch::Reply;

/// FETCH's `max_messages` when the client sends 0 or less (Go's default).
const DEFAULT_FETCH_MESSAGES: usize = 10;
/// Most records one FETCH may return.
const MAX_FETCH_MESSAGES: usize = 100_000;
/// Fewest records a FETCH examines before giving up on a filter (Go scans 1000).
const MIN_SCAN: usize = 1000;

pub fn consume(broker: &Arc<Broker>, req: ConsumeRequest, zero_copy_opcode: bool) -> Reply {
    let started = Instant::now();
    let result = broker
        .consume(&req.topic, req.partition, req.offset)
        .map(|(key, value)| {
            let body = ConsumeResponse { key, value };
            if zero_copy_opcode {
                Response::ConsumeZeroCopy(body)
            } else {
                Response::Consume(body)
            }
        });
    broker.metrics().fetch_latency.observe(started.elapsed().as_secs_f64());
    Reply::from_result(result)
}

pub fn fetch(broker: &Arc<Broker>, req: FetchRequest, binary_opcode: bool) -> Reply {
    let started = Instant::now();
    let filter = match RecordFilter::parse(&req.filter) {
        Ok(filter) => filter,
        Err(err) => return Reply::error(format!("invalid filter: {err}")),
    };
    let max = match usize::try_from(req.max_messages) {
        Ok(0) | Err(_) => DEFAULT_FETCH_MESSAGES,
        Ok(n) => n.min(MAX_FETCH_MESSAGES),
    };
    let mut out = BytesMut::new();
    let opcode = if binary_opcode {
        Opcode::FetchBinary
    } else {
        Opcode::Fetch
    };
    let mut writer = FetchResponseWriter::with_opcode(&mut out, opcode);
    let result = broker.fetch(
        &req.topic,
        req.partition,
        req.offset,
        FetchLimits {
            max_records: max,
            max_scanned: max.max(MIN_SCAN),
        },
        filter.as_ref(),
        |offset, key, value| writer.push(offset, key, value),
    );
    let reply = match result {
        Ok(next_offset) => {
            writer.finish(next_offset);
            Reply::Encoded(out)
        }
        Err(err) => Reply::error(err),
    };
    broker.metrics().fetch_latency.observe(started.elapsed().as_secs_f64());
    reply
}

pub fn seek_to_timestamp(broker: &Arc<Broker>, req: SeekToTimestampRequest) -> Reply {
    Reply::from_result(
        broker
            .offset_for_timestamp(&req.topic, req.partition, req.timestamp_ms)
            .map(|offset| Response::SeekToTimestamp(OffsetResponse { offset })),
    )
}
