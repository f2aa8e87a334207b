//! The NetworkPolicy of the broker pods.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    ADMIN_PORT, BuildError, CLIENT_PORT, CLUSTER_PORT, HEALTH_PORT, METRICS_PORT, ns_name, owned_meta, selector_labels,
};
use crate::crd::FlyMQCluster;

/// The label of the operator's pods (the Helm chart's `app.kubernetes.io/name`).
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "flymq-operator");

fn ports(numbers: &[i32]) -> Option<Vec<NetworkPolicyPort>> {
    Some(
        numbers
            .iter()
            .map(|&p| NetworkPolicyPort {
                port: Some(IntOrString::Int(p)),
                protocol: Some("TCP".into()),
                ..NetworkPolicyPort::default()
            })
            .collect(),
    )
}

fn pods(labels: BTreeMap<String, String>, any_namespace: bool) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(labels),
            ..LabelSelector::default()
        }),
        // An empty namespace selector: every namespace (the operator may run
        // in its own).
        namespace_selector: any_namespace.then(LabelSelector::default),
        ..NetworkPolicyPeer::default()
    }
}

/// `<cluster>`, or `None` when `spec.networkPolicy.enabled` is false: the
/// client (9092), metrics (9094) and health (9095) ports are open to
/// everyone; the Raft port (9093) only to this cluster's brokers; the admin
/// port (9096) only to its brokers and to the operator's pods.
pub fn network_policy(cluster: &FlyMQCluster) -> Result<Option<NetworkPolicy>, BuildError> {
    if !cluster.spec.network_policy.enabled {
        return Ok(None);
    }
    let (_, name) = ns_name(cluster)?;
    let brokers = || pods(selector_labels(&name), false);
    let operator = pods(
        BTreeMap::from([(OPERATOR_POD_LABEL.0.to_string(), OPERATOR_POD_LABEL.1.to_string())]),
        true,
    );
    Ok(Some(NetworkPolicy {
        metadata: owned_meta(cluster, name.clone())?,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    ports: ports(&[CLIENT_PORT, METRICS_PORT, HEALTH_PORT]),
                    from: None,
                },
                NetworkPolicyIngressRule {
                    ports: ports(&[CLUSTER_PORT]),
                    from: Some(vec![brokers()]),
                },
                NetworkPolicyIngressRule {
                    ports: ports(&[ADMIN_PORT]),
                    from: Some(vec![brokers(), operator]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster;

    fn rule_ports(r: &NetworkPolicyIngressRule) -> Vec<i32> {
        r.ports
            .iter()
            .flatten()
            .filter_map(|p| match p.port {
                Some(IntOrString::Int(n)) => Some(n),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn raft_only_from_brokers_admin_from_brokers_and_the_operator() {
        let np = network_policy(&cluster(serde_json::json!({})))
            .expect("builds")
            .expect("on by default");
        let spec = np.spec.expect("spec");
        let rules = spec.ingress.expect("rules");
        assert_eq!(rule_ports(&rules[0]), vec![9092, 9094, 9095]);
        assert!(rules[0].from.is_none(), "open to everyone");
        assert_eq!(rule_ports(&rules[1]), vec![9093]);
        let from = rules[1].from.as_ref().expect("restricted");
        assert_eq!(from.len(), 1);
        assert_eq!(
            from[0].pod_selector.as_ref().and_then(|s| s.match_labels.clone()),
            Some(selector_labels("demo"))
        );
        assert!(from[0].namespace_selector.is_none(), "same namespace only");
        assert_eq!(rule_ports(&rules[2]), vec![9096]);
        let from = rules[2].from.as_ref().expect("restricted");
        assert_eq!(from.len(), 2);
        let op = from[1]
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .expect("labels");
        assert_eq!(
            op.get("app.kubernetes.io/name").map(String::as_str),
            Some("flymq-operator")
        );
        // No rule opens 9093 or 9096 to everyone.
        for r in &rules {
            if r.from.is_none() {
                assert!(!rule_ports(r).iter().any(|p| *p == 9093 || *p == 9096));
            }
        }
    }

    #[test]
    fn can_be_switched_off() {
        let c = cluster(serde_json::json!({"networkPolicy": {"enabled": false}}));
        assert_eq!(network_policy(&c), Ok(None));
    }
}
