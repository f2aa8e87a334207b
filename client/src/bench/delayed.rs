//! `bench delayed`: delayed delivery with many records pending.
//!
//! 0. Warm-up: `--warmup` plain PRODUCE records, not reported.
//! 1. Baseline without pending records: plain PRODUCE of `--count` records
//!    into a topic of their own, FETCH of them, and the delivery lateness of
//!    `--due` records with a short delay.
//! 2. PRODUCE_DELAYED of `--pending` records with a long delay (they stay
//!    pending for the rest of the run), compared with the baseline produce.
//! 3. With them pending: plain PRODUCE and FETCH on another topic and on the
//!    topic holding the pending records (its fetch also once from offset 0,
//!    through the hidden scheduled records), and the lateness again.
//!
//! With `--pending-as-plain` step 2 sends plain PRODUCE instead: a control
//! run with the same data volume and nothing pending.
//!
//! Lateness is measured by a consumer polling FETCH on its own connection:
//! (time it first sees a record) − (time the record was sent + its delay).
//! The broker computes the due time from when it received the record, so
//! this includes the produce request's own latency; against the
//! acknowledgement instead of the send it is a lower bound.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use flymq_client::{Client, ClientConfig, StartFrom};
use flymq_proto::{Opcode, ProduceDelayedRequest, ProduceRequest, Request};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use super::args::DelayedBenchArgs;
use super::consume::{self, Range};
use super::produce::{ProducePlan, prepare_topic, run_frames};
use super::stats::{Report, format_micros};
use crate::cli::output::{Output, format_table};

/// How long the lateness consumer waits past the delay before giving up
/// on records not delivered yet.
const LATENESS_GRACE: Duration = Duration::from_secs(120);
/// Pause of the lateness consumer after a poll that found nothing new.
const POLL_PAUSE: Duration = Duration::from_millis(1);

/// One measured phase of the run.
#[derive(Debug, Serialize)]
struct Phase {
    /// What was measured.
    label: String,
    /// msgs/s against the baseline of the same kind, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<f64>,
    report: Report,
}

/// Delivery lateness of one batch of short-delay records.
#[derive(Debug, Serialize)]
struct Lateness {
    /// Records produced with the short delay.
    records: u64,
    /// Their delay.
    delay_ms: u64,
    /// Records pending (with the long delay) while they were due.
    pending: u64,
    /// Records seen by the consumer, once each.
    delivered: u64,
    /// Records seen more than once (should be 0).
    duplicates: u64,
    /// Produce requests that failed.
    produce_errors: u64,
    /// How long producing the batch took.
    produce_ms: f64,
    /// First seen − (sent + delay).
    from_send: Percentiles,
    /// First seen − (acknowledged + delay): a lower bound.
    from_ack: Percentiles,
}

/// Percentiles in milliseconds.
#[derive(Debug, Serialize)]
struct Percentiles {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Percentiles {
    fn of(mut micros: Vec<i64>) -> Self {
        micros.sort_unstable();
        let at = |q: f64| -> f64 {
            if micros.is_empty() {
                return 0.0;
            }
            let index = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
            micros[index] as f64 / 1000.0
        };
        Self {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: micros.last().map_or(0.0, |&m| m as f64 / 1000.0),
        }
    }

    fn text(&self) -> String {
        format!(
            "p50 {} p99 {} max {}",
            format_micros(self.p50_ms * 1000.0),
            format_micros(self.p99_ms * 1000.0),
            format_micros(self.max_ms * 1000.0)
        )
    }
}

/// Resident memory of the broker process, from /proc.
#[derive(Debug, Clone, Copy, Serialize)]
struct Memory {
    rss_kib: u64,
    peak_rss_kib: u64,
}

fn memory_of(pid: Option<u32>) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_rss_kib: field("VmHWM:")?,
    })
}

