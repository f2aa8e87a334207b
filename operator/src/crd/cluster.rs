//! `FlyMQCluster`: a set of brokers run as one StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, SecretKeyRef};

/// Annotation that stops the operator from changing anything for this cluster
/// while its value is `"true"`.
pub const PAUSED_ANNOTATION: &str = "flymq.io/paused";

/// The broker image used when `spec.image.name` is not set.
pub const DEFAULT_IMAGE: &str = "ghcr.io/flymq/flymq:0.1.0";

/// Desired state of a FlyMQ cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flymq.io",
    version = "v1alpha1",
    kind = "FlyMQCluster",
    plural = "flymqclusters",
    singular = "flymqcluster",
    shortname = "fmq",
    category = "flymq",
    namespaced,
    status = "FlyMQClusterStatus",
    doc = "A FlyMQ broker cluster: brokers in a StatefulSet, their Services, configuration and Secrets.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.leader"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    )
)]
#[x_kube(validation = Rule::new("has(self.encryption) == has(oldSelf.encryption) && (!has(self.encryption) || self.encryption == oldSelf.encryption)").message("spec.encryption is set when the FlyMQCluster is created and cannot be added, changed or removed later: brokers refuse to encrypt a volume that holds plaintext, and encrypted data needs its keys; rotate keys by editing the key Secret"))]
#[x_kube(validation = Rule::new("has(self.tls) == has(oldSelf.tls)").message("spec.tls is set when the FlyMQCluster is created and cannot be added or removed later: during the roll, brokers with and without TLS could not reach each other"))]
#[serde(rename_all = "camelCase")]
pub struct FlyMQClusterSpec {
    /// Number of brokers (also set by `kubectl scale` and autoscalers through
    /// the scale subresource). Scaling down decommissions brokers one at a
    /// time, highest ordinal first: each one's replicas move to the others and
    /// it leaves the Raft membership before its pod is removed.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 99))]
    pub replicas: i32,
    /// Broker container image.
    #[serde(default)]
    pub image: ImageSpec,
    /// CPU and memory requests and limits of the broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Persistent storage of each broker.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Broker configuration keys (flat, lower_snake_case, e.g. `log_level`,
    /// `retention_ms`) written into the rendered broker YAML. Addresses, the
    /// data directory, node id, seeds and `tls_*` belong to the operator.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    // Key checks live in the builder (condition InvalidSpec), not in CEL: a
    // rule over every key of an unbounded map exceeds the API server's CEL
    // cost budget.
    pub config: BTreeMap<String, String>,
    /// TLS for the client and cluster listeners; absent means plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Encryption of data at rest. Cannot be changed or removed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionSpec>,
    /// Authentication: on by default, with the built-in admin user as the
    /// bootstrap admin.
    #[serde(default)]
    pub auth: AuthSpec,
    /// The NetworkPolicy that keeps the Raft and admin ports private.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
    /// Prometheus metrics scraping.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// Where the broker pods are scheduled.
    #[serde(default)]
    pub scheduling: SchedulingSpec,
}

fn default_replicas() -> i32 {
    3
}

/// The broker container image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Full image reference, e.g. `ghcr.io/flymq/flymq:0.1.0`.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1))]
    pub name: String,
    /// Image pull policy.
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// Secrets used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<LocalObjectReference>,
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_string()
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            name: default_image(),
            pull_policy: PullPolicy::default(),
            pull_secrets: Vec::new(),
        }
    }
}

impl ImageSpec {
    /// The image tag (the part after the last `:` that follows the last `/`),
    /// or the digest, or `latest` when neither is given.
    pub fn version(&self) -> String {
        if let Some((_, digest)) = self.name.split_once('@') {
            return digest.to_string();
        }
        let last = self.name.rsplit('/').next().unwrap_or(&self.name);
        match last.split_once(':') {
            Some((_, tag)) => tag.to_string(),
            None => "latest".to_string(),
        }
    }
}

/// Kubernetes image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when the image is not on the node.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The value Kubernetes expects in `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Persistent storage of each broker (one PersistentVolumeClaim per pod).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.size) == has(oldSelf.size) && (!has(self.size) || self.size == oldSelf.size)").message("storage.size cannot be changed yet: the operator does not resize volumes"))]
#[x_kube(validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("storage.storageClassName is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each broker's volume (`10Gi` when absent or null). Immutable
    /// for now.
    #[serde(default = "default_storage_size", skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// StorageClass of the volumes; absent uses the cluster default. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to the volumes when the cluster is deleted or scaled down.
    #[serde(default)]
    pub retention: RetentionSpec,
}

