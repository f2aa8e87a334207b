//! Command-line arguments of `flymq-cli` (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use flymq_client::SchemaType;
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
    /// The password comes from FLYMQ_PASSWORD or --password-file, never
    /// from a flag (command lines are visible to every local user).
    #[arg(long, short = 'u', global = true, env = "FLYMQ_USERNAME")]
    pub username: Option<String>,

    /// File whose first line is the password of --username (instead of FLYMQ_PASSWORD).
    #[arg(long, global = true, env = "FLYMQ_PASSWORD_FILE", value_name = "PATH")]
    pub password_file: Option<PathBuf>,

    /// TLS options for the broker port and the admin API.
    #[command(flatten)]
    pub tls: TlsArgs,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// TLS options (global). Any of them turns TLS on; without --tls-ca the
/// system's trusted CAs verify the broker. They apply to the admin API too,
/// unless --admin starts with `http://`.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Connect with TLS (implied by the other --tls-* options).
    #[arg(long, global = true, env = "FLYMQ_TLS")]
    pub tls: bool,
    /// PEM file of the CA that signed the broker certificate.
    #[arg(long, global = true, env = "FLYMQ_TLS_CA", value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate (mutual TLS); needs --tls-key.
    #[arg(
        long,
        global = true,
        env = "FLYMQ_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(
        long,
        global = true,
        env = "FLYMQ_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Name to verify the broker certificate against (default: the host dialled).
    #[arg(long, global = true, env = "FLYMQ_TLS_SERVER_NAME", value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Accept any broker certificate. For tests only: it allows anyone on the network path to read and change the traffic.
    #[arg(long, global = true, env = "FLYMQ_TLS_INSECURE_SKIP_VERIFY")]
    pub tls_insecure_skip_verify: bool,
}

impl TlsArgs {
    /// True when any TLS option is given.
    pub fn enabled(&self) -> bool {
        self.tls
            || self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self.tls_server_name.is_some()
            || self.tls_insecure_skip_verify
    }
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
    /// Register, list, show, validate and delete schemas (the broker's
    /// schema registry); produce validated messages with `produce --schema`.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Measure throughput and latency of a broker.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Create, change, delete and list users; change passwords.
    #[command(subcommand)]
    User(UserCommand),
    /// List roles and their permissions.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Set, show, delete and list topic ACLs (exact topics or patterns).
    #[command(subcommand)]
    Acl(AclCommand),
    /// Query and export the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Show who the connection is authenticated as (WHOAMI).
    Whoami,
}

/// Where a new password comes from: never a command-line value.
#[derive(Debug, Clone, Default, Args)]
pub struct NewPasswordArgs {
    /// Read the new password from the first line of this file.
    #[arg(long, value_name = "PATH", conflicts_with = "new_password_stdin")]
    pub new_password_file: Option<PathBuf>,
    /// Read the new password from the first line of stdin.
    #[arg(long)]
    pub new_password_stdin: bool,
}

/// `user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password comes from --new-password-file,
    /// --new-password-stdin or FLYMQ_NEW_PASSWORD.
    Create {
        /// User name.
        name: String,
        /// Role (repeat for several): admin, producer, consumer, guest or a custom role.
        #[arg(long = "role", short = 'r', value_name = "ROLE")]
        roles: Vec<String>,
        #[command(flatten)]
        password: NewPasswordArgs,
    },
    /// Change a user's roles or enable/disable it (unchanged parts are kept).
    #[command(group(ArgGroup::new("change").required(true).multiple(true).args(["roles", "no_roles", "enable", "disable"])))]
    Update {
        /// User name.
        name: String,
        /// New roles, replacing the current ones (repeat for several).
        #[arg(long = "role", short = 'r', value_name = "ROLE", conflicts_with = "no_roles")]
        roles: Vec<String>,
        /// Remove every role.
        #[arg(long)]
        no_roles: bool,
        /// Enable the account.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable the account (it can no longer authenticate).
        #[arg(long)]
        disable: bool,
    },
    /// Delete a user.
    Delete {
        /// User name.
        name: String,
    },
    /// List users.
    List,
    /// Show one user with its permissions.
    Get {
        /// User name.
        name: String,
    },
    /// Change a password: your own (the old one is the FLYMQ_PASSWORD /
    /// --password-file of --username), or anyone's as an administrator.
    Passwd {
        /// User whose password changes (default: --username).
        name: Option<String>,
        #[command(flatten)]
        password: NewPasswordArgs,
    },
}

/// `role ...`
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// List built-in and custom roles with their permissions.
    List,
}

/// `acl ...`
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Set the ACL of a topic, or of a pattern: `orders.*` (prefix),
    /// `orders.+.created` (one level), `orders.#` (any levels).
    Set {
        /// Topic name or pattern.
        topic: String,
        /// Any authenticated user may read and write.
        #[arg(long)]
        public: bool,
        /// User allowed (repeat for several).
        #[arg(long = "user", value_name = "USER")]
        users: Vec<String>,
        /// Role allowed (repeat for several).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// Show the ACL of a topic or pattern.
    Get {
        /// Topic name or pattern.
        topic: String,
    },
    /// Delete the ACL of a topic or pattern.
    Delete {
        /// Topic name or pattern.
        topic: String,
    },
    /// List every ACL.
    List,
}

