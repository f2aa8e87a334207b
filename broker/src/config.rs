//! Broker configuration: defaults, overridden by a YAML file (`--config`),
//! overridden by `FLYMQ_*` environment variables, overridden by flags.
//! Every key has a default, so `flymq` with no arguments runs a standalone
//! broker with its data in `./flymq-data`. Errors name the key and where the
//! bad value came from.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::{BrokerSettings, Durability};
use crate::storage::TopicConfig;

/// Most async runtime threads `worker_threads` may ask for.
const MAX_WORKER_THREADS: usize = 1024;

/// When a produce is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acks {
    /// After the write is synced to disk (and, in a cluster, committed).
    All,
    /// After the leader's write; the WAL is synced every `sync_interval_ms`.
    Leader,
}

/// Every configuration key. Field docs are the reference in docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Node id of this broker.
    pub node_id: u32,
    /// Directory of the RocksDB database.
    pub data_dir: PathBuf,
    /// Client protocol listener.
    pub bind_addr: String,
    /// Raft / inter-broker listener (cluster mode).
    pub cluster_addr: String,
    /// Prometheus `/metrics` listener.
    pub metrics_addr: String,
    /// `/health/live`, `/health/ready` and `/health` listener.
    pub health_addr: String,
    /// Admin gRPC listener (standalone and cluster mode).
    pub admin_addr: String,
    /// Client address advertised in CLUSTER_METADATA; defaults to `POD_IP` or the bind address.
    pub advertise_addr: Option<String>,
    /// Log filter: `error`, `warn`, `info`, `debug`, `trace`, or per-module directives.
    pub log_level: String,
    /// JSON log lines (default) or human-readable text.
    pub log_json: bool,
    /// `all`: acknowledge after fsync; `leader`: acknowledge after the write, fsync every `sync_interval_ms`.
    pub acks: Acks,
    /// WAL sync interval with `acks: leader`.
    pub sync_interval_ms: u64,
    /// Create a topic when a produce names one that does not exist.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics.
    pub default_partitions: u32,
    /// Default time retention of new topics in ms; 0 keeps records forever.
    pub retention_ms: u64,
    /// Default size retention per partition of new topics in bytes; 0 means unlimited.
    pub retention_bytes: u64,
    /// How often retention runs.
    pub retention_check_interval_ms: u64,
    /// Largest key + value of one record.
    pub max_message_bytes: usize,
    /// Memory RocksDB may use, in MiB: half for memtables (all column
    /// families together), an eighth for the block cache.
    pub memory_budget_mb: usize,
    /// Most glibc malloc arenas (0 = the C library's default, 8 per core).
    /// Fewer arenas keep resident memory near `memory_budget_mb`; an
    /// explicit `MALLOC_ARENA_MAX` environment variable wins.
    pub malloc_arenas: usize,
    /// Freed small blocks glibc's malloc keeps per thread and size for
    /// reuse (`glibc.malloc.tcache_count`; 0 = glibc's default, 7). An
    /// explicit `GLIBC_TUNABLES` naming it wins.
    pub malloc_thread_cache: u32,
    /// Threads of the async runtime (0 = one per CPU available to the
    /// process, which honours a container's CPU limit).
    pub worker_threads: usize,
    /// Most concurrent client connections; more are refused.
    pub max_connections: usize,
    /// Most requests read ahead on one connection before the first is answered.
    pub max_in_flight_per_connection: usize,
    /// Close connections idle this long; 0 never closes them.
    pub idle_timeout_secs: u64,
    /// Cluster mode: comma-separated `host:port` cluster addresses of brokers to
    /// join through (DNS names may resolve to several). Empty runs standalone.
    pub seeds: String,
    /// Cluster id to join or create; empty learns it from the cluster (node 0 creates one).
    pub cluster_id: String,
    /// `auto`: broker 0 creates the cluster when its data directory is empty
    /// and no seed belongs to a cluster (first start). `never`: always join
    /// through the seeds; set it once the cluster exists (the operator does),
    /// so a broker 0 that lost its volume can never start a second cluster.
    pub cluster_bootstrap: crate::cluster::Bootstrap,
    /// Cluster address other brokers should dial; defaults to `POD_IP` or the bound `cluster_addr`.
    pub advertise_cluster: Option<String>,
    /// Replicas of each partition of new topics; this default is capped by the
    /// number of brokers (an explicit factor in a create request is not).
    pub replication_factor: u32,
    /// Raft heartbeat interval.
    pub raft_heartbeat_ms: u64,
    /// Raft election timeout (randomised between this and twice this).
    pub raft_election_timeout_ms: u64,
    /// Raft entries between snapshots; older entries are purged after a snapshot.
    pub raft_snapshot_logs: u64,

    // --- Security (docs/security.md). Secrets are never config keys: the
    // admin password, the cluster secret and the encryption keys come from
    // environment variables or files (see `crate::secrets`).
    /// Require AUTH for operations (WIRE.md §6.4); off for standalone dev use.
    pub auth_enabled: bool,
    /// Unauthenticated connections may use public topics.
    pub allow_anonymous: bool,
    /// Topics without an ACL are public.
    pub default_public: bool,
    /// Bootstrap admin user, created (or its password reset) at start when
    /// `FLYMQ_ADMIN_PASSWORD` or `admin_password_file` gives a password.
    pub admin_username: String,
    /// File whose first line is the bootstrap admin's password.
    pub admin_password_file: Option<PathBuf>,
    /// Audit events kept (oldest dropped first).
    pub audit_max_entries: u64,
    /// An open transaction without a request for this long is aborted.
    pub transaction_timeout_ms: u64,
    /// Implicit TLS on the client port, and TLS on the admin and cluster ports.
    pub tls_enabled: bool,
    /// PEM certificate chain of this broker.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle: verifies client certificates and, on the cluster port,
    /// peers (mutual TLS between brokers).
    pub tls_ca_file: Option<PathBuf>,
    /// Client-certificate verification on the client and admin ports.
    pub tls_client_auth: TlsClientAuth,
    /// Optional plaintext client listener beside the TLS one (migration).
    pub plaintext_bind_addr: Option<String>,
    /// How often certificate, key and CA files are checked for changes.
    pub tls_reload_interval_secs: u64,
    /// File holding the shared inter-broker secret (checked with or without TLS);
    /// `FLYMQ_CLUSTER_SECRET` is the alternative.
    pub cluster_secret_file: Option<PathBuf>,
    /// File holding the encryption keys (same syntax as `FLYMQ_ENCRYPTION_KEY`).
    pub encryption_key_file: Option<PathBuf>,
}

