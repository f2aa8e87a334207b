//! The backend-independent part: the workloads, how they are split into
//! lanes (one connection each), timing (warm-up, measured phase) and the
//! merged result. A [`Backend`] only knows how to set up a topic or stream
//! and how to drive one lane of publishes over its own protocol.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use rand::RngCore;

use crate::stats::{Recorder, RunResult, loadavg, process_cpu_secs};

/// The workloads, each run identically against every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `connections` lanes × `in_flight` single-message publishes in flight.
    Pipelined,
    /// One lane, one single-message publish at a time.
    Latency,
    /// `connections` lanes publishing `batch` messages per request
    /// (FlyMQ PRODUCE_BATCH) or with `batch × batch_in_flight` publishes
    /// awaiting their acks (NATS, which has no batch publish).
    Batch,
    /// `consume_messages` published first (not measured), then read back
    /// with one lane per partition: FlyMQ FETCH of `batch` records,
    /// `batch_in_flight` requests in flight; a NATS pull consumer (no acks)
    /// pulling `batch` messages per request.
    Consume,
}

impl Workload {
    /// All of them, in the order they run.
    pub const ALL: [Workload; 4] = [
        Workload::Pipelined,
        Workload::Latency,
        Workload::Batch,
        Workload::Consume,
    ];

    /// Name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Pipelined => "pipelined",
            Workload::Latency => "latency",
            Workload::Batch => "batch",
            Workload::Consume => "consume",
        }
    }

    /// Parses a comma-separated list, e.g. `pipelined,latency`.
    pub fn parse_list(list: &str) -> anyhow::Result<Vec<Workload>> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|name| {
                Workload::ALL
                    .into_iter()
                    .find(|w| w.name() == name)
                    .with_context(|| format!("unknown workload '{name}'; use pipelined, latency, batch or consume"))
            })
            .collect()
    }
}

/// Settings shared by every workload and backend of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Value size in bytes.
    pub size: usize,
    /// Connections of the pipelined and batch workloads.
    pub connections: usize,
    /// Single-message publishes in flight per connection (pipelined).
    pub in_flight: usize,
    /// Partitions (FlyMQ) / streams (NATS); lane `i` publishes to `i % partitions`.
    pub partitions: u32,
    /// Messages per request in the batch workload.
    pub batch: usize,
    /// Batch requests in flight per connection.
    pub batch_in_flight: usize,
    /// Measured phase of each workload.
    pub duration: Duration,
    /// Unmeasured phase before it (connections warm, leaders settled).
    pub warmup: Duration,
    /// Messages published and read back by the consume workload (in total).
    pub consume_messages: u64,
}

/// What one lane does.
#[derive(Debug, Clone)]
pub struct LanePlan {
    /// Topic (FlyMQ) / stream-name prefix (NATS) of this run.
    pub topic: String,
    /// Partition / stream index.
    pub partition: u32,
    /// Where to connect: the partition's leader.
    pub route: String,
    /// Requests in flight (FlyMQ) or unacknowledged publishes (NATS).
    pub window: usize,
    /// Messages per request (1 = single-message requests).
    pub batch: usize,
    /// The value of every message.
    pub value: Bytes,
    /// No new request is started after this.
    pub deadline: Instant,
    /// Acks before this are warm-up.
    pub measure_from: Instant,
    /// Stop after publishing this many messages (before the deadline).
    pub max_messages: Option<u64>,
}

/// What one reading lane does (consume workload).
#[derive(Debug, Clone)]
pub struct ConsumePlan {
    /// Topic / stream-name prefix.
    pub topic: String,
    /// Partition / stream index.
    pub partition: u32,
    /// Where to connect.
    pub route: String,
    /// Messages to read, from the start of the partition.
    pub count: u64,
    /// Messages per fetch request.
    pub batch: usize,
    /// Fetch requests in flight (FlyMQ).
    pub window: usize,
    /// Start of the measured phase.
    pub measure_from: Instant,
}

