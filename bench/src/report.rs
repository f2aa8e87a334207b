//! Turns the results file (one JSON [`RunResult`] per line) into markdown:
//! medians over rounds per setup, ratios FlyMQ/NATS and cluster/standalone,
//! the targets with met / not met, and every single run.

use std::collections::BTreeMap;

use crate::stats::RunResult;

/// Setup labels the script uses; ratios and targets refer to them.
pub mod label {
    /// FlyMQ, one broker, acks=all (fsync before ack).
    pub const FLYMQ_1: &str = "flymq-all";
    /// FlyMQ, one broker, acks=leader.
    pub const FLYMQ_1_LEADER: &str = "flymq-leader";
    /// NATS, one server, R1 streams.
    pub const NATS_1: &str = "nats-r1";
    /// FlyMQ, three brokers, replication factor 3.
    pub const FLYMQ_3: &str = "flymq-3";
    /// NATS, three servers, R3 streams.
    pub const NATS_3: &str = "nats-r3";
}

/// A value of one metric, read from a run.
type Metric = fn(&RunResult) -> f64;

/// Median of the values (mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// Runs grouped by (label, workload).
pub struct Results {
    runs: Vec<RunResult>,
    /// Labels in the order they first appear.
    labels: Vec<String>,
}

impl Results {
    /// Parses the results file: one JSON object per non-empty line.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut runs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let run: RunResult =
                serde_json::from_str(line).map_err(|e| anyhow::anyhow!("results line {}: {e}", i + 1))?;
            runs.push(run);
        }
        let mut labels: Vec<String> = Vec::new();
        for r in &runs {
            if !labels.contains(&r.label) {
                labels.push(r.label.clone());
            }
        }
        Ok(Self { runs, labels })
    }

    fn of<'a>(&'a self, label: &'a str, workload: &'a str) -> impl Iterator<Item = &'a RunResult> + 'a {
        self.runs
            .iter()
            .filter(move |r| r.label == label && r.workload == workload)
    }

    /// Median of `metric` over the rounds of (label, workload).
    pub fn median(&self, label: &str, workload: &str, metric: Metric) -> Option<f64> {
        let mut values: Vec<f64> = self.of(label, workload).map(metric).collect();
        median(&mut values)
    }

    fn describe(&self, label: &str) -> String {
        self.runs
            .iter()
            .find(|r| r.label == label)
            .map_or_else(|| label.to_owned(), |r| r.describe.clone())
    }

    fn rounds(&self, label: &str, workload: &str) -> usize {
        self.of(label, workload).count()
    }
}

/// Rows of the main table: (workload, row title, metric, is a latency).
fn rows() -> Vec<(&'static str, &'static str, Metric, bool)> {
    vec![
        ("pipelined", "pipelined publish: msgs/s", |r| r.msgs_per_sec, false),
        (
            "pipelined",
            "pipelined publish: ack p50",
            |r| r.latency.p50_us as f64,
            true,
        ),
        (
            "pipelined",
            "pipelined publish: ack p99",
            |r| r.latency.p99_us as f64,
            true,
        ),
        ("latency", "one at a time: p50", |r| r.latency.p50_us as f64, true),
        ("latency", "one at a time: p99", |r| r.latency.p99_us as f64, true),
        ("latency", "one at a time: p99.9", |r| r.latency.p999_us as f64, true),
        ("batch", "batch publish: msgs/s", |r| r.msgs_per_sec, false),
        (
            "batch",
            "batch publish: ack p50 (see note)",
            |r| r.latency.p50_us as f64,
            true,
        ),
        ("consume", "consume (1000/fetch): msgs/s", |r| r.msgs_per_sec, false),
        ("pipelined", "pipelined: server CPU cores busy", server_cores, false),
        ("batch", "batch: server CPU cores busy", server_cores, false),
    ]
}

fn server_cores(r: &RunResult) -> f64 {
    r.server_cpu_secs / r.wall_secs.max(1e-9)
}

fn client_cores(r: &RunResult) -> f64 {
    r.client_cpu_secs / r.wall_secs.max(1e-9)
}

/// Ratio columns: (title, numerator label, denominator label).
const RATIOS: [(&str, &str, &str); 4] = [
    ("FlyMQ ÷ NATS, 1 node", label::FLYMQ_1, label::NATS_1),
    ("FlyMQ ÷ NATS, 3 nodes", label::FLYMQ_3, label::NATS_3),
    ("FlyMQ 3 ÷ 1", label::FLYMQ_3, label::FLYMQ_1),
    ("NATS 3 ÷ 1", label::NATS_3, label::NATS_1),
];