/// Client-certificate verification (docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Verified when sent.
    Optional,
    /// Every client must present a certificate signed by `tls_ca_file`.
    Required,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: 0,
            data_dir: PathBuf::from("flymq-data"),
            bind_addr: "0.0.0.0:9092".into(),
            cluster_addr: "0.0.0.0:9093".into(),
            metrics_addr: "0.0.0.0:9094".into(),
            health_addr: "0.0.0.0:9095".into(),
            admin_addr: "0.0.0.0:9096".into(),
            advertise_addr: None,
            log_level: "info".into(),
            log_json: true,
            acks: Acks::All,
            sync_interval_ms: 10,
            auto_create_topics: true,
            default_partitions: 1,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: 0,
            retention_check_interval_ms: 60_000,
            max_message_bytes: 8 << 20,
            memory_budget_mb: 512,
            malloc_arenas: 4,
            malloc_thread_cache: 2000,
            worker_threads: 0,
            max_connections: 10_000,
            max_in_flight_per_connection: 1024,
            idle_timeout_secs: 600,
            seeds: String::new(),
            cluster_id: String::new(),
            cluster_bootstrap: crate::cluster::Bootstrap::Auto,
            advertise_cluster: None,
            replication_factor: 3,
            raft_heartbeat_ms: 100,
            raft_election_timeout_ms: 1000,
            raft_snapshot_logs: 10_000,
            auth_enabled: false,
            allow_anonymous: false,
            default_public: true,
            admin_username: "admin".into(),
            admin_password_file: None,
            audit_max_entries: 100_000,
            transaction_timeout_ms: 60_000,
            tls_enabled: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            tls_client_auth: TlsClientAuth::None,
            plaintext_bind_addr: None,
            tls_reload_interval_secs: 5,
            cluster_secret_file: None,
            encryption_key_file: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("unknown configuration key `{key}` ({source_desc}); see docs/configuration.md for the keys")]
    UnknownKey { key: String, source_desc: String },
    #[error("{0}")]
    NotSupported(String),
    #[error("invalid value for `{key}` ({source_desc}): {message}")]
    InvalidValue {
        key: String,
        source_desc: String,
        message: String,
    },
}

/// One override: a key, its raw text, and where it came from (for errors).
#[derive(Debug, Clone)]
pub struct Override {
    pub key: String,
    pub value: String,
    pub source: String,
}