/// Where each partition's publishes go, found when the topic is set up.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// Connect address per partition (its leader).
    pub routes: Vec<String>,
    /// Leader name per partition, for the report.
    pub leaders: Vec<String>,
}

/// One system under test.
pub trait Backend: Send + Sync + 'static {
    /// `flymq` or `nats`.
    fn system(&self) -> &'static str;

    /// Creates `topic` with `partitions` partitions (or streams), waits until
    /// each is writable and returns where its publishes go.
    fn prepare(&self, topic: &str, partitions: u32) -> impl Future<Output = anyhow::Result<Placement>> + Send;

    /// Publishes on one new connection as `plan` says until its deadline,
    /// then waits for the outstanding acks.
    fn run_lane(&self, plan: LanePlan) -> impl Future<Output = anyhow::Result<Recorder>> + Send;

    /// Reads `plan.count` messages of one partition from its start.
    fn consume_lane(&self, plan: ConsumePlan) -> impl Future<Output = anyhow::Result<Recorder>> + Send;

    /// Deletes what `prepare` created.
    fn cleanup(&self, topic: &str, partitions: u32) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Who runs a workload and how it is labelled in the results.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// Setup label (`flymq-all`, `nats-r3`, ...).
    pub label: String,
    /// The setup in words.
    pub describe: String,
    /// Round of the suite.
    pub round: u32,
    /// Server process ids whose CPU time is measured.
    pub server_pids: Vec<String>,
}

/// A random value of `size` bytes (the same for every message of a run).
pub fn random_value(size: usize) -> Bytes {
    let mut value = vec![0u8; size];
    rand::rng().fill_bytes(&mut value);
    Bytes::from(value)
}

/// The lanes of `workload`: (partition, window, messages per request).
pub fn lanes(workload: Workload, s: &Settings) -> Vec<(u32, usize, usize)> {
    let partitions = s.partitions.max(1);
    match workload {
        Workload::Latency => vec![(0, 1, 1)],
        Workload::Pipelined => (0..s.connections.max(1))
            .map(|i| (i as u32 % partitions, s.in_flight.max(1), 1))
            .collect(),
        Workload::Batch => (0..s.connections.max(1))
            .map(|i| (i as u32 % partitions, s.batch_in_flight.max(1), s.batch.max(1)))
            .collect(),
        Workload::Consume => (0..partitions)
            .map(|p| (p, s.batch_in_flight.max(1), s.batch.max(1)))
            .collect(),
    }
}

