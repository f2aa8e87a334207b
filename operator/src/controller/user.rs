//! The User reconciler's broker side ([`UserSync`]): the password comes from
//! the Secret the User names (`passwordSecretRef`) or from the Secret the
//! operator generates for it, once (`<name>-flymq-user`); the user, its
//! roles and that password are written with UpsertUser on every reconcile,
//! so a changed Secret (watched by the controller) rotates the password and
//! a password changed behind the operator's back is put back.
//!
//! The password only ever travels from the Secret into the UpsertUser
//! request: errors, conditions, events and log lines name the Secret and
//! key, never the value.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use zeroize::Zeroizing;

use super::cluster::FIELD_MANAGER;
use crate::admin::{AdminError, AdminFuture, AdminSync, ClusterEndpoint, GrpcAdmin, Synced};
use crate::builders::Randomness;
use crate::builders::secret::stored_password;
use crate::builders::user_secret::user_secret;
use crate::crd::{SecretKeyRef, User};

/// Condition reason: the Secret named by `passwordSecretRef` does not exist.
pub const PASSWORD_SECRET_NOT_FOUND: &str = "PasswordSecretNotFound";
/// Condition reason: the Secret has no such key.
pub const PASSWORD_KEY_NOT_FOUND: &str = "PasswordKeyNotFound";
/// Condition reason: the password is empty (or not UTF-8 text).
pub const PASSWORD_EMPTY: &str = "PasswordEmpty";
/// The key of the generated Secret that holds the password.
pub const GENERATED_KEY: &str = "password";

/// Applies Users to the brokers (see the module documentation).
pub struct UserSync {
    /// Reads (and, for generated passwords, writes) the password Secrets.
    pub client: Client,
    /// The brokers' admin API.
    pub admin: Arc<GrpcAdmin>,
    /// Draws generated passwords.
    pub random: Arc<dyn Randomness>,
}

/// A password problem the User's spec or Secret has to fix.
fn refused(reason: &'static str, message: String) -> AdminError {
    AdminError::Rejected {
        operation: "UpsertUser",
        reason,
        message,
    }
}

/// The password stored under `key` of `secret`, or why there is none.
pub fn password_from(secret: &Secret, key: &str) -> Result<Zeroizing<String>, AdminError> {
    let name = secret.name_any();
    let bytes = secret.data.as_ref().and_then(|d| d.get(key)).ok_or_else(|| {
        refused(
            PASSWORD_KEY_NOT_FOUND,
            format!("Secret {name} has no key '{key}'; add it or fix spec.passwordSecretRef.key"),
        )
    })?;
    match std::str::from_utf8(&bytes.0) {
        Ok(text) if !text.is_empty() => Ok(Zeroizing::new(text.to_string())),
        _ => Err(refused(
            PASSWORD_EMPTY,
            format!(
                "key '{key}' of Secret {name} is empty or not UTF-8 text; put a password in it (the user keeps \
                 its previous password until then)"
            ),
        )),
    }
}

impl UserSync {
    /// The Secret key the password comes from and the password, generating
    /// the operator-owned Secret first when the User names none.
    async fn password(&self, user: &User) -> Result<(SecretKeyRef, Zeroizing<String>), AdminError> {
        let ns = user.namespace().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        let name = user.password_secret_name();
        let kube_failed = |what: &str, e: kube::Error| AdminError::Failed {
            operation: "UpsertUser",
            message: format!("{what} Secret {ns}/{name}: {e}"),
        };
        let current = secrets.get_opt(&name).await.map_err(|e| kube_failed("reading", e))?;
        if let Some(r) = &user.spec.password_secret_ref {
            let secret = current.ok_or_else(|| {
                refused(
                    PASSWORD_SECRET_NOT_FOUND,
                    format!(
                        "Secret {ns}/{} named by spec.passwordSecretRef does not exist; create it with a key '{}'",
                        r.name, r.key
                    ),
                )
            })?;
            return Ok((r.clone(), password_from(&secret, &r.key)?));
        }
        let existing = current.as_ref().and_then(stored_password).map(Zeroizing::new);
        let desired = user_secret(user, existing.as_deref().map(String::as_str), self.random.as_ref())
            .map_err(|e| AdminError::Failed {
                operation: "UpsertUser",
                message: e.to_string(),
            })?
            .ok_or_else(|| AdminError::Failed {
                operation: "UpsertUser",
                message: "no password Secret to generate".into(),
            })?;
        // Applied on every pass: a Secret emptied by hand gets a new password.
        let applied = secrets
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await
            .map_err(|e| kube_failed("applying", e))?;
        let password = match stored_password(&applied) {
            Some(p) => Zeroizing::new(p),
            None => password_from(&desired, GENERATED_KEY)?,
        };
        Ok((
            SecretKeyRef {
                name,
                key: GENERATED_KEY.into(),
            },
            password,
        ))
    }
}

