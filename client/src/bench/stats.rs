//! Benchmark measurements: an HdrHistogram of request round-trips plus
//! message and byte counters, the once-a-second progress line and the final
//! summary (text or JSON).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histogram tracks (values above are clamped).
const MAX_TRACKED_MICROS: u64 = 60_000_000;

/// Counters and latency histogram of one worker (merged at the end).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Round-trip latency in microseconds.
    pub latency: Histogram<u64>,
    /// Messages acknowledged (produce) or received (consume).
    pub messages: u64,
    /// Payload bytes of those messages (values only).
    pub bytes: u64,
    /// Requests answered with an error frame.
    pub errors: u64,
    /// First error message seen, for the report.
    pub first_error: Option<String>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        // 3 significant figures over 1 µs .. 60 s: a few tens of KiB. The
        // bounds are constants that hdrhistogram accepts, so this cannot fail.
        let latency =
            Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3).expect("constant histogram bounds are valid");
        Self {
            latency,
            messages: 0,
            bytes: 0,
            errors: 0,
            first_error: None,
        }
    }

    /// Records one request round-trip.
    pub fn record_latency(&mut self, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).clamp(1, MAX_TRACKED_MICROS);
        self.latency.saturating_record(micros);
    }

    /// Records an error response.
    pub fn record_error(&mut self, message: &str) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message.to_owned());
        }
    }

    /// Adds another worker's numbers to these.
    pub fn merge(&mut self, other: &Stats) {
        // Both histograms have the same bounds, so adding cannot fail; if it
        // ever did, the summary would only miss that worker's latencies.
        let _ = self.latency.add(&other.latency);
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
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
    /// Summarises a histogram.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            mean_us: if h.is_empty() { 0.0 } else { h.mean() },
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// The final result of a benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `produce`, `consume` or `latency`.
    pub mode: String,
    /// Topic used.
    pub topic: String,
    /// Message value size in bytes.
    pub message_size: usize,
    /// Messages acknowledged / received.
    pub messages: u64,
    /// Value bytes moved.
    pub bytes: u64,
    /// Wall-clock duration of the measured phase in seconds.
    pub elapsed_secs: f64,
    /// Throughput in messages per second.
    pub msgs_per_sec: f64,
    /// Throughput in MB/s (10^6 bytes of values per second).
    pub mb_per_sec: f64,
    /// Error responses.
    pub errors: u64,
    /// First error message, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Request round-trip latency.
    pub latency: LatencySummary,
    /// Connections used.
    pub connections: usize,
    /// Requests in flight per connection.
    pub in_flight: usize,
    /// Messages per request.
    pub batch: usize,
}

impl Report {
    /// Builds the report from merged statistics.
    pub fn new(mode: &str, topic: &str, message_size: usize, stats: &Stats, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Self {
            mode: mode.to_owned(),
            topic: topic.to_owned(),
            message_size,
            messages: stats.messages,
            bytes: stats.bytes,
            elapsed_secs: elapsed.as_secs_f64(),
            msgs_per_sec: stats.messages as f64 / secs,
            mb_per_sec: stats.bytes as f64 / secs / 1e6,
            errors: stats.errors,
            first_error: stats.first_error.clone(),
            latency: LatencySummary::from_histogram(&stats.latency),
            connections: 1,
            in_flight: 1,
            batch: 1,
        }
    }