/// Formats a number of messages per second with thousands separators.
pub fn format_rate(v: f64) -> String {
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Formats microseconds as µs or ms.
pub fn format_micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

fn format_value(v: f64, latency: bool, title: &str) -> String {
    if latency {
        format_micros(v)
    } else if title.contains("cores") {
        format!("{v:.2}")
    } else {
        format_rate(v)
    }
}

/// One target of the issue, checked against the medians.
struct Target {
    what: &'static str,
    goal: &'static str,
    /// Measured value (ratio or rate) and its text.
    measured: Option<(f64, String)>,
    /// True when met.
    met: Option<bool>,
}

fn ratio(results: &Results, a: (&str, &str), b: (&str, &str), metric: Metric) -> Option<(f64, f64, f64)> {
    let x = results.median(a.0, a.1, metric)?;
    let y = results.median(b.0, b.1, metric)?;
    (y > 0.0).then_some((x / y, x, y))
}

fn targets(results: &Results) -> Vec<Target> {
    use label::*;
    let rate: Metric = |r| r.msgs_per_sec;
    let p50: Metric = |r| r.latency.p50_us as f64;
    // `at_least`: throughput targets (a floor); else latency targets (a ceiling).
    let check_ratio = |what, goal, a, b, at_least: bool, bound: f64| {
        let metric = if at_least { rate } else { p50 };
        let measured = ratio(results, a, b, metric);
        Target {
            what,
            goal,
            met: measured.map(|(r, _, _)| if at_least { r >= bound } else { r <= bound }),
            measured: measured.map(|(r, x, y)| {
                let (fx, fy) = if at_least {
                    (format_rate(x), format_rate(y))
                } else {
                    (format_micros(x), format_micros(y))
                };
                (r, format!("**{r:.2}x** ({fx} vs {fy})"))
            }),
        }
    };
    let batch = results.median(FLYMQ_3, "batch", rate);
    vec![
        check_ratio(
            "3 brokers RF 3, pipelined publish vs NATS R3",
            "≥ 2x",
            (FLYMQ_3, "pipelined"),
            (NATS_3, "pipelined"),
            true,
            2.0,
        ),
        check_ratio(
            "3 brokers RF 3, pipelined publish vs our standalone (acks=all)",
            "≥ 0.5x",
            (FLYMQ_3, "pipelined"),
            (FLYMQ_1, "pipelined"),
            true,
            0.5,
        ),
        Target {
            what: "3 brokers RF 3, PRODUCE_BATCH (1000 records/request)",
            goal: "≥ 1,000,000 msgs/s",
            measured: batch.map(|b| (b, format!("**{}** msgs/s", format_rate(b)))),
            met: batch.map(|b| b >= 1_000_000.0),
        },
        check_ratio(
            "3 brokers RF 3, one-at-a-time p50 vs NATS R3",
            "≤ 1.2x",
            (FLYMQ_3, "latency"),
            (NATS_3, "latency"),
            false,
            1.2,
        ),
        check_ratio(
            "standalone acks=all, one-at-a-time p50 vs NATS R1",
            "≤ 2x",
            (FLYMQ_1, "latency"),
            (NATS_1, "latency"),
            false,
            2.0,
        ),
        check_ratio(
            "standalone acks=leader, one-at-a-time p50 vs NATS R1",
            "≤ 0.8x",
            (FLYMQ_1_LEADER, "latency"),
            (NATS_1, "latency"),
            false,
            0.8,
        ),
    ]
}

/// The markdown tables.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    let labels = &results.labels;
    let ratio_cols: Vec<_> = RATIOS
        .iter()
        .filter(|(_, a, b)| labels.iter().any(|l| l == a) && labels.iter().any(|l| l == b))
        .collect();

    out.push_str("Setups:\n\n");
    for l in labels {
        out.push_str(&format!("- `{l}`: {}\n", results.describe(l)));
    }
    let rounds: BTreeMap<String, usize> = labels
        .iter()
        .map(|l| {
            (
                l.clone(),
                results.rounds(l, "pipelined").max(results.rounds(l, "latency")),
            )
        })
        .collect();
    out.push_str(&format!(
        "\nMedian over rounds ({}). Ratios divide the medians: above 1 means more throughput, or more latency, \
         for the first named.\n\n",
        rounds
            .iter()
            .map(|(l, n)| format!("{l}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // Main table.
    out.push_str("| workload |");
    for l in labels {
        out.push_str(&format!(" `{l}` |"));
    }
    for (title, _, _) in &ratio_cols {
        out.push_str(&format!(" {title} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(labels.len() + ratio_cols.len()));
    out.push('\n');
    for (workload, title, metric, latency) in rows() {
        if labels.iter().all(|l| results.median(l, workload, metric).is_none()) {
            continue;
        }
        out.push_str(&format!("| {title} |"));
        for l in labels {
            let cell = results
                .median(l, workload, metric)
                .map_or_else(|| "–".to_owned(), |v| format_value(v, latency, title));
            out.push_str(&format!(" {cell} |"));
        }
        for (_, a, b) in &ratio_cols {
            let cell = match (results.median(a, workload, metric), results.median(b, workload, metric)) {
                (Some(x), Some(y)) if y > 0.0 => format!("{:.2}x", x / y),
                _ => "–".to_owned(),
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }

    // Targets.
    out.push_str("\nTargets of issue 8, item 8 (judged on the medians above):\n\n");
    out.push_str("| target | goal | measured | met? |\n|---|---|---|---|\n");
    for t in targets(results) {
        let measured = t.measured.map_or_else(|| "not measured".to_owned(), |(_, s)| s);
        let met = match t.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "–",
        };
        out.push_str(&format!("| {} | {} | {} | {} |\n", t.what, t.goal, measured, met));
    }

    // Every run.
    out.push_str(
        "\nEvery run (server/client cores = CPU seconds used ÷ wall seconds of the run, warm-up included; \
         load = /proc/loadavg before → after):\n\n",
    );
    out.push_str(
        "| setup | workload | round | msgs/s | p50 | p99 | p99.9 | samples | errors | server cores | client cores | load | leaders |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    for r in &results.runs {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {} → {} | {} |\n",
            r.label,
            r.workload,
            r.round,
            format_rate(r.msgs_per_sec),
            format_micros(r.latency.p50_us as f64),
            format_micros(r.latency.p99_us as f64),
            format_micros(r.latency.p999_us as f64),
            r.latency.count,
            r.errors,
            server_cores(r),
            client_cores(r),
            r.load_before,
            r.load_after,
            r.leaders.join(", "),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LatencySummary;

    fn run(label: &str, workload: &str, round: u32, rate: f64, p50: u64) -> RunResult {
        RunResult {
            label: label.into(),
            describe: format!("{label} setup"),
            system: if label.starts_with("nats") { "nats" } else { "flymq" }.into(),
            workload: workload.into(),
            round,
            message_size: 100,
            connections: 3,
            window: 256,
            batch: 1,
            partitions: 3,
            messages: 1000,
            elapsed_secs: 1.0,
            wall_secs: 2.0,
            msgs_per_sec: rate,
            mb_per_sec: rate / 10_000.0,
            latency: LatencySummary {
                count: 10,
                p50_us: p50,
                p99_us: p50 * 3,
                p999_us: p50 * 5,
                ..Default::default()
            },
            errors: 0,
            first_error: None,
            client_cpu_secs: 1.0,
            server_cpu_secs: 3.0,
            leaders: vec!["node 0".into()],
            load_before: "1.00 1.00 1.00".into(),
            load_after: "1.10 1.00 1.00".into(),
            started_unix: 0,
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0]), Some(2.5));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_rate(1_234_567.4), "1,234,567");
        assert_eq!(format_rate(999.0), "999");
        assert_eq!(format_micros(291.0), "291 µs");
        assert_eq!(format_micros(4400.0), "4.40 ms");
    }

    #[test]
    fn table_has_medians_ratios_and_targets() {
        let mut lines = Vec::new();
        for (round, rate) in [(1, 100_000.0), (2, 300_000.0), (3, 200_000.0)] {
            lines.push(run(label::FLYMQ_3, "pipelined", round, rate, 1000));
            lines.push(run(label::NATS_3, "pipelined", round, 50_000.0, 500));
            lines.push(run(label::FLYMQ_1, "pipelined", round, 500_000.0, 100));
            lines.push(run(label::FLYMQ_3, "latency", round, 1000.0, 1300));
            lines.push(run(label::NATS_3, "latency", round, 1000.0, 1000));
        }
        let text: String = lines
            .iter()
            .map(|r| serde_json::to_string(r).expect("json") + "\n")
            .collect();
        let results = Results::parse(&text).expect("parses");
        assert_eq!(
            results.median(label::FLYMQ_3, "pipelined", |r| r.msgs_per_sec),
            Some(200_000.0)
        );
        let md = render(&results);
        // Medians and the ratio columns.
        assert!(
            md.contains("| pipelined publish: msgs/s | 200,000 | 50,000 | 500,000 | 4.00x | 0.40x |"),
            "{md}"
        );
        // 200k vs 50k = 4x >= 2x; vs standalone 0.4x < 0.5x; latency 1.3x > 1.2x.
        assert!(
            md.contains(
                "| 3 brokers RF 3, pipelined publish vs NATS R3 | ≥ 2x | **4.00x** (200,000 vs 50,000) | met |"
            ),
            "{md}"
        );
        assert!(
            md.contains("vs our standalone (acks=all) | ≥ 0.5x | **0.40x** (200,000 vs 500,000) | **not met** |"),
            "{md}"
        );
        assert!(
            md.contains("one-at-a-time p50 vs NATS R3 | ≤ 1.2x | **1.30x** (1.30 ms vs 1.00 ms) | **not met** |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| 3 brokers RF 3, PRODUCE_BATCH (1000 records/request) | ≥ 1,000,000 msgs/s | not measured | – |"
            ),
            "{md}"
        );
        // Every run listed, with CPU shares.
        assert_eq!(md.matches("| `flymq-3` | pipelined |").count(), 3);
        assert!(md.contains("| 1.50 | 0.50 |"), "{md}");
    }
}