impl AdminSync<User> for UserSync {
    fn apply<'a>(&'a self, cluster: &'a ClusterEndpoint, user: &'a User) -> AdminFuture<'a, Synced> {
        Box::pin(async move {
            // Nothing reaches the brokers until the password is known.
            let (from, password) = self.password(user).await?;
            let username = user.username();
            let roles = user.spec.roles.clone();
            self.admin.upsert_user(cluster, &username, &roles, &password).await?;
            let shown = if roles.is_empty() {
                "none".to_string()
            } else {
                roles.join(", ")
            };
            Ok(Synced {
                message: format!(
                    "user '{username}' with roles: {shown}; password from Secret {} key '{}'",
                    from.name, from.key
                ),
                roles: Some(roles),
                password_secret: Some(from),
                ..Synced::default()
            })
        })
    }

    fn delete<'a>(&'a self, cluster: &'a ClusterEndpoint, user: &'a User) -> AdminFuture<'a, ()> {
        Box::pin(async move { self.admin.delete_user(cluster, &user.username()).await })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::runtime::controller::Action;
    use serde_json::{Value, json};

    use super::*;
    use crate::admin::fake_broker::{self, FakeBroker};
    use crate::builders::test_support::Fixed;
    use crate::controller::Error;
    use crate::controller::admin_object::{AdminContext, FINALIZER, RESYNC, reconcile};
    use crate::controller::mock::{Reply, Seen, Step, client, serve, step};
    use crate::crd::Acl;
    use crate::metrics::Metrics;

    const USER: &str = "/apis/flymq.io/v1alpha1/namespaces/prod/users/alice";
    const USER_STATUS: &str = "/apis/flymq.io/v1alpha1/namespaces/prod/users/alice/status";
    const OWN_SECRET: &str = "/api/v1/namespaces/prod/secrets/alice-pw";
    const GENERATED: &str = "/api/v1/namespaces/prod/secrets/alice-flymq-user";
    const ACL_STATUS: &str = "/apis/flymq.io/v1alpha1/namespaces/prod/acls/orders-acl/status";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/prod/events";
    const CLUSTER: &str = "/apis/flymq.io/v1alpha1/namespaces/prod/flymqclusters/demo";
    const STS: &str = "/apis/apps/v1/namespaces/prod/statefulsets/demo";

    fn user(spec: Value) -> User {
        let mut spec = spec;
        spec["clusterRef"] = json!({"name": "demo"});
        serde_json::from_value(json!({
            "apiVersion": "flymq.io/v1alpha1", "kind": "User",
            "metadata": {"name": "alice", "namespace": "prod", "generation": 3, "uid": "u-1",
                         "finalizers": [FINALIZER]},
            "spec": spec
        }))
        .expect("user")
    }

    fn own(spec_roles: &[&str]) -> User {
        user(json!({"roles": spec_roles, "passwordSecretRef": {"name": "alice-pw", "key": "pw"}}))
    }

    fn secret(name: &str, key: &str, value: &str) -> Value {
        use base64::Engine;
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": "prod"},
               "data": {key: base64::engine::general_purpose::STANDARD.encode(value)}})
    }

    fn broker() -> (Arc<FakeBroker>, Arc<GrpcAdmin>) {
        let fake = Arc::new(FakeBroker::default());
        let admin = Arc::new(GrpcAdmin::new(fake_broker::serve(fake.clone())));
        (fake, admin)
    }

    async fn run<K: crate::controller::admin_object::AdminObject>(
        obj: K,
        sync: impl FnOnce(Client) -> Arc<dyn AdminSync<K>>,
        steps: Vec<Step>,
    ) -> (Result<Action, Error>, Vec<Seen>) {
        let (client, handle) = client();
        let ctx = Arc::new(AdminContext {
            admin: sync(client.clone()),
            client,
            clock: Arc::new(|| "T0".to_string()),
            metrics: Arc::new(Metrics::new()),
            peers: None,
        });
        let server = tokio::spawn(serve(handle, steps));
        let result = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(obj), ctx))
            .await
            .expect("reconcile hung on an unscripted request");
        (result, server.await.expect("fake API server"))
    }

    fn users(admin: &Arc<GrpcAdmin>) -> impl FnOnce(Client) -> Arc<dyn AdminSync<User>> {
        let admin = admin.clone();
        move |client| {
            Arc::new(UserSync {
                client,
                admin,
                random: Arc::new(Fixed),
            })
        }
    }

    fn status_reply(u: &User) -> Reply {
        Reply::WithStatus(serde_json::to_value(u).expect("json"))
    }

    fn stored(fake: &FakeBroker, name: &str) -> Option<(Vec<String>, String)> {
        fake.users.lock().expect("lock").get(name).cloned()
    }

    /// No request body (status, event, Secret apply of another key) holds `secret`.
    fn assert_nowhere(seen: &[Seen], secret: &str) {
        for s in seen {
            if s.path == GENERATED {
                continue; // the generated Secret itself carries the password
            }
            assert!(!s.body.to_string().contains(secret), "{} {} leaks it", s.method, s.path);
        }
    }

    #[tokio::test]
    async fn a_user_gets_the_password_of_its_secret_and_a_changed_secret_rotates_it() {
        let u = own(&["producer"]);
        let (fake, admin) = broker();
        let steps = vec![
            step(
                "GET",
                OWN_SECRET,
                Reply::Json(secret("alice-pw", "pw", "first-password")),
            ),
            step("PATCH", USER_STATUS, status_reply(&u)),
        ];
        let (result, seen) = run(u.clone(), users(&admin), steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(RESYNC));
        assert_eq!(
            stored(&fake, "alice"),
            Some((vec!["producer".into()], "first-password".into()))
        );
        let status = &seen[1].body["status"];
        assert_eq!(status["observedGeneration"], json!(3));
        assert_eq!(status["appliedRoles"], json!(["producer"]));
        assert_eq!(status["passwordSecret"], json!({"name": "alice-pw", "key": "pw"}));
        assert_eq!(status["conditions"][0]["reason"], json!("Synced"));
        assert_eq!(
            status["conditions"][0]["message"],
            json!(
                "in sync with FlyMQCluster demo: user 'alice' with roles: producer; password from Secret alice-pw key 'pw'"
            )
        );
        assert_nowhere(&seen, "first-password");

        // The Secret changed (the watch reconciles the User): new password.
        let mut u2 = u.clone();
        u2.status = Some(serde_json::from_value(status.clone()).expect("status"));
        let steps = vec![step(
            "GET",
            OWN_SECRET,
            Reply::Json(secret("alice-pw", "pw", "second-password")),
        )];
        let (result, seen) = run(u2, users(&admin), steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(RESYNC));
        assert_eq!(
            stored(&fake, "alice"),
            Some((vec!["producer".into()], "second-password".into()))
        );
        assert_eq!(seen.len(), 1, "an unchanged status is not rewritten");
    }

    #[tokio::test]
    async fn a_generated_password_is_created_once_and_kept() {
        let u = user(json!({"roles": ["consumer"]}));
        let (fake, admin) = broker();
        let steps = vec![
            step("GET", GENERATED, Reply::NotFound),
            step("PATCH", GENERATED, Reply::Echo),
            step("PATCH", USER_STATUS, status_reply(&u)),
        ];
        let (result, seen) = run(u.clone(), users(&admin), steps).await;
        assert_eq!(result.expect("reconciles"), Action::requeue(RESYNC));
        let generated = "x".repeat(crate::builders::secret::PASSWORD_LEN);
        assert_eq!(
            stored(&fake, "alice"),
            Some((vec!["consumer".into()], generated.clone()))
        );
        assert_eq!(seen[1].body["metadata"]["ownerReferences"][0]["kind"], json!("User"));
        assert_eq!(
            seen[2].body["status"]["passwordSecret"],
            json!({"name": "alice-flymq-user", "key": "password"})
        );
        assert_nowhere(&seen, &generated);

        // Next pass: the stored password is kept, not drawn again.
        let steps = vec![
            step(
                "GET",
                GENERATED,
                Reply::Json(secret("alice-flymq-user", "password", "kept-pw")),
            ),
            step("PATCH", GENERATED, Reply::Echo),
            step("PATCH", USER_STATUS, status_reply(&u)),
        ];
        let (_, seen) = run(u, users(&admin), steps).await;
        assert_eq!(stored(&fake, "alice").map(|u| u.1), Some("kept-pw".into()));
        use base64::Engine;
        assert_eq!(
            seen[1].body["data"]["password"],
            json!(base64::engine::general_purpose::STANDARD.encode("kept-pw"))
        );
    }

    /// Runs a User whose password cannot be had: a condition with `reason`,
    /// a Warning event, and nothing sent to the brokers.
    async fn refused(secret_reply: Reply, reason: &str, leak: &str) -> Vec<Seen> {
        let u = own(&["producer"]);
        let (fake, admin) = broker();
        fake.users
            .lock()
            .expect("lock")
            .insert("alice".into(), (vec!["producer".into()], "old-password".into()));
        let steps = vec![
            step("GET", OWN_SECRET, secret_reply),
            step("PATCH", USER_STATUS, status_reply(&u)),
            step("POST", EVENTS, Reply::Echo),
        ];
        let (result, seen) = run(u, users(&admin), steps).await;
        assert_eq!(result.expect_err("refused").category(), "admin_rejected");
        let ready = &seen[1].body["status"]["conditions"][0];
        assert_eq!((&ready["status"], &ready["reason"]), (&json!("False"), &json!(reason)));
        assert_eq!(seen[2].body["reason"], json!(reason));
        assert_eq!(seen[2].body["type"], json!("Warning"));
        assert_eq!(seen[2].body["note"], ready["message"]);
        assert!(
            !fake.calls().iter().any(|c| c.starts_with("UpsertUser")),
            "nothing applied: {:?}",
            fake.calls()
        );
        assert_eq!(stored(&fake, "alice").map(|u| u.1), Some("old-password".into()));
        assert_nowhere(&seen, leak);
        seen
    }

    #[tokio::test]
    async fn a_missing_secret_is_reported_and_nothing_is_applied() {
        let seen = refused(Reply::NotFound, PASSWORD_SECRET_NOT_FOUND, "old-password").await;
        assert_eq!(
            seen[1].body["status"]["conditions"][0]["message"],
            json!(
                "UpsertUser refused: Secret prod/alice-pw named by spec.passwordSecretRef does not exist; create it \
                 with a key 'pw'"
            )
        );
    }

    #[tokio::test]
    async fn a_missing_key_is_reported_and_nothing_is_applied() {
        refused(
            Reply::Json(secret("alice-pw", "other", "not-this-one")),
            PASSWORD_KEY_NOT_FOUND,
            "not-this-one",
        )
        .await;
    }

    #[tokio::test]
    async fn a_secret_edited_to_an_empty_password_is_reported_and_the_old_one_stays() {
        refused(
            Reply::Json(secret("alice-pw", "pw", "")),
            PASSWORD_EMPTY,
            "old-password",
        )
        .await;
    }

    #[tokio::test]
    async fn an_unknown_role_is_refused_by_the_broker_and_reported() {
        let u = own(&["auditor"]);
        let (fake, admin) = broker();
        let steps = vec![
            step("GET", OWN_SECRET, Reply::Json(secret("alice-pw", "pw", "the-password"))),
            step("PATCH", USER_STATUS, status_reply(&u)),
            step("POST", EVENTS, Reply::Echo),
        ];
        let (result, seen) = run(u, users(&admin), steps).await;
        assert_eq!(result.expect_err("refused").category(), "admin_rejected");
        let ready = &seen[1].body["status"]["conditions"][0];
        assert_eq!(ready["reason"], json!("UnknownRole"));
        assert!(
            ready["message"]
                .as_str()
                .unwrap_or_default()
                .contains("role 'auditor' does not exist"),
            "{ready}"
        );
        assert_eq!(seen[2].body["reason"], json!("UnknownRole"));
        assert!(stored(&fake, "alice").is_none());
        assert!(seen[1].body["status"].get("appliedRoles").is_none());
        assert_nowhere(&seen, "the-password");
    }

    #[tokio::test]
    async fn deleting_a_user_deletes_it_from_the_brokers_then_the_finalizer() {
        let mut u = own(&["producer"]);
        u.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let (fake, admin) = broker();
        fake.users
            .lock()
            .expect("lock")
            .insert("alice".into(), (vec!["producer".into()], "pw".into()));
        let cluster = json!({"apiVersion": "flymq.io/v1alpha1", "kind": "FlyMQCluster",
               "metadata": {"name": "demo", "namespace": "prod"}, "spec": {}});
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "demo", "namespace": "prod"},
               "spec": {"replicas": 3, "selector": {}, "template": {}, "serviceName": "demo-headless"}});
        let steps = vec![
            step("GET", CLUSTER, Reply::Json(cluster)),
            step("GET", STS, Reply::Json(sts)),
            step("PATCH", USER, Reply::Json(serde_json::to_value(&u).expect("json"))),
        ];
        let (result, seen) = run(u, users(&admin), steps).await;
        assert_eq!(result.expect("cleaned up"), Action::await_change());
        assert!(stored(&fake, "alice").is_none());
        assert_eq!(seen[2].body[1]["op"], json!("remove"));
    }

    #[tokio::test]
    async fn an_acl_naming_an_unknown_user_is_applied_with_a_warning_condition_and_event() {
        let acl: Acl = serde_json::from_value(json!({
            "apiVersion": "flymq.io/v1alpha1", "kind": "ACL",
            "metadata": {"name": "orders-acl", "namespace": "prod", "generation": 1, "finalizers": [FINALIZER]},
            "spec": {"clusterRef": {"name": "demo"}, "topic": {"name": "orders"}, "users": ["bob"]}
        }))
        .expect("acl");
        let (fake, admin) = broker();
        let steps = vec![
            step(
                "PATCH",
                ACL_STATUS,
                Reply::WithStatus(serde_json::to_value(&acl).expect("json")),
            ),
            step("POST", EVENTS, Reply::Echo),
        ];
        let (result, seen) = run(acl, |_| admin as Arc<dyn AdminSync<Acl>>, steps).await;
        assert_eq!(
            result.expect("applied"),
            Action::requeue(crate::controller::admin_object::RETRY),
            "checked again soon"
        );
        let conditions = &seen[0].body["status"]["conditions"];
        assert_eq!(
            (&conditions[0]["type"], &conditions[0]["status"]),
            (&json!("Ready"), &json!("True"))
        );
        assert_eq!(
            (
                &conditions[1]["type"],
                &conditions[1]["status"],
                &conditions[1]["reason"]
            ),
            (&json!("PrincipalsKnown"), &json!("False"), &json!("UnknownUser"))
        );
        assert_eq!(seen[1].body["reason"], json!("UnknownUser"));
        assert!(
            fake.acls
                .lock()
                .expect("lock")
                .contains_key(&("orders".to_string(), false))
        );
    }
}