/// Runs `bench delayed` and prints its report.
pub async fn run(config: &ClientConfig, args: &DelayedBenchArgs, out: &Output) -> anyhow::Result<()> {
    if let Some(pid) = args.broker_pid
        && memory_of(Some(pid)).is_none()
    {
        bail!("cannot read /proc/{pid}/status: is {pid} the broker's process id on this machine?");
    }
    let bench = Bench { config, args };
    let topic = &args.topic;
    let before_topic = format!("{topic}-plain-before");
    let after_topic = format!("{topic}-plain-after");
    let baseline_due_topic = format!("{topic}-due-baseline");
    let warmup_topic = format!("{topic}-warmup");
    let partitions = prepare_topic(config, topic, args.partitions).await?;
    for t in [&before_topic, &after_topic, &baseline_due_topic, &warmup_topic] {
        prepare_topic(config, t, partitions).await?;
    }
    let client = Client::connect(config.clone()).await?;
    if args.warmup > 0 {
        bench.produce_plain(&warmup_topic, args.warmup).await?;
    }
    let mut memory = vec![("start", memory_of(args.broker_pid))];

    let mut phases = Vec::new();
    let plain_before = bench.produce_plain(&before_topic, args.count).await?;
    memory.push(("after the baseline plain produce", memory_of(args.broker_pid)));
    let fetch_before = bench.fetch(&client, &before_topic, None).await?;
    let lateness_before = bench.lateness(&baseline_due_topic, 0).await?;
    memory.push(("before the pending records", memory_of(args.broker_pid)));
    let delayed = bench.produce_delayed().await?;
    memory.push(("after the pending records", memory_of(args.broker_pid)));
    let pending = if args.pending_as_plain { 0 } else { delayed.messages };
    // What the phases after step 2 run next to.
    let with = if args.pending_as_plain {
        format!("{} more plain", delayed.messages)
    } else {
        format!("{pending} pending")
    };

    let plain_other = bench.produce_plain(&after_topic, args.count).await?;
    let fetch_other = bench.fetch(&client, &after_topic, None).await?;
    let ends_before = end_offsets(&client, topic).await?;
    let plain_same = bench.produce_plain(topic, args.count).await?;
    let fetch_same = bench.fetch(&client, topic, Some(&ends_before)).await?;
    let fetch_through = bench.fetch(&client, topic, Some(&[])).await?;
    let lateness_after = bench.lateness(topic, pending).await?;
    memory.push(("end", memory_of(args.broker_pid)));

    let base_produce = plain_before.msgs_per_sec;
    let base_fetch = fetch_before.msgs_per_sec;
    let ratio = |report: &Report, base: f64| Some(report.msgs_per_sec / base.max(1e-9));
    let delay = humantime::format_duration(args.pending_delay);
    phases.push(phase("plain PRODUCE, no pending records", None, plain_before));
    phases.push(phase("FETCH of those records", None, fetch_before));
    let label = if args.pending_as_plain {
        format!("plain PRODUCE (control), into '{topic}'")
    } else {
        format!("PRODUCE_DELAYED, delay {delay}, into '{topic}'")
    };
    phases.push(phase(&label, ratio(&delayed, base_produce), delayed));
    phases.push(phase(
        &format!("{with}: plain PRODUCE, another topic"),
        ratio(&plain_other, base_produce),
        plain_other,
    ));
    phases.push(phase(
        &format!("{with}: FETCH, another topic"),
        ratio(&fetch_other, base_fetch),
        fetch_other,
    ));
    phases.push(phase(
        &format!("{with}: plain PRODUCE, same topic"),
        ratio(&plain_same, base_produce),
        plain_same,
    ));
    phases.push(phase(
        &format!("{with}: FETCH of those, same topic"),
        ratio(&fetch_same, base_fetch),
        fetch_same,
    ));
    phases.push(phase(
        &format!("{with}: FETCH from offset 0, same topic"),
        ratio(&fetch_through, base_fetch),
        fetch_through,
    ));

    print(out, args, &phases, &[lateness_before, lateness_after], &memory)?;
    let errors: u64 = phases.iter().map(|p| p.report.errors).sum();
    if errors > 0 {
        let first = phases
            .iter()
            .find_map(|p| p.report.first_error.clone())
            .unwrap_or_default();
        bail!("{errors} request(s) failed; first error: {first}");
    }
    Ok(())
}

