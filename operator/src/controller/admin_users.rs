//! The operator's own admin user, and rotation of the cluster admin Secret.
//!
//! The brokers' bootstrap admin comes from the admin Secret at the first
//! start and is never overwritten by a restart, so a new password in that
//! Secret has to reach the brokers through the admin API, authenticated
//! with something that still works. That is the operator's own user,
//! [`OPERATOR_USERNAME`] (role `admin`), whose generated password is in
//! `<cluster>-operator`, a Secret only the operator writes:
//!
//! 1. while `<cluster>-operator` does not exist, the operator authenticates
//!    as the bootstrap admin (the admin Secret), creates its user with a new
//!    password, then stores the Secret: its existence means the user exists
//!    (a Secret deleted by hand is recreated the same way);
//! 2. from then on it authenticates as itself, and whenever the admin
//!    Secret's `resourceVersion` differs from `status.adminSecretVersion`
//!    it writes that Secret's user and password with UpsertUser (role
//!    `admin`) and records the version: editing the Secret rotates the
//!    admin password, the old one stops working.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tracing::info;

use super::cluster::FIELD_MANAGER;
use super::error::Error;
use crate::admin::credentials::from_secret;
use crate::admin::{AdminError, ClusterEndpoint, GrpcAdmin};
use crate::builders::secret::{PASSWORD_LEN, stored_password};
use crate::builders::{Randomness, admin_secret_name, owned_meta};
use crate::crd::FlyMQCluster;

/// The operator's user on every cluster with authentication.
pub const OPERATOR_USERNAME: &str = "flymq-operator";

/// `<cluster>-operator`: the operator's own credentials.
pub fn operator_secret_name(name: &str) -> String {
    format!("{name}-operator")
}

/// The role both admin users get.
const ADMIN_ROLE: &str = "admin";

/// Makes sure the operator's user exists and the admin Secret's password is
/// the brokers'. Returns the admin Secret version now applied (to record in
/// the status); `None` without authentication.
pub async fn sync(
    client: &Client,
    admin: &GrpcAdmin,
    random: &dyn Randomness,
    cluster: &FlyMQCluster,
    endpoint: &ClusterEndpoint,
) -> Result<Option<String>, Error> {
    if !cluster.spec.auth.enabled {
        return Ok(None);
    }
    let (ns, name) = (&endpoint.namespace, &endpoint.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let own = operator_secret_name(name);
    let existing = secrets
        .get_opt(&own)
        .await
        .map_err(Error::kube(format!("reading Secret {ns}/{own}")))?;
    if existing.as_ref().and_then(stored_password).is_none() {
        // Authenticated as the bootstrap admin: this Secret does not exist yet.
        let password = zeroize::Zeroizing::new(random.alphanumeric(PASSWORD_LEN));
        admin
            .upsert_user(endpoint, OPERATOR_USERNAME, &[ADMIN_ROLE.to_string()], &password)
            .await?;
        let secret = Secret {
            metadata: owned_meta(cluster, own.clone())?,
            type_: Some("kubernetes.io/basic-auth".into()),
            data: Some(
                [
                    (
                        "username".to_string(),
                        ByteString(OPERATOR_USERNAME.as_bytes().to_vec()),
                    ),
                    ("password".to_string(), ByteString(password.as_bytes().to_vec())),
                ]
                .into(),
            ),
            ..Secret::default()
        };
        secrets
            .patch(&own, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret))
            .await
            .map_err(Error::kube(format!("applying Secret {ns}/{own}")))?;
        info!(cluster = %format!("{ns}/{name}"), user = OPERATOR_USERNAME, "operator user created; the operator authenticates as it from now on");
    }

    let admin_name = admin_secret_name(cluster, name);
    let Some(admin_secret) = secrets
        .get_opt(&admin_name)
        .await
        .map_err(Error::kube(format!("reading Secret {ns}/{admin_name}")))?
    else {
        return Ok(recorded(cluster));
    };
    let version = admin_secret.resource_version();
    if version.is_none() || version == recorded(cluster) {
        return Ok(version);
    }
    let credentials = from_secret(&admin_secret).map_err(|message| {
        Error::Admin(AdminError::Credentials {
            cluster: format!("{ns}/{name}"),
            message,
        })
    })?;
    if credentials.username() == OPERATOR_USERNAME {
        return Err(Error::Admin(AdminError::Rejected {
            operation: "UpsertUser",
            reason: "InvalidAdminSecret",
            message: format!(
                "Secret {ns}/{admin_name} names user '{OPERATOR_USERNAME}', the operator's own; choose another name"
            ),
        }));
    }
    admin
        .upsert_user(
            endpoint,
            credentials.username(),
            &[ADMIN_ROLE.to_string()],
            credentials.password(),
        )
        .await?;
    info!(cluster = %format!("{ns}/{name}"), secret = %admin_name, user = credentials.username(), "admin password applied from the admin Secret");
    Ok(version)
}

fn recorded(cluster: &FlyMQCluster) -> Option<String> {
    cluster.status.as_ref().and_then(|s| s.admin_secret_version.clone())
}
