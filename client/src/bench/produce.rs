//! `bench produce` and `bench latency`: pre-encoded PRODUCE or
//! PRODUCE_BATCH frames sent over raw pipelined connections
//! ([`run_frames`] also sends the frames of `bench schema` and
//! `bench delayed`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use flymq_client::partitioner::partition_for_key;
use flymq_client::{Client, ClientConfig};
use flymq_proto::{BatchRecord, Frame, Opcode, ProduceBatchRequest, ProduceRequest, Request};
use rand::RngCore;

use crate::bench::driver::{Budget, Progress, Target, Workload, run_connection};
use crate::bench::stats::{Report, Stats};

/// Distinct pre-encoded frames cycled through (bounds setup memory).
const FRAME_POOL: usize = 256;

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProducePlan {
    /// Topic.
    pub topic: String,
    /// Value size in bytes.
    pub size: usize,
    /// Messages in total (ignored when `duration` is set).
    pub count: u64,
    /// Run time instead of a count.
    pub duration: Option<Duration>,
    /// Partitions to create the topic with.
    pub partitions: u32,
    /// Connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub in_flight: usize,
    /// Messages per request (<= 1 = PRODUCE, > 1 = PRODUCE_BATCH).
    pub batch: usize,
    /// Distinct keys.
    pub keyed: bool,
    /// Print progress lines.
    pub progress: bool,
}

/// Creates the topic (if absent) and returns its partition count.
pub async fn prepare_topic(config: &ClientConfig, topic: &str, partitions: u32) -> anyhow::Result<u32> {
    let client = Client::connect(config.clone()).await?;
    client
        .create_topic(topic, partitions.max(1))
        .await
        .with_context(|| format!("creating bench topic '{topic}'"))?;
    let meta = client.topic_metadata(topic).await?;
    Ok(u32::try_from(meta.partitions.len()).unwrap_or(1).max(1))
}

/// Runs the plan and returns the merged statistics and the elapsed time.
pub async fn run(config: &ClientConfig, plan: &ProducePlan, mode: &str) -> anyhow::Result<Report> {
    let partitions = prepare_topic(config, &plan.topic, plan.partitions).await?;
    let frames = build_frames(plan, partitions)?;
    let expected = if plan.batch > 1 {
        Opcode::ProduceBatch
    } else {
        Opcode::Produce
    };
    run_frames(config, plan, frames, expected, mode).await
}

/// Sends `frames` round robin from every connection of `plan` (its count
/// or duration, connections, in-flight depth and progress lines; each
/// frame carries `plan.batch` messages of `plan.size` bytes) and counts
/// answers with the `expected` opcode. The topic must exist.
pub async fn run_frames(
    config: &ClientConfig,
    plan: &ProducePlan,
    frames: Vec<Bytes>,
    expected: Opcode,
    mode: &str,
) -> anyhow::Result<Report> {
    let batch = plan.batch.max(1);
    let frames = Arc::new(frames);
    let budget = Arc::new(match plan.duration {
        Some(d) => Budget::Until(Instant::now() + d),
        None => Budget::requests(plan.count.div_ceil(batch as u64)),
    });
    let target = Target::from_config(config)?;

    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let printer = plan
        .progress
        .then(|| tokio::spawn(crate::bench::driver::print_progress(progress.clone(), started)));
    let mut workers = Vec::with_capacity(plan.connections.max(1));
    for i in 0..plan.connections.max(1) {
        let workload = ProduceWorkload {
            frames: frames.clone(),
            next: i * 7 % frames.len().max(1),
            budget: budget.clone(),
            messages_per_frame: batch as u64,
            value_bytes_per_frame: (batch * plan.size) as u64,
            expected,
        };
        let (target, progress, in_flight) = (target.clone(), progress.clone(), plan.in_flight);
        workers.push(tokio::spawn(async move {
            run_connection(&target, workload, in_flight, progress).await
        }));
    }
    let mut total = Stats::new();
    let mut first_failure = None;
    for worker in workers {
        match worker.await {
            Ok(Ok(stats)) => total.merge(&stats),
            Ok(Err(err)) => first_failure = first_failure.or(Some(err)),
            Err(join) => first_failure = first_failure.or(Some(anyhow::anyhow!("bench worker failed: {join}"))),
        }
    }
    let elapsed = started.elapsed();
    progress.done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(printer) = printer {
        printer.abort();
    }
    if let Some(err) = first_failure {
        return Err(err);
    }
    let mut report = Report::new(mode, &plan.topic, plan.size, &total, elapsed);
    report.connections = plan.connections.max(1);
    report.in_flight = plan.in_flight.max(1);
    report.batch = batch;
    Ok(report)
}

