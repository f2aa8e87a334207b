//! The custom resources of the `flymq.io` API group, version `v1alpha1`.
//!
//! One module per kind. The Rust types are the source of truth: the CRD YAML
//! in `crds/` (and the Helm chart's copy) is generated from them by
//! `flymq-operator crd` and checked by a test.

// `#[kube(printcolumn(...), printcolumn(...))]` repeats keys by design,
// which clippy's duplicated_attributes lint mistakes for a mistake.
#[allow(clippy::duplicated_attributes)]
pub mod acl;
#[allow(clippy::duplicated_attributes)]
pub mod cluster;
#[allow(clippy::duplicated_attributes)]
pub mod topic;
#[allow(clippy::duplicated_attributes)]
pub mod user;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use acl::{Acl, AclSpec};
pub use cluster::{FlyMQCluster, FlyMQClusterSpec, FlyMQClusterStatus};
pub use topic::{Topic, TopicSpec};
pub use user::{User, UserSpec};

/// The API group of every FlyMQ custom resource.
pub const GROUP: &str = "flymq.io";
/// The API version served and stored.
pub const VERSION: &str = "v1alpha1";
/// The category shared by all FlyMQ kinds: `kubectl get flymq` lists them all.
pub const CATEGORY: &str = "flymq";

/// Names a `FlyMQCluster` in the same namespace as the referring resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ClusterRef {
    /// Name of the FlyMQCluster (same namespace).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
}

/// Names one key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// What happens to the broker-side object when the custom resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the object (and its data) on the brokers.
    Retain,
    /// Delete the object from the brokers.
    Delete,
}

/// A status condition. Unlike `metav1.Condition` the transition time is
/// optional, and it only changes when `status` changes, so an unchanged
/// object produces an identical status on every reconcile.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: `Ready`, `Progressing`, `Degraded` or `CatchingUp`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason in PascalCase.
    pub reason: String,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// Status shared by the kinds that are reconciled through the broker admin API
/// (`Topic`, `User`, `ACL`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminObjectStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and for an ACL `PrincipalsKnown` (False when it names
    /// users or roles the brokers do not know).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// User only: the roles last applied on the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_roles: Option<Vec<String>>,
    /// User only: the Secret and key the password was last applied from
    /// (the password itself never appears in a status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeyRef>,
}

/// Every CRD of the operator, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![FlyMQCluster::crd(), Topic::crd(), User::crd(), Acl::crd()]
}

/// The file name a CRD is committed under in `crds/`: `<plural>.<group>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// Renders one CRD as a YAML document (with a leading `---`).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    Ok(format!("---\n{}", serde_yaml::to_string(crd)?))
}

/// Renders every CRD as one multi-document YAML stream.
pub fn all_yaml() -> Result<String, serde_yaml::Error> {
    all().iter().map(to_yaml).collect()
}

/// The `kustomization.yaml` of `crds/`, listing every CRD file, so
/// `deploy/kustomize` can include the directory.
pub fn kustomization() -> String {
    let mut out = String::from(
        "# Generated by flymq-operator's tests (UPDATE_GOLDEN=1 cargo test -p flymq-operator).\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for crd in all() {
        out.push_str(&format!("  - {}\n", file_name(&crd)));
    }
    out
}
