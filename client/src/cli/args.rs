//! Command-line arguments of `flymq-cli` (clap derive).

use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use flymq_client::admin::DEFAULT_ADMIN_ADDR;

use crate::bench::BenchCommand;

/// Command-line client for FlyMQ: manage topics and consumer groups, produce
/// and consume messages, inspect the cluster and benchmark a broker.
#[derive(Debug, Parser)]
#[command(name = "flymq-cli", version, propagate_version = true)]
pub struct Cli {
    /// Broker addresses, comma-separated (host:port[,host:port...]).
    #[arg(
        long,
        short = 'b',
        global = true,
        env = "FLYMQ_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,

    /// Admin API address (host:port) used by `cluster` membership commands and `topic alter`.
    #[arg(long, global = true, env = "FLYMQ_ADMIN_ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    pub admin: String,

    /// Output format: `text` for people, `json` for one JSON object per line.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// How long to wait for a connection and for each response (e.g. 10s, 500ms).
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// User to authenticate as, when the broker has authentication enabled.
    #[arg(long, short = 'u', global = true, env = "FLYMQ_USERNAME")]
    pub username: Option<String>,

    /// Password of --username (prefer the environment variable over the flag).
    #[arg(
        long,
        global = true,
        env = "FLYMQ_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    pub password: Option<String>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned, human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, delete, list and inspect topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Produce messages from the command line or stdin (one per line).
    Produce(ProduceArgs),
    /// Read messages from one partition, by offset.
    Consume(ConsumeArgs),
    /// Consume a topic as a member of a consumer group, committing offsets.
    Subscribe(SubscribeArgs),
    /// List, describe and inspect consumer groups.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Cluster status and membership (admin API), metadata (binary protocol).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Measure throughput and latency of a broker.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `topic ...`
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic (succeeds if it already exists).
    Create {
        /// Topic name.
        topic: String,
        /// Number of partitions.
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: u32,
    },
    /// Delete a topic and all its messages (succeeds if it does not exist).
    Delete {
        /// Topic name.
        topic: String,
    },
    /// List topic names.
    List,
    /// Show a topic's partitions, leaders and replicas.
    Info {
        /// Topic name.
        topic: String,
    },
    /// Add partitions or change retention of an existing topic (admin API).
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["partitions", "retention", "retention_bytes"])))]
    Alter {
        /// Topic name.
        topic: String,
        /// New total number of partitions (only growing is allowed).
        #[arg(long, short = 'p')]
        partitions: Option<u32>,
        /// Delete messages older than this (e.g. 7d, 12h); `0` keeps them forever.
        #[arg(long, value_parser = parse_retention)]
        retention: Option<Duration>,
        /// Delete the oldest messages while a partition is larger than this many bytes; 0 = no limit.
        #[arg(long)]
        retention_bytes: Option<u64>,
    },
}

impl TopicCommand {
    /// True for the commands that talk to the admin API rather than the
    /// binary protocol.
    pub fn uses_admin_api(&self) -> bool {
        matches!(self, TopicCommand::Alter { .. })
    }
}

fn parse_retention(text: &str) -> Result<Duration, humantime::DurationError> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
}

/// `produce ...`
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to write to (created by the broker if it does not exist).
    pub topic: String,
    /// Message value; when omitted, every line of stdin is one message.
    pub message: Option<String>,
    /// Key of every message (keyed messages go to FNV-1a(key) mod partitions).
    #[arg(long, short = 'k')]
    pub key: Option<String>,
    /// Write to this partition instead of letting the broker choose.
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
}

/// `consume ...`
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Partition to read.
    #[arg(long, short = 'p', default_value_t = 0)]
    pub partition: i32,
    /// First offset to read.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Stop after this many messages (default: all currently stored, or
    /// unlimited with --follow).
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Print each message's key as well.
    #[arg(long)]
    pub show_key: bool,
    /// Keep waiting for new messages (Ctrl-C to stop).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only messages whose key or value matches this filter (substring,
    /// regular expression or `$.json.path`), applied by the broker.
    #[arg(long)]
    pub filter: Option<String>,
}

/// Where a new consumer group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FromArg {
    /// The first stored message.
    Earliest,
    /// Only messages produced from now on.
    Latest,
    /// The group's committed offset (earliest if none).
    Commit,
}

/// `subscribe ...`
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// Topic to consume (all partitions).
    pub topic: String,
    /// Consumer group id.
    #[arg(long, short = 'g')]
    pub group: String,
    /// Where to start when the group has no committed offset: `commit`
    /// resumes the group, `earliest`/`latest` ignore earlier commits.
    #[arg(long, value_enum, default_value_t = FromArg::Commit)]
    pub from: FromArg,
    /// Stop after this many messages (default: run until Ctrl-C).
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Print each message's key as well.
    #[arg(long)]
    pub show_key: bool,
    /// How often offsets are committed.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub commit_interval: Duration,
}

/// `groups ...`
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups with their committed offsets.
    List,
    /// Show one group's members and committed offsets.
    Describe {
        /// Topic the group consumes.
        topic: String,
        /// Group id.
        group: String,
    },
    /// Show a group's lag per partition (log end minus committed offset).
    Lag {
        /// Topic the group consumes.
        topic: String,
        /// Group id.
        group: String,
    },
    /// Delete a group and its committed offsets.
    Delete {
        /// Topic the group consumes.
        topic: String,
        /// Group id.
        group: String,
    },
    /// Set a group's committed offset on one or all partitions.
    Reset {
        /// Topic the group consumes.
        topic: String,
        /// Group id.
        group: String,
        /// Partition to reset (default: all).
        #[arg(long, short = 'p')]
        partition: Option<i32>,
        /// `earliest`, `latest` or an offset number.
        #[arg(long)]
        to: String,
    },
}