/// Pre-encodes the request frames cycled through by every connection.
///
/// - unkeyed single: one PRODUCE with partition -1 (the broker round-robins);
/// - keyed single: PRODUCE frames with distinct keys, partition -1 (the
///   broker hashes);
/// - batches: PRODUCE_BATCH frames with an explicit partition, cycling over
///   the partitions; keyed batches hold keys that hash to their partition.
fn build_frames(plan: &ProducePlan, partitions: u32) -> anyhow::Result<Vec<Bytes>> {
    let mut value = vec![0u8; plan.size];
    rand::rng().fill_bytes(&mut value);
    let value = Bytes::from(value);
    let batch = plan.batch.max(1);
    let mut frames = Vec::new();
    let encode = |req: Request| -> anyhow::Result<Bytes> {
        Ok(req
            .to_frame_bytes()
            .context("bench request does not fit in a frame; lower --size or --batch")?
            .freeze())
    };

    if batch == 1 {
        let keys = if plan.keyed { FRAME_POOL } else { 1 };
        for i in 0..keys {
            let key = if plan.keyed {
                Bytes::from(format!("key-{i}"))
            } else {
                Bytes::new()
            };
            frames.push(encode(Request::Produce(ProduceRequest {
                topic: plan.topic.clone(),
                key,
                value: value.clone(),
                partition: -1,
            }))?);
        }
        return Ok(frames);
    }

    // Keys bucketed by the partition they hash to.
    let mut buckets: Vec<Vec<Bytes>> = vec![Vec::new(); partitions as usize];
    let frames_per_partition = (FRAME_POOL / partitions as usize).clamp(1, 16);
    if plan.keyed {
        let wanted = batch * frames_per_partition;
        let mut i = 0u64;
        while buckets.iter().any(|b| b.len() < wanted) {
            let key = format!("key-{i}");
            let p = partition_for_key(key.as_bytes(), partitions) as usize;
            if buckets[p].len() < wanted {
                buckets[p].push(Bytes::from(key));
            }
            i += 1;
        }
    }
    for round in 0..frames_per_partition {
        for (p, keys) in buckets.iter().enumerate() {
            let records = (0..batch)
                .map(|j| BatchRecord {
                    key: keys.get(round * batch + j).cloned().unwrap_or_default(),
                    value: value.clone(),
                })
                .collect();
            frames.push(encode(Request::ProduceBatch(ProduceBatchRequest {
                topic: plan.topic.clone(),
                partition: p as i32,
                records,
            }))?);
        }
    }
    Ok(frames)
}

struct ProduceWorkload {
    frames: Arc<Vec<Bytes>>,
    next: usize,
    budget: Arc<Budget>,
    messages_per_frame: u64,
    value_bytes_per_frame: u64,
    expected: Opcode,
}

impl Workload for ProduceWorkload {
    fn next_request(&mut self, out: &mut BytesMut) -> anyhow::Result<bool> {
        if self.frames.is_empty() || !self.budget.claim() {
            return Ok(false);
        }
        out.extend_from_slice(&self.frames[self.next]);
        self.next = (self.next + 1) % self.frames.len();
        Ok(true)
    }

    fn on_response(&mut self, frame: Frame) -> anyhow::Result<(u64, u64)> {
        // The acknowledgement's content (offsets) is not needed: checking the
        // opcode avoids decoding on the hot path.
        if frame.opcode != self.expected.code() {
            anyhow::bail!(
                "unexpected response opcode 0x{:02x} to {}",
                frame.opcode,
                self.expected.name()
            );
        }
        Ok((self.messages_per_frame, self.value_bytes_per_frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(batch: usize, keyed: bool) -> ProducePlan {
        ProducePlan {
            topic: "t".into(),
            size: 10,
            count: 100,
            duration: None,
            partitions: 3,
            connections: 1,
            in_flight: 1,
            batch,
            keyed,
            progress: false,
        }
    }

    fn decode(frame: &Bytes) -> Request {
        let mut buf = BytesMut::from(&frame[..]);
        let frame = Frame::decode(&mut buf).expect("valid").expect("whole frame");
        Request::decode_frame(&frame).expect("decodes")
    }

    #[test]
    fn single_unkeyed_is_one_frame() {
        let frames = build_frames(&plan(0, false), 3).expect("frames");
        assert_eq!(frames.len(), 1);
        let Request::Produce(p) = decode(&frames[0]) else {
            panic!("expected PRODUCE")
        };
        assert_eq!((p.partition, p.key.len(), p.value.len()), (-1, 0, 10));
    }

    #[test]
    fn keyed_batches_hold_keys_of_their_partition() {
        let frames = build_frames(&plan(4, true), 3).expect("frames");
        assert!(frames.len() >= 3);
        let mut seen = [false; 3];
        for frame in &frames {
            let Request::ProduceBatch(b) = decode(frame) else {
                panic!("expected PRODUCE_BATCH")
            };
            assert_eq!(b.records.len(), 4);
            seen[b.partition as usize] = true;
            for r in &b.records {
                assert_eq!(partition_for_key(&r.key, 3), b.partition);
            }
        }
        assert_eq!(seen, [true; 3]);
    }
}
