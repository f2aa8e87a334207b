//! `flymq`: the FlyMQ broker. With no arguments it starts a standalone broker
//! on the embedded defaults, with its data in `./flymq-data`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use flymq_broker::RunningBroker;
use flymq_broker::config::{Config, Override};

/// FlyMQ broker: a persistent, replicated message queue.
///
/// Configuration comes from defaults, then the YAML file given with --config,
/// then FLYMQ_* environment variables (FLYMQ_DATA_DIR, FLYMQ_BIND_ADDR, ...),
/// then these flags. See docs/configuration.md for every key.
#[derive(Debug, Parser)]
#[command(name = "flymq", version, about, long_about)]
struct Args {
    /// YAML configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the RocksDB data (key `data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// Client protocol listener, host:port (key `bind_addr`).
    #[arg(long, value_name = "ADDR")]
    bind_addr: Option<String>,
    /// Node id (key `node_id`).
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// Log filter: error, warn, info, debug, trace (key `log_level`).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// When to acknowledge produces: all (after fsync) or leader (key `acks`).
    #[arg(long, value_name = "all|leader")]
    acks: Option<String>,
    /// Human-readable logs instead of JSON lines (key `log_json: false`).
    #[arg(long)]
    human_readable: bool,
    /// Set any configuration key, e.g. --set retention_ms=3600000 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print the effective configuration as YAML and exit.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run a local cluster of several brokers in this process, on loopback
    /// addresses 127.0.0.2, 127.0.0.3, ... (standard ports on each). Ctrl-C stops it.
    Dev {
        /// Number of brokers.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
        nodes: u8,
        /// Parent directory of the brokers' data (node-0, node-1, ...).
        #[arg(long, value_name = "DIR", default_value = "flymq-dev")]
        dir: PathBuf,
        /// TLS on every port with a generated CA and node certificates (in
        /// DIR/tls), mutual TLS between brokers, and auth enabled.
        #[arg(long)]
        secure: bool,
    },
}