/// Filters of `audit query` and `audit export`.
#[derive(Debug, Clone, Args)]
pub struct AuditFilter {
    /// Only events newer than this (e.g. 1h, 7d).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Only events older than this (e.g. 10m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub until: Option<Duration>,
    /// Event type (repeat for several), e.g. auth_failure, user_created.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_types: Vec<String>,
    /// Acting user.
    #[arg(long)]
    pub user: Option<String>,
    /// Resource (topic, user, ACL) acted on.
    #[arg(long)]
    pub resource: Option<String>,
    /// Outcome (success, failure).
    #[arg(long)]
    pub result: Option<String>,
    /// Free-text search.
    #[arg(long)]
    pub search: Option<String>,
    /// Most events to return.
    #[arg(long, short = 'n', default_value_t = 100)]
    pub limit: u32,
    /// Events to skip (paging).
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A JSON document.
    Json,
    /// CSV with a header line.
    Csv,
}

/// `audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Show audit events, newest first.
    Query {
        #[command(flatten)]
        filter: AuditFilter,
    },
    /// Export audit events as JSON or CSV (to stdout or --out).
    Export {
        #[command(flatten)]
        filter: AuditFilter,
        /// Document format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
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
        .args(["partitions", "retention", "retention_bytes", "message_ttl", "max_deliveries"])))]
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
        /// Messages produced without their own TTL expire this long after
        /// they were produced (e.g. 30s, 1h); `0` = never.
        #[arg(long, value_parser = parse_retention)]
        message_ttl: Option<Duration>,
        /// Dead-letter queue: a record delivered this many times to a
        /// consumer group without a commit past it moves to `<topic>.dlq`
        /// (1 to 1000); `0` = off.
        #[arg(long)]
        max_deliveries: Option<u32>,
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
    /// Each message expires this long after it is written (e.g. `30s`,
    /// `1h`); keyless, the broker picks the partition.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with_all = ["key", "partition", "delay"])]
    pub ttl: Option<Duration>,
    /// Each message becomes readable this long after it is written (e.g.
    /// `10s`, `5m`); keyless, the broker picks the partition.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with_all = ["key", "partition"])]
    pub delay: Option<Duration>,
    /// Validate each message against the latest version of this registered
    /// schema (PRODUCE_WITH_SCHEMA): the broker refuses, and does not
    /// write, a message the schema rejects. Keyless, the broker picks the
    /// partition.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["key", "partition", "ttl", "delay"])]
    pub schema: Option<String>,
}

