//! The operator-owned password Secret of a `User` without
//! `passwordSecretRef` (used by the User reconciler once the admin API
//! exists).

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::secret::PASSWORD_LEN;
use super::{BuildError, MANAGER, Randomness};
use crate::crd::User;

/// Label naming the User a generated Secret belongs to.
pub const USER_LABEL: &str = "flymq.io/user";

/// The Secret `<user>-flymq-user` with `username` and `password`, or `None`
/// when the User brings its own Secret. An `existing` password is kept, so
/// resyncs never rotate it; `random` is used only for a new Secret.
pub fn user_secret(user: &User, existing: Option<&str>, random: &dyn Randomness) -> Result<Option<Secret>, BuildError> {
    if user.spec.password_secret_ref.is_some() {
        return Ok(None);
    }
    let ns = user.namespace().ok_or(BuildError::MissingMetadata("namespace"))?;
    let name = user.meta().name.clone().ok_or(BuildError::MissingMetadata("name"))?;
    let password = match existing {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => random.alphanumeric(PASSWORD_LEN),
    };
    Ok(Some(Secret {
        metadata: ObjectMeta {
            name: Some(user.password_secret_name()),
            namespace: Some(ns),
            labels: Some(
                [
                    ("app.kubernetes.io/name".to_string(), "flymq".to_string()),
                    ("app.kubernetes.io/component".to_string(), "user".to_string()),
                    ("app.kubernetes.io/managed-by".to_string(), MANAGER.to_string()),
                    (USER_LABEL.to_string(), name),
                ]
                .into(),
            ),
            owner_references: user.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/basic-auth".into()),
        data: Some(
            [
                ("username".to_string(), ByteString(user.username().into_bytes())),
                ("password".to_string(), ByteString(password.into_bytes())),
            ]
            .into(),
        ),
        ..Secret::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::secret::stored_password;
    use crate::builders::test_support::Fixed;

    fn user(spec: serde_json::Value) -> User {
        let mut u = User::new("alice", serde_json::from_value(spec).expect("spec"));
        u.metadata.namespace = Some("prod".into());
        u.metadata.uid = Some("u-1".into());
        u
    }

    #[test]
    fn generated_once_then_kept() {
        let u = user(serde_json::json!({"clusterRef": {"name": "demo"}}));
        let s = user_secret(&u, None, &Fixed).expect("builds").expect("generated");
        assert_eq!(s.metadata.name.as_deref(), Some("alice-flymq-user"));
        assert_eq!(stored_password(&s).as_deref(), Some("x".repeat(PASSWORD_LEN).as_str()));
        let again = user_secret(&u, Some("kept"), &Fixed)
            .expect("builds")
            .expect("generated");
        assert_eq!(stored_password(&again).as_deref(), Some("kept"));
        let owner = &s.metadata.owner_references.expect("owned")[0];
        assert_eq!(owner.kind, "User");
    }

    #[test]
    fn own_secret_is_not_generated() {
        let u = user(serde_json::json!({"clusterRef": {"name": "demo"},
            "passwordSecretRef": {"name": "mine", "key": "pw"}}));
        assert_eq!(user_secret(&u, None, &Fixed), Ok(None));
    }
}
