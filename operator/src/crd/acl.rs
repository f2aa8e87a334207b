//! `ACL`: who may use a topic (or every topic matching a pattern).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{AdminObjectStatus, ClusterRef};

/// Desired state of an access-control list.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flymq.io",
    version = "v1alpha1",
    kind = "ACL",
    root = "Acl",
    plural = "acls",
    singular = "acl",
    shortname = "fmqacl",
    category = "flymq",
    namespaced,
    status = "AdminObjectStatus",
    doc = "A FlyMQ topic ACL. Reconciled through the broker admin API.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef.name"),
    printcolumn(name = "Topic", type_ = "string", json_path = ".spec.topic.name"),
    printcolumn(name = "Pattern", type_ = "string", json_path = ".spec.topic.pattern"),
    printcolumn(name = "Public", type_ = "boolean", json_path = ".spec.public"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AclSpec {
    /// The FlyMQCluster the ACL applies to. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.clusterRef is immutable"))]
    pub cluster_ref: ClusterRef,
    /// The topic (exact name) or topics (pattern) this ACL covers. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.topic is immutable; create a new ACL instead"))]
    pub topic: AclTopic,
    /// Anyone, including the `guest` role, may read the topic.
    #[serde(default)]
    pub public: bool,
    /// Users allowed on the topic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Roles allowed on the topic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// A topic name or a wildcard pattern; set exactly one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("has(self.name) != has(self.pattern)").message("set exactly one of topic.name and topic.pattern"))]
#[serde(rename_all = "camelCase")]
pub struct AclTopic {
    /// Exact topic name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub name: Option<String>,
    /// Wildcard pattern (`orders.*`, `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub pattern: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::cel::{validate_cel, validate_cel_update};

    fn acl(topic: serde_json::Value) -> Acl {
        let spec: AclSpec = serde_json::from_value(serde_json::json!({
            "clusterRef": {"name": "demo"}, "topic": topic, "users": ["alice"]
        }))
        .expect("valid spec");
        Acl::new("orders-acl", spec)
    }

    #[test]
    fn topic_needs_exactly_one_of_name_and_pattern() {
        assert!(validate_cel(&acl(serde_json::json!({"name": "orders"}))).is_ok());
        assert!(validate_cel(&acl(serde_json::json!({"pattern": "orders.*"}))).is_ok());
        assert!(validate_cel(&acl(serde_json::json!({}))).is_err());
        assert!(validate_cel(&acl(serde_json::json!({"name": "a", "pattern": "b"}))).is_err());
    }

    #[test]
    fn cluster_ref_and_topic_are_immutable_users_are_not() {
        let old = acl(serde_json::json!({"name": "orders"}));
        let mut moved = old.clone();
        moved.spec.cluster_ref.name = "other".into();
        assert!(validate_cel_update(&moved, &old).is_err());
        let mut retargeted = old.clone();
        retargeted.spec.topic.name = Some("payments".into());
        assert!(validate_cel_update(&retargeted, &old).is_err());
        let mut more = old.clone();
        more.spec.users.push("bob".into());
        assert!(validate_cel_update(&more, &old).is_ok());
    }
}