/// `schema ...`
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Register a definition as the next version of a schema (version 1 for
    /// a new name; the broker refuses a version that is not backward
    /// compatible with the latest one).
    Register {
        /// Schema name (letters, digits, `.`, `_`, `-`, `/` levels).
        name: String,
        /// Schema type: json (JSON Schema), avro, or protobuf (also `proto`).
        #[arg(long = "type", short = 't', value_name = "TYPE", value_parser = parse_schema_type)]
        schema_type: SchemaType,
        /// File holding the definition; `-` reads it from stdin.
        #[arg(long, short = 'f', value_name = "PATH")]
        file: PathBuf,
    },
    /// List every version of every schema, or of one schema.
    List {
        /// Only this schema (exact name).
        name: Option<String>,
    },
    /// Show a schema's type and version number (the latest unless
    /// --version; the wire protocol does not return the definition text).
    #[command(disable_version_flag = true)]
    Get {
        /// Schema name.
        name: String,
        /// Version to show (default: the latest).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Check a message against the latest version of a schema without
    /// producing it; exits with status 1 when it is not valid.
    #[command(group(ArgGroup::new("input").required(true).args(["message", "file"])))]
    Validate {
        /// Schema name.
        name: String,
        /// The message to check.
        message: Option<String>,
        /// Read the message from this file instead (`-` = stdin).
        #[arg(long, short = 'f', value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Delete one version of a schema, or every version when --version is
    /// not given. Records already produced are not affected.
    #[command(disable_version_flag = true)]
    Delete {
        /// Schema name.
        name: String,
        /// Version to delete (default: every version).
        #[arg(long)]
        version: Option<u32>,
    },
}

fn parse_schema_type(text: &str) -> Result<SchemaType, String> {
    text.parse().map_err(|e: flymq_client::UnknownSchemaType| e.to_string())
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
    /// Topic to consume (all partitions), or an MQTT-style pattern over
    /// hierarchical topic names (`sensors/+/temp`, `logs/#`): every matching
    /// topic, including ones created while subscribed.
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
    /// Share the topic's partitions with the group's other `--share`
    /// members (the broker assigns each member its part and moves them when
    /// members come and go); without it every subscriber reads every
    /// partition. Not with a pattern.
    #[arg(long)]
    pub share: bool,
    /// With --share: a member silent for this long loses its partitions.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, requires = "share")]
    pub session_timeout: Duration,
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
    fn security_options_and_commands() {
        let cli = parse(&[
            "--tls-ca",
            "/ca.pem",
            "--tls-cert",
            "/c.pem",
            "--tls-key",
            "/k.pem",
            "--tls-server-name",
            "broker",
            "-u",
            "alice",
            "--password-file",
            "/pw",
            "user",
            "create",
            "bob",
            "-r",
            "producer",
            "--role",
            "consumer",
            "--new-password-stdin",
        ]);
        assert!(cli.tls.enabled());
        assert_eq!(cli.tls.tls_server_name.as_deref(), Some("broker"));
        assert_eq!(cli.password_file.as_deref(), Some(std::path::Path::new("/pw")));
        match cli.command {
            Command::User(UserCommand::Create { name, roles, password }) => {
                assert_eq!(name, "bob");
                assert_eq!(cli.username.as_deref(), Some("alice"));
                assert_eq!(roles, ["producer", "consumer"]);
                assert!(password.new_password_stdin);
            }
            other => panic!("unexpected {other:?}"),
        }
        // No flag takes a password value.
        for bad in [
            &["--password", "x", "topic", "list"][..],
            &["user", "create", "bob", "--password", "x"],
            &["--tls-cert", "/c.pem", "topic", "list"],
            &["user", "update", "bob"],
            &["user", "update", "bob", "--enable", "--disable"],
        ] {
            let args = std::iter::once("flymq-cli").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?} should be refused");
        }
        let cli = parse(&["acl", "set", "orders.*", "--user", "bob", "--role", "ops", "--public"]);
        assert!(matches!(
            cli.command,
            Command::Acl(AclCommand::Set { public: true, ref users, ref roles, .. }) if users == &["bob"] && roles == &["ops"]
        ));
        let cli = parse(&[
            "audit",
            "export",
            "--since",
            "1h",
            "--type",
            "auth_failure",
            "--format",
            "csv",
        ]);
        match cli.command {
            Command::Audit(AuditCommand::Export { filter, format, out }) => {
                assert_eq!(filter.since, Some(Duration::from_secs(3600)));
                assert_eq!(filter.event_types, ["auth_failure"]);
                assert_eq!((format, out), (ExportFormat::Csv, None));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!parse(&["topic", "list"]).tls.enabled() || std::env::var_os("FLYMQ_TLS").is_some());
    }

    #[test]
    fn schema_commands_and_produce_with_a_schema() {
        let cli = parse(&["schema", "register", "orders", "--type", "proto", "--file", "-"]);
        match cli.command {
            Command::Schema(SchemaCommand::Register {
                name,
                schema_type,
                file,
            }) => {
                assert_eq!((name.as_str(), schema_type), ("orders", SchemaType::Protobuf));
                assert_eq!(file, PathBuf::from("-"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&["schema", "get", "orders", "--version", "3"]);
        assert!(matches!(
            cli.command,
            Command::Schema(SchemaCommand::Get { version: Some(3), .. })
        ));
        let cli = parse(&["schema", "delete", "orders"]);
        assert!(matches!(
            cli.command,
            Command::Schema(SchemaCommand::Delete { version: None, .. })
        ));
        let cli = parse(&["schema", "validate", "orders", "{}"]);
        assert!(matches!(
            cli.command,
            Command::Schema(SchemaCommand::Validate {
                message: Some(_),
                file: None,
                ..
            })
        ));
        let cli = parse(&["produce", "t", "{}", "--schema", "orders"]);
        assert!(matches!(
            cli.command,
            Command::Produce(ProduceArgs { schema: Some(ref s), .. }) if s == "orders"
        ));
        for bad in [
            &["schema", "register", "orders", "--type", "xml", "--file", "s.json"][..],
            &["schema", "register", "orders", "--type", "json"],
            &["schema", "validate", "orders"],
            &["schema", "validate", "orders", "{}", "--file", "m.json"],
            &["produce", "t", "{}", "--schema", "s", "--key", "k"],
            &["produce", "t", "{}", "--schema", "s", "--partition", "1"],
            &["produce", "t", "{}", "--schema", "s", "--ttl", "1s"],
            &["produce", "t", "{}", "--schema", "s", "--delay", "1s"],
        ] {
            let args = std::iter::once("flymq-cli").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?} should be refused");
        }
        let err = Cli::try_parse_from(["flymq-cli", "schema", "register", "o", "-t", "xml", "-f", "x"]).unwrap_err();
        assert!(err.to_string().contains("unknown schema type 'xml'"), "{err}");
    }

    #[test]
    fn bad_duration_is_rejected() {
        let err = Cli::try_parse_from(["flymq-cli", "--timeout", "soon", "topic", "list"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }
}
