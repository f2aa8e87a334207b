//! Operator-generated Secrets.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::{BuildError, Randomness, admin_secret_name, cluster_secret_name, ns_name, owned_meta};
use crate::crd::FlyMQCluster;

/// User name of the built-in admin in a generated admin Secret.
pub const ADMIN_USERNAME: &str = "admin";
/// Length of generated passwords.
pub const PASSWORD_LEN: usize = 32;

/// The generated admin Secret `<cluster>-admin`, or `None` when the user
/// supplies `spec.auth.adminSecretName`. An `existing` password is reused so
/// that resyncs never rotate it; a new one is drawn from `random` only when
/// the Secret does not exist yet.
pub fn admin_secret(
    cluster: &FlyMQCluster,
    existing: Option<&str>,
    random: &dyn Randomness,
) -> Result<Option<Secret>, BuildError> {
    if cluster.spec.auth.admin_secret_name.is_some() {
        return Ok(None);
    }
    let (_, name) = ns_name(cluster)?;
    let password = match existing {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => random.alphanumeric(PASSWORD_LEN),
    };
    Ok(Some(Secret {
        metadata: owned_meta(cluster, admin_secret_name(cluster, &name))?,
        type_: Some("kubernetes.io/basic-auth".into()),
        data: Some(
            [
                ("username".to_string(), ByteString(ADMIN_USERNAME.as_bytes().to_vec())),
                ("password".to_string(), ByteString(password.into_bytes())),
            ]
            .into(),
        ),
        ..Secret::default()
    }))
}

/// Key of the inter-broker secret in `<cluster>-cluster-secret`.
pub const CLUSTER_SECRET_KEY: &str = "secret";
/// Length of a generated inter-broker secret.
pub const CLUSTER_SECRET_LEN: usize = 64;

/// The Secret `<cluster>-cluster-secret` holding the shared inter-broker
/// secret the brokers read as `FLYMQ_CLUSTER_SECRET` (docs/security.md,
/// "Inter-broker authentication"). Generated once: an `existing` value is
/// always kept, so resyncs never change it (brokers with different secrets
/// refuse each other).
pub fn cluster_secret(
    cluster: &FlyMQCluster,
    existing: Option<&str>,
    random: &dyn Randomness,
) -> Result<Secret, BuildError> {
    let (_, name) = ns_name(cluster)?;
    let value = match existing {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => random.alphanumeric(CLUSTER_SECRET_LEN),
    };
    Ok(Secret {
        metadata: owned_meta(cluster, cluster_secret_name(&name))?,
        type_: Some("Opaque".into()),
        data: Some([(CLUSTER_SECRET_KEY.to_string(), ByteString(value.into_bytes()))].into()),
        ..Secret::default()
    })
}

/// Key of the encryption keys in `<cluster>-encryption`.
pub const ENCRYPTION_KEYS_KEY: &str = "keys";

/// The Secret the brokers read their encryption keys from (written by the
/// operator after checking the user's keys): `<cluster>-encryption`.
pub fn encryption_secret_name(name: &str) -> String {
    format!("{name}-encryption")
}

/// Reads the value stored in a cluster secret, if it has a usable one.
pub fn stored_cluster_secret(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(CLUSTER_SECRET_KEY)?;
    String::from_utf8(bytes.0.clone()).ok().filter(|v| !v.trim().is_empty())
}

/// Reads the password stored in an admin Secret, if it has a valid one.
pub fn stored_password(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get("password")?;
    String::from_utf8(bytes.0.clone()).ok().filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::{Fixed, cluster};

    fn password(s: &Secret) -> String {
        stored_password(s).expect("password")
    }

    #[test]
    fn generates_once_then_reuses() {
        let c = cluster(serde_json::json!({}));
        let fresh = admin_secret(&c, None, &Fixed).expect("builds").expect("generated");
        assert_eq!(fresh.metadata.name.as_deref(), Some("demo-admin"));
        assert_eq!(password(&fresh), "x".repeat(PASSWORD_LEN));
        let again = admin_secret(&c, Some("kept"), &Fixed)
            .expect("builds")
            .expect("generated");
        assert_eq!(password(&again), "kept");
    }

    #[test]
    fn cluster_secret_is_generated_once_then_kept() {
        let c = cluster(serde_json::json!({}));
        let fresh = cluster_secret(&c, None, &Fixed).expect("builds");
        assert_eq!(fresh.metadata.name.as_deref(), Some("demo-cluster-secret"));
        assert!(fresh.metadata.owner_references.is_some(), "owned by the FlyMQCluster");
        assert_eq!(
            stored_cluster_secret(&fresh).as_deref(),
            Some("x".repeat(CLUSTER_SECRET_LEN).as_str())
        );
        let kept = cluster_secret(&c, Some("already-there-0123456789"), &Fixed).expect("builds");
        assert_eq!(
            stored_cluster_secret(&kept).as_deref(),
            Some("already-there-0123456789")
        );
        let empty = cluster_secret(&c, Some(""), &Fixed).expect("builds");
        assert_eq!(stored_cluster_secret(&empty).map(|v| v.len()), Some(CLUSTER_SECRET_LEN));
    }

    #[test]
    fn user_supplied_secret_is_not_generated() {
        let c = cluster(serde_json::json!({"auth": {"adminSecretName": "mine"}}));
        assert_eq!(admin_secret(&c, None, &Fixed), Ok(None));
    }
}
