//! `flymq-bench`: FlyMQ and NATS JetStream measured by one harness with the
//! same workloads, message size and client settings. `scripts/bench-vs-nats.sh`
//! starts the servers, calls `flymq-bench run` once per setup and round,
//! then `flymq-bench report` for the markdown table.

mod flymq;
mod harness;
mod nats;
mod report;
mod stats;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use harness::{Backend, RunContext, Settings, Workload, run_workload};
use stats::RunResult;

/// Side-by-side benchmark of FlyMQ and NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "flymq-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run workloads against one running setup and append results (JSON lines).
    Run(Box<RunArgs>),
    /// Render a results file as markdown tables.
    Report(ReportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum System {
    Flymq,
    Nats,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// System under test.
    #[arg(long, value_enum)]
    system: System,
    /// FlyMQ bootstrap addresses (host:port) or NATS server URLs
    /// (nats://host:port), comma-separated; for NATS list every server.
    #[arg(long, value_delimiter = ',', required = true)]
    servers: Vec<String>,
    /// Replicas of each NATS stream (FlyMQ takes its replication factor
    /// from the brokers' configuration).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Setup label in the results, e.g. flymq-3 or nats-r3.
    #[arg(long)]
    label: String,
    /// The setup in words, for the report.
    #[arg(long, default_value = "")]
    describe: String,
    /// Round number of the suite (each round uses fresh topics).
    #[arg(long, default_value_t = 1)]
    round: u32,
    /// Workloads to run, comma-separated: pipelined, latency, batch, consume.
    #[arg(long, default_value = "pipelined,latency,batch,consume")]
    workloads: String,
    /// Message value size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Connections of the pipelined and batch workloads.
    #[arg(long, default_value_t = 3)]
    connections: usize,
    /// Single-message publishes in flight per connection (pipelined).
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Partitions (FlyMQ) / streams (NATS) of each topic.
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    /// Messages per batch request (FlyMQ PRODUCE_BATCH); NATS keeps
    /// batch × batch-in-flight publishes unacknowledged instead.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Batch requests in flight per connection.
    #[arg(long, default_value_t = 4)]
    batch_in_flight: usize,
    /// Measured phase of each workload.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before it.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Messages the consume workload publishes first and then reads back
    /// (in total over the partitions).
    #[arg(long, default_value_t = 600_000)]
    consume_messages: u64,
    /// Server process ids whose CPU time is recorded (comma-separated).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<String>,
    /// Results file to append to.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Results file written by `run`.
    #[arg(long)]
    input: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(*args).await,
        Command::Report(args) => {
            let text = std::fs::read_to_string(&args.input)
                .with_context(|| format!("reading results file {}", args.input.display()))?;
            let results = report::Results::parse(&text)?;
            print!("{}", report::render(&results));
            Ok(())
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let workloads = Workload::parse_list(&args.workloads)?;
    let settings = Settings {
        size: args.size,
        connections: args.connections,
        in_flight: args.in_flight,
        partitions: args.partitions,
        batch: args.batch,
        batch_in_flight: args.batch_in_flight,
        duration: args.duration,
        warmup: args.warmup,
        consume_messages: args.consume_messages,
    };
    let ctx = RunContext {
        label: args.label.clone(),
        describe: args.describe.clone(),
        round: args.round,
        server_pids: args.server_pid.clone(),
    };
    match args.system {
        System::Flymq => {
            let backend = Arc::new(flymq::Flymq::connect(args.servers.clone()).await?);
            run_all(&backend, &workloads, &settings, &ctx, &args).await
        }
        System::Nats => {
            let backend = Arc::new(nats::Nats::connect(args.servers.clone(), args.replicas).await?);
            run_all(&backend, &workloads, &settings, &ctx, &args).await
        }
    }
}

async fn run_all<B: Backend>(
    backend: &Arc<B>,
    workloads: &[Workload],
    settings: &Settings,
    ctx: &RunContext,
    args: &RunArgs,
) -> anyhow::Result<()> {
    for &workload in workloads {
        let result = run_workload(backend, workload, settings, ctx).await?;
        eprintln!("{}", one_line(&result));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.out)
            .with_context(|| format!("opening results file {}", args.out.display()))?;
        writeln!(file, "{}", serde_json::to_string(&result)?)?;
    }
    Ok(())
}

fn one_line(r: &RunResult) -> String {
    format!(
        "{label} {workload} round {round}: {rate} msgs/s, p50 {p50} p99 {p99} p99.9 {p999} ({n} samples, {errors} errors), \
         server {server:.2} cores, client {client:.2} cores, leaders [{leaders}], load {lb} -> {la}",
        label = r.label,
        workload = r.workload,
        round = r.round,
        rate = report::format_rate(r.msgs_per_sec),
        p50 = report::format_micros(r.latency.p50_us as f64),
        p99 = report::format_micros(r.latency.p99_us as f64),
        p999 = report::format_micros(r.latency.p999_us as f64),
        n = r.latency.count,
        errors = r.errors,
        server = r.server_cpu_secs / r.wall_secs.max(1e-9),
        client = r.client_cpu_secs / r.wall_secs.max(1e-9),
        leaders = r.leaders.join(", "),
        lb = r.load_before,
        la = r.load_after,
    )
}