/// The volume size used when `storage.size` is absent or null.
pub const DEFAULT_STORAGE_SIZE: &str = "10Gi";

fn default_storage_size() -> Option<Quantity> {
    Some(Quantity(DEFAULT_STORAGE_SIZE.to_string()))
}

impl StorageSpec {
    /// The requested volume size, with the default for an absent or null
    /// `size`.
    pub fn size(&self) -> Quantity {
        self.size
            .clone()
            .unwrap_or_else(|| Quantity(DEFAULT_STORAGE_SIZE.to_string()))
    }
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
            retention: RetentionSpec::default(),
        }
    }
}

/// PersistentVolumeClaim retention (maps to the StatefulSet's
/// `persistentVolumeClaimRetentionPolicy`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// When the FlyMQCluster is deleted.
    #[serde(default)]
    pub when_deleted: VolumeRetention,
    /// When the cluster is scaled down.
    #[serde(default)]
    pub when_scaled: VolumeRetention,
}

/// Keep or delete a volume.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VolumeRetention {
    /// Keep the PersistentVolumeClaim (and the data).
    #[default]
    Retain,
    /// Delete the PersistentVolumeClaim.
    Delete,
}

impl VolumeRetention {
    /// The value Kubernetes expects.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeRetention::Retain => "Retain",
            VolumeRetention::Delete => "Delete",
        }
    }
}

/// TLS on every broker listener (client 9092, cluster 9093 with mutual TLS
/// between brokers, admin 9096). Certificates come from the operator's own
/// CA (`tls: {}`), from `secretName`, or from cert-manager (`certManager`);
/// applications find the CA in the Secret `<cluster>-ca-bundle`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!(has(self.secretName) && has(self.certManager))").message("set at most one of tls.secretName and tls.certManager (neither: the operator's own CA issues the certificates)"))]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// An existing `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`, and
    /// `ca.crt` for client verification), e.g. one written by cert-manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Have cert-manager issue the certificate: the operator creates a
    /// `Certificate` for the Services' DNS names, stored in `<cluster>-tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_manager: Option<CertManagerSpec>,
    /// Require client certificates signed by `ca.crt` (mTLS).
    #[serde(default)]
    pub require_client_cert: bool,
}

/// A cert-manager issuer reference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertManagerSpec {
    /// The issuer that signs the broker certificate.
    pub issuer_ref: IssuerRef,
}

/// cert-manager `issuerRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Issuer name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `Issuer` or `ClusterIssuer`.
    #[serde(default = "default_issuer_kind")]
    pub kind: String,
    /// Issuer API group.
    #[serde(default = "default_issuer_group")]
    pub group: String,
}

fn default_issuer_kind() -> String {
    "Issuer".to_string()
}

fn default_issuer_group() -> String {
    "cert-manager.io".to_string()
}

/// Encryption of record keys and values at rest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionSpec {
    /// Secret key holding the 64-hex-character AES-256 key
    /// (passed to the broker as `FLYMQ_ENCRYPTION_KEY`).
    pub key_secret_ref: SecretKeyRef,
}

/// Authentication and the built-in admin user.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Require authentication on the brokers (the default). Turn it off only
    /// for development: anyone who reaches the client port can then use
    /// every topic.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// An existing Secret with keys `username` and `password`. When absent the
    /// operator generates `<cluster>-admin` once and never rotates it by itself.
    /// Its user is the brokers' bootstrap admin and the operator's identity on
    /// the admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_secret_name: Option<String>,
}

impl Default for AuthSpec {
    fn default() -> Self {
        AuthSpec {
            enabled: true,
            admin_secret_name: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// A NetworkPolicy for the broker pods: the client (9092), metrics (9094)
/// and health (9095) ports stay open; only brokers reach the Raft port
/// (9093); only brokers and the operator reach the admin port (9096).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy `<cluster>` (the default).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        NetworkPolicySpec { enabled: true }
    }
}

/// Prometheus metrics.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Create a prometheus-operator `ServiceMonitor` for the brokers.
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
}