impl Config {
    /// Builds the effective configuration: defaults < file < environment < flags.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: Vec<Override>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        let hostname = env.iter().find(|(k, _)| k == "HOSTNAME").map(|(_, v)| v.clone());
        let mut overrides = env_overrides(env);
        overrides.extend(flags);
        let node_id_set = file.is_some_and(|_| config.node_id != 0) || overrides.iter().any(|o| o.key == "node_id");
        for o in overrides {
            config = config.with_override(&o)?;
        }
        // In a StatefulSet the node id is the ordinal of the pod name
        // `<name>-<n>`, unless FLYMQ_NODE_ID, the file or a flag sets it.
        if config.is_cluster()
            && !node_id_set
            && let Some(ordinal) = hostname.as_deref().and_then(hostname_ordinal)
        {
            config.node_id = ordinal;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(&text).map_err(|e| ConfigError::ParseFile {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Applies one `key=value` override.
    pub fn with_override(&self, o: &Override) -> Result<Self, ConfigError> {
        let serde_yaml::Value::Mapping(mut map) = serde_yaml::to_value(self).unwrap_or_default() else {
            unreachable!("Config serialises to a mapping")
        };
        let key = serde_yaml::Value::String(o.key.clone());
        if !map.contains_key(&key) {
            return Err(ConfigError::UnknownKey {
                key: o.key.clone(),
                source_desc: o.source.clone(),
            });
        }
        // Try the value as a YAML scalar (numbers, booleans), then as plain text.
        let candidates = [
            serde_yaml::from_str(&o.value).ok(),
            Some(serde_yaml::Value::String(o.value.clone())),
        ];
        let mut last_error = String::new();
        for candidate in candidates.into_iter().flatten() {
            map.insert(key.clone(), candidate);
            match serde_yaml::from_value::<Config>(serde_yaml::Value::Mapping(map.clone())) {
                Ok(config) => return Ok(config),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(ConfigError::InvalidValue {
            key: o.key.clone(),
            source_desc: o.source.clone(),
            message: last_error,
        })
    }

    fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.into(),
            source_desc: "effective configuration".into(),
            message: message.into(),
        }
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, addr) in [
            ("bind_addr", &self.bind_addr),
            ("cluster_addr", &self.cluster_addr),
            ("metrics_addr", &self.metrics_addr),
            ("health_addr", &self.health_addr),
            ("admin_addr", &self.admin_addr),
        ] {
            resolve(addr).map_err(|m| Self::invalid(key, m))?;
        }
        if self.default_partitions == 0 || self.default_partitions > crate::core::names::MAX_PARTITIONS {
            return Err(Self::invalid("default_partitions", "must be between 1 and 10000"));
        }
        if self.max_message_bytes == 0 || self.max_message_bytes > flymq_proto::MAX_PAYLOAD - 1024 {
            return Err(Self::invalid(
                "max_message_bytes",
                "must be between 1 and 32 MiB minus 1 KiB (the frame limit)",
            ));
        }
        if self.acks == Acks::Leader && self.sync_interval_ms == 0 {
            return Err(Self::invalid(
                "sync_interval_ms",
                "must be at least 1 with acks: leader",
            ));
        }
        if self.max_in_flight_per_connection == 0 || self.max_connections == 0 {
            return Err(Self::invalid(
                "max_in_flight_per_connection",
                "limits must be at least 1",
            ));
        }
        if self.retention_check_interval_ms == 0 {
            return Err(Self::invalid("retention_check_interval_ms", "must be at least 1"));
        }
        if self.raft_heartbeat_ms == 0 || self.raft_election_timeout_ms <= self.raft_heartbeat_ms {
            return Err(Self::invalid(
                "raft_election_timeout_ms",
                "must be larger than raft_heartbeat_ms (which must be at least 1)",
            ));
        }
        if self.raft_snapshot_logs == 0 {
            return Err(Self::invalid("raft_snapshot_logs", "must be at least 1"));
        }
        if self.replication_factor == 0 {
            return Err(Self::invalid("replication_factor", "must be at least 1"));
        }
        for seed in self.seed_list() {
            if !seed.contains(':') {
                return Err(Self::invalid("seeds", format!("'{seed}' is not host:port")));
            }
        }
        if self.memory_budget_mb < 32 {
            return Err(Self::invalid("memory_budget_mb", "must be at least 32"));
        }
        if self.malloc_arenas > 1024 {
            return Err(Self::invalid(
                "malloc_arenas",
                "must be at most 1024 (0 = the C library's default)",
            ));
        }
        if self.malloc_thread_cache > crate::alloc::MAX_THREAD_CACHE {
            return Err(Self::invalid(
                "malloc_thread_cache",
                format!(
                    "must be at most {} (0 = the C library's default)",
                    crate::alloc::MAX_THREAD_CACHE
                ),
            ));
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            return Err(Self::invalid(
                "worker_threads",
                format!("must be at most {MAX_WORKER_THREADS} (0 = one per CPU)"),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(Self::invalid("data_dir", "must not be empty"));
        }
        if self.transaction_timeout_ms == 0 {
            return Err(Self::invalid("transaction_timeout_ms", "must be at least 1"));
        }
        self.validate_security()
    }

    fn validate_security(&self) -> Result<(), ConfigError> {
        flymq_security::model::validate_username(&self.admin_username)
            .map_err(|e| Self::invalid("admin_username", e.to_string()))?;
        if self.audit_max_entries == 0 {
            return Err(Self::invalid("audit_max_entries", "must be at least 1"));
        }
        if self.tls_reload_interval_secs == 0 {
            return Err(Self::invalid("tls_reload_interval_secs", "must be at least 1"));
        }
        if self.tls_enabled && (self.tls_cert_file.is_none() || self.tls_key_file.is_none()) {
            return Err(Self::invalid(
                "tls_cert_file",
                "tls_enabled needs tls_cert_file and tls_key_file",
            ));
        }
        if self.tls_client_auth != TlsClientAuth::None && self.tls_ca_file.is_none() {
            return Err(Self::invalid(
                "tls_client_auth",
                "verifying client certificates needs tls_ca_file",
            ));
        }
        if self.tls_enabled && self.is_cluster() && self.tls_ca_file.is_none() {
            return Err(Self::invalid(
                "tls_ca_file",
                "cluster mode with TLS uses mutual TLS between brokers: set tls_ca_file to the CA that \
                 signed every broker's certificate",
            ));
        }
        if let Some(addr) = &self.plaintext_bind_addr {
            if !self.tls_enabled {
                return Err(Self::invalid(
                    "plaintext_bind_addr",
                    "is a second, plaintext listener beside the TLS one; it needs tls_enabled",
                ));
            }
            resolve(addr).map_err(|m| Self::invalid("plaintext_bind_addr", m))?;
        }
        Ok(())
    }

    /// Settings of the broker core derived from this configuration.
    pub fn broker_settings(&self, client_addr: SocketAddr) -> BrokerSettings {
        let advertised_addr = self.advertise_addr.clone().unwrap_or_else(|| advertised(client_addr));
        BrokerSettings {
            node_id: self.node_id,
            advertised_addr,
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            default_topic_config: TopicConfig {
                retention_ms: (self.retention_ms > 0).then_some(self.retention_ms),
                retention_bytes: (self.retention_bytes > 0).then_some(self.retention_bytes),
            },
            max_message_bytes: self.max_message_bytes,
            durability: match self.acks {
                Acks::All => Durability::SyncEachCommit,
                Acks::Leader => Durability::SyncEvery(Duration::from_millis(self.sync_interval_ms)),
            },
            security: flymq_security::SecuritySettings {
                auth_enabled: self.auth_enabled,
                allow_anonymous: self.allow_anonymous,
                default_public: self.default_public,
            },
            audit_max_entries: self.audit_max_entries,
            transaction_timeout: Duration::from_millis(self.transaction_timeout_ms),
        }
    }
}

impl Config {
    /// The seeds, trimmed; empty means standalone.
    pub fn seed_list(&self) -> Vec<String> {
        self.seeds
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Cluster mode is on when seeds are configured.
    pub fn is_cluster(&self) -> bool {
        !self.seed_list().is_empty()
    }

    /// Cluster-mode settings, given the bound listener addresses.
    pub fn cluster_settings(
        &self,
        client: &str,
        cluster: SocketAddr,
        admin: SocketAddr,
    ) -> crate::cluster::ClusterSettings {
        crate::cluster::ClusterSettings {
            broker_id: self.node_id,
            cluster_id: (!self.cluster_id.is_empty()).then(|| self.cluster_id.clone()),
            bootstrap: self.cluster_bootstrap,
            me: crate::cluster::types::NodeInfo {
                cluster_addr: self.advertise_cluster.clone().unwrap_or_else(|| advertised(cluster)),
                client_addr: client.to_owned(),
                admin_addr: advertised(admin),
            },
            seeds: self.seed_list(),
            replication_factor: self.replication_factor,
            heartbeat_ms: self.raft_heartbeat_ms,
            election_timeout_ms: self.raft_election_timeout_ms,
            snapshot_logs: self.raft_snapshot_logs,
            auth: crate::cluster::auth::PeerAuth::default(),
        }
    }
}

/// `n` from a StatefulSet pod name `<name>-<n>`.
fn hostname_ordinal(host: &str) -> Option<u32> {
    let (_, ordinal) = host.rsplit_once('-')?;
    ordinal.parse().ok()
}

/// The address clients should dial: `POD_IP` if set, else the bound address
/// with an unspecified IP replaced by loopback.
fn advertised(bound: SocketAddr) -> String {
    if let Ok(ip) = std::env::var("POD_IP")
        && !ip.is_empty()
    {
        return SocketAddr::new(ip.parse().unwrap_or(bound.ip()), bound.port()).to_string();
    }
    if bound.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bound.port()).to_string()
    } else {
        bound.to_string()
    }
}

/// Resolves `host:port` to its first address.
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("'{addr}' is not a valid host:port ({e})"))?
        .next()
        .ok_or_else(|| format!("'{addr}' resolves to no address"))
}

/// `FLYMQ_<KEY>` variables as overrides (e.g. `FLYMQ_DATA_DIR` -> `data_dir`).
fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let keys = config_keys();
    let mut overrides: Vec<Override> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix("FLYMQ_")?.to_ascii_lowercase();
            keys.contains(&key).then(|| Override {
                key,
                value,
                source: format!("from environment variable {name}"),
            })
        })
        .collect();
    overrides.sort_by(|a, b| a.key.cmp(&b.key));
    overrides
}

