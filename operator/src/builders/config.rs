//! The broker configuration file (`flymq.yaml`) and the ConfigMap holding it.
//!
//! The broker's configuration is a flat mapping of keys and it refuses
//! unknown keys, so `spec.config` is flat too. The operator owns the
//! listener addresses, the data directory and the TLS file paths;
//! `spec.config` sets everything else; `worker_threads` defaults to the
//! container's CPU (limit, else request) unless `spec.config` sets it.
//! Per-pod values (node id, advertised
//! address, seeds) and secrets are passed as environment variables by the
//! StatefulSet, never written here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};

use super::{ADMIN_PORT, BuildError, CLIENT_PORT, CLUSTER_PORT, HEALTH_PORT, METRICS_PORT, ns_name, owned_meta};
use crate::crd::FlyMQCluster;

/// Key of the configuration file inside the ConfigMap.
pub const CONFIG_FILE: &str = "flymq.yaml";
/// Where the ConfigMap is mounted in the broker container.
pub const CONFIG_DIR: &str = "/etc/flymq";
/// Where the data volume is mounted.
pub const DATA_MOUNT: &str = "/var/lib/flymq";
/// The broker's data directory (a sub-directory, so `lost+found` is not in it).
pub const DATA_DIR: &str = "/var/lib/flymq/data";
/// Where the TLS Secret is mounted.
pub const TLS_DIR: &str = "/etc/flymq/tls";

/// Keys the operator sets (in the file or through the environment) and
/// `spec.config` may not override. Every `tls_*` key is reserved as well.
pub const RESERVED_KEYS: &[&str] = &[
    "data_dir",
    "bind_addr",
    "cluster_addr",
    "metrics_addr",
    "health_addr",
    "admin_addr",
    "node_id",
    "seeds",
    "advertise_addr",
    "advertise_cluster",
    "encryption_key",
    "cluster_id",
    "cluster_bootstrap",
];

fn is_reserved(key: &str) -> bool {
    RESERVED_KEYS.contains(&key) || key.starts_with("tls_")
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Renders the broker configuration YAML for `cluster`.
pub fn render(cluster: &FlyMQCluster) -> Result<String, BuildError> {
    let mut root = Mapping::new();
    let mut set = |k: &str, v: Value| {
        root.insert(Value::from(k), v);
    };
    set("data_dir", DATA_DIR.into());
    set("bind_addr", format!("0.0.0.0:{CLIENT_PORT}").into());
    set("cluster_addr", format!("0.0.0.0:{CLUSTER_PORT}").into());
    set("metrics_addr", format!("0.0.0.0:{METRICS_PORT}").into());
    set("health_addr", format!("0.0.0.0:{HEALTH_PORT}").into());
    set("admin_addr", format!("0.0.0.0:{ADMIN_PORT}").into());
    set("log_json", true.into());
    if let Some(tls) = &cluster.spec.tls {
        // Each broker's own certificate and key come from the pod's
        // environment (`FLYMQ_TLS_CERT_FILE`, `$(POD_NAME)`), see statefulset.rs.
        set("tls_ca_file", format!("{TLS_DIR}/ca.crt").into());
        set("tls_enabled", true.into());
        let client_auth = if tls.require_client_cert { "required" } else { "none" };
        set("tls_client_auth", client_auth.into());
    }
    // A pod without a CPU limit sees every CPU of its node, and the
    // broker's runtime would start a thread per CPU: size it to the pod.
    if !cluster.spec.config.contains_key("worker_threads")
        && let Some(threads) = worker_threads_for(cluster.spec.resources.as_ref())
    {
        set("worker_threads", threads.into());
    }
    for (key, value) in &cluster.spec.config {
        if !valid_key(key) {
            return Err(BuildError::InvalidConfigKey(key.clone()));
        }
        if is_reserved(key) {
            return Err(BuildError::ReservedConfigKey(key.clone()));
        }
        root.insert(Value::from(key.as_str()), scalar(value));
    }

    let (ns, name) = ns_name(cluster)?;
    let body = serde_yaml::to_string(&Value::Mapping(root)).map_err(|e| BuildError::Render(e.to_string()))?;
    Ok(format!(
        "# Rendered by flymq-operator for FlyMQCluster {ns}/{name}; edit spec.config instead.\n{body}"
    ))
}

/// The broker's `worker_threads` for a container's CPU: its limit, else its
/// request, rounded up (at least 1). None when neither is set or the
/// quantity is not a plain CPU amount (`2`, `1.5`, `500m`): the broker then
/// keeps its default, one thread per CPU it can use.
fn worker_threads_for(resources: Option<&ResourceRequirements>) -> Option<u64> {
    let resources = resources?;
    let cpu = |m: &Option<BTreeMap<String, Quantity>>| m.as_ref().and_then(|m| m.get("cpu")).cloned();
    let quantity = cpu(&resources.limits).or_else(|| cpu(&resources.requests))?;
    let millis = cpu_millis(&quantity.0)?;
    Some(millis.div_ceil(1000).clamp(1, MAX_WORKER_THREADS))
}

/// Most worker threads the broker accepts (its `worker_threads` limit).
const MAX_WORKER_THREADS: u64 = 1024;

/// Millicores of a CPU quantity: `500m`, `2`, `1.5`; None for other forms.
fn cpu_millis(quantity: &str) -> Option<u64> {
    let quantity = quantity.trim();
    if let Some(millis) = quantity.strip_suffix('m') {
        return millis.parse().ok();
    }
    let cores: f64 = quantity.parse().ok()?;
    (0.0..1e9).contains(&cores).then(|| (cores * 1000.0).ceil() as u64)
}

/// Parses an override value as a YAML scalar (`1000` is a number, `true` a
/// bool), as the broker does for `--set`; anything else stays the literal
/// string.
fn scalar(raw: &str) -> Value {
    match serde_yaml::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_))) => v,
        _ => Value::String(raw.to_string()),
    }
}

