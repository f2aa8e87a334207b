//! Secrets the broker needs at start: the bootstrap admin's password, the
//! inter-broker cluster secret and the encryption keys. Each comes from an
//! environment variable (fed by a Kubernetes Secret) or a file, never from
//! the configuration file, and no error message ever contains one.

use std::path::Path;

use flymq_security::Keyring;
use flymq_security::tls::grpc::ClusterSecret;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::config::Config;

/// Environment variable holding the bootstrap admin's password.
pub const ADMIN_PASSWORD_ENV: &str = "FLYMQ_ADMIN_PASSWORD";
/// Environment variable holding the inter-broker secret.
pub const CLUSTER_SECRET_ENV: &str = "FLYMQ_CLUSTER_SECRET";
/// Environment variable holding the encryption keys.
pub const ENCRYPTION_KEY_ENV: &str = "FLYMQ_ENCRYPTION_KEY";

#[derive(Debug, Error)]
pub enum SecretsError {
    #[error("both {env} and {key} are set; use one")]
    BothSources { env: &'static str, key: &'static str },
    #[error("cannot read {key} {path}: {source}")]
    ReadFile {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} is empty")]
    Empty { what: String },
    #[error("invalid cluster secret: {0}")]
    ClusterSecret(String),
    #[error("invalid encryption keys: {0}")]
    Encryption(#[from] flymq_security::CryptoError),
}

/// The secrets of one broker process.
#[derive(Default)]
pub struct Secrets {
    /// Bootstrap admin password (`admin_username`), if one is given.
    pub admin_password: Option<Zeroizing<String>>,
    /// Shared inter-broker secret, if one is given.
    pub cluster_secret: Option<ClusterSecret>,
    /// Encryption keys, if encryption at rest is on.
    pub keyring: Option<Keyring>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("admin_password", &self.admin_password.as_ref().map(|_| "<redacted>"))
            .field("cluster_secret", &self.cluster_secret.as_ref().map(|_| "<redacted>"))
            .field("keyring", &self.keyring.as_ref().map(|k| k.key_ids()))
            .finish()
    }
}

impl Secrets {
    /// Loads the secrets from `env` (name, value pairs) and the files named in
    /// `config`. An empty environment variable counts as unset.
    pub fn load(config: &Config, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, SecretsError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let var = |name: &str| {
            env.iter()
                .find(|(k, v)| k == name && !v.trim().is_empty())
                .map(|(_, v)| Zeroizing::new(v.clone()))
        };
        let admin_password = one_source(
            var(ADMIN_PASSWORD_ENV),
            config.admin_password_file.as_deref(),
            ADMIN_PASSWORD_ENV,
            "admin_password_file",
        )?;
        let cluster_secret = one_source(
            var(CLUSTER_SECRET_ENV),
            config.cluster_secret_file.as_deref(),
            CLUSTER_SECRET_ENV,
            "cluster_secret_file",
        )?
        .map(|text| ClusterSecret::new(text.trim()).map_err(|e| SecretsError::ClusterSecret(e.to_string())))
        .transpose()?;
        let env_key = var(ENCRYPTION_KEY_ENV);
        let keyring = Keyring::from_sources(
            env_key.as_deref().map(String::as_str),
            config.encryption_key_file.as_deref(),
        )?;
        Ok(Self {
            admin_password,
            cluster_secret,
            keyring,
        })
    }
}

/// The value from the environment or the first line of the file, not both.
fn one_source(
    env_value: Option<Zeroizing<String>>,
    file: Option<&Path>,
    env: &'static str,
    key: &'static str,
) -> Result<Option<Zeroizing<String>>, SecretsError> {
    match (env_value, file) {
        (Some(_), Some(_)) => Err(SecretsError::BothSources { env, key }),
        (Some(value), None) => Ok(Some(value)),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| SecretsError::ReadFile {
                key,
                path: path.display().to_string(),
                source,
            })?);
            let first = Zeroizing::new(text.lines().next().unwrap_or("").trim_end_matches('\r').to_owned());
            if first.trim().is_empty() {
                return Err(SecretsError::Empty {
                    what: format!("{key} {}", path.display()),
                });
            }
            Ok(Some(first))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn nothing_configured_means_no_secrets() {
        let secrets = Secrets::load(&Config::default(), vec![]).unwrap();
        assert!(secrets.admin_password.is_none() && secrets.cluster_secret.is_none() && secrets.keyring.is_none());
    }

    #[test]
    fn values_come_from_env_or_file_never_both_and_errors_do_not_echo_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file-secret\nignored\n").unwrap();
        let config = Config {
            admin_password_file: Some(file.clone()),
            ..Config::default()
        };
        let secrets = Secrets::load(&config, vec![]).unwrap();
        assert_eq!(
            secrets.admin_password.as_deref().map(String::as_str),
            Some("from-file-secret")
        );
        assert!(!format!("{secrets:?}").contains("from-file-secret"));

        let err = Secrets::load(&config, env(&[(ADMIN_PASSWORD_ENV, "env-secret")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("both FLYMQ_ADMIN_PASSWORD and admin_password_file"),
            "{err}"
        );
        assert!(!err.contains("secret\""), "{err}");

        std::fs::write(&file, "\n").unwrap();
        let err = Secrets::load(&config, vec![]).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");

        let short = Secrets::load(&Config::default(), env(&[(CLUSTER_SECRET_ENV, "short-one")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("admin_password_file") && !short.contains("short-one"),
            "{short}"
        );

        let bad_key = Secrets::load(&Config::default(), env(&[(ENCRYPTION_KEY_ENV, "abcd")]))
            .unwrap_err()
            .to_string();
        assert!(
            bad_key.contains("encryption key #1") && !bad_key.contains("abcd"),
            "{bad_key}"
        );
    }
}
