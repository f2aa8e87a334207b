//! The optional prometheus-operator ServiceMonitor (an unstructured object:
//! its CRD may not be installed, and we do not depend on its Rust types).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::service::SERVICE_ROLE_LABEL;
use super::{BuildError, ns_name, owned_meta, selector_labels};
use crate::crd::FlyMQCluster;

/// API resource of `monitoring.coreos.com/v1` ServiceMonitor.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// `<cluster>` ServiceMonitor scraping `/metrics` on every broker through
/// the headless Service, when `spec.metrics.serviceMonitor.enabled`.
pub fn service_monitor(cluster: &FlyMQCluster) -> Result<Option<DynamicObject>, BuildError> {
    let sm = &cluster.spec.metrics.service_monitor;
    if !sm.enabled {
        return Ok(None);
    }
    let (_, name) = ns_name(cluster)?;
    let mut metadata = owned_meta(cluster, name.clone())?;
    metadata.labels.get_or_insert_default().extend(sm.labels.clone());
    let mut match_labels = selector_labels(&name);
    match_labels.insert(SERVICE_ROLE_LABEL.into(), "headless".into());
    let mut endpoint = json!({"port": "metrics", "path": "/metrics"});
    if let Some(interval) = &sm.interval {
        endpoint["interval"] = json!(interval);
    }
    let mut obj = DynamicObject::new(&name, &service_monitor_resource());
    obj.metadata = metadata;
    obj.data = json!({"spec": {
        "selector": {"matchLabels": match_labels},
        "endpoints": [endpoint],
    }});
    Ok(Some(obj))
}
