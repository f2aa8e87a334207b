//! `bench consume`: reads what a topic holds with pipelined FETCH requests.
//! Offsets are contiguous, so requests for successive ranges go out before
//! their predecessors are answered; a short reply schedules a follow-up for
//! the missing range.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::BytesMut;
use flymq_client::{Client, ClientConfig, StartFrom};
use flymq_proto::{FetchRequest, Frame, Request, Response};

use crate::bench::driver::{Progress, Target, Workload, print_progress, run_connection};
use crate::bench::stats::{Report, Stats};

/// A range of one partition still to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Partition.
    pub partition: i32,
    /// First offset.
    pub from: u64,
    /// One past the last offset.
    pub to: u64,
}

/// Readable ranges of every partition of `topic`, capped at `limit`
/// messages in total (taken partition by partition).
pub async fn readable_ranges(client: &Client, topic: &str, limit: Option<u64>) -> anyhow::Result<Vec<Range>> {
    let meta = client
        .topic_metadata(topic)
        .await
        .with_context(|| format!("reading metadata of topic '{topic}'"))?;
    let mut ranges = Vec::new();
    let mut left = limit.unwrap_or(u64::MAX);
    for p in &meta.partitions {
        // An empty group id reads the offsets without joining a group.
        let from = client.subscribe(topic, "", p.partition, StartFrom::Earliest).await?;
        let end = client.subscribe(topic, "", p.partition, StartFrom::Latest).await?;
        let to = end.min(from.saturating_add(left));
        if to > from {
            left -= to - from;
            ranges.push(Range {
                partition: p.partition,
                from,
                to,
            });
        }
    }
    Ok(ranges)
}

/// Splits ranges over `connections` workers, round robin.
pub fn assign(ranges: &[Range], connections: usize) -> Vec<Vec<Range>> {
    let n = connections.max(1).min(ranges.len().max(1));
    let mut out = vec![Vec::new(); n];
    for (i, r) in ranges.iter().enumerate() {
        out[i % n].push(r.clone());
    }
    out
}

/// Reads every range and reports.
pub async fn run(
    config: &ClientConfig,
    topic: &str,
    ranges: Vec<Range>,
    connections: usize,
    in_flight: usize,
    max_records: u32,
    progress_lines: bool,
) -> anyhow::Result<Report> {
    let total: u64 = ranges.iter().map(|r| r.to - r.from).sum();
    if total == 0 {
        bail!(
            "topic '{topic}' holds no messages to read; run `flymq-cli bench produce --topic {topic}` first \
             or pass --produce-first"
        );
    }
    let target = Target::from_config(config)?;
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let printer = progress_lines.then(|| tokio::spawn(print_progress(progress.clone(), started)));
    let mut workers = Vec::new();
    for assigned in assign(&ranges, connections) {
        let workload = FetchWorkload::new(topic, assigned, max_records.max(1));
        let (target, progress) = (target.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            run_connection(&target, workload, in_flight, progress).await
        }));
    }
    let workers_count = workers.len();
    let mut stats = Stats::new();
    let mut failure = None;
    for worker in workers {
        match worker.await {
            Ok(Ok(s)) => stats.merge(&s),
            Ok(Err(err)) => failure = failure.or(Some(err)),
            Err(join) => failure = failure.or(Some(anyhow::anyhow!("bench worker failed: {join}"))),
        }
    }
    let elapsed = started.elapsed();
    progress.done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(printer) = printer {
        printer.abort();
    }
    if let Some(err) = failure {
        return Err(err);
    }
    let size = stats.bytes.checked_div(stats.messages).unwrap_or(0) as usize;
    let mut report = Report::new("consume", topic, size, &stats, elapsed);
    report.connections = workers_count;
    report.in_flight = in_flight.max(1);
    report.batch = max_records as usize;
    Ok(report)
}

/// One connection's FETCH requests over its ranges.
pub struct FetchWorkload {
    topic: String,
    max_records: u32,
    /// Ranges not yet requested (front = next).
    todo: VecDeque<Range>,
    /// Requests in flight, oldest first: (partition, offset, count asked).
    in_flight: VecDeque<(i32, u64, u64)>,
}

impl FetchWorkload {
    /// A workload reading `ranges` of `topic`.
    pub fn new(topic: &str, ranges: Vec<Range>, max_records: u32) -> Self {
        Self {
            topic: topic.to_owned(),
            max_records,
            todo: ranges.into(),
            in_flight: VecDeque::new(),
        }
    }
}

impl Workload for FetchWorkload {
    fn next_request(&mut self, out: &mut BytesMut) -> anyhow::Result<bool> {
        let Some(range) = self.todo.front_mut() else {
            return Ok(false);
        };
        let count = (range.to - range.from).min(u64::from(self.max_records));
        let (partition, offset) = (range.partition, range.from);
        range.from += count;
        if range.from >= range.to {
            self.todo.pop_front();
        }
        Request::Fetch(FetchRequest {
            topic: self.topic.clone(),
            partition,
            offset,
            max_messages: i32::try_from(count).unwrap_or(i32::MAX),
            filter: String::new(),
        })
        .encode_frame(out)?;
        self.in_flight.push_back((partition, offset, count));
        Ok(true)
    }

    fn on_response(&mut self, frame: Frame) -> anyhow::Result<(u64, u64)> {
        let Some((partition, offset, asked)) = self.in_flight.pop_front() else {
            bail!("FETCH response without a request");
        };
        let resp = match Response::decode_frame(&frame)? {
            Response::Fetch(resp) => resp,
            other => bail!("unexpected response opcode 0x{:02x} to FETCH", other.opcode()),
        };
        let received = resp.records.len() as u64;
        let bytes: u64 = resp.records.iter().map(|r| r.value.len() as u64).sum();
        // A short reply (scan or size limit): ask again for the rest, unless
        // the broker made no progress at all (nothing more is readable).
        let end = offset + asked;
        if resp.next_offset > offset && resp.next_offset < end {
            self.todo.push_front(Range {
                partition,
                from: resp.next_offset,
                to: end,
            });
        }
        Ok((received, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_spread_over_connections() {
        let ranges: Vec<Range> = (0..5)
            .map(|p| Range {
                partition: p,
                from: 0,
                to: 10,
            })
            .collect();
        let a = assign(&ranges, 2);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].iter().map(|r| r.partition).collect::<Vec<_>>(), vec![0, 2, 4]);
        assert_eq!(a[1].iter().map(|r| r.partition).collect::<Vec<_>>(), vec![1, 3]);
        // Never more workers than ranges.
        assert_eq!(assign(&ranges[..1], 4).len(), 1);
    }

    #[test]
    fn requests_cover_ranges_in_steps() {
        let mut w = FetchWorkload::new(
            "t",
            vec![Range {
                partition: 1,
                from: 5,
                to: 12,
            }],
            3,
        );
        let mut out = BytesMut::new();
        let mut asked = Vec::new();
        while w.next_request(&mut out).expect("encode") {}
        while let Some(frame) = Frame::decode(&mut out).expect("frame") {
            let Ok(Request::Fetch(f)) = Request::decode_frame(&frame) else {
                panic!("expected FETCH")
            };
            asked.push((f.partition, f.offset, f.max_messages));
        }
        assert_eq!(asked, vec![(1, 5, 3), (1, 8, 3), (1, 11, 1)]);
    }
}
