//! TLS objects: the Secret the brokers mount (`<cluster>-broker-tls`, only
//! ever written by the operator after its certificates passed the checks of
//! [`crate::pki`]), the operator CA's Secret, the CA bundle Secret for
//! applications, and the cert-manager Certificate when
//! `spec.tls.certManager` is set.
//!
//! Keys of `<cluster>-broker-tls`: `ca.crt`, `<pod>.crt` and `<pod>.key`
//! per broker (each broker reads its own through `$(POD_NAME)`), and
//! `operator.crt` / `operator.key`, the operator's client certificate on
//! the admin API.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{BuildError, headless_name, ns_name, owned_meta};
use crate::crd::FlyMQCluster;
use crate::pki::KeyedCert;

/// Key of the CA certificate (bundle) in the TLS Secrets.
pub const CA_CERT_KEY: &str = "ca.crt";
/// Key of the CA's private key in `<cluster>-ca`.
pub const CA_KEY_KEY: &str = "ca.key";
/// Name of the operator's own entry in `<cluster>-broker-tls`.
pub const OPERATOR_ENTRY: &str = "operator";

/// The Secret the brokers mount: `<cluster>-broker-tls`.
pub fn broker_secret_name(name: &str) -> String {
    format!("{name}-broker-tls")
}

/// The operator CA's Secret (certificate and key): `<cluster>-ca`.
pub fn ca_secret_name(name: &str) -> String {
    format!("{name}-ca")
}

/// The CA bundle for applications (`ca.crt` only): `<cluster>-ca-bundle`.
pub fn bundle_secret_name(name: &str) -> String {
    format!("{name}-ca-bundle")
}

/// The Secret the broker certificate is read from when the operator does not
/// issue it: `spec.tls.secretName`, or `<cluster>-tls` written by
/// cert-manager. `None` for the operator's own CA (or without TLS).
pub fn source_secret_name(cluster: &FlyMQCluster) -> Option<String> {
    let tls = cluster.spec.tls.as_ref()?;
    match (&tls.secret_name, &tls.cert_manager) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(_)) => cluster.metadata.name.as_ref().map(|n| format!("{n}-tls")),
        (None, None) => None,
    }
}

/// Secret keys of a broker's (or the operator's) certificate and key.
pub fn entry_keys(entry: &str) -> (String, String) {
    (format!("{entry}.crt"), format!("{entry}.key"))
}

fn secret(cluster: &FlyMQCluster, name: String, data: BTreeMap<String, ByteString>) -> Result<Secret, BuildError> {
    Ok(Secret {
        metadata: owned_meta(cluster, name)?,
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    })
}

/// `<cluster>-ca`: the operator CA's certificate and key (never mounted by
/// the brokers).
pub fn ca_secret(cluster: &FlyMQCluster, ca: &KeyedCert) -> Result<Secret, BuildError> {
    let (_, name) = ns_name(cluster)?;
    let data = BTreeMap::from([
        (CA_CERT_KEY.to_string(), ByteString(ca.cert.clone().into_bytes())),
        (CA_KEY_KEY.to_string(), ByteString(ca.key.as_bytes().to_vec())),
    ]);
    secret(cluster, ca_secret_name(&name), data)
}

/// `<cluster>-broker-tls`: the CA bundle and one certificate per entry
/// (`<pod>` or [`OPERATOR_ENTRY`]).
pub fn broker_secret(
    cluster: &FlyMQCluster,
    ca_pem: &str,
    entries: &[(String, KeyedCert)],
) -> Result<Secret, BuildError> {
    let (_, name) = ns_name(cluster)?;
    let mut data = BTreeMap::from([(CA_CERT_KEY.to_string(), ByteString(ca_pem.as_bytes().to_vec()))]);
    for (entry, cert) in entries {
        let (crt, key) = entry_keys(entry);
        data.insert(crt, ByteString(cert.cert.clone().into_bytes()));
        data.insert(key, ByteString(cert.key.as_bytes().to_vec()));
    }
    secret(cluster, broker_secret_name(&name), data)
}

/// `<cluster>-ca-bundle`: what applications need to verify the brokers.
pub fn bundle_secret(cluster: &FlyMQCluster, ca_pem: &str) -> Result<Secret, BuildError> {
    let (_, name) = ns_name(cluster)?;
    let data = BTreeMap::from([(CA_CERT_KEY.to_string(), ByteString(ca_pem.as_bytes().to_vec()))]);
    secret(cluster, bundle_secret_name(&name), data)
}

/// API resource of `cert-manager.io/v1` Certificate.
pub fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

/// The TLS Secret the brokers mount, if TLS is enabled.
pub fn secret_name(cluster: &FlyMQCluster) -> Option<String> {
    cluster.spec.tls.as_ref()?;
    cluster.metadata.name.as_deref().map(broker_secret_name)
}

/// Names of the Services every broker certificate covers: the client
/// Service and the headless Service (the operator's admin API address).
fn service_names(ns: &str, name: &str) -> Vec<String> {
    let headless = headless_name(name);
    vec![
        name.to_string(),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}.svc.cluster.local"),
        format!("{headless}.{ns}.svc"),
        format!("{headless}.{ns}.svc.cluster.local"),
    ]
}

/// DNS names of a certificate shared by every broker (cert-manager): the
/// Services and every pod behind the headless Service.
pub fn dns_names(ns: &str, name: &str) -> Vec<String> {
    let headless = headless_name(name);
    let mut names = service_names(ns, name);
    names.push(format!("*.{headless}.{ns}.svc"));
    names.push(format!("*.{headless}.{ns}.svc.cluster.local"));
    names
}

/// DNS names of broker `pod`'s own certificate: its headless name and the
/// Services.
pub fn pod_dns_names(ns: &str, name: &str, pod: &str) -> Vec<String> {
    let headless = headless_name(name);
    let mut names = vec![
        format!("{pod}.{headless}.{ns}.svc"),
        format!("{pod}.{headless}.{ns}.svc.cluster.local"),
    ];
    names.extend(service_names(ns, name));
    names
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
