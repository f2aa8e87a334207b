//! The broker StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume,
    VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{CONFIG_DIR, CONFIG_FILE, DATA_MOUNT, TLS_DIR, config_map_name};
use super::identity::{BOOTSTRAP_KEY, CLUSTER_ID_KEY, identity_name};
use super::{
    ADMIN_PORT, BuildError, CLIENT_PORT, CLUSTER_PORT, HEALTH_PORT, Inputs, METRICS_PORT, admin_secret_name,
    cluster_secret_name, headless_name, labels, ns_name, owned_meta, selector_labels, tls,
};
use crate::crd::FlyMQCluster;

/// Pod template annotation holding the hash of the rendered configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "flymq.io/config-hash";
/// Pod annotation: the encryption key ids the brokers run with, active first.
pub const ENCRYPTION_KEYS_ANNOTATION: &str = "flymq.io/encryption-key-ids";
/// Name of the broker container.
pub const CONTAINER: &str = "flymq";
/// UID/GID the broker runs as (non-root; matches the image).
pub const RUN_AS: i64 = 10001;
/// Label Kubernetes (>= 1.32) puts on StatefulSet pods with their ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Most brokers listed in `FLYMQ_SEEDS`. A joining broker needs only one
/// live seed; a short fixed list keeps scale-ups beyond it from changing the
/// pod template (which would roll every broker).
pub const MAX_SEEDS: i32 = 3;

/// `FLYMQ_SEEDS`: the cluster port of the first brokers (at most
/// [`MAX_SEEDS`]) through the headless Service.
pub fn seeds(ns: &str, name: &str, replicas: i32) -> String {
    let headless = headless_name(name);
    (0..replicas.clamp(1, MAX_SEEDS))
        .map(|i| format!("{name}-{i}.{headless}.{ns}.svc:{CLUSTER_PORT}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env_config_map(name: &str, config_map: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: config_map.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("health".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// Prefer one broker per node unless the user set an affinity.
fn default_affinity(name: &str) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(name)),
                        ..LabelSelector::default()
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..PodAffinityTerm::default()
                },
            }]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn non_empty<K: Ord, V>(m: BTreeMap<K, V>) -> Option<BTreeMap<K, V>> {
    (!m.is_empty()).then_some(m)
}

fn non_empty_vec<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// Pod template annotations: a change rolls the brokers. The configuration
/// hash, and the encryption key ids (never keys) so a rotation restarts the
/// brokers onto the new active key.
fn pod_annotations(config_hash: &str, inputs: &Inputs) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string())]);
    if !inputs.encryption_key_ids.is_empty() {
        annotations.insert(
            ENCRYPTION_KEYS_ANNOTATION.to_string(),
            inputs.encryption_key_ids.join(","),
        );
    }
    annotations
}