/// prometheus-operator ServiceMonitor settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create the ServiceMonitor (needs the prometheus-operator CRDs).
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval, e.g. `30s`; absent uses Prometheus' default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: Option<String>,
    /// Extra labels on the ServiceMonitor (to match a Prometheus selector).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Pod scheduling of the brokers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    /// Pod affinity. When absent the operator prefers spreading brokers over
    /// nodes (pod anti-affinity on `kubernetes.io/hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations of the broker pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Topology spread constraints of the broker pods. The operator fills in
    /// the label selector when it is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Node labels the broker pods require.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// PriorityClass of the broker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Observed state of a FlyMQ cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlyMQClusterStatus {
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `Running`, `Degraded` or `Paused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Broker pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Broker pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Broker version (the image tag) the cluster is converging to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Pod of the metadata Raft leader (`<cluster>-<node id>`), as last
    /// reported by the admin API's ClusterStatus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Members of the metadata Raft group, as last reported by the admin API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<ClusterMember>,
    /// Name of the Secret with the admin credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_secret_name: Option<String>,
    /// Id of the cluster the brokers formed, recorded after the first
    /// bootstrap. From then on every broker starts with it and with
    /// bootstrapping off, so a broker whose volume was lost rejoins this
    /// cluster instead of founding a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// `resourceVersion` of the admin Secret whose user and password the
    /// brokers have (applied by the operator; a change rotates them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_secret_version: Option<String>,
    /// Every encryption key id the brokers have been given (ids, never
    /// keys). A broker needs each of them to start, so the operator refuses
    /// a key Secret that drops one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encryption_key_ids: Vec<String>,
    /// Label selector of the broker pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `Ready`, `Progressing`, `Degraded` and `CatchingUp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A member of the metadata Raft group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMember {
    /// Node id (the broker pod's ordinal).
    pub id: i64,
    /// Address the broker advertises to clients (or, when it has none, its
    /// cluster address).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// `voter` or `learner`.
    pub role: String,
    /// `up` when the metadata leader heard from it recently, else `down`.
    pub health: String,
}

impl FlyMQCluster {
    /// Secrets the spec names that the operator does not own: the TLS
    /// source (`spec.tls.secretName`, or cert-manager's `<name>-tls`) and
    /// the encryption key Secret. A change to one reconciles the cluster.
    pub fn referenced_secrets(&self) -> Vec<String> {
        let mut names = Vec::new();
        if let Some(tls) = &self.spec.tls {
            match (&tls.secret_name, &tls.cert_manager, &self.metadata.name) {
                (Some(s), _, _) => names.push(s.clone()),
                (None, Some(_), Some(n)) => names.push(format!("{n}-tls")),
                _ => {}
            }
        }
        if let Some(enc) = &self.spec.encryption {
            names.push(enc.key_secret_ref.name.clone());
        }
        names
    }

