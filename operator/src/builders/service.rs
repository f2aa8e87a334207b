//! The headless and the client Service.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    ADMIN_PORT, BuildError, CLIENT_PORT, CLUSTER_PORT, METRICS_PORT, headless_name, ns_name, owned_meta,
    selector_labels,
};
use crate::crd::FlyMQCluster;

/// Label telling the two Services apart (the ServiceMonitor selects `headless`).
pub const SERVICE_ROLE_LABEL: &str = "flymq.io/service";

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// `<cluster>-headless`: gives every broker a stable DNS name, lists pods
/// before they are ready (brokers find their seeds through it) and exposes
/// metrics of every pod, and the admin port the operator calls (kept off
/// the client Service; the NetworkPolicy admits only brokers and the
/// operator to it).
pub fn headless(cluster: &FlyMQCluster) -> Result<Service, BuildError> {
    let (_, name) = ns_name(cluster)?;
    let mut metadata = owned_meta(cluster, headless_name(&name))?;
    metadata
        .labels
        .get_or_insert_default()
        .insert(SERVICE_ROLE_LABEL.into(), "headless".into());
    Ok(Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&name)),
            ports: Some(vec![
                port("client", CLIENT_PORT),
                port("cluster", CLUSTER_PORT),
                port("metrics", METRICS_PORT),
                port("admin", ADMIN_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// `<cluster>`: what clients connect to (ready brokers only); the client
/// port only.
pub fn client(cluster: &FlyMQCluster) -> Result<Service, BuildError> {
    let (_, name) = ns_name(cluster)?;
    let mut metadata = owned_meta(cluster, name.clone())?;
    metadata
        .labels
        .get_or_insert_default()
        .insert(SERVICE_ROLE_LABEL.into(), "client".into());
    Ok(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(&name)),
            ports: Some(vec![port("client", CLIENT_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster;

    #[test]
    fn headless_publishes_not_ready_pods() {
        let s = headless(&cluster(serde_json::json!({}))).expect("builds");
        let spec = s.spec.expect("spec");
        assert_eq!(s.metadata.name.as_deref(), Some("demo-headless"));
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
    }

    #[test]
    fn only_the_headless_service_exposes_the_admin_port() {
        let h = headless(&cluster(serde_json::json!({}))).expect("builds");
        let ports: Vec<i32> = h
            .spec
            .expect("spec")
            .ports
            .expect("ports")
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(ports, vec![9092, 9093, 9094, 9096]);
    }

    #[test]
    fn client_exposes_only_the_client_port() {
        let s = client(&cluster(serde_json::json!({}))).expect("builds");
        let ports: Vec<i32> = s
            .spec
            .expect("spec")
            .ports
            .expect("ports")
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(ports, vec![9092]);
    }
}