/// Runs one workload against `backend` on a fresh topic and returns its
/// result. The topic is deleted afterwards.
pub async fn run_workload<B: Backend>(
    backend: &Arc<B>,
    workload: Workload,
    settings: &Settings,
    ctx: &RunContext,
) -> anyhow::Result<RunResult> {
    let topic = format!("bench-{}-r{}", workload.name(), ctx.round);
    let placement = backend
        .prepare(&topic, settings.partitions.max(1))
        .await
        .with_context(|| format!("{}: setting up '{topic}'", backend.system()))?;
    let value = random_value(settings.size);
    let lane_specs = lanes(workload, settings);
    let per_partition = settings
        .consume_messages
        .div_ceil(u64::from(settings.partitions.max(1)))
        .max(1);
    if workload == Workload::Consume {
        fill(backend, &topic, &placement, settings, &value, per_partition)
            .await
            .with_context(|| format!("{}: filling '{topic}' for the consume workload", backend.system()))?;
    }

    let cpu = |pids: &[String]| pids.iter().filter_map(|p| process_cpu_secs(p)).sum::<f64>();
    let load_before = loadavg();
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let client_cpu_before = process_cpu_secs("self").unwrap_or(0.0);
    let server_cpu_before = cpu(&ctx.server_pids);
    let start = Instant::now();
    // Reading a fixed amount has no warm-up: it is measured from the start.
    let measure_from = if workload == Workload::Consume {
        start
    } else {
        start + settings.warmup
    };
    let deadline = measure_from + settings.duration;

    let mut tasks = Vec::with_capacity(lane_specs.len());
    for (partition, window, batch) in lane_specs.iter().copied() {
        let route = placement
            .routes
            .get(partition as usize)
            .cloned()
            .with_context(|| format!("no route for partition {partition}"))?;
        let backend = backend.clone();
        if workload == Workload::Consume {
            let plan = ConsumePlan {
                topic: topic.clone(),
                partition,
                route,
                count: per_partition,
                batch,
                window,
                measure_from: start,
            };
            tasks.push(tokio::spawn(async move { backend.consume_lane(plan).await }));
            continue;
        }
        let plan = LanePlan {
            topic: topic.clone(),
            partition,
            route,
            window,
            batch,
            value: value.clone(),
            deadline,
            measure_from,
            max_messages: None,
        };
        tasks.push(tokio::spawn(async move { backend.run_lane(plan).await }));
    }
    let mut total = Recorder::new(measure_from);
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(rec)) => total.merge(&rec),
            Ok(Err(err)) => failure = failure.or(Some(err)),
            Err(join) => failure = failure.or(Some(anyhow::anyhow!("lane task failed: {join}"))),
        }
    }
    let wall = start.elapsed();
    let client_cpu = process_cpu_secs("self").unwrap_or(0.0) - client_cpu_before;
    let server_cpu = cpu(&ctx.server_pids) - server_cpu_before;
    let load_after = loadavg();
    if let Err(err) = backend.cleanup(&topic, settings.partitions.max(1)).await {
        eprintln!("warning: {}: cleaning up '{topic}' failed: {err:#}", backend.system());
    }
    if let Some(err) = failure {
        return Err(err.context(format!("{} {} workload", backend.system(), workload.name())));
    }
    if total.messages == 0 {
        bail!(
            "{} {}: no message was acknowledged in the measured phase ({} errors, first: {})",
            backend.system(),
            workload.name(),
            total.errors,
            total.first_error.as_deref().unwrap_or("none")
        );
    }

    let secs = total.measured().as_secs_f64().max(1e-9);
    let (_, window, batch) = lane_specs[0];
    Ok(RunResult {
        label: ctx.label.clone(),
        describe: ctx.describe.clone(),
        system: backend.system().to_owned(),
        workload: workload.name().to_owned(),
        round: ctx.round,
        message_size: settings.size,
        connections: lane_specs.len(),
        window,
        batch,
        partitions: settings.partitions.max(1),
        messages: total.messages,
        elapsed_secs: secs,
        wall_secs: wall.as_secs_f64(),
        msgs_per_sec: total.messages as f64 / secs,
        mb_per_sec: (total.messages as f64 * settings.size as f64) / secs / 1e6,
        latency: total.latency(),
        errors: total.errors,
        first_error: total.first_error.clone(),
        client_cpu_secs: client_cpu,
        server_cpu_secs: server_cpu,
        leaders: placement.leaders,
        load_before,
        load_after,
        started_unix,
    })
}

