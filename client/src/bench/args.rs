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
    }
}