/// Names of every configuration key.
pub fn config_keys() -> Vec<String> {
    match serde_yaml::to_value(Config::default()) {
        Ok(serde_yaml::Value::Mapping(map)) => map.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(key: &str, value: &str) -> Override {
        Override {
            key: key.into(),
            value: value.into(),
            source: format!("from --{key}"),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::load(None, vec![], vec![]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.bind_addr, "0.0.0.0:9092");
        assert_eq!(config.acks, Acks::All);
    }

    #[test]
    fn precedence_is_flag_over_env_over_file_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flymq.yaml");
        std::fs::write(
            &file,
            "data_dir: /from/file\nlog_level: debug\nacks: leader\ndefault_partitions: 3\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("FLYMQ_DATA_DIR", "/from/env"),
                ("FLYMQ_LOG_LEVEL", "warn"),
                ("HOME", "/root"),
                ("FLYMQ_NOT_A_KEY", "x"),
            ]),
            vec![flag("data_dir", "/from/flag")],
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(config.log_level, "warn");
        assert_eq!(config.acks, Acks::Leader);
        assert_eq!(config.default_partitions, 3);
        assert_eq!(config.sync_interval_ms, 10);
    }

    #[test]
    fn bad_values_name_the_key_and_source() {
        let err = Config::load(None, env(&[("FLYMQ_ACKS", "sometimes")]), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`acks`") && err.contains("FLYMQ_ACKS"), "{err}");

        // The key is a secret (`crate::secrets`), never a configuration value.
        let secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let config = Config::load(None, env(&[("FLYMQ_ENCRYPTION_KEY", secret)]), vec![]).unwrap();
        assert!(!serde_yaml::to_string(&config).unwrap().contains(secret));
        let err = Config::load(None, vec![], vec![flag("default_partitions", "many")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`default_partitions`") && err.contains("--default_partitions"),
            "{err}"
        );
        let err = Config::load(None, vec![], vec![flag("bind_addr", "not an address")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`bind_addr`"), "{err}");
        let err = Config::load(None, vec![], vec![flag("no_such_key", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown configuration key `no_such_key`"), "{err}");
        let err = Config::load(None, vec![], vec![flag("default_partitions", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`default_partitions`"), "{err}");
        let err = Config::load(None, env(&[("FLYMQ_MALLOC_THREAD_CACHE", "65536")]), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`malloc_thread_cache`") && err.contains("65535"), "{err}");
        let err = Config::load(None, env(&[("FLYMQ_WORKER_THREADS", "5000")]), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`worker_threads`") && err.contains("1024"), "{err}");
        let ok = Config::load(None, vec![], vec![flag("worker_threads", "1")]).unwrap();
        assert_eq!(ok.worker_threads, 1);
    }

    #[test]
    fn bad_files_are_reported_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, "acks: all\nbogus_key: 1\n").unwrap();
        let err = Config::load(Some(&file), vec![], vec![]).unwrap_err().to_string();
        assert!(err.contains("bad.yaml") && err.contains("bogus_key"), "{err}");
        let err = Config::load(Some(&dir.path().join("missing.yaml")), vec![], vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read config file"), "{err}");
    }
}
