//! `Topic`: a FlyMQ topic managed as YAML.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AdminObjectStatus, ClusterRef, DeletionPolicy};

/// Desired state of a topic.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flymq.io",
    version = "v1alpha1",
    kind = "Topic",
    plural = "topics",
    singular = "topic",
    shortname = "fmqtopic",
    category = "flymq",
    namespaced,
    status = "AdminObjectStatus",
    doc = "A FlyMQ topic. Reconciled through the broker admin API.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef.name"),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".spec.partitions"),
    printcolumn(name = "RF", type_ = "integer", json_path = ".spec.replicationFactor"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.topicName) == has(oldSelf.topicName) && (!has(self.topicName) || self.topicName == oldSelf.topicName)").message("spec.topicName is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// The FlyMQCluster that holds the topic. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.clusterRef is immutable"))]
    pub cluster_ref: ClusterRef,
    /// Topic name on the brokers; defaults to `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+(/[a-zA-Z0-9._-]+)*$"))]
    pub topic_name: Option<String>,
    /// Number of partitions. Can grow, never shrink.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 10000))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("spec.partitions cannot be decreased"))]
    pub partitions: i32,
    /// Replicas of each partition (at most the number of brokers).
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 99))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.replicationFactor cannot be changed yet"))]
    pub replication_factor: i32,
    /// Topic settings.
    #[serde(default)]
    pub config: TopicConfig,
    /// Keep (`Retain`, the default) or delete the topic and its messages on
    /// the brokers when this resource is deleted.
    #[serde(default = "default_deletion_policy")]
    pub deletion_policy: DeletionPolicy,
}

fn default_partitions() -> i32 {
    1
}

fn default_replication_factor() -> i32 {
    3
}

fn default_deletion_policy() -> DeletionPolicy {
    DeletionPolicy::Retain
}

/// Topic settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// How long and how much data is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Messages expire this long after they were produced (e.g. `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub message_ttl: Option<String>,
    /// Dead-letter queue for messages that fail processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetter>,
    /// Schema that produced messages must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<TopicSchema>,
}

/// Retention limits; the first one reached deletes the oldest data.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Maximum age, e.g. `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub time: Option<String>,
    /// Maximum bytes per partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub bytes: Option<i64>,
}

/// Dead-letter queue settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Topic that receives dead letters; defaults to `<topic>.dlq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Deliveries before a message is dead-lettered.
    #[serde(default = "default_max_deliveries")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_deliveries: i32,
}

fn default_max_deliveries() -> i32 {
    5
}

/// A message schema.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicSchema {
    /// Schema language.
    #[serde(rename = "type")]
    pub type_: SchemaType,
    /// The schema document.
    #[schemars(length(min = 1))]
    pub definition: String,
}

/// Supported schema languages.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SchemaType {
    /// JSON Schema.
    JsonSchema,
    /// Apache Avro.
    Avro,
    /// Protocol Buffers.
    Protobuf,
}

/// Parses a duration in the CRDs' format (`<digits><unit>`, unit one of
/// `ms`, `s`, `m`, `h`, `d`) into milliseconds. `None` when malformed or too
/// large for a `u64`.
pub fn duration_ms(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    let factor: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    value.checked_mul(factor)
}

impl Topic {
    /// The topic's name on the brokers.
    pub fn topic_name(&self) -> String {
        self.spec
            .topic_name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::cel::{validate_cel, validate_cel_update};

    fn topic() -> Topic {
        let spec: TopicSpec =
            serde_json::from_value(serde_json::json!({"clusterRef": {"name": "demo"}})).expect("valid spec");
        Topic::new("orders", spec)
    }

    #[test]
    fn durations_parse_to_milliseconds() {
        assert_eq!(duration_ms("250ms"), Some(250));
        assert_eq!(duration_ms("30s"), Some(30_000));
        assert_eq!(duration_ms("15m"), Some(900_000));
        assert_eq!(duration_ms("2h"), Some(7_200_000));
        assert_eq!(duration_ms("7d"), Some(604_800_000));
        assert_eq!(duration_ms("0s"), Some(0));
        for bad in ["", "7", "d", "7w", "1.5h", "-1s", "7d ", "99999999999999999999d"] {
            assert_eq!(duration_ms(bad), None, "{bad:?}");
        }
        assert_eq!(duration_ms("999999999999999d"), None, "overflows u64 milliseconds");
    }

    #[test]
    fn defaults() {
        let t = topic();
        assert_eq!(t.spec.partitions, 1);
        assert_eq!(t.spec.replication_factor, 3);
        assert_eq!(t.spec.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(t.topic_name(), "orders");
        assert!(validate_cel(&t).is_ok());
    }

    #[test]
    fn partitions_can_grow_but_not_shrink() {
        let mut old = topic();
        old.spec.partitions = 4;
        let mut grown = old.clone();
        grown.spec.partitions = 8;
        assert!(validate_cel_update(&grown, &old).is_ok());
        let mut shrunk = old.clone();
        shrunk.spec.partitions = 2;
        let err = validate_cel_update(&shrunk, &old).expect_err("decrease must be refused");
        assert!(err.to_string().contains("cannot be decreased"), "{err}");
    }

    #[test]
    fn cluster_ref_is_immutable() {
        let old = topic();
        let mut new = old.clone();
        new.spec.cluster_ref.name = "other".into();
        let err = validate_cel_update(&new, &old).expect_err("moving clusters must be refused");
        assert!(err.to_string().contains("clusterRef is immutable"), "{err}");
    }

    #[test]
    fn topic_name_is_immutable_including_set_and_unset() {
        let old = topic();
        let mut set = old.clone();
        set.spec.topic_name = Some("renamed".into());
        assert!(validate_cel_update(&set, &old).is_err());
        assert!(validate_cel_update(&old, &set).is_err());
        assert!(validate_cel_update(&set, &set).is_ok());
    }

    #[test]
    fn replication_factor_is_immutable() {
        let old = topic();
        let mut new = old.clone();
        new.spec.replication_factor = 1;
        assert!(validate_cel_update(&new, &old).is_err());
    }
}
