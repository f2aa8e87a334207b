//! Pure builders: a `FlyMQCluster` (plus a few observed inputs) in, the
//! Kubernetes objects that run it out. Nothing here talks to the API server,
//! reads the clock or draws randomness on its own.

pub mod config;
pub mod identity;
pub mod monitoring;
pub mod network_policy;
pub mod pdb;
pub mod secret;
pub mod service;
pub mod statefulset;
pub mod tls;
pub mod user_secret;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use kube::{Resource, ResourceExt};

use crate::crd::FlyMQCluster;

/// Client binary protocol port.
pub const CLIENT_PORT: i32 = 9092;
/// Raft / inter-broker port.
pub const CLUSTER_PORT: i32 = 9093;
/// Prometheus metrics port.
pub const METRICS_PORT: i32 = 9094;
/// Health endpoints port.
pub const HEALTH_PORT: i32 = 9095;
/// Admin gRPC port.
pub const ADMIN_PORT: i32 = 9096;

/// The value of `app.kubernetes.io/managed-by` on everything the operator creates.
pub const MANAGER: &str = "flymq-operator";

/// Why the desired objects cannot be built from a spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// The custom resource has no namespace or name (never true for objects from the API).
    #[error("the resource has no {0}; only namespaced, named objects can be reconciled")]
    MissingMetadata(&'static str),
    /// A config override sets a key the operator owns.
    #[error("spec.config key '{0}' is managed by the operator and cannot be overridden; remove it from spec.config")]
    ReservedConfigKey(String),
    /// A config override key is not lower_snake_case.
    #[error("spec.config key '{0}' is not a broker configuration key: use lower_snake_case names")]
    InvalidConfigKey(String),
    /// The rendered configuration cannot be serialised.
    #[error("cannot render the broker configuration: {0}")]
    Render(String),
}

/// Every object the operator applies for one cluster, in apply order
/// (configuration and Secrets before the StatefulSet that uses them).
#[derive(Debug, Clone)]
pub struct Desired {
    /// Rendered broker configuration.
    pub config_map: ConfigMap,
    /// Bootstrap mode and cluster id, read by the brokers at start.
    pub identity: ConfigMap,
    /// Operator-generated Secrets (admin credentials when not provided, the
    /// inter-broker secret).
    pub secrets: Vec<Secret>,
    /// cert-manager Certificate when `spec.tls.certManager` is set.
    pub certificate: Option<DynamicObject>,
    /// Headless Service (stable pod DNS, seeds, metrics).
    pub headless_service: Service,
    /// Client Service (port 9092 and the admin port).
    pub client_service: Service,
    /// The brokers.
    pub stateful_set: StatefulSet,
    /// At most one broker voluntarily down at a time.
    pub pdb: PodDisruptionBudget,
    /// Keeps the Raft and admin ports private (unless switched off).
    pub network_policy: Option<NetworkPolicy>,
    /// prometheus-operator ServiceMonitor when enabled.
    pub service_monitor: Option<DynamicObject>,
}

/// Observed facts the builders need but cannot compute.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Password already stored in the generated admin Secret, if it exists.
    /// Reusing it keeps resyncs from rotating the password.
    pub existing_admin_password: Option<String>,
    /// The cluster id recorded in the status after the first bootstrap.
    pub cluster_id: Option<String>,
    /// The inter-broker secret already stored in `<cluster>-cluster-secret`;
    /// reusing it keeps resyncs from changing it.
    pub existing_cluster_secret: Option<String>,
    /// The encryption key ids accepted in this pass, active first (empty
    /// without `spec.encryption`).
    pub encryption_key_ids: Vec<String>,
}

/// Source of generated secret values, injected so builders stay pure.
pub trait Randomness: Send + Sync {
    /// A random alphanumeric string of `len` characters.
    fn alphanumeric(&self, len: usize) -> String;
}

/// Randomness from the operating system's generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandomness;

impl Randomness for OsRandomness {
    fn alphanumeric(&self, len: usize) -> String {
        use rand::Rng;
        rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(len)
            .map(char::from)
            .collect()
    }
}

