//! [`KubeCredentials`]: the operator's admin API credentials for a cluster:
//! its own user's Secret `<cluster>-operator` once that user exists, before
//! that the cluster's admin Secret (the brokers' bootstrap admin); and its
//! TLS material from `<cluster>-broker-tls`.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::{AdminCredentials, AdminError, AdminFuture, AdminTls, ClusterEndpoint, CredentialSource};
use crate::builders::{admin_secret_name, tls};
use crate::controller::admin_users::operator_secret_name;
use crate::crd::FlyMQCluster;

/// Reads each cluster's admin Secret when the cluster has authentication on.
pub struct KubeCredentials {
    client: Client,
}

impl KubeCredentials {
    /// A source reading through `client`.
    pub fn new(client: Client) -> Self {
        KubeCredentials { client }
    }
}

/// The credentials in an admin Secret (`username`, `password`), or what is
/// wrong with it (never its content).
pub fn from_secret(secret: &Secret) -> Result<AdminCredentials, String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let data = secret.data.as_ref();
    let text = |key: &str| -> Result<String, String> {
        let bytes = data
            .and_then(|d| d.get(key))
            .ok_or_else(|| format!("Secret {name} has no key '{key}'"))?;
        let value =
            String::from_utf8(bytes.0.clone()).map_err(|_| format!("key '{key}' of Secret {name} is not UTF-8"))?;
        if value.is_empty() {
            return Err(format!("key '{key}' of Secret {name} is empty"));
        }
        Ok(value)
    };
    Ok(AdminCredentials::new(text("username")?, text("password")?))
}

/// The operator's TLS material in `<cluster>-broker-tls`, or what is
/// missing (never its content).
pub fn tls_from_secret(secret: &Secret) -> Result<AdminTls, String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let (crt, key) = tls::entry_keys(tls::OPERATOR_ENTRY);
    let bytes = |k: &str| -> Result<Vec<u8>, String> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("Secret {name} has no key '{k}'"))
    };
    Ok(AdminTls {
        ca_pem: bytes(tls::CA_CERT_KEY)?,
        cert_pem: bytes(&crt)?,
        key_pem: zeroize::Zeroizing::new(bytes(&key)?),
    })
}

/// The error of a failed read for `cluster` (never a secret's content).
fn failed(cluster: &ClusterEndpoint, message: String) -> AdminError {
    AdminError::Credentials {
        cluster: format!("{}/{}", cluster.namespace, cluster.name),
        message,
    }
}

impl KubeCredentials {
    /// The FlyMQCluster behind `cluster`.
    async fn cluster(&self, cluster: &ClusterEndpoint) -> Result<FlyMQCluster, AdminError> {
        Api::<FlyMQCluster>::namespaced(self.client.clone(), &cluster.namespace)
            .get_opt(&cluster.name)
            .await
            .map_err(|e| failed(cluster, format!("reading the FlyMQCluster: {e}")))?
            .ok_or_else(|| failed(cluster, "the FlyMQCluster does not exist".into()))
    }

    /// Secret `name` in the cluster's namespace, if it exists.
    async fn secret(&self, cluster: &ClusterEndpoint, name: &str) -> Result<Option<Secret>, AdminError> {
        let ns = &cluster.namespace;
        Api::<Secret>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| failed(cluster, format!("reading Secret {ns}/{name}: {e}")))
    }
}

impl CredentialSource for KubeCredentials {
    fn tls<'a>(&'a self, cluster: &'a ClusterEndpoint) -> AdminFuture<'a, Option<AdminTls>> {
        Box::pin(async move {
            if self.cluster(cluster).await?.spec.tls.is_none() {
                return Ok(None);
            }
            let (ns, secret_name) = (&cluster.namespace, tls::broker_secret_name(&cluster.name));
            let secret = self.secret(cluster, &secret_name).await?.ok_or_else(|| {
                failed(
                    cluster,
                    format!(
                        "Secret {ns}/{secret_name} does not exist yet (the operator writes it once the \
                         certificates are issued)"
                    ),
                )
            })?;
            tls_from_secret(&secret).map(Some).map_err(|m| failed(cluster, m))
        })
    }

    fn credentials<'a>(&'a self, cluster: &'a ClusterEndpoint) -> AdminFuture<'a, Option<AdminCredentials>> {
        Box::pin(async move {
            let c = self.cluster(cluster).await?;
            if !c.spec.auth.enabled {
                return Ok(None);
            }
            // The operator's own user once it exists (its Secret is written
            // only after the user was created), else the bootstrap admin.
            let own = operator_secret_name(&cluster.name);
            if let Some(secret) = self.secret(cluster, &own).await?
                && let Ok(creds) = from_secret(&secret)
            {
                return Ok(Some(creds));
            }
            let (ns, secret_name) = (&cluster.namespace, admin_secret_name(&c, &cluster.name));
            let secret = self.secret(cluster, &secret_name).await?.ok_or_else(|| {
                failed(
                    cluster,
                    format!(
                        "Secret {ns}/{secret_name} does not exist (the operator generates it unless \
                         spec.auth.adminSecretName names one)"
                    ),
                )
            })?;
            from_secret(&secret).map(Some).map_err(|m| failed(cluster, m))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("demo-admin".into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        s
    }

    #[test]
    fn reads_username_and_password_and_names_what_is_missing() {
        let c = from_secret(&secret(&[("username", "admin"), ("password", "pw-123")])).expect("valid");
        assert_eq!(c, AdminCredentials::new("admin", "pw-123"));
        assert_eq!(
            from_secret(&secret(&[("username", "admin")])),
            Err("Secret demo-admin has no key 'password'".into())
        );
        let empty = from_secret(&secret(&[("username", "admin"), ("password", "")])).expect_err("empty");
        assert_eq!(empty, "key 'password' of Secret demo-admin is empty");
    }
}
