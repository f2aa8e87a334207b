//! PRODUCE (0x01) and the PRODUCE_BATCH (0x90) extension.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use flymq_proto::{
    ProduceBatchRequest, ProduceBatchResponse, ProduceDelayedRequest, ProduceRequest, ProduceWithSchemaRequest,
    ProduceWithTtlRequest, RecordMetadata, Response,
};
use futures::FutureExt;

use crate::core::{Broker, BrokerResult, NewRecord, ProduceAck, delayed, now_ms, ttl};
use crate::server::access::AccessCheck;
use crate::server::connection::ConnectionContext;
use crate::server::dispatch::{Answer, Reply};

pub fn produce(
    conn: &mut ConnectionContext,
    broker: &Arc<Broker>,
    req: ProduceRequest,
    gate: Option<AccessCheck>,
) -> Reply {
    let key_size = if req.key.is_empty() { -1 } else { req.key.len() as i32 };
    let value_size = req.value.len() as i32;
    let topic = req.topic;
    submit(
        conn,
        broker,
        topic.clone(),
        req.partition,
        vec![NewRecord::new(req.key, req.value)],
        gate,
        None,
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

pub fn produce_batch(
    conn: &mut ConnectionContext,
    broker: &Arc<Broker>,
    req: ProduceBatchRequest,
    gate: Option<AccessCheck>,
) -> Reply {
    let records = req
        .records
        .into_iter()
        .map(|r| NewRecord::new(r.key, r.value))
        .collect();
    let topic = req.topic;
    submit(
        conn,
        broker,
        topic.clone(),
        req.partition,
        records,
        gate,
        None,
        move |ack| {
            Response::ProduceBatch(ProduceBatchResponse {
                topic,
                partition: ack.partition as i32,
                base_offset: ack.base_offset,
                count: ack.count,
                timestamp: ack.timestamp_ms,
            })
        },
    )
}

/// PRODUCE_WITH_TTL (0x35): one record without a key that expires `ttl_ms`
/// after it is produced. Answers the real partition and offset.
pub fn produce_with_ttl(
    conn: &mut ConnectionContext,
    broker: &Arc<Broker>,
    req: ProduceWithTtlRequest,
    gate: Option<AccessCheck>,
) -> Reply {
    let record = ttl::validate_ttl(req.ttl_ms).map(|ttl| NewRecord::expiring(Bytes::new(), &req.data, now_ms(), ttl));
    keyless(
        conn,
        broker,
        req.topic,
        req.data.len(),
        record,
        gate,
        true,
        Response::ProduceWithTtl,
    )
}

/// PRODUCE_WITH_SCHEMA (0x14): one record without a key, written only if
/// the latest version of its schema accepts it. The check runs when the
/// connection's earlier requests have taken effect (a schema registered
/// just before on the same connection is used).
pub fn produce_with_schema(
    conn: &mut ConnectionContext,
    broker: &Arc<Broker>,
    req: ProduceWithSchemaRequest,
    gate: Option<AccessCheck>,
) -> Reply {
    let value_size = req.data.len();
    let check: SchemaCheck = Arc::new({
        let (schema, data) = (req.schema_name, req.data.clone());
        move |broker: &Broker| {
            // Validating a large message is CPU work: keep it off the
            // async workers' queue (small ones take microseconds).
            let multi_threaded = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if data.len() > LARGE_MESSAGE_BYTES && multi_threaded {
                tokio::task::block_in_place(|| broker.check_schema(&schema, &data))
            } else {
                broker.check_schema(&schema, &data)
            }
        }
    });
    let topic = req.topic;
    let record = NewRecord::new(Bytes::new(), req.data);
    submit(
        conn,
        broker,
        topic.clone(),
        -1,
        vec![record],
        gate,
        Some(check),
        move |ack| {
            Response::ProduceWithSchema(RecordMetadata {
                topic,
                partition: ack.partition as i32,
                offset: ack.base_offset,
                timestamp: ack.timestamp_ms,
                key_size: -1,
                value_size: value_size as i32,
            })
        },
    )
}

/// Messages larger than this are validated with `block_in_place`.
const LARGE_MESSAGE_BYTES: usize = 64 * 1024;

/// A check a record must pass before it is written.
type SchemaCheck = Arc<dyn Fn(&Broker) -> BrokerResult<()> + Send + Sync>;

/// PRODUCE_DELAYED (0x30): one record without a key, invisible to readers
/// until `delay_ms` after it is produced, then delivered at the end of its
/// partition. Answers the partition and offset 0 (WIRE.md §9.9: the record's
/// offset is only known when it is delivered).
pub fn produce_delayed(
    conn: &mut ConnectionContext,
    broker: &Arc<Broker>,
    req: ProduceDelayedRequest,
    gate: Option<AccessCheck>,
) -> Reply {
    let record = delayed::validate_delay(req.delay_ms)
        .map(|delay| NewRecord::scheduled(Bytes::new(), &req.data, now_ms(), delay));
    keyless(
        conn,
        broker,
        req.topic,
        req.data.len(),
        record,
        gate,
        false,
        Response::ProduceDelayed,
    )
}

/// Queues one keyless record (or answers the error that refused it) and
/// answers RecordMetadata wrapped by `respond`, with offset 0 unless
/// `offset_known`.
#[allow(clippy::too_many_arguments)]
fn keyless(
    conn: &mut ConnectionContext,
    broker: &Arc<Broker>,
    topic: String,
    value_size: usize,
    record: BrokerResult<NewRecord>,
    gate: Option<AccessCheck>,
    offset_known: bool,
    respond: fn(RecordMetadata) -> Response,
) -> Reply {
    let record = match record {
        Ok(record) => record,
        Err(err) => return Reply::Ready(Answer::error(err)),
    };
    submit(conn, broker, topic.clone(), -1, vec![record], gate, None, move |ack| {
        respond(RecordMetadata {
            topic,
            partition: ack.partition as i32,
            offset: if offset_known { ack.base_offset } else { 0 },
            timestamp: ack.timestamp_ms,
            key_size: -1,
            value_size: value_size as i32,
        })
    })
}

/// Queues the records in connection order (creating the topic first when
/// allowed, unless `check` refuses them) and answers with `respond(ack)`
/// once they are durable, recording the produce latency.
#[allow(clippy::too_many_arguments)]
fn submit(
    conn: &mut ConnectionContext,
    broker: &Arc<Broker>,
    topic: String,
    partition: i32,
    records: Vec<NewRecord>,
    gate: Option<AccessCheck>,
    check: Option<SchemaCheck>,
    respond: impl FnOnce(ProduceAck) -> Response + Send + 'static,
) -> Reply {
    let started = Instant::now();
    let gate = gate.map(Arc::new);
    let prepare = broker.needs_auto_create(&topic).then(|| {
        let (broker, topic, gate, check) = (broker.clone(), topic.clone(), gate.clone(), check.clone());
        async move {
            // Only a caller allowed to write may create the topic, and
            // only for a record that will be written.
            if let Some(gate) = gate {
                gate.verify(&broker)?;
            }
            if let Some(check) = check {
                check(&broker)?;
            }
            broker.auto_create_topic(&topic).await
        }
        .boxed()
    });
    let broker = broker.clone();
    conn.sequencer.write(prepare, move || {
        if let Some(Err(denied)) = gate.map(|g| g.verify(&broker)) {
            return futures::future::ready(Answer::error(denied)).boxed();
        }
        if let Some(Err(refused)) = check.map(|check| check(&broker)) {
            return futures::future::ready(Answer::error(refused)).boxed();
        }
        let pending = match broker.submit_produce(&topic, partition, records) {
            Ok(pending) => pending,
            Err(err) => return futures::future::ready(Answer::error(err)).boxed(),
        };
        async move {
            match pending.await {
                Ok(ack) => {
                    broker
                        .metrics()
                        .produce_latency
                        .observe(started.elapsed().as_secs_f64());
                    Answer::Response(respond(ack))
                }
                Err(err) => Answer::error(err),
            }
        }
        .boxed()
    })
}
