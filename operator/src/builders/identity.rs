//! The cluster identity ConfigMap `<cluster>-identity`: whether a broker may
//! bootstrap a new cluster, and the id of the cluster the brokers formed.
//!
//! The brokers read both through `configMapKeyRef` environment variables
//! (`FLYMQ_CLUSTER_BOOTSTRAP`, `FLYMQ_CLUSTER_ID`), so the pod template never
//! changes when the id is recorded: nothing rolls, and every broker started
//! afterwards (a restart, a replaced pod, a pod whose volume was lost) gets
//! the id with bootstrapping off.

use k8s_openapi::api::core::v1::ConfigMap;

use super::{BuildError, ns_name, owned_meta};
use crate::crd::FlyMQCluster;

/// Key holding `auto` or `never` (the broker's `FLYMQ_CLUSTER_BOOTSTRAP`).
pub const BOOTSTRAP_KEY: &str = "bootstrap";
/// Key holding the cluster id, empty until known (`FLYMQ_CLUSTER_ID`).
pub const CLUSTER_ID_KEY: &str = "cluster-id";
/// Before the first bootstrap: node 0 may create the cluster when its disk is
/// empty and no seed belongs to a cluster.
pub const BOOTSTRAP_AUTO: &str = "auto";
/// After it: never create a cluster, always join through the seeds.
pub const BOOTSTRAP_NEVER: &str = "never";

/// Name of the identity ConfigMap.
pub fn identity_name(name: &str) -> String {
    format!("{name}-identity")
}

/// The identity ConfigMap for `cluster_id` (the id recorded in the status,
/// if any).
pub fn config_map(cluster: &FlyMQCluster, cluster_id: Option<&str>) -> Result<ConfigMap, BuildError> {
    let (_, name) = ns_name(cluster)?;
    let id = cluster_id.filter(|id| !id.is_empty());
    let bootstrap = if id.is_some() { BOOTSTRAP_NEVER } else { BOOTSTRAP_AUTO };
    Ok(ConfigMap {
        metadata: owned_meta(cluster, identity_name(&name))?,
        data: Some(
            [
                (BOOTSTRAP_KEY.to_string(), bootstrap.to_string()),
                (CLUSTER_ID_KEY.to_string(), id.unwrap_or_default().to_string()),
            ]
            .into(),
        ),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster;

    fn data(cm: &ConfigMap) -> (String, String) {
        let d = cm.data.clone().unwrap_or_default();
        (d[BOOTSTRAP_KEY].clone(), d[CLUSTER_ID_KEY].clone())
    }

    #[test]
    fn bootstrapping_is_allowed_only_until_the_cluster_id_is_known() {
        let c = cluster(serde_json::json!({}));
        let before = config_map(&c, None).expect("builds");
        assert_eq!(before.metadata.name.as_deref(), Some("demo-identity"));
        assert_eq!(data(&before), ("auto".into(), String::new()));
        assert_eq!(
            data(&config_map(&c, Some("")).expect("builds")),
            ("auto".into(), String::new())
        );
        let after = config_map(&c, Some("c-7f3a")).expect("builds");
        assert_eq!(data(&after), ("never".into(), "c-7f3a".into()));
    }
}