    /// True when the pause annotation is set to `"true"`.
    pub fn is_paused(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSED_ANNOTATION))
            .is_some_and(|v| v == "true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use kube::core::cel::{validate_cel, validate_cel_update};

    fn cluster(spec: FlyMQClusterSpec) -> FlyMQCluster {
        FlyMQCluster::new("demo", spec)
    }

    fn minimal() -> FlyMQClusterSpec {
        serde_json::from_value(serde_json::json!({})).expect("an empty spec takes every default")
    }

    #[test]
    fn empty_spec_takes_defaults() {
        let spec = minimal();
        assert_eq!(spec.replicas, 3);
        assert_eq!(spec.image.name, DEFAULT_IMAGE);
        assert_eq!(spec.storage.size(), Quantity("10Gi".into()));
        assert_eq!(spec.image.version(), "0.1.0");
    }

    #[test]
    fn a_null_storage_size_decodes_and_takes_the_default() {
        let spec: FlyMQClusterSpec =
            serde_json::from_value(serde_json::json!({"storage": {"size": null}})).expect("null size decodes");
        assert_eq!(spec.storage.size, None);
        assert_eq!(spec.storage.size(), Quantity("10Gi".into()));
        let schema = serde_json::to_value(FlyMQCluster::crd()).expect("crd json");
        let size = &schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["storage"]
            ["properties"]["size"];
        assert_eq!(
            size["nullable"],
            serde_json::json!(true),
            "the CRD says what Rust accepts: {size}"
        );
    }

    #[test]
    fn kubectl_scale_and_autoscalers_drive_replicas() {
        let crd = serde_json::to_value(FlyMQCluster::crd()).expect("crd json");
        assert_eq!(
            crd["spec"]["versions"][0]["subresources"]["scale"],
            serde_json::json!({
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector"
            })
        );
    }

    #[test]
    fn image_version_from_reference() {
        let mut image = ImageSpec {
            name: "registry:5000/flymq".into(),
            ..ImageSpec::default()
        };
        assert_eq!(image.version(), "latest");
        image.name = "flymq@sha256:abc".into();
        assert_eq!(image.version(), "sha256:abc");
    }

    #[test]
    fn storage_class_is_immutable() {
        let old = cluster(minimal());
        assert!(validate_cel(&old).is_ok());
        let mut new = old.clone();
        new.spec.storage.storage_class_name = Some("fast".into());
        let err = validate_cel_update(&new, &old).expect_err("adding a class must be refused");
        assert!(err.to_string().contains("storageClassName is immutable"), "{err}");
        assert!(validate_cel_update(&old, &old).is_ok());
    }

    #[test]
    fn storage_size_is_immutable() {
        let old = cluster(minimal());
        let mut new = old.clone();
        new.spec.storage.size = Some(Quantity("20Gi".into()));
        let err = validate_cel_update(&new, &old).expect_err("resizing must be refused");
        assert!(err.to_string().contains("storage.size"), "{err}");
    }

    #[test]
    fn encryption_cannot_change_or_be_removed() {
        let mut old = cluster(minimal());
        old.spec.encryption = Some(EncryptionSpec {
            key_secret_ref: SecretKeyRef {
                name: "k".into(),
                key: "key".into(),
            },
        });
        let mut removed = old.clone();
        removed.spec.encryption = None;
        assert!(validate_cel_update(&removed, &old).is_err());
        let mut changed = old.clone();
        changed.spec.encryption = Some(EncryptionSpec {
            key_secret_ref: SecretKeyRef {
                name: "other".into(),
                key: "key".into(),
            },
        });
        assert!(validate_cel_update(&changed, &old).is_err());
        // Nor added to a running cluster (its volumes hold plaintext).
        let plain = cluster(minimal());
        assert!(validate_cel_update(&old, &plain).is_err());
        assert!(validate_cel_update(&plain, &plain).is_ok());
        assert!(validate_cel_update(&old, &old).is_ok());
    }

    #[test]
    fn tls_has_at_most_one_source_and_cannot_be_added_or_removed() {
        let mut c = cluster(minimal());
        c.spec.tls = Some(TlsSpec {
            secret_name: None,
            cert_manager: None,
            require_client_cert: false,
        });
        assert!(validate_cel(&c).is_ok(), "no source: the operator's own CA");
        c.spec.tls = Some(TlsSpec {
            secret_name: Some("tls".into()),
            cert_manager: None,
            require_client_cert: false,
        });
        assert!(validate_cel(&c).is_ok());
        c.spec.tls = Some(TlsSpec {
            secret_name: Some("tls".into()),
            cert_manager: Some(CertManagerSpec {
                issuer_ref: IssuerRef {
                    name: "ca".into(),
                    kind: "Issuer".into(),
                    group: "cert-manager.io".into(),
                },
            }),
            require_client_cert: false,
        });
        assert!(validate_cel(&c).is_err());
        let plain = cluster(minimal());
        let mut secure = plain.clone();
        secure.spec.tls = Some(TlsSpec {
            secret_name: None,
            cert_manager: None,
            require_client_cert: false,
        });
        let err = validate_cel_update(&secure, &plain).expect_err("adding TLS is refused");
        assert!(err.to_string().contains("spec.tls is set when"), "{err}");
        assert!(validate_cel_update(&plain, &secure).is_err(), "removing TLS is refused");
        let mut mtls = secure.clone();
        if let Some(t) = mtls.spec.tls.as_mut() {
            t.require_client_cert = true;
        }
        assert!(validate_cel_update(&mtls, &secure).is_ok(), "its settings may change");
    }

    #[test]
    fn pause_annotation() {
        let mut c = cluster(minimal());
        assert!(!c.is_paused());
        c.metadata.annotations = Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
        assert!(c.is_paused());
    }
}