impl Args {
    fn overrides(&self) -> Result<Vec<Override>, String> {
        let mut out = Vec::new();
        let named = [
            ("data_dir", &self.data_dir),
            ("bind_addr", &self.bind_addr),
            ("node_id", &self.node_id),
            ("log_level", &self.log_level),
            ("acks", &self.acks),
        ];
        for (key, value) in named {
            if let Some(value) = value {
                out.push(Override {
                    key: key.into(),
                    value: value.clone(),
                    source: format!("from --{}", key.replace('_', "-")),
                });
            }
        }
        if self.human_readable {
            out.push(Override {
                key: "log_json".into(),
                value: "false".into(),
                source: "from --human-readable".into(),
            });
        }
        for item in &self.set {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("--set expects KEY=VALUE, got '{item}'"))?;
            out.push(Override {
                key: key.trim().into(),
                value: value.into(),
                source: format!("from --set {key}"),
            });
        }
        Ok(out)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match args.overrides().map_err(|e| e.to_string()).and_then(|overrides| {
        Config::load(args.config.as_deref(), std::env::vars(), overrides).map_err(|e| e.to_string())
    }) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("flymq: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    // Before any thread exists (the runtime's, RocksDB's). The first may
    // start the process image again with the setting in its environment.
    flymq_broker::alloc::apply_thread_cache(config.malloc_thread_cache);
    flymq_broker::alloc::limit_malloc_arenas(config.malloc_arenas);
    if let Some(Command::Dev { nodes, dir, secure }) = &args.command {
        return dev(config, *nodes, dir.clone(), *secure);
    }
    if args.print_config {
        print!("{}", serde_yaml::to_string(&config).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    if let Err(err) = flymq_broker::observe::logging::init(&config.log_level, config.log_json) {
        eprintln!("flymq: configuration error: invalid value for `log_level`: {err}");
        return ExitCode::from(2);
    }
    let runtime = match build_runtime(config.worker_threads) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("flymq: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

/// The async runtime; `worker_threads` 0 leaves tokio's default
/// (`TOKIO_WORKER_THREADS`, else one per CPU available to the process).
fn build_runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("flymq");
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder.build()
}

/// `flymq dev`: N brokers on 127.0.0.2.. sharing this process.
fn dev(base: Config, nodes: u8, dir: PathBuf, secure: bool) -> ExitCode {
    if let Err(err) = flymq_broker::observe::logging::init(&base.log_level, base.log_json) {
        eprintln!("flymq: configuration error: invalid value for `log_level`: {err}");
        return ExitCode::from(2);
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (brokers, pki) = match flymq_broker::dev::prepare(&base, nodes, &dir, secure, &env) {
        Ok(prepared) => prepared,
        Err(err) => {
            eprintln!("flymq dev: {err}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match build_runtime(base.worker_threads) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("flymq: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let configs: Vec<Config> = brokers.iter().map(|b| b.config.clone()).collect();
        let mut running = Vec::new();
        for node in brokers {
            match RunningBroker::start_with(&node.config, node.secrets).await {
                Ok(broker) => running.push(broker),
                Err(err) => {
                    eprintln!("flymq dev: node {} failed to start: {err}", node.config.node_id);
                    for broker in running {
                        broker.shutdown().await;
                    }
                    return ExitCode::FAILURE;
                }
            }
        }
        print_dev_help(&configs, &dir, pki.as_ref());
        wait_for_signal().await;
        for broker in running {
            broker.shutdown().await;
        }
        exit_now(0)
    })
}

/// How to reach the dev cluster (no secret is printed: the admin password
/// stays in its file).
fn print_dev_help(configs: &[Config], dir: &std::path::Path, pki: Option<&flymq_broker::dev::DevPki>) {
    let bootstrap: Vec<String> = configs.iter().map(|c| c.bind_addr.clone()).collect();
    let secure = if pki.is_some() { ", TLS + auth" } else { "" };
    eprintln!(
        "FlyMQ dev cluster: {} brokers{secure}, data in {}",
        configs.len(),
        dir.display()
    );
    for config in configs {
        eprintln!(
            "  node {}: client {}  admin {}  health http://{}/health",
            config.node_id, config.bind_addr, config.admin_addr, config.health_addr
        );
    }
    let tls = match pki {
        None => String::new(),
        Some(pki) => format!(" --tls-ca {}", pki.ca_file.display()),
    };
    eprintln!(
        "connect:  flymq-cli{tls} --bootstrap {} topic list",
        bootstrap.join(",")
    );
    eprintln!(
        "status:   flymq-cli{tls} --admin {} cluster status",
        configs[0].admin_addr
    );
    if let Some(pki) = pki {
        eprintln!(
            "mTLS:     add --tls-cert {} --tls-key {} (client certificate of user 'admin')",
            pki.client_cert.display(),
            pki.client_key.display()
        );
        eprintln!(
            "auth:     add --username {} --password-file {} (the generated admin password; \
             FLYMQ_ADMIN_PASSWORD set before `flymq dev` replaces it)",
            configs[0].admin_username,
            pki.admin_password_file.display()
        );
    }
    eprintln!("Brokers authenticate each other with a cluster secret generated for this run.");
    eprintln!("Ctrl-C stops every broker.");
}

async fn run(config: Config) -> ExitCode {
    let broker = match RunningBroker::start(&config).await {
        Ok(broker) => broker,
        Err(err) => {
            tracing::error!(error = %err, "broker failed to start");
            eprintln!("flymq: {err}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_signal().await;
    broker.shutdown().await;
    exit_now(0)
}

/// Ends the process once shutdown is complete (every write synced) without
/// running C++ static destructors: tasks and threads may still hold handles
/// to RocksDB, and RocksDB aborts ("pthread lock: Invalid argument") when
/// its static state is torn down under them, turning a clean stop into
/// SIGABRT.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` only ends the process; shutdown has synced the WAL and
    // stopped RocksDB's background work, so nothing durable is lost.
    unsafe { libc::_exit(code) }
}

/// Ctrl-C or SIGTERM (what Kubernetes sends before killing a pod).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