/// The StatefulSet `<cluster>`. `config_hash` goes on the pod template so a
/// configuration change rolls the brokers.
pub fn stateful_set(cluster: &FlyMQCluster, config_hash: &str, inputs: &Inputs) -> Result<StatefulSet, BuildError> {
    let (ns, name) = ns_name(cluster)?;
    let spec = &cluster.spec;
    let headless = headless_name(&name);

    let mut env_vars = vec![
        env_field("POD_NAME", "metadata.name"),
        env_field("POD_NAMESPACE", "metadata.namespace"),
        env_field("POD_IP", "status.podIP"),
        env_field("FLYMQ_NODE_ID", &format!("metadata.labels['{POD_INDEX_LABEL}']")),
        env("FLYMQ_SEEDS", seeds(&ns, &name, spec.replicas)),
        env(
            "FLYMQ_ADVERTISE_ADDR",
            format!("$(POD_NAME).{headless}.{ns}.svc:{CLIENT_PORT}"),
        ),
    ];
    // Read at container start from the identity ConfigMap: recording the
    // cluster id after the first bootstrap changes no pod template.
    let identity = identity_name(&name);
    env_vars.push(env_config_map("FLYMQ_CLUSTER_BOOTSTRAP", &identity, BOOTSTRAP_KEY));
    env_vars.push(env_config_map("FLYMQ_CLUSTER_ID", &identity, CLUSTER_ID_KEY));
    let admin_secret = admin_secret_name(cluster, &name);
    env_vars.push(env_secret("FLYMQ_ADMIN_USERNAME", &admin_secret, "username"));
    env_vars.push(env_secret("FLYMQ_ADMIN_PASSWORD", &admin_secret, "password"));
    // Brokers in cluster mode authenticate each other with it.
    env_vars.push(env_secret(
        "FLYMQ_CLUSTER_SECRET",
        &cluster_secret_name(&name),
        super::secret::CLUSTER_SECRET_KEY,
    ));
    // Secure by default: the admin Secret's user is the bootstrap admin.
    env_vars.push(env("FLYMQ_AUTH_ENABLED", spec.auth.enabled.to_string()));
    // The keys the operator checked and copied (controller/encryption.rs),
    // never the user's Secret itself.
    if spec.encryption.is_some() {
        env_vars.push(env_secret(
            "FLYMQ_ENCRYPTION_KEY",
            &super::secret::encryption_secret_name(&name),
            super::secret::ENCRYPTION_KEYS_KEY,
        ));
    }
    // Each broker's own certificate in the operator's TLS Secret.
    if spec.tls.is_some() {
        env_vars.push(env("FLYMQ_TLS_CERT_FILE", format!("{TLS_DIR}/$(POD_NAME).crt")));
        env_vars.push(env("FLYMQ_TLS_KEY_FILE", format!("{TLS_DIR}/$(POD_NAME).key")));
    }

    let mut mounts = vec![
        mount("data", DATA_MOUNT, false),
        mount("config", CONFIG_DIR, true),
        mount("tmp", "/tmp", false),
    ];
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(&name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if let Some(secret) = tls::secret_name(cluster) {
        mounts.push(mount("tls", TLS_DIR, true));
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }

    let container = Container {
        name: CONTAINER.into(),
        image: Some(spec.image.name.clone()),
        image_pull_policy: Some(spec.image.pull_policy.as_str().into()),
        args: Some(vec!["--config".into(), format!("{CONFIG_DIR}/{CONFIG_FILE}")]),
        ports: Some(vec![
            container_port("client", CLIENT_PORT),
            container_port("cluster", CLUSTER_PORT),
            container_port("metrics", METRICS_PORT),
            container_port("health", HEALTH_PORT),
            container_port("admin", ADMIN_PORT),
        ]),
        env: Some(env_vars),
        resources: spec.resources.clone(),
        readiness_probe: Some(http_probe("/health/ready", 5, 3)),
        liveness_probe: Some(http_probe("/health/live", 10, 6)),
        // Raft catch-up after a long outage may take a while: give start-up
        // ten minutes before liveness applies.
        startup_probe: Some(http_probe("/health/live", 5, 120)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    let mut spread = spec.scheduling.topology_spread_constraints.clone();
    for c in &mut spread {
        if c.label_selector.is_none() {
            c.label_selector = Some(LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            });
        }
    }
    let spread: Vec<TopologySpreadConstraint> = spread;

    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        affinity: Some(
            spec.scheduling
                .affinity
                .clone()
                .unwrap_or_else(|| default_affinity(&name)),
        ),
        tolerations: non_empty_vec(spec.scheduling.tolerations.clone()),
        topology_spread_constraints: non_empty_vec(spread),
        node_selector: non_empty(spec.scheduling.node_selector.clone()),
        priority_class_name: spec.scheduling.priority_class_name.clone(),
        image_pull_secrets: non_empty_vec(spec.image.pull_secrets.clone()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(60),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    };

    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(selector_labels(&name)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), spec.storage.size())].into()),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };

    Ok(StatefulSet {
        metadata: owned_meta(cluster, name.clone())?,
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(headless),
            pod_management_policy: Some("Parallel".into()),
            // The operator rolls the brokers itself (see controller::roll):
            // one pod at a time, only when every voter is up and caught up,
            // leaderships moved off first, the metadata leader last.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(spec.storage.retention.when_deleted.as_str().into()),
                when_scaled: Some(spec.storage.retention.when_scaled.as_str().into()),
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(cluster, &name)),
                    annotations: Some(pod_annotations(config_hash, inputs)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster;

    fn env_of(s: &StatefulSet) -> Vec<EnvVar> {
        s.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| p.containers[0].env.clone().unwrap_or_default())
            .unwrap_or_default()
    }

    #[test]
    fn seeds_are_the_first_three_brokers() {
        assert_eq!(seeds("prod", "demo", 1), "demo-0.demo-headless.prod.svc:9093");
        assert_eq!(seeds("prod", "demo", 7), seeds("prod", "demo", 3));
    }

    #[test]
    fn seeds_list_every_ordinal_of_a_small_cluster() {
        assert_eq!(
            seeds("prod", "demo", 3),
            "demo-0.demo-headless.prod.svc:9093,demo-1.demo-headless.prod.svc:9093,demo-2.demo-headless.prod.svc:9093"
        );
    }

    #[test]
    fn pod_ip_and_node_id_come_from_the_downward_api() {
        let s = stateful_set(&cluster(serde_json::json!({})), "h", &Inputs::default()).expect("builds");
        let env = env_of(&s);
        let field = |n: &str| {
            env.iter()
                .find(|e| e.name == n)
                .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
                .map(|f| f.field_path.clone())
        };
        assert_eq!(field("POD_IP").as_deref(), Some("status.podIP"));
        assert_eq!(
            field("FLYMQ_NODE_ID").as_deref(),
            Some("metadata.labels['apps.kubernetes.io/pod-index']")
        );
    }

    #[test]
    fn cluster_secret_comes_from_the_generated_secret() {
        let s = stateful_set(&cluster(serde_json::json!({})), "h", &Inputs::default()).expect("builds");
        let env = env_of(&s);
        let secret = env
            .iter()
            .find(|e| e.name == "FLYMQ_CLUSTER_SECRET")
            .expect("FLYMQ_CLUSTER_SECRET is set");
        assert_eq!(secret.value, None, "never a literal value in the pod spec");
        let r = secret
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("secretKeyRef");
        assert_eq!((r.name.as_str(), r.key.as_str()), ("demo-cluster-secret", "secret"));
    }

    #[test]
    fn bootstrap_and_cluster_id_come_from_the_identity_config_map() {
        let s = stateful_set(&cluster(serde_json::json!({})), "h", &Inputs::default()).expect("builds");
        let env = env_of(&s);
        let from = |n: &str| {
            env.iter()
                .find(|e| e.name == n)
                .and_then(|e| e.value_from.as_ref()?.config_map_key_ref.as_ref())
                .map(|r| (r.name.clone(), r.key.clone()))
        };
        assert_eq!(
            from("FLYMQ_CLUSTER_BOOTSTRAP"),
            Some(("demo-identity".into(), "bootstrap".into()))
        );
        assert_eq!(
            from("FLYMQ_CLUSTER_ID"),
            Some(("demo-identity".into(), "cluster-id".into()))
        );
    }

    #[test]
    fn the_operator_drives_rolls() {
        let s = stateful_set(&cluster(serde_json::json!({})), "h", &Inputs::default()).expect("builds");
        let strategy = s.spec.and_then(|s| s.update_strategy).and_then(|u| u.type_);
        assert_eq!(strategy.as_deref(), Some("OnDelete"));
    }

    #[test]
    fn encryption_keys_come_from_the_checked_copy_never_inline_and_their_ids_roll_the_brokers() {
        let c = cluster(serde_json::json!({"encryption": {"keySecretRef": {"name": "k", "key": "hex"}}}));
        let inputs = Inputs {
            encryption_key_ids: vec!["00000002".into(), "00000001".into()],
            ..Inputs::default()
        };
        let s = stateful_set(&c, "h", &inputs).expect("builds");
        let key = env_of(&s)
            .into_iter()
            .find(|e| e.name == "FLYMQ_ENCRYPTION_KEY")
            .expect("env");
        assert!(key.value.is_none());
        let sel = key.value_from.and_then(|v| v.secret_key_ref).expect("secret ref");
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("demo-encryption", "keys"));
        let annotations = s
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .expect("annotations");
        assert_eq!(annotations[ENCRYPTION_KEYS_ANNOTATION], "00000002,00000001");
    }

    #[test]
    fn each_broker_reads_its_own_certificate() {
        let c = cluster(serde_json::json!({"tls": {}}));
        let s = stateful_set(&c, "h", &Inputs::default()).expect("builds");
        let env = env_of(&s);
        let value = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
        assert_eq!(
            value("FLYMQ_TLS_CERT_FILE").as_deref(),
            Some("/etc/flymq/tls/$(POD_NAME).crt")
        );
        assert_eq!(
            value("FLYMQ_TLS_KEY_FILE").as_deref(),
            Some("/etc/flymq/tls/$(POD_NAME).key")
        );
        let pos = |n: &str| env.iter().position(|e| e.name == n).expect("set");
        assert!(
            pos("POD_NAME") < pos("FLYMQ_TLS_CERT_FILE"),
            "$(POD_NAME) must be defined first"
        );
        let volume = s
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.volumes)
            .and_then(|v| v.into_iter().find(|v| v.name == "tls"))
            .and_then(|v| v.secret)
            .and_then(|s| s.secret_name);
        assert_eq!(volume.as_deref(), Some("demo-broker-tls"));
    }

    #[test]
    fn user_affinity_replaces_the_default() {
        let default = stateful_set(&cluster(serde_json::json!({})), "h", &Inputs::default()).expect("builds");
        let pod = default.spec.expect("spec").template.spec.expect("pod");
        assert!(pod.affinity.expect("affinity").pod_anti_affinity.is_some());
        let c = cluster(serde_json::json!({"scheduling": {"affinity": {"nodeAffinity": {}}}}));
        let pod = stateful_set(&c, "h", &Inputs::default())
            .expect("builds")
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod");
        let affinity = pod.affinity.expect("affinity");
        assert!(affinity.pod_anti_affinity.is_none() && affinity.node_affinity.is_some());
    }
}