/// `cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members, their health and roles, and under-replicated partitions (admin API).
    Status {
        /// Also list every Raft group with its leader, term and replicas.
        #[arg(long)]
        groups: bool,
    },
    /// The member table only (admin API).
    Members,
    /// Move every replica off a node, then remove it from the cluster (admin API).
    Decommission {
        /// Id of the node to remove.
        node_id: u64,
        /// How long to wait for the replicas to move.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Move the leadership of a Raft group, or of every group a node leads (admin API).
    #[command(group(ArgGroup::new("which").required(true).args(["group", "from"])))]
    TransferLeader {
        /// Raft group id (0 = the metadata group; see `cluster status --groups`).
        #[arg(long)]
        group: Option<u64>,
        /// Move every group this node leads instead of one group.
        #[arg(long)]
        from: Option<u64>,
        /// Node that should lead.
        #[arg(long)]
        to: u64,
    },
    /// Cluster id, answering node and nodes over the binary protocol (CLUSTER_STATUS,
    /// port 9092); this was `cluster status` before the admin API existed.
    WireStatus,
    /// Show every topic's partitions with leaders and replicas (CLUSTER_METADATA).
    Metadata,
}

impl ClusterCommand {
    /// True for the commands that talk to the admin API rather than the
    /// binary protocol.
    pub fn uses_admin_api(&self) -> bool {
        !matches!(self, ClusterCommand::WireStatus | ClusterCommand::Metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("flymq-cli").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?} should parse: {e}"))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        // SAFETY of the test: clap reads FLYMQ_BOOTSTRAP; tests run without it set.
        if std::env::var_os("FLYMQ_BOOTSTRAP").is_some() {
            return;
        }
        let cli = parse(&["topic", "list"]);
        assert_eq!(cli.bootstrap, "127.0.0.1:9092");
        assert_eq!(cli.output, OutputFormat::Text);
        assert_eq!(cli.timeout, Duration::from_secs(10));
        assert!(matches!(cli.command, Command::Topic(TopicCommand::List)));
        if std::env::var_os("FLYMQ_ADMIN_ADDR").is_none() {
            assert_eq!(cli.admin, "127.0.0.1:9096");
        }
    }

    #[test]
    fn global_options_after_subcommand() {
        let cli = parse(&["topic", "create", "orders", "-p", "6", "--output", "json", "-b", "h:1"]);
        assert_eq!(cli.output, OutputFormat::Json);
        assert_eq!(cli.bootstrap, "h:1");
        match cli.command {
            Command::Topic(TopicCommand::Create { topic, partitions }) => {
                assert_eq!((topic.as_str(), partitions), ("orders", 6));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn produce_with_key_and_partition() {
        let cli = parse(&["produce", "t", "hello", "--key", "k1", "--partition", "2"]);
        match cli.command {
            Command::Produce(p) => {
                assert_eq!(p.message.as_deref(), Some("hello"));
                assert_eq!(p.key.as_deref(), Some("k1"));
                assert_eq!(p.partition, Some(2));
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&["produce", "t"]);
        assert!(matches!(
            cli.command,
            Command::Produce(ProduceArgs { message: None, .. })
        ));
    }

    #[test]
    fn consume_options() {
        let cli = parse(&[
            "consume",
            "t",
            "-p",
            "1",
            "--offset",
            "5",
            "-n",
            "3",
            "--show-key",
            "--follow",
        ]);
        match cli.command {
            Command::Consume(c) => {
                assert_eq!((c.partition, c.offset, c.count), (1, 5, Some(3)));
                assert!(c.show_key && c.follow);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn subscribe_requires_group() {
        let err = Cli::try_parse_from(["flymq-cli", "subscribe", "t"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let cli = parse(&["subscribe", "t", "--group", "g", "--from", "earliest"]);
        match cli.command {
            Command::Subscribe(s) => {
                assert_eq!(s.group, "g");
                assert_eq!(s.from, FromArg::Earliest);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn cluster_commands() {
        let cli = parse(&["cluster", "status", "--admin", "http://b:9096", "-o", "json"]);
        assert_eq!(cli.admin, "http://b:9096");
        assert!(matches!(
            cli.command,
            Command::Cluster(ClusterCommand::Status { groups: false })
        ));
        let cli = parse(&["cluster", "decommission", "2"]);
        match cli.command {
            Command::Cluster(ClusterCommand::Decommission { node_id, wait }) => {
                assert_eq!((node_id, wait), (2, Duration::from_secs(600)));
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&["cluster", "transfer-leader", "--group", "0", "--to", "3"]);
        match cli.command {
            Command::Cluster(ref c @ ClusterCommand::TransferLeader { group, from, to }) => {
                assert_eq!((group, from, to), (Some(0), None, 3));
                assert!(c.uses_admin_api());
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&["cluster", "wire-status"]);
        match cli.command {
            Command::Cluster(c) => assert!(!c.uses_admin_api()),
            other => panic!("unexpected {other:?}"),
        }
        for bad in [
            &["cluster", "transfer-leader", "--to", "3"][..],
            &["cluster", "transfer-leader", "--group", "1", "--from", "2", "--to", "3"],
            &["cluster", "transfer-leader", "--group", "1"],
            &["cluster", "decommission"],
        ] {
            let args = std::iter::once("flymq-cli").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn bad_duration_is_rejected() {
        let err = Cli::try_parse_from(["flymq-cli", "--timeout", "soon", "topic", "list"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }
}