/// Publishes `per_partition` messages to every partition with batch
/// lanes (not measured) and checks that all were acknowledged.
async fn fill<B: Backend>(
    backend: &Arc<B>,
    topic: &str,
    placement: &Placement,
    settings: &Settings,
    value: &Bytes,
    per_partition: u64,
) -> anyhow::Result<()> {
    let now = Instant::now();
    let mut tasks = Vec::new();
    for (p, route) in placement.routes.iter().enumerate() {
        let plan = LanePlan {
            topic: topic.to_owned(),
            partition: p as u32,
            route: route.clone(),
            window: settings.batch_in_flight.max(1),
            batch: settings.batch.max(1),
            value: value.clone(),
            deadline: now + Duration::from_secs(600),
            measure_from: now,
            max_messages: Some(per_partition),
        };
        let backend = backend.clone();
        tasks.push(tokio::spawn(async move { backend.run_lane(plan).await }));
    }
    for (p, task) in tasks.into_iter().enumerate() {
        let rec = task.await.map_err(|e| anyhow::anyhow!("fill task failed: {e}"))??;
        if rec.errors > 0 || rec.messages < per_partition {
            bail!(
                "partition {p}: {} of {per_partition} messages acknowledged, {} errors (first: {})",
                rec.messages,
                rec.errors,
                rec.first_error.as_deref().unwrap_or("none")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            size: 100,
            connections: 4,
            in_flight: 64,
            partitions: 3,
            batch: 1000,
            batch_in_flight: 4,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            consume_messages: 3000,
        }
    }

    #[test]
    fn workload_lists_parse() {
        assert_eq!(
            Workload::parse_list("pipelined, batch").expect("parses"),
            vec![Workload::Pipelined, Workload::Batch]
        );
        assert!(Workload::parse_list("pipelined,nope").is_err());
    }

    #[test]
    fn lanes_spread_over_partitions() {
        let s = settings();
        assert_eq!(
            lanes(Workload::Pipelined, &s),
            vec![(0, 64, 1), (1, 64, 1), (2, 64, 1), (0, 64, 1)]
        );
        assert_eq!(lanes(Workload::Latency, &s), vec![(0, 1, 1)]);
        assert_eq!(lanes(Workload::Batch, &s)[2], (2, 4, 1000));
    }

    /// A backend that acknowledges every message after a fixed delay.
    struct Fake;

    impl Backend for Fake {
        fn system(&self) -> &'static str {
            "fake"
        }
        async fn prepare(&self, _topic: &str, partitions: u32) -> anyhow::Result<Placement> {
            Ok(Placement {
                routes: (0..partitions).map(|p| format!("fake:{p}")).collect(),
                leaders: vec!["me".into(); partitions as usize],
            })
        }
        async fn run_lane(&self, plan: LanePlan) -> anyhow::Result<Recorder> {
            let mut rec = Recorder::new(plan.measure_from);
            let mut sent_messages = 0;
            while Instant::now() < plan.deadline && plan.max_messages.is_none_or(|max| sent_messages < max) {
                let sent = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                rec.ack(sent, Instant::now(), plan.batch as u64);
                sent_messages += plan.batch as u64;
            }
            Ok(rec)
        }
        async fn consume_lane(&self, plan: ConsumePlan) -> anyhow::Result<Recorder> {
            let mut rec = Recorder::new(plan.measure_from);
            let mut read = 0;
            while read < plan.count {
                let n = (plan.count - read).min(plan.batch as u64);
                rec.count(Instant::now(), n);
                read += n;
            }
            Ok(rec)
        }
        async fn cleanup(&self, _topic: &str, _partitions: u32) -> anyhow::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_run_reports_rates_and_latency() {
        let mut s = settings();
        s.duration = Duration::from_millis(200);
        s.warmup = Duration::from_millis(50);
        let ctx = RunContext {
            label: "fake-1".into(),
            describe: "a fake".into(),
            round: 2,
            server_pids: vec!["self".into()],
        };
        let r = run_workload(&Arc::new(Fake), Workload::Batch, &s, &ctx)
            .await
            .expect("runs");
        assert_eq!(
            (r.workload.as_str(), r.round, r.connections, r.batch),
            ("batch", 2, 4, 1000)
        );
        assert_eq!(r.messages % 1000, 0);
        assert!(r.messages >= 4 * 1000 * 20, "{r:?}");
        assert!(r.msgs_per_sec > 0.0);
        assert!(r.latency.p50_us >= 1000, "{:?}", r.latency);
        assert!((0.15..0.5).contains(&r.elapsed_secs), "{}", r.elapsed_secs);
        assert_eq!(r.leaders.len(), 3);
    }

    #[tokio::test]
    async fn consume_fills_then_reads_every_partition() {
        let ctx = RunContext {
            label: "fake-1".into(),
            describe: "a fake".into(),
            round: 1,
            server_pids: vec![],
        };
        let r = run_workload(&Arc::new(Fake), Workload::Consume, &settings(), &ctx)
            .await
            .expect("runs");
        assert_eq!((r.workload.as_str(), r.connections), ("consume", 3));
        // 3000 messages over 3 partitions, read back in full.
        assert_eq!(r.messages, 3000);
    }
}