/// Builds every desired object for `cluster`.
pub fn build(cluster: &FlyMQCluster, inputs: &Inputs, random: &dyn Randomness) -> Result<Desired, BuildError> {
    let rendered = config::render(cluster)?;
    let config_map = config::config_map(cluster, &rendered)?;
    let config_hash = config::hash(&rendered);
    let mut secrets = Vec::new();
    if let Some(s) = secret::admin_secret(cluster, inputs.existing_admin_password.as_deref(), random)? {
        secrets.push(s);
    }
    secrets.push(secret::cluster_secret(
        cluster,
        inputs.existing_cluster_secret.as_deref(),
        random,
    )?);
    Ok(Desired {
        config_map,
        identity: identity::config_map(cluster, inputs.cluster_id.as_deref())?,
        secrets,
        certificate: tls::certificate(cluster)?,
        headless_service: service::headless(cluster)?,
        client_service: service::client(cluster)?,
        stateful_set: statefulset::stateful_set(cluster, &config_hash, inputs)?,
        pdb: pdb::pdb(cluster)?,
        network_policy: network_policy::network_policy(cluster)?,
        service_monitor: monitoring::service_monitor(cluster)?,
    })
}

/// The cluster's namespace and name, or an error when either is missing.
pub fn ns_name(cluster: &FlyMQCluster) -> Result<(String, String), BuildError> {
    let ns = cluster.namespace().ok_or(BuildError::MissingMetadata("namespace"))?;
    let name = cluster.meta().name.clone().ok_or(BuildError::MissingMetadata("name"))?;
    Ok((ns, name))
}

/// Labels that select the cluster's broker pods (stable: never change them).
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "flymq".to_string()),
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
        ("app.kubernetes.io/component".to_string(), "broker".to_string()),
    ])
}

/// Standard labels on every object of a cluster.
pub fn labels(cluster: &FlyMQCluster, name: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(name);
    l.insert("app.kubernetes.io/part-of".into(), "flymq".into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    l.insert(
        "app.kubernetes.io/version".into(),
        label_value(&cluster.spec.image.version()),
    );
    l
}

/// Truncates and cleans a string to a valid label value.
fn label_value(v: &str) -> String {
    let cleaned: String = v
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// Metadata of an object owned by `cluster`: name, namespace, labels and a
/// controller owner reference (so Kubernetes garbage-collects it).
pub fn owned_meta(cluster: &FlyMQCluster, object_name: String) -> Result<ObjectMeta, BuildError> {
    let (ns, name) = ns_name(cluster)?;
    Ok(ObjectMeta {
        name: Some(object_name),
        namespace: Some(ns),
        labels: Some(labels(cluster, &name)),
        owner_references: cluster.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    })
}

/// Name of the headless Service.
pub fn headless_name(name: &str) -> String {
    format!("{name}-headless")
}

/// Name of the generated inter-broker secret.
pub fn cluster_secret_name(name: &str) -> String {
    format!("{name}-cluster-secret")
}

/// Name of the generated admin Secret.
pub fn admin_secret_name(cluster: &FlyMQCluster, name: &str) -> String {
    cluster
        .spec
        .auth
        .admin_secret_name
        .clone()
        .unwrap_or_else(|| format!("{name}-admin"))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Shared fixtures for builder unit tests.
    use super::Randomness;
    use crate::crd::FlyMQCluster;

    /// Deterministic "randomness".
    pub struct Fixed;
    impl Randomness for Fixed {
        fn alphanumeric(&self, len: usize) -> String {
            "x".repeat(len)
        }
    }

    /// A cluster with the given spec JSON, namespace `prod`, a uid and generation 1.
    pub fn cluster(spec: serde_json::Value) -> FlyMQCluster {
        let mut c = FlyMQCluster::new("demo", serde_json::from_value(spec).expect("valid spec"));
        c.metadata.namespace = Some("prod".into());
        c.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
        c.metadata.generation = Some(1);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn labels_carry_version_and_owner() {
        let c = cluster(serde_json::json!({"image": {"name": "repo/flymq:1.2.3"}}));
        let meta = owned_meta(&c, "demo-x".into()).expect("meta");
        let labels = meta.labels.expect("labels");
        assert_eq!(labels["app.kubernetes.io/version"], "1.2.3");
        assert_eq!(labels["app.kubernetes.io/instance"], "demo");
        let owner = &meta.owner_references.expect("owner")[0];
        assert_eq!(owner.kind, "FlyMQCluster");
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn label_value_is_cleaned() {
        assert_eq!(label_value("sha256:abc"), "sha256_abc");
        assert_eq!(label_value(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn missing_namespace_is_an_error() {
        let mut c = cluster(serde_json::json!({}));
        c.metadata.namespace = None;
        assert_eq!(
            build(&c, &Inputs::default(), &Fixed).map(|_| ()),
            Err(BuildError::MissingMetadata("namespace"))
        );
    }

    #[test]
    fn os_randomness_is_alphanumeric_and_varies() {
        let a = OsRandomness.alphanumeric(32);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, OsRandomness.alphanumeric(32));
    }
}
