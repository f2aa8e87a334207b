//! PRODUCE (0x01) and the PRODUCE_BATCH (0x90) extension.

use std::sync::Arc;
use std::time::Instant;

use flymq_proto::{ProduceBatchRequest, ProduceBatchResponse, ProduceRequest, RecordMetadata, Response};

use crate::core::{Broker, NewRecord, ProduceAck};
use crate::server::dispatch::Reply;

pub fn produce(broker: &Arc<Broker>, req: ProduceRequest) -> Reply {
    let key_size = if req.key.is_empty() { -1 } else { req.key.len() as i32 };
    let value_size = req.value.len() as i32;
    let topic = req.topic;
    submit(
        broker,
        topic.clone(),
        req.partition,
        vec![NewRecord::new(req.key, req.value)],
        move |ack| {
            Response::Produce(RecordMetadata {
                topic,
                partition: ack.partition as i32,
                offset: ack.base_offset,
                timestamp: ack.timestamp_ms,
                key_size,
                value_size,
            })
        },
    )
}

pub fn produce_batch(broker: &Arc<Broker>, req: ProduceBatchRequest) -> Reply {
    let records = req
        .records
        .into_iter()
        .map(|r| NewRecord::new(r.key, r.value))
        .collect();
    let topic = req.topic;
    submit(broker, topic.clone(), req.partition, records, move |ack| {
        Response::ProduceBatch(ProduceBatchResponse {
            topic,
            partition: ack.partition as i32,
            base_offset: ack.base_offset,
            count: ack.count,
            timestamp: ack.timestamp_ms,
        })
    })
}

/// Queues the records now (keeping connection order) and answers with
/// `respond(ack)` once they are durable, recording the produce latency.
fn submit(
    broker: &Arc<Broker>,
    topic: String,
    partition: i32,
    records: Vec<NewRecord>,
    respond: impl FnOnce(ProduceAck) -> Response + Send + 'static,
) -> Reply {
    let started = Instant::now();
    let pending = match broker.submit_produce(&topic, partition, records) {
        Ok(pending) => pending,
        Err(err) => return Reply::error(err),
    };
    let broker = broker.clone();
    Reply::pending(async move {
        let ack = pending.await?;
        broker
            .metrics()
            .produce_latency
            .observe(started.elapsed().as_secs_f64());
        Ok(respond(ack))
    })
}