/// Hex SHA-256 of the rendered configuration, put on the pod template so a
/// configuration change rolls the brokers.
pub fn hash(rendered: &str) -> String {
    let digest = Sha256::digest(rendered.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ConfigMap `<cluster>-config` with the rendered file.
pub fn config_map(cluster: &FlyMQCluster, rendered: &str) -> Result<ConfigMap, BuildError> {
    let (_, name) = ns_name(cluster)?;
    Ok(ConfigMap {
        metadata: owned_meta(cluster, config_map_name(&name))?,
        data: Some([(CONFIG_FILE.to_string(), rendered.to_string())].into()),
        ..ConfigMap::default()
    })
}

/// Name of the configuration ConfigMap.
pub fn config_map_name(name: &str) -> String {
    format!("{name}-config")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster;

    #[test]
    fn overrides_are_typed() {
        let c = cluster(serde_json::json!({"config": {
            "log_level": "debug", "acks": "all", "retention_bytes": "1000", "auto_create_topics": "false"
        }}));
        let yaml: Value = serde_yaml::from_str(&render(&c).expect("renders")).expect("valid yaml");
        assert_eq!(yaml["log_level"], Value::from("debug"));
        assert_eq!(yaml["retention_bytes"], Value::from(1000));
        assert_eq!(yaml["auto_create_topics"], Value::from(false));
        assert_eq!(yaml["bind_addr"], Value::from("0.0.0.0:9092"));
        assert_eq!(yaml["data_dir"], Value::from(DATA_DIR));
    }

    #[test]
    fn reserved_and_malformed_keys_are_refused() {
        let c = cluster(serde_json::json!({"config": {"data_dir": "/tmp"}}));
        assert_eq!(render(&c), Err(BuildError::ReservedConfigKey("data_dir".into())));
        let c = cluster(serde_json::json!({"config": {"tls_cert_file": "/x"}}));
        assert_eq!(render(&c), Err(BuildError::ReservedConfigKey("tls_cert_file".into())));
        for bad in ["raft.heartbeat_ms", "Log_level", "", "1x"] {
            let c = cluster(serde_json::json!({"config": {bad: "1"}}));
            assert_eq!(render(&c), Err(BuildError::InvalidConfigKey(bad.into())), "{bad}");
        }
    }

    #[test]
    fn hash_changes_with_config() {
        let a = render(&cluster(serde_json::json!({}))).expect("renders");
        let b = render(&cluster(serde_json::json!({"config": {"log_level": "debug"}}))).expect("renders");
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a).len(), 64);
    }

    #[test]
    fn worker_threads_follow_the_cpu_limit_else_the_request() {
        let threads = |spec: serde_json::Value| {
            let yaml: Value = serde_yaml::from_str(&render(&cluster(spec)).expect("renders")).expect("valid yaml");
            yaml.get("worker_threads").cloned()
        };
        assert_eq!(
            threads(serde_json::json!({})),
            None,
            "no resources: the broker's default"
        );
        let requests = |cpu: &str| serde_json::json!({"resources": {"requests": {"cpu": cpu}}});
        assert_eq!(threads(requests("2")), Some(Value::from(2)));
        assert_eq!(threads(requests("1500m")), Some(Value::from(2)), "rounded up");
        assert_eq!(threads(requests("250m")), Some(Value::from(1)), "at least one");
        assert_eq!(threads(requests("0.5")), Some(Value::from(1)));
        assert_eq!(threads(requests("2k")), None, "not a plain CPU amount");
        assert_eq!(
            threads(serde_json::json!({"resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "3"}}})),
            Some(Value::from(3)),
            "the limit wins"
        );
        assert_eq!(
            threads(serde_json::json!({"resources": {"requests": {"memory": "1Gi"}}})),
            None,
            "no CPU"
        );
        assert_eq!(
            threads(serde_json::json!({"resources": {"requests": {"cpu": "2"}}, "config": {"worker_threads": "6"}})),
            Some(Value::from(6)),
            "spec.config wins"
        );
    }

    #[test]
    fn tls_paths_when_enabled() {
        let c = cluster(serde_json::json!({"tls": {"secretName": "t", "requireClientCert": true}}));
        let yaml: Value = serde_yaml::from_str(&render(&c).expect("renders")).expect("valid yaml");
        assert_eq!(yaml["tls_ca_file"], Value::from("/etc/flymq/tls/ca.crt"));
        assert!(
            yaml.get("tls_cert_file").is_none(),
            "per broker, from the pod's environment"
        );
        assert_eq!(yaml["tls_enabled"], Value::from(true));
        assert_eq!(yaml["tls_client_auth"], Value::from("required"));
    }
}
