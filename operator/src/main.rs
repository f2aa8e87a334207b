//! `flymq-operator`: the FlyMQ Kubernetes operator.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kubernetes operator for FlyMQ: reconciles FlyMQCluster resources into
/// StatefulSets, Services, ConfigMaps, PodDisruptionBudgets and Secrets.
#[derive(Debug, Parser)]
#[command(name = "flymq-operator", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator (the default).
    Run,
    /// Print the YAML of every FlyMQ CustomResourceDefinition.
    Crd,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Namespaces to watch, comma-separated; all namespaces when empty.
    #[arg(long, env = "FLYMQ_OPERATOR_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Listen address of /metrics, /healthz and /readyz.
    #[arg(long, env = "FLYMQ_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `flymq_operator=debug`.
    #[arg(long, env = "FLYMQ_OPERATOR_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines.
    #[arg(long, env = "FLYMQ_OPERATOR_LOG_JSON")]
    log_json: bool,
    /// Instance name used in events (set to the pod name by the chart).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    /// URL of each cluster's admin gRPC API; `{name}` and `{namespace}` are
    /// replaced by the FlyMQCluster's. Change it to run the operator outside
    /// the cluster (e.g. through `kubectl port-forward`).
    #[arg(long, env = "FLYMQ_OPERATOR_ADMIN_URL_TEMPLATE", default_value = flymq_operator::admin::DEFAULT_URL_TEMPLATE)]
    admin_url_template: String,
}

fn init_logging(args: &RunArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .map_err(|e| anyhow::anyhow!("invalid --log filter '{}': {e}", args.log))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Run) {
        Command::Crd => {
            let yaml = flymq_operator::crd::all_yaml()?;
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            match out.write_all(yaml.as_bytes()).and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Command::Run => {
            init_logging(&cli.run)?;
            let config = flymq_operator::runtime::Config {
                namespaces: cli.run.namespaces.into_iter().filter(|n| !n.is_empty()).collect(),
                http_addr: cli.run.http_addr,
                instance: cli.run.instance,
                admin_url_template: cli.run.admin_url_template,
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(flymq_operator::runtime::run(config))?;
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flymq-operator: {e}");
            ExitCode::FAILURE
        }
    }
}
