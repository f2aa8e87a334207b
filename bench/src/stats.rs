//! What one lane measured: acknowledged messages, errors and the ack
//! latency of every request sent after the warm-up, merged across lanes
//! into one [`RunResult`] per workload run.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histogram tracks (larger values are clamped).
const MAX_TRACKED_MICROS: u64 = 60_000_000;

/// Counters and latency histogram of one lane (one connection).
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Acks arriving before this instant are warm-up and not counted.
    measure_from: Instant,
    /// Ack latency in microseconds of requests sent after `measure_from`.
    latency: Histogram<u64>,
    /// Messages acknowledged after `measure_from`.
    pub messages: u64,
    /// Requests answered with an error (whole run, warm-up included).
    pub errors: u64,
    /// The first error message seen.
    pub first_error: Option<String>,
    /// When the last counted ack arrived.
    pub last_ack: Option<Instant>,
}

impl Recorder {
    /// An empty recorder that counts from `measure_from` on.
    pub fn new(measure_from: Instant) -> Self {
        // 3 significant figures over 1 µs .. 60 s; constant bounds that
        // hdrhistogram accepts, so this cannot fail.
        let latency =
            Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3).expect("constant histogram bounds are valid");
        Self {
            measure_from,
            latency,
            messages: 0,
            errors: 0,
            first_error: None,
            last_ack: None,
        }
    }

    /// One request sent at `sent` was acknowledged at `now`, carrying
    /// `messages` messages.
    pub fn ack(&mut self, sent: Instant, now: Instant, messages: u64) {
        if now < self.measure_from {
            return;
        }
        self.messages += messages;
        self.last_ack = Some(self.last_ack.map_or(now, |last| last.max(now)));
        if sent >= self.measure_from {
            let micros = (now.saturating_duration_since(sent).as_micros() as u64).clamp(1, MAX_TRACKED_MICROS);
            self.latency.saturating_record(micros);
        }
    }

    /// `messages` arrived at `now` (reads: counted, no latency).
    pub fn count(&mut self, now: Instant, messages: u64) {
        if now < self.measure_from {
            return;
        }
        self.messages += messages;
        self.last_ack = Some(self.last_ack.map_or(now, |last| last.max(now)));
    }

    /// One request failed.
    pub fn error(&mut self, message: impl Into<String>) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message.into());
        }
    }

    /// Adds another lane's numbers to these.
    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.messages += other.messages;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.last_ack = match (self.last_ack, other.last_ack) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// The measured phase: from `measure_from` to the last counted ack.
    pub fn measured(&self) -> Duration {
        self.last_ack
            .map_or(Duration::ZERO, |last| last.saturating_duration_since(self.measure_from))
    }

    /// Latency percentiles.
    pub fn latency(&self) -> LatencySummary {
        LatencySummary::from_histogram(&self.latency)
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    /// Requests measured.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl LatencySummary {
    /// Summarises a histogram (all zero when it is empty).
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// One workload run against one setup: a line of the results file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    /// Setup label, e.g. `flymq-3` or `nats-r3`.
    pub label: String,
    /// What the setup is, in words.
    pub describe: String,
    /// `flymq` or `nats`.
    pub system: String,
    /// `pipelined`, `latency` or `batch`.
    pub workload: String,
    /// Round of the suite (1-based).
    pub round: u32,
    /// Value size in bytes.
    pub message_size: usize,
    /// Connections (lanes).
    pub connections: usize,
    /// Requests in flight per connection (FlyMQ) / unacknowledged publishes
    /// per connection (NATS).
    pub window: usize,
    /// Messages per request (1 = single-message requests).
    pub batch: usize,
    /// Partitions (FlyMQ) / streams (NATS).
    pub partitions: u32,
    /// Messages acknowledged in the measured phase.
    pub messages: u64,
    /// Length of the measured phase in seconds.
    pub elapsed_secs: f64,
    /// Wall-clock seconds of the whole run (warm-up, measured phase, drain).
    pub wall_secs: f64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Value megabytes (10^6) per second.
    pub mb_per_sec: f64,
    /// Ack latency per request (FlyMQ) or per publish (NATS).
    pub latency: LatencySummary,
    /// Failed requests.
    pub errors: u64,
    /// First failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// CPU seconds (user + system) the benchmark client used during the run.
    pub client_cpu_secs: f64,
    /// CPU seconds the server processes (`--server-pid`) used during the run.
    pub server_cpu_secs: f64,
    /// Leader of each partition / stream, as the server names it.
    pub leaders: Vec<String>,
    /// `/proc/loadavg` (1, 5, 15 min) when the run started and ended.
    pub load_before: String,
    /// See `load_before`.
    pub load_after: String,
    /// Unix time (s) the run started.
    pub started_unix: u64,
}

/// CPU seconds (user + system) used so far by process `pid` (all threads),
/// `None` when it cannot be read (gone, not Linux).
pub fn process_cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_secs(&stat)
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds (USER_HZ = 100,
/// the value on every Linux architecture this runs on).
fn parse_cpu_secs(stat: &str) -> Option<f64> {
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The three load averages of `/proc/loadavg`, or `?`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_acks_are_not_counted() {
        let start = Instant::now();
        let from = start + Duration::from_millis(100);
        let mut r = Recorder::new(from);
        // Sent and acknowledged during warm-up: ignored.
        r.ack(start, start + Duration::from_millis(50), 1);
        // Sent during warm-up, acknowledged after: counted, latency not recorded.
        r.ack(start + Duration::from_millis(90), from + Duration::from_millis(10), 5);
        // Wholly measured.
        r.ack(from + Duration::from_millis(20), from + Duration::from_millis(21), 1);
        assert_eq!(r.messages, 6);
        let l = r.latency();
        assert_eq!(l.count, 1);
        assert!((999..=1001).contains(&l.p50_us), "{l:?}");
        assert_eq!(r.measured(), Duration::from_millis(21));
    }

    #[test]
    fn merge_adds_counts_and_keeps_latest_ack() {
        let t0 = Instant::now();
        let mut a = Recorder::new(t0);
        a.ack(t0, t0 + Duration::from_millis(3), 10);
        let mut b = Recorder::new(t0);
        b.ack(t0, t0 + Duration::from_millis(7), 5);
        b.error("nope");
        a.merge(&b);
        assert_eq!((a.messages, a.errors), (15, 1));
        assert_eq!(a.first_error.as_deref(), Some("nope"));
        assert_eq!(a.measured(), Duration::from_millis(7));
        assert_eq!(a.latency().count, 2);
    }

    #[test]
    fn percentiles_of_known_distribution() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        for us in 1..=1000u64 {
            r.ack(t0, t0 + Duration::from_micros(us), 1);
        }
        let l = r.latency();
        assert_eq!(l.count, 1000);
        assert!((499..=501).contains(&l.p50_us), "{l:?}");
        assert!((989..=991).contains(&l.p99_us), "{l:?}");
        assert!((998..=1000).contains(&l.p999_us), "{l:?}");
    }

    #[test]
    fn proc_stat_cpu_fields() {
        // pid (comm with ') ' inside) state ppid ... utime=250 stime=50
        let line = "42 (we ird) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 1000 10";
        assert_eq!(parse_cpu_secs(line), Some(3.0));
        assert_eq!(parse_cpu_secs("garbage"), None);
        assert!(process_cpu_secs("self").is_some_and(|s| s >= 0.0));
    }
}
