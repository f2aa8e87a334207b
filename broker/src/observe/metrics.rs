//! Prometheus metrics (prometheus-client). Hot-path counters are cheap
//! atomic updates; gauges that need a scan (storage size, group lag) are
//! refreshed when `/metrics` is scraped.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub topic: String,
    pub group: String,
    pub partition: u32,
}

/// A Raft group: `meta` or `<topic>/<partition>`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RaftGroupLabels {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RaftFollowerLabels {
    pub group: String,
    pub follower: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub opcode: String,
}

fn latency_histogram() -> Histogram {
    // 10 µs .. ~10 s
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

/// Every metric the broker exports.
pub struct Metrics {
    registry: Registry,
    pub messages_produced: Family<TopicLabels, Counter>,
    pub bytes_produced: Family<TopicLabels, Counter>,
    pub messages_consumed: Family<TopicLabels, Counter>,
    pub bytes_consumed: Family<TopicLabels, Counter>,
    pub produce_latency: Histogram,
    pub fetch_latency: Histogram,
    pub active_connections: Gauge,
    pub request_errors: Family<ErrorLabels, Counter>,
    pub storage_size: Gauge,
    pub group_lag: Family<LagLabels, Gauge>,
    pub group_commit_size: Histogram,
    pub group_commit_latency: Histogram,
    // Cluster mode only (empty on a standalone broker).
    pub raft_leader_changes: Family<RaftGroupLabels, Counter>,
    pub raft_commit_latency: Histogram,
    pub raft_is_leader: Family<RaftGroupLabels, Gauge>,
    pub raft_term: Family<RaftGroupLabels, Gauge>,
    pub raft_apply_lag: Family<RaftGroupLabels, Gauge>,
    pub raft_replication_lag: Family<RaftFollowerLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("flymq");
        let metrics = Self {
            messages_produced: Family::default(),
            bytes_produced: Family::default(),
            messages_consumed: Family::default(),
            bytes_consumed: Family::default(),
            produce_latency: latency_histogram(),
            fetch_latency: latency_histogram(),
            active_connections: Gauge::default(),
            request_errors: Family::default(),
            storage_size: Gauge::default(),
            group_lag: Family::default(),
            group_commit_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            group_commit_latency: latency_histogram(),
            raft_leader_changes: Family::default(),
            raft_commit_latency: latency_histogram(),
            raft_is_leader: Family::default(),
            raft_term: Family::default(),
            raft_apply_lag: Family::default(),
            raft_replication_lag: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "messages_produced",
            "Records appended, by topic",
            metrics.messages_produced.clone(),
        );
        registry.register(
            "bytes_produced",
            "Key and value bytes appended, by topic",
            metrics.bytes_produced.clone(),
        );
        registry.register(
            "messages_consumed",
            "Records returned by CONSUME and FETCH, by topic",
            metrics.messages_consumed.clone(),
        );
        registry.register(
            "bytes_consumed",
            "Key and value bytes returned, by topic",
            metrics.bytes_consumed.clone(),
        );
        registry.register(
            "produce_latency_seconds",
            "Time from a produce request to its durable acknowledgement",
            metrics.produce_latency.clone(),
        );
        registry.register(
            "fetch_latency_seconds",
            "Time to serve a CONSUME or FETCH request",
            metrics.fetch_latency.clone(),
        );
        registry.register(
            "active_connections",
            "Open client connections",
            metrics.active_connections.clone(),
        );
        registry.register(
            "request_errors",
            "Requests answered with an error frame, by opcode",
            metrics.request_errors.clone(),
        );
        registry.register(
            "storage_size_bytes",
            "Approximate bytes stored by RocksDB",
            metrics.storage_size.clone(),
        );
        registry.register(
            "consumer_group_lag",
            "Log end minus committed offset, by topic, group and partition",
            metrics.group_lag.clone(),
        );
        registry.register(
            "group_commit_commands",
            "Commands written per group commit",
            metrics.group_commit_size.clone(),
        );
        registry.register(
            "group_commit_seconds",
            "Time to apply and write one group commit (including the WAL sync)",
            metrics.group_commit_latency.clone(),
        );
        registry.register(
            "raft_leader_changes",
            "Times a Raft group's leader changed as seen by this broker (cluster mode)",
            metrics.raft_leader_changes.clone(),
        );
        registry.register(
            "raft_commit_seconds",
            "Time from proposing a batch as leader until it is committed by a majority and applied",
            metrics.raft_commit_latency.clone(),
        );
        registry.register(
            "raft_is_leader",
            "1 when this broker leads the Raft group",
            metrics.raft_is_leader.clone(),
        );
        registry.register("raft_term", "Current Raft term of the group", metrics.raft_term.clone());
        registry.register(
            "raft_apply_lag_entries",
            "Log entries committed but not yet applied on this broker",
            metrics.raft_apply_lag.clone(),
        );
        registry.register(
            "raft_replication_lag_entries",
            "On a group's leader: log entries a follower is behind",
            metrics.raft_replication_lag.clone(),
        );
        Self { registry, ..metrics }
    }

    pub fn observe_group_commit(&self, commands: usize, elapsed: Duration) {
        self.group_commit_size.observe(commands as f64);
        self.group_commit_latency.observe(elapsed.as_secs_f64());
    }

    pub fn record_produced(&self, topic: &str, messages: u64, bytes: u64) {
        let labels = TopicLabels {
            topic: topic.to_owned(),
        };
        self.messages_produced.get_or_create(&labels).inc_by(messages);
        self.bytes_produced.get_or_create(&labels).inc_by(bytes);
    }

    pub fn record_consumed(&self, topic: &str, messages: u64, bytes: u64) {
        if messages == 0 {
            return;
        }
        let labels = TopicLabels {
            topic: topic.to_owned(),
        };
        self.messages_consumed.get_or_create(&labels).inc_by(messages);
        self.bytes_consumed.get_or_create(&labels).inc_by(bytes);
    }

    pub fn record_error(&self, opcode: &str) {
        self.request_errors
            .get_or_create(&ErrorLabels {
                opcode: opcode.to_owned(),
            })
            .inc();
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
