//! `flymq-cli bench`: throughput and latency measurements against a broker.
//!
//! The bench bypasses the SDK's per-request bookkeeping: each connection is
//! one task that writes pre-encoded frames in bulk and matches responses to
//! send times in order (see [`driver`]).

mod args;
mod consume;
mod delayed;
pub mod driver;
mod produce;
mod schema;
pub mod stats;
mod transactions;

pub use args::BenchCommand;

use flymq_client::{Client, ClientConfig};

use crate::cli::output::Output;
use args::{CommonBenchArgs, ConsumeBenchArgs, LatencyBenchArgs, ProduceBenchArgs, TxnBenchArgs};
use produce::ProducePlan;
use stats::Report;

/// Default message count of `bench produce` and `bench consume`.
const DEFAULT_COUNT: u64 = 100_000;
/// Default message count of `bench latency`.
const DEFAULT_LATENCY_COUNT: u64 = 10_000;

/// Runs a bench subcommand and prints its report.
pub async fn run(cmd: BenchCommand, config: ClientConfig, out: Output) -> anyhow::Result<()> {
    let report = match cmd {
        BenchCommand::Produce(args) => run_produce(&config, &args).await?,
        BenchCommand::Latency(args) => run_latency(&config, &args).await?,
        BenchCommand::Consume(args) => run_consume(&config, &args).await?,
        BenchCommand::Txn(args) => run_txn(&config, &args).await?,
        // These compare several runs and print their own report.
        BenchCommand::Schema(args) => return schema::run(&config, &args, DEFAULT_COUNT, &out).await,
        BenchCommand::Delayed(args) => return delayed::run(&config, &args, &out).await,
    };
    print_report(&out, &report)?;
    if report.errors > 0 {
        anyhow::bail!(
            "{} request(s) failed; first error: {}",
            report.errors,
            report.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

fn print_report(out: &Output, report: &Report) -> anyhow::Result<()> {
    if out.is_json() {
        out.line(&serde_json::to_string(report)?)?;
    } else {
        out.line(&report.to_text())?;
    }
    Ok(())
}

fn plan(common: &CommonBenchArgs, default_count: u64) -> ProducePlan {
    ProducePlan {
        topic: common.topic.clone(),
        size: common.size,
        count: common.count_or(default_count),
        duration: common.duration,
        partitions: common.partitions,
        connections: 1,
        in_flight: 1,
        batch: 1,
        keyed: false,
        progress: !common.quiet,
    }
}

async fn run_produce(config: &ClientConfig, args: &ProduceBenchArgs) -> anyhow::Result<Report> {
    let plan = ProducePlan {
        connections: args.connections,
        in_flight: args.in_flight,
        batch: args.batch,
        keyed: args.keyed,
        ..plan(&args.common, DEFAULT_COUNT)
    };
    produce::run(config, &plan, "produce").await
}

async fn run_latency(config: &ClientConfig, args: &LatencyBenchArgs) -> anyhow::Result<Report> {
    let plan = ProducePlan {
        keyed: args.keyed,
        ..plan(&args.common, DEFAULT_LATENCY_COUNT)
    };
    produce::run(config, &plan, "latency").await
}

async fn run_txn(config: &ClientConfig, args: &TxnBenchArgs) -> anyhow::Result<Report> {
    let common = &args.common;
    let plan = transactions::TxnPlan {
        topic: common.topic.clone(),
        size: common.size,
        count: common.count_or(DEFAULT_COUNT),
        duration: common.duration,
        partitions: common.partitions,
        connections: args.connections,
        records: args.records,
    };
    transactions::run(config, &plan).await
}

async fn run_consume(config: &ClientConfig, args: &ConsumeBenchArgs) -> anyhow::Result<Report> {
    let common = &args.common;
    let client = Client::connect(config.clone()).await?;
    let limit = common.count;
    let mut ranges = consume::readable_ranges(&client, &common.topic, limit).await;
    let empty = match &ranges {
        Ok(r) => r.is_empty(),
        Err(_) => true,
    };
    if empty && args.produce_first {
        if !common.quiet {
            eprintln!(
                "topic '{}' is empty: producing {} messages first",
                common.topic,
                common.count_or(DEFAULT_COUNT)
            );
        }
        let fill = ProducePlan {
            in_flight: 32,
            batch: 100,
            duration: None,
            progress: false,
            ..plan(common, DEFAULT_COUNT)
        };
        produce::run(config, &fill, "produce").await?;
        ranges = consume::readable_ranges(&client, &common.topic, limit).await;
    }
    consume::run(
        config,
        &common.topic,
        ranges?,
        args.connections,
        args.in_flight,
        args.max_records,
        !common.quiet,
    )
    .await
}
