//! `User`: a FlyMQ user whose password lives in a Secret.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{AdminObjectStatus, ClusterRef, DeletionPolicy, SecretKeyRef};

/// Desired state of a user.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flymq.io",
    version = "v1alpha1",
    kind = "User",
    plural = "users",
    singular = "user",
    shortname = "fmquser",
    category = "flymq",
    namespaced,
    status = "AdminObjectStatus",
    doc = "A FlyMQ user. Reconciled through the broker admin API.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef.name"),
    printcolumn(name = "Roles", type_ = "string", json_path = ".spec.roles"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.username) == has(oldSelf.username) && (!has(self.username) || self.username == oldSelf.username)").message("spec.username is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// The FlyMQCluster that holds the user. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.clusterRef is immutable"))]
    pub cluster_ref: ClusterRef,
    /// User name on the brokers; defaults to `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z0-9._@-]+$"))]
    pub username: Option<String>,
    /// Roles: built-in `admin`, `producer`, `consumer`, `guest`, or custom.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub roles: Vec<String>,
    /// Password from an existing Secret (watched: changing it rotates the
    /// password). When absent the operator generates one, once, into the
    /// operator-owned Secret `<name>-flymq-user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Delete (the default) or keep the user on the brokers when this
    /// resource is deleted.
    #[serde(default = "default_deletion_policy")]
    pub deletion_policy: DeletionPolicy,
}

fn default_deletion_policy() -> DeletionPolicy {
    DeletionPolicy::Delete
}

impl User {
    /// The user's name on the brokers.
    pub fn username(&self) -> String {
        self.spec
            .username
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }

    /// The Secret the password is read from or generated into.
    pub fn password_secret_name(&self) -> String {
        match &self.spec.password_secret_ref {
            Some(r) => r.name.clone(),
            None => format!("{}-flymq-user", self.metadata.name.as_deref().unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::cel::validate_cel_update;

    fn user() -> User {
        let spec: UserSpec =
            serde_json::from_value(serde_json::json!({"clusterRef": {"name": "demo"}, "roles": ["producer"]}))
                .expect("valid spec");
        User::new("alice", spec)
    }

    #[test]
    fn defaults() {
        let u = user();
        assert_eq!(u.spec.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(u.username(), "alice");
        assert_eq!(u.password_secret_name(), "alice-flymq-user");
    }

    #[test]
    fn cluster_ref_and_username_are_immutable() {
        let old = user();
        let mut moved = old.clone();
        moved.spec.cluster_ref.name = "other".into();
        assert!(validate_cel_update(&moved, &old).is_err());
        let mut renamed = old.clone();
        renamed.spec.username = Some("bob".into());
        assert!(validate_cel_update(&renamed, &old).is_err());
        let mut more_roles = old.clone();
        more_roles.spec.roles.push("consumer".into());
        assert!(validate_cel_update(&more_roles, &old).is_ok());
    }
}
