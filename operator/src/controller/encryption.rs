//! `spec.encryption`: the keys the brokers get in this pass.
//!
//! The brokers read `FLYMQ_ENCRYPTION_KEY` from `<cluster>-encryption`, a
//! Secret only the operator writes, after the keys in the user's Secret
//! passed two checks:
//! - they parse (64 hex characters each, optional `<id>:` prefix); errors
//!   name a key by position and id, never by content;
//! - every key id the brokers were ever given is still there. A broker
//!   records each configured key in its data directory's key check and
//!   refuses to start without it (old data stays encrypted with it: the
//!   broker does not re-encrypt), so removing one would stop every
//!   restarted broker. The ids are recorded in `status.encryptionKeyIds`.
//!
//! Rotation: put the new key first and keep the old ones (`NEW,OLD`). The
//! key ids go on the pod template, so the brokers roll, one at a time, onto
//! the new active key.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::status::Problem;
use crate::builders::{self, owned_meta};
use crate::crd::FlyMQCluster;

pub use crate::builders::secret::{ENCRYPTION_KEYS_KEY as KEYS_KEY, encryption_secret_name as secret_name};

/// Condition reason: the key Secret or its key is missing.
pub const KEY_MISSING: &str = "EncryptionKeyMissing";
/// Condition reason: a key does not parse.
pub const KEY_INVALID: &str = "InvalidEncryptionKey";
/// Condition reason: a key the brokers use was removed.
pub const KEY_IN_USE: &str = "EncryptionKeyInUse";

/// Keys accepted for this pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// `<cluster>-encryption`.
    pub secret: Secret,
    /// Key ids in the configured order (the first is active).
    pub key_ids: Vec<String>,
    /// Every id ever given to the brokers, to record in the status.
    pub recorded: Vec<String>,
}

/// Checks the keys in `source` (the user's Secret) against the ids
/// `recorded` so far. `Ok(None)` without `spec.encryption`.
pub fn plan(cluster: &FlyMQCluster, source: Option<&Secret>, recorded: &[String]) -> Result<Option<Accepted>, Problem> {
    let Some(enc) = &cluster.spec.encryption else {
        return Ok(None);
    };
    let (ns, name) = builders::ns_name(cluster).map_err(|e| Problem {
        reason: "InvalidSpec",
        message: e.to_string(),
    })?;
    let reference = &enc.key_secret_ref;
    let where_ = format!("key '{}' of Secret {ns}/{}", reference.key, reference.name);
    let missing = |what: String| Problem {
        reason: KEY_MISSING,
        message: format!(
            "spec.encryption.keySecretRef: {what}; nothing was applied: create it with one or more 64-hex-character \
             keys (openssl rand -hex 32)"
        ),
    };
    let secret = source.ok_or_else(|| missing(format!("Secret {ns}/{} does not exist", reference.name)))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .map(|b| b.0.clone())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| missing(format!("{where_} is missing or empty")))?;
    let text = zeroize::Zeroizing::new(String::from_utf8(bytes).map_err(|_| Problem {
        reason: KEY_INVALID,
        message: format!("{where_} is not text; nothing was applied"),
    })?);
    // The keyring's errors name a key by position and id only.
    let keyring = flymq_security::Keyring::parse(&text).map_err(|e| Problem {
        reason: KEY_INVALID,
        message: format!("{where_}: {e}; nothing was applied and the brokers keep their keys"),
    })?;
    let key_ids: Vec<String> = keyring.key_ids().iter().map(ToString::to_string).collect();
    let removed: Vec<&str> = recorded
        .iter()
        .filter(|id| !key_ids.contains(id))
        .map(String::as_str)
        .collect();
    if !removed.is_empty() {
        return Err(Problem {
            reason: KEY_IN_USE,
            message: format!(
                "{where_} no longer holds key id(s) {}, which the brokers have used: data encrypted with them \
                 stays encrypted with them, and a broker refuses to start without every key it has used; nothing \
                 was applied: put the key(s) back (after the active key, to keep them for reading only)",
                removed.join(", ")
            ),
        });
    }
    let mut all = recorded.to_vec();
    all.extend(key_ids.iter().filter(|id| !recorded.contains(id)).cloned());
    let secret = Secret {
        metadata: owned_meta(cluster, secret_name(&name)).map_err(|e| Problem {
            reason: "InvalidSpec",
            message: e.to_string(),
        })?,
        type_: Some("Opaque".into()),
        data: Some([(KEYS_KEY.to_string(), ByteString(text.as_bytes().to_vec()))].into()),
        ..Secret::default()
    };
    Ok(Some(Accepted {
        secret,
        key_ids,
        recorded: all,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::builders::test_support::cluster;

    const K1: &str = "00000001:1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "00000002:2222222222222222222222222222222222222222222222222222222222222222";

    fn enc() -> FlyMQCluster {
        cluster(json!({"encryption": {"keySecretRef": {"name": "keys", "key": "hex"}}}))
    }

    fn source(value: &str) -> Secret {
        Secret {
            data: Some([("hex".to_string(), ByteString(value.as_bytes().to_vec()))].into()),
            ..Secret::default()
        }
    }

    #[test]
    fn keys_are_copied_and_every_id_is_recorded() {
        let first = plan(&enc(), Some(&source(K1)), &[]).expect("valid").expect("enabled");
        assert_eq!(first.key_ids, vec!["00000001"]);
        assert_eq!(first.recorded, vec!["00000001"]);
        assert_eq!(first.secret.metadata.name.as_deref(), Some("demo-encryption"));
        assert_eq!(
            first.secret.data.as_ref().expect("data")[KEYS_KEY],
            ByteString(K1.as_bytes().to_vec())
        );
        // Rotation: new key first, old key kept.
        let rotated = plan(&enc(), Some(&source(&format!("{K2},{K1}"))), &first.recorded)
            .expect("valid")
            .expect("enabled");
        assert_eq!(rotated.key_ids, vec!["00000002", "00000001"]);
        assert_eq!(rotated.recorded, vec!["00000001", "00000002"]);
        assert_eq!(plan(&cluster(json!({})), None, &[]), Ok(None));
    }

    #[test]
    fn removing_a_used_key_is_refused() {
        let recorded = vec!["00000001".to_string(), "00000002".to_string()];
        let p = plan(&enc(), Some(&source(K2)), &recorded).expect_err("refused");
        assert_eq!(p.reason, KEY_IN_USE);
        assert!(
            p.message.contains("no longer holds key id(s) 00000001"),
            "{}",
            p.message
        );
    }

    #[test]
    fn bad_keys_are_named_by_position_never_by_content() {
        let short = "abcdef0123";
        let p = plan(&enc(), Some(&source(short)), &[]).expect_err("refused");
        assert_eq!(p.reason, KEY_INVALID);
        assert!(
            p.message.starts_with("key 'hex' of Secret prod/keys: "),
            "{}",
            p.message
        );
        assert!(p.message.contains("10 characters"), "{}", p.message);
        assert!(!p.message.contains(short), "{}", p.message);
        let p = plan(&enc(), None, &[]).expect_err("refused");
        assert_eq!(p.reason, KEY_MISSING);
        assert!(p.message.contains("Secret prod/keys does not exist"), "{}", p.message);
        let p = plan(&enc(), Some(&source("")), &[]).expect_err("refused");
        assert!(
            p.message.contains("key 'hex' of Secret prod/keys is missing or empty"),
            "{}",
            p.message
        );
    }
}
