//! CONSUME (0x02, 0x0A), FETCH (0x07, 0x0B) and SEEK_TO_TIMESTAMP (0x66).
//! Reads (RocksDB I/O, filter scans) run on blocking threads.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use flymq_proto::{
    ConsumeRequest, ConsumeResponse, FetchRequest, FetchResponseWriter, OffsetResponse, Opcode, Response,
    SeekToTimestampRequest,
};

use crate::core::{Broker, FetchLimits};
use crate::messaging::filter::RecordFilter;
use crate::server::dispatch::{Answer, blocking};

/// FETCH's `max_messages` when the client sends 0 or less (Go's default).
const DEFAULT_FETCH_MESSAGES: usize = 10;
/// Most records one FETCH may return.
const MAX_FETCH_MESSAGES: usize = 100_000;
/// Fewest records a FETCH examines before giving up on a filter (Go scans 1000).
const MIN_SCAN: usize = 1000;

pub async fn consume(broker: Arc<Broker>, req: ConsumeRequest, zero_copy_opcode: bool) -> Answer {
    blocking(move || {
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
        Answer::from_result(result)
    })
    .await
}

pub async fn fetch(session: u64, broker: Arc<Broker>, mut req: FetchRequest, binary_opcode: bool) -> Answer {
    // A group consumer re-reading a record too often: it goes to the
    // dead-letter queue and the read continues after it.
    match broker
        .dead_letter_if_exhausted(session, &req.topic, req.partition, req.offset)
        .await
    {
        Ok(offset) => req.offset = offset,
        Err(err) => return Answer::error(err),
    }
    blocking(move || {
        let started = Instant::now();
        // Compiling a regex filter is CPU work too: it runs here, off the async workers.
        let filter = match RecordFilter::parse(&req.filter) {
            Ok(filter) => filter,
            Err(err) => return Answer::error(format!("invalid filter: {err}")),
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
        let answer = match result {
            Ok(next_offset) => {
                writer.finish(next_offset);
                Answer::Encoded(out)
            }
            Err(err) => Answer::error(err),
        };
        broker.metrics().fetch_latency.observe(started.elapsed().as_secs_f64());
        answer
    })
    .await
}

pub async fn seek_to_timestamp(broker: Arc<Broker>, req: SeekToTimestampRequest) -> Answer {
    blocking(move || {
        Answer::from_result(
            broker
                .offset_for_timestamp(&req.topic, req.partition, req.timestamp_ms)
                .map(|offset| Response::SeekToTimestamp(OffsetResponse { offset })),
        )
    })
    .await
}
