//! Arguments of `flymq-cli bench`.

use std::time::Duration;

use clap::{Args, Subcommand};

/// `bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Produce messages as fast as the broker acknowledges them.
    Produce(ProduceBenchArgs),
    /// Read the messages stored in a topic as fast as possible (FETCH).
    Consume(ConsumeBenchArgs),
    /// One PRODUCE at a time on one connection: the latency distribution.
    Latency(LatencyBenchArgs),
    /// Transactions back to back (BEGIN_TX, PRODUCE_TX x --records,
    /// COMMIT_TX) on each connection; latency is per transaction.
    Txn(TxnBenchArgs),
    /// PRODUCE_WITH_SCHEMA of a small JSON record against a registered JSON
    /// schema, compared in the same run with plain PRODUCE of the same bytes.
    Schema(SchemaBenchArgs),
    /// Delayed delivery under load: produce --pending PRODUCE_DELAYED records
    /// that stay pending, then measure plain produce and fetch next to them
    /// and how late a batch of short-delay records is delivered.
    Delayed(DelayedBenchArgs),
}

/// Options shared by every bench mode.
#[derive(Debug, Clone, Args)]
pub struct CommonBenchArgs {
    /// Topic to use (created with --partitions if it does not exist).
    #[arg(long, short = 't', default_value = "bench")]
    pub topic: String,
    /// Message value size in bytes.
    #[arg(long, short = 's', default_value_t = 100)]
    pub size: usize,
    /// Number of messages (default 100000 for produce/consume, 10000 for
    /// latency; ignored when --duration is given).
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Run for this long instead of a message count, e.g. 30s (produce and
    /// latency; consume reads what the topic holds).
    #[arg(long, short = 'd', value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Partitions of the topic when the bench creates it.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Do not print progress lines to stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// `bench produce`
#[derive(Debug, Clone, Args)]
pub struct ProduceBenchArgs {
    #[command(flatten)]
    pub common: CommonBenchArgs,
    /// TCP connections to open.
    #[arg(long, short = 'c', default_value_t = 1)]
    pub connections: usize,
    /// Requests in flight per connection (pipelining depth).
    #[arg(long, short = 'i', default_value_t = 32)]
    pub in_flight: usize,
    /// Messages per request: 0 or 1 = one PRODUCE per message, N > 1 =
    /// PRODUCE_BATCH of N messages.
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
    /// Give every message a distinct key (partition = FNV-1a(key) mod partitions).
    #[arg(long)]
    pub keyed: bool,
}

/// `bench consume`
#[derive(Debug, Clone, Args)]
pub struct ConsumeBenchArgs {
    #[command(flatten)]
    pub common: CommonBenchArgs,
    /// TCP connections to open (partitions are spread over them).
    #[arg(long, short = 'c', default_value_t = 1)]
    pub connections: usize,
    /// FETCH requests in flight per connection.
    #[arg(long, short = 'i', default_value_t = 4)]
    pub in_flight: usize,
    /// Most records per FETCH.
    #[arg(long, default_value_t = 1000)]
    pub max_records: u32,
    /// If the topic is empty, produce --count messages into it first.
    #[arg(long)]
    pub produce_first: bool,
}

/// `bench latency`
#[derive(Debug, Clone, Args)]
pub struct LatencyBenchArgs {
    #[command(flatten)]
    pub common: CommonBenchArgs,
    /// Give every message a distinct key.
    #[arg(long)]
    pub keyed: bool,
}

/// `bench txn`
#[derive(Debug, Clone, Args)]
pub struct TxnBenchArgs {
    #[command(flatten)]
    pub common: CommonBenchArgs,
    /// TCP connections, each running transactions one after another.
    #[arg(long, short = 'c', default_value_t = 1)]
    pub connections: usize,
    /// Records per transaction (spread over the partitions, round robin).
    #[arg(long, short = 'r', default_value_t = 100)]
    pub records: usize,
}

/// `bench schema`
#[derive(Debug, Clone, Args)]
pub struct SchemaBenchArgs {
    #[command(flatten)]
    pub common: CommonBenchArgs,
    /// TCP connections to open.
    #[arg(long, short = 'c', default_value_t = 1)]
    pub connections: usize,
    /// Requests in flight per connection (pipelining depth).
    #[arg(long, short = 'i', default_value_t = 32)]
    pub in_flight: usize,
    /// Name the bench registers its JSON schema under.
    #[arg(long, default_value = "bench-record")]
    pub schema: String,
    /// Runs of each kind, alternating which goes first; the summary gives
    /// the medians.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
}

/// `bench delayed`
#[derive(Debug, Clone, Args)]
pub struct DelayedBenchArgs {
    /// Topic of the delayed records (plain-produce topics get suffixes).
    #[arg(long, short = 't', default_value = "bench-delayed")]
    pub topic: String,
    /// Message value size in bytes.
    #[arg(long, short = 's', default_value_t = 100)]
    pub size: usize,
    /// PRODUCE_DELAYED records produced with --pending-delay, left pending.
    #[arg(long, default_value_t = 1_000_000)]
    pub pending: u64,
    /// Delay of the pending records (long enough to stay pending for the run).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub pending_delay: Duration,
    /// Control run: send the --pending records as plain PRODUCE (nothing
    /// pending), so that a second run tells the pending set's effect apart
    /// from that of the data volume.
    #[arg(long)]
    pub pending_as_plain: bool,
    /// Plain PRODUCE records per throughput phase (then read back with FETCH).
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    pub count: u64,
    /// Plain PRODUCE records sent first to a topic of their own and not
    /// reported, so the baseline does not pay for a cold start.
    #[arg(long, default_value_t = 100_000)]
    pub warmup: u64,
    /// Short-delay records whose delivery lateness is measured.
    #[arg(long, default_value_t = 10_000)]
    pub due: u64,
    /// Delay of those records.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub due_delay: Duration,
    /// Partitions of each topic the bench creates.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// TCP connections of the produce phases.
    #[arg(long, short = 'c', default_value_t = 1)]
    pub connections: usize,
    /// Requests in flight per connection in the produce phases.
    #[arg(long, short = 'i', default_value_t = 32)]
    pub in_flight: usize,
    /// Process id of the broker, to report its resident memory (Linux
    /// /proc/PID/status) before and after the pending records.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Do not print progress lines to stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl CommonBenchArgs {
    /// The message count to aim for when no --duration is given.
    pub fn count_or(&self, default: u64) -> u64 {
        self.count.unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::args::{Cli, Command};
    use clap::Parser;

    use super::*;

    #[test]
    fn produce_bench_defaults_and_options() {
        let cli = Cli::try_parse_from(["flymq-cli", "bench", "produce"]).expect("parses");
        let Command::Bench(BenchCommand::Produce(p)) = cli.command else {
            panic!("expected bench produce");
        };
        assert_eq!(p.common.size, 100);
        assert_eq!(p.common.topic, "bench");
        assert_eq!((p.connections, p.in_flight, p.batch), (1, 32, 0));
        assert_eq!(p.common.count_or(100_000), 100_000);

        let cli = Cli::try_parse_from([
            "flymq-cli",
            "bench",
            "produce",
            "--size",
            "512",
            "--duration",
            "5s",
            "-c",
            "4",
            "-i",
            "8",
            "--batch",
            "100",
            "--keyed",
            "--partitions",
            "6",
            "--topic",
            "x",
        ])
        .expect("parses");
        let Command::Bench(BenchCommand::Produce(p)) = cli.command else {
            panic!("expected bench produce");
        };
        assert_eq!(p.common.duration, Some(Duration::from_secs(5)));
        assert_eq!((p.connections, p.in_flight, p.batch, p.keyed), (4, 8, 100, true));
        assert_eq!((p.common.partitions, p.common.topic.as_str()), (6, "x"));
    }

    #[test]
    fn consume_and_latency_bench_parse() {
        let cli = Cli::try_parse_from([
            "flymq-cli",
            "bench",
            "consume",
            "--max-records",
            "500",
            "--produce-first",
        ])
        .expect("parses");
        let Command::Bench(BenchCommand::Consume(c)) = cli.command else {
            panic!("expected bench consume");
        };
        assert_eq!(c.max_records, 500);
        assert!(c.produce_first);
        let cli = Cli::try_parse_from(["flymq-cli", "bench", "latency", "-n", "50"]).expect("parses");
        let Command::Bench(BenchCommand::Latency(l)) = cli.command else {
            panic!("expected bench latency");
        };
        assert_eq!(l.common.count, Some(50));
        let cli = Cli::try_parse_from(["flymq-cli", "bench", "txn", "-r", "10", "-c", "2", "--partitions", "3"])
            .expect("parses");
        let Command::Bench(BenchCommand::Txn(t)) = cli.command else {
            panic!("expected bench txn");
        };
        assert_eq!((t.records, t.connections, t.common.partitions), (10, 2, 3));
        let cli = Cli::try_parse_from(["flymq-cli", "bench", "schema", "--rounds", "3", "-c", "2"]).expect("parses");
        let Command::Bench(BenchCommand::Schema(s)) = cli.command else {
            panic!("expected bench schema");
        };
        assert_eq!(
            (s.rounds, s.connections, s.in_flight, s.schema.as_str()),
            (3, 2, 32, "bench-record")
        );
        let cli = Cli::try_parse_from([
            "flymq-cli",
            "bench",
            "delayed",
            "--pending",
            "5000",
            "--due-delay",
            "500ms",
        ])
        .expect("parses");
        let Command::Bench(BenchCommand::Delayed(d)) = cli.command else {
            panic!("expected bench delayed");
        };
        assert_eq!((d.pending, d.count, d.due), (5000, 1_000_000, 10_000));
        assert_eq!(
            (d.pending_delay, d.due_delay),
            (Duration::from_secs(3600), Duration::from_millis(500))
        );
    }
}
