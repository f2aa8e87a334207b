//! TLS: the Secret the brokers mount, and the cert-manager Certificate that
//! fills it when `spec.tls.certManager` is set.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{BuildError, headless_name, ns_name, owned_meta};
use crate::crd::FlyMQCluster;

/// API resource of `cert-manager.io/v1` Certificate.
pub fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

/// The TLS Secret the brokers mount, if TLS is enabled.
pub fn secret_name(cluster: &FlyMQCluster) -> Option<String> {
    let tls = cluster.spec.tls.as_ref()?;
    match (&tls.secret_name, &tls.cert_manager) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(_)) => cluster.metadata.name.as_ref().map(|n| format!("{n}-tls")),
        (None, None) => None,
    }
}

/// DNS names the broker certificate must cover: the client Service and every
/// pod behind the headless Service.
pub fn dns_names(ns: &str, name: &str) -> Vec<String> {
    let headless = headless_name(name);
    vec![
        name.to_string(),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}.svc.cluster.local"),
        format!("*.{headless}.{ns}.svc"),
        format!("*.{headless}.{ns}.svc.cluster.local"),
    ]
}

/// `<cluster>-tls` Certificate when cert-manager issues the certificate.
pub fn certificate(cluster: &FlyMQCluster) -> Result<Option<DynamicObject>, BuildError> {
    let Some(cm) = cluster.spec.tls.as_ref().and_then(|t| t.cert_manager.as_ref()) else {
        return Ok(None);
    };
    let (ns, name) = ns_name(cluster)?;
    let cert_name = format!("{name}-tls");
    let mut obj = DynamicObject::new(&cert_name, &certificate_resource());
    obj.metadata = owned_meta(cluster, cert_name.clone())?;
    obj.data = json!({"spec": {
        "secretName": cert_name,
        "dnsNames": dns_names(&ns, &name),
        "issuerRef": {
            "name": cm.issuer_ref.name,
            "kind": cm.issuer_ref.kind,
            "group": cm.issuer_ref.group,
        },
        "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
    }});
    Ok(Some(obj))
}