fn phase(label: &str, ratio: Option<f64>, report: Report) -> Phase {
    Phase {
        label: label.to_owned(),
        ratio,
        report,
    }
}

/// The log end of every partition of `topic`.
async fn end_offsets(client: &Client, topic: &str) -> anyhow::Result<Vec<(i32, u64)>> {
    let meta = client.topic_metadata(topic).await?;
    let mut ends = Vec::with_capacity(meta.partitions.len());
    for p in &meta.partitions {
        // An empty group id reads the offset without joining a group.
        ends.push((
            p.partition,
            client.subscribe(topic, "", p.partition, StartFrom::Latest).await?,
        ));
    }
    Ok(ends)
}

struct Bench<'a> {
    config: &'a ClientConfig,
    args: &'a DelayedBenchArgs,
}

impl Bench<'_> {
    fn plan(&self, topic: &str, count: u64) -> ProducePlan {
        ProducePlan {
            topic: topic.to_owned(),
            size: self.args.size,
            count,
            duration: None,
            partitions: self.args.partitions,
            connections: self.args.connections.max(1),
            in_flight: self.args.in_flight.max(1),
            batch: 1,
            keyed: false,
            progress: !self.args.quiet,
        }
    }

    fn value(&self) -> Bytes {
        Bytes::from(vec![b'v'; self.args.size])
    }

    fn say(&self, what: &str) {
        if !self.args.quiet {
            eprintln!("-- {what}");
        }
    }

    async fn produce_plain(&self, topic: &str, count: u64) -> anyhow::Result<Report> {
        self.say(&format!("plain PRODUCE of {count} records into '{topic}'"));
        let frame = Request::Produce(ProduceRequest {
            topic: topic.to_owned(),
            key: Bytes::new(),
            value: self.value(),
            partition: -1,
        })
        .to_frame_bytes()?
        .freeze();
        run_frames(
            self.config,
            &self.plan(topic, count),
            vec![frame],
            Opcode::Produce,
            "produce",
        )
        .await
    }

    async fn produce_delayed(&self) -> anyhow::Result<Report> {
        let topic = &self.args.topic;
        if self.args.pending_as_plain {
            return self.produce_plain(topic, self.args.pending).await;
        }
        self.say(&format!(
            "PRODUCE_DELAYED of {} records with a {} delay into '{topic}'",
            self.args.pending,
            humantime::format_duration(self.args.pending_delay)
        ));
        let delay_ms = u64::try_from(self.args.pending_delay.as_millis()).unwrap_or(u64::MAX);
        let frame = Request::ProduceDelayed(ProduceDelayedRequest {
            topic: topic.clone(),
            data: self.value(),
            delay_ms,
        })
        .to_frame_bytes()?
        .freeze();
        run_frames(
            self.config,
            &self.plan(topic, self.args.pending),
            vec![frame],
            Opcode::ProduceDelayed,
            "produce-delayed",
        )
        .await
    }

    /// Reads `topic` with pipelined FETCH: everything readable (`from`
    /// None), from given offsets per partition to the end, or (an empty
    /// slice) from offset 0 to the end.
    async fn fetch(&self, client: &Client, topic: &str, from: Option<&[(i32, u64)]>) -> anyhow::Result<Report> {
        let ranges = match from {
            None => consume::readable_ranges(client, topic, None).await?,
            Some(starts) => end_offsets(client, topic)
                .await?
                .into_iter()
                .map(|(partition, to)| Range {
                    partition,
                    from: starts.iter().find(|(p, _)| *p == partition).map_or(0, |(_, o)| *o),
                    to,
                })
                .filter(|r| r.to > r.from)
                .collect(),
        };
        self.say(&format!(
            "FETCH of '{topic}' offsets {}",
            ranges
                .iter()
                .map(|r| format!("{}:{}..{}", r.partition, r.from, r.to))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let mut report = consume::run(self.config, topic, ranges, 1, 4, 1000, !self.args.quiet).await?;
        report.mode = "fetch".into();
        Ok(report)
    }

    /// Produces `--due` records with `--due-delay` into `topic` and
    /// measures when a polling consumer first sees each.
    async fn lateness(&self, topic: &str, pending: u64) -> anyhow::Result<Lateness> {
        let args = self.args;
        let delay = args.due_delay;
        self.say(&format!(
            "{} records due in {} into '{topic}' ({pending} others pending)",
            args.due,
            humantime::format_duration(delay)
        ));
        let producer = Client::connect(self.config.clone()).await?;
        let consumer = Client::connect(self.config.clone()).await?;
        let starts = end_offsets(&consumer, topic).await?;
        let count = usize::try_from(args.due).context("--due is too large")?;
        let deadline = Instant::now() + delay + LATENESS_GRACE;
        let watcher = tokio::spawn({
            let topic = topic.to_owned();
            async move { watch(&consumer, &topic, starts, count, deadline).await }
        });

        let started = Instant::now();
        let size = args.size;
        let sent: Vec<(usize, Instant, Instant, bool)> = futures::stream::iter(0..count)
            .map(|id| {
                let producer = producer.clone();
                async move {
                    let sent = Instant::now();
                    let result = producer.produce_delayed(topic, due_value(id, size), delay).await;
                    (id, sent, Instant::now(), result.is_ok())
                }
            })
            .buffer_unordered(args.in_flight.max(1))
            .collect()
            .await;
        let produce_ms = started.elapsed().as_secs_f64() * 1000.0;
        let Watched { seen, duplicates } = watcher.await.context("the lateness consumer failed")??;

        let (mut from_send, mut from_ack) = (Vec::new(), Vec::new());
        let mut produce_errors = 0;
        for (id, sent_at, acked_at, ok) in sent {
            if !ok {
                produce_errors += 1;
                continue;
            }
            if let Some(seen_at) = seen[id] {
                from_send.push(signed_micros(seen_at, sent_at + delay));
                from_ack.push(signed_micros(seen_at, acked_at + delay));
            }
        }
        Ok(Lateness {
            records: args.due,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            pending,
            delivered: from_send.len() as u64,
            duplicates,
            produce_errors,
            produce_ms,
            from_send: Percentiles::of(from_send),
            from_ack: Percentiles::of(from_ack),
        })
    }
}

/// `a − b` in microseconds, negative when `a` is earlier.
fn signed_micros(a: Instant, b: Instant) -> i64 {
    match a.checked_duration_since(b) {
        Some(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        None => -i64::try_from((b - a).as_micros()).unwrap_or(i64::MAX),
    }
}

/// The value of short-delay record `id`: `due-<id>-` padded to `size`.
fn due_value(id: usize, size: usize) -> Bytes {
    let mut value = format!("due-{id:010}-").into_bytes();
    if value.len() < size {
        value.resize(size, b'x');
    }
    Bytes::from(value)
}

fn due_id(value: &[u8]) -> Option<usize> {
    let digits = value.strip_prefix(b"due-")?.get(..10)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

struct Watched {
    /// When each record id was first seen.
    seen: Vec<Option<Instant>>,
    duplicates: u64,
}

/// Polls every partition of `topic` from `starts` until `count` distinct
/// short-delay records were seen or `deadline` passed.
async fn watch(
    client: &Client,
    topic: &str,
    starts: Vec<(i32, u64)>,
    count: usize,
    deadline: Instant,
) -> anyhow::Result<Watched> {
    let mut seen = vec![None; count];
    let mut seen_count = 0;
    let mut duplicates = 0;
    let mut offsets = starts;
    while seen_count < count && Instant::now() < deadline {
        let mut found = false;
        for (partition, offset) in offsets.iter_mut() {
            let page = client.fetch(topic, *partition, *offset, 1000, "").await?;
            let now = Instant::now();
            for record in &page.records {
                let Some(id) = due_id(&record.value).filter(|id| *id < count) else {
                    continue;
                };
                found = true;
                if seen[id].is_none() {
                    seen[id] = Some(now);
                    seen_count += 1;
                } else {
                    duplicates += 1;
                }
            }
            *offset = page.next_offset.max(*offset);
        }
        if !found {
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }
    Ok(Watched { seen, duplicates })
}

fn print(
    out: &Output,
    args: &DelayedBenchArgs,
    phases: &[Phase],
    lateness: &[Lateness],
    memory: &[(&str, Option<Memory>)],
) -> anyhow::Result<()> {
    if out.is_json() {
        let memory: Vec<_> = memory
            .iter()
            .filter_map(|(when, m)| {
                m.map(|m| json!({"when": when, "rss_kib": m.rss_kib, "peak_rss_kib": m.peak_rss_kib}))
            })
            .collect();
        out.line(
            &json!({
                "mode": "delayed",
                "topic": args.topic,
                "message_size": args.size,
                "partitions": args.partitions,
                "connections": args.connections.max(1),
                "in_flight": args.in_flight.max(1),
                "phases": phases,
                "lateness": lateness,
                "broker_memory": memory,
            })
            .to_string(),
        )?;
        return Ok(());
    }
    out.line(&format!(
        "delayed bench: {} B values, {} partition(s) per topic, produce with {} connection(s) x {} in flight, \
         FETCH 1000 records/request x 4 in flight",
        args.size,
        args.partitions,
        args.connections.max(1),
        args.in_flight.max(1)
    ))?;
    let rows: Vec<Vec<String>> = phases
        .iter()
        .map(|p| {
            vec![
                p.label.clone(),
                p.report.messages.to_string(),
                format!("{:.0}", p.report.msgs_per_sec),
                p.ratio.map_or("-".into(), |r| format!("{r:.3}")),
                format!(
                    "{} / {}",
                    format_micros(p.report.latency.p50_us as f64),
                    format_micros(p.report.latency.p99_us as f64)
                ),
            ]
        })
        .collect();
    out.line(format_table(&["PHASE", "MSGS", "MSGS/S", "VS BASELINE", "REQUEST P50 / P99"], &rows).trim_end())?;
    for l in lateness {
        out.line(&format!(
            "lateness of {} records due in {} ({} pending): delivered {}/{}, {} duplicate(s), produced in {:.0} ms\n  \
             seen - (sent + delay): {}\n  seen - (acknowledged + delay): {}",
            l.records,
            humantime::format_duration(Duration::from_millis(l.delay_ms)),
            l.pending,
            l.delivered,
            l.records,
            l.duplicates,
            l.produce_ms,
            l.from_send.text(),
            l.from_ack.text(),
        ))?;
    }
    for (when, m) in memory {
        if let Some(m) = m {
            out.line(&format!(
                "broker RSS {when}: {:.1} MiB (peak {:.1} MiB)",
                m.rss_kib as f64 / 1024.0,
                m.peak_rss_kib as f64 / 1024.0
            ))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_values_carry_their_id() {
        let value = due_value(42, 100);
        assert_eq!(value.len(), 100);
        assert_eq!(due_id(&value), Some(42));
        assert_eq!(due_id(&due_value(7, 0)), Some(7));
        assert_eq!(due_id(b"vvvv"), None);
    }

    #[test]
    fn percentiles_and_signed_differences() {
        let p = Percentiles::of((1..=100).map(|ms| ms * 1000).collect());
        assert_eq!((p.p50_ms, p.p99_ms, p.max_ms), (50.0, 99.0, 100.0));
        let now = Instant::now();
        let later = now + Duration::from_millis(3);
        assert_eq!(signed_micros(later, now), 3000);
        assert_eq!(signed_micros(now, later), -3000);
    }
}