    /// Human-readable multi-line summary.
    pub fn to_text(&self) -> String {
        let l = &self.latency;
        let mut out = format!(
            "{mode} {topic}: {messages} msgs of {size} B in {secs:.2} s\n\
             throughput: {rate:.0} msgs/s, {mb:.2} MB/s ({conns} connection(s), {in_flight} in flight each, {batch} msg(s)/request)\n\
             latency (request round-trip, {count} requests): p50 {p50} p99 {p99} p99.9 {p999} max {max} mean {mean}",
            mode = self.mode,
            topic = self.topic,
            messages = self.messages,
            size = self.message_size,
            secs = self.elapsed_secs,
            rate = self.msgs_per_sec,
            mb = self.mb_per_sec,
            conns = self.connections,
            in_flight = self.in_flight,
            batch = self.batch,
            count = l.count,
            p50 = format_micros(l.p50_us as f64),
            p99 = format_micros(l.p99_us as f64),
            p999 = format_micros(l.p999_us as f64),
            max = format_micros(l.max_us as f64),
            mean = format_micros(l.mean_us),
        );
        if self.errors > 0 {
            out.push_str(&format!(
                "\nerrors: {} (first: {})",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        out
    }
}

/// One progress line: totals so far and the rate over the last interval.
pub fn progress_line(
    elapsed: Duration,
    total_messages: u64,
    interval_messages: u64,
    interval: Duration,
    errors: u64,
) -> String {
    let rate = interval_messages as f64 / interval.as_secs_f64().max(1e-9);
    let mut line = format!(
        "[{:>5.1}s] {:>10} msgs total, {:>10.0} msgs/s",
        elapsed.as_secs_f64(),
        total_messages,
        rate
    );
    if errors > 0 {
        line.push_str(&format!(", {errors} errors"));
    }
    line
}

/// Formats microseconds with a readable unit (µs, ms or s).
pub fn format_micros(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0}µs")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1_000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_distribution() {
        let mut s = Stats::new();
        for us in 1..=1000u64 {
            s.record_latency(Duration::from_micros(us));
        }
        let l = LatencySummary::from_histogram(&s.latency);
        assert_eq!(l.count, 1000);
        // 3 significant figures: within 0.1 %.
        assert!((499..=501).contains(&l.p50_us), "{l:?}");
        assert!((989..=991).contains(&l.p99_us), "{l:?}");
        assert!((998..=1000).contains(&l.p999_us), "{l:?}");
        assert!((999..=1001).contains(&l.max_us), "{l:?}");
    }

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = Stats::new();
        a.messages = 10;
        a.bytes = 1000;
        a.record_latency(Duration::from_millis(1));
        let mut b = Stats::new();
        b.messages = 5;
        b.bytes = 500;
        b.record_latency(Duration::from_millis(3));
        b.record_error("boom");
        a.merge(&b);
        assert_eq!((a.messages, a.bytes, a.errors), (15, 1500, 1));
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.first_error.as_deref(), Some("boom"));
    }

    #[test]
    fn report_rates_and_json() {
        let mut s = Stats::new();
        s.messages = 2000;
        s.bytes = 2_000_000;
        s.record_latency(Duration::from_micros(250));
        let r = Report::new("produce", "bench", 1000, &s, Duration::from_secs(2));
        assert_eq!(r.msgs_per_sec, 1000.0);
        assert_eq!(r.mb_per_sec, 1.0);
        let json = serde_json::to_value(&r).expect("serializable");
        assert_eq!(json["mode"], "produce");
        assert_eq!(json["messages"], 2000);
        assert_eq!(json["latency"]["count"], 1);
        assert!(json.get("first_error").is_none());
        let text = r.to_text();
        assert!(text.contains("1000 msgs/s"), "{text}");
        assert!(text.contains("1.00 MB/s"), "{text}");
    }

    #[test]
    fn micros_formatting() {
        assert_eq!(format_micros(250.0), "250µs");
        assert_eq!(format_micros(1_500.0), "1.50ms");
        assert_eq!(format_micros(2_500_000.0), "2.50s");
    }

    #[test]
    fn progress_line_shows_interval_rate() {
        let line = progress_line(Duration::from_secs(3), 3000, 500, Duration::from_millis(500), 0);
        assert!(line.contains("3000 msgs total"), "{line}");
        assert!(line.contains("1000 msgs/s"), "{line}");
        assert!(!line.contains("errors"));
    }
}
