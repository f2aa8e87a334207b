//! Password hashing with argon2id.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`)
//! with a fresh random 128-bit salt per hash, so the parameters travel with
//! each hash: raising them later does not invalidate stored passwords.
//!
//! Verification compares in constant time (the `password-hash` crate's
//! output comparison). [`PasswordHasher::verify_or_dummy`] runs a full
//! verification against a fixed dummy hash when the user does not exist, so
//! "unknown user" and "wrong password" cost the same time and give the same
//! [`PasswordError::Mismatch`].
//!
//! Hashing costs tens of milliseconds and 19 MiB of memory by design: call
//! it from `tokio::task::spawn_blocking` (see
//! [`PasswordHasher::verify_or_dummy_blocking`]), never on a runtime thread.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Longest password accepted, in bytes. Bounds the work a client can make
/// the broker do per AUTH.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Failures of hashing and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The password does not match, or the user does not exist. The two are
    /// deliberately indistinguishable.
    #[error("invalid username or password")]
    Mismatch,
    /// A stored hash is not a valid argon2 PHC string (corrupted state).
    #[error("stored password hash is not a valid argon2 PHC string: {0}; reset the password")]
    InvalidStoredHash(String),
    /// The argon2 parameters are out of range.
    #[error("invalid argon2 parameters: {0}")]
    InvalidParams(String),
    /// The password is empty or too long.
    #[error("{0}")]
    InvalidPassword(String),
    /// Hashing failed (internal error of the argon2 implementation).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory (t).
    pub iterations: u32,
    /// Lanes (p).
    pub parallelism: u32,
}

impl PasswordParams {
    /// OWASP's recommended minimum for argon2id: 19 MiB, t=2, p=1.
    pub const OWASP: PasswordParams = PasswordParams {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// Cheap parameters for tests only (8 KiB, t=1): never use them for
    /// real passwords.
    pub const INSECURE_FAST_FOR_TESTS: PasswordParams = PasswordParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self::OWASP
    }
}

/// A PHC-format argon2 hash as stored in the user record. Its `Debug` and
/// `Display` never show the hash (it still allows offline guessing).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct HashedPassword(String);

impl HashedPassword {
    /// Wraps a stored PHC string (not validated here; verification reports
    /// a bad one as [`PasswordError::InvalidStoredHash`]).
    pub fn from_phc(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    /// The PHC string, for storage.
    pub fn as_phc(&self) -> &str {
        &self.0
    }

    /// True when no password is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for HashedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashedPassword(<redacted>)")
    }
}

/// Checks a new password: non-empty, at most [`MAX_PASSWORD_BYTES`].
pub fn validate_password(password: &str) -> Result<(), PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::InvalidPassword("password must not be empty".into()));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::InvalidPassword(format!(
            "password is longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Hashes and verifies passwords with fixed argon2id parameters. Build one
/// per process and share it (`Arc`).
pub struct PasswordHasher {
    params: PasswordParams,
    argon2: Argon2<'static>,
    /// A hash of a random password nobody knows, with the same parameters
    /// as new hashes: unknown users are verified against it.
    dummy: HashedPassword,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher").field("params", &self.params).finish()
    }
}

impl PasswordHasher {
    /// A hasher with `params`. Computes the dummy hash once (one hash's cost).
    pub fn new(params: PasswordParams) -> Result<Self, PasswordError> {
        let argon_params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
            .map_err(|e| PasswordError::InvalidParams(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
        let mut hasher = Self {
            params,
            argon2,
            dummy: HashedPassword::default(),
        };
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        hasher.dummy = hasher.hash_unchecked(&hex::encode(secret))?;
        Ok(hasher)
    }

    /// The parameters new hashes use.
    pub fn params(&self) -> PasswordParams {
        self.params
    }

    /// Hashes `password` (validated first) with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<HashedPassword, PasswordError> {
        validate_password(password)?;
        self.hash_unchecked(password)
    }

    fn hash_unchecked(&self, password: &str) -> Result<HashedPassword, PasswordError> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hashing(e.to_string()))?;
        let hash = self
            .argon2
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| PasswordError::Hashing(e.to_string()))?;
        Ok(HashedPassword(hash.to_string()))
    }

    /// Verifies `password` against `hash` in constant time, with the
    /// parameters recorded in the hash.
    pub fn verify(&self, password: &str, hash: &HashedPassword) -> Result<(), PasswordError> {
        let parsed = PasswordHash::new(&hash.0).map_err(|e| PasswordError::InvalidStoredHash(e.to_string()))?;
        if password.len() > MAX_PASSWORD_BYTES {
            // Still spend the time of a verification.
            let _ = self.argon2.verify_password(b"", &parsed);
            return Err(PasswordError::Mismatch);
        }
        self.argon2
            .verify_password(password.as_bytes(), &parsed)
            .map_err(|_| PasswordError::Mismatch)
    }

    /// Verifies against `hash` when the user exists, or against the dummy
    /// hash when it does not (`None`); either way one full verification
    /// runs and a failure is [`PasswordError::Mismatch`].
    pub fn verify_or_dummy(&self, password: &str, hash: Option<&HashedPassword>) -> Result<(), PasswordError> {
        match hash {
            Some(hash) => match self.verify(password, hash) {
                Err(PasswordError::InvalidStoredHash(reason)) => {
                    let _ = self.verify(password, &self.dummy);
                    Err(PasswordError::InvalidStoredHash(reason))
                }
                other => other,
            },
            None => {
                let _ = self.verify(password, &self.dummy);
                Err(PasswordError::Mismatch)
            }
        }
    }

    /// [`PasswordHasher::verify_or_dummy`] on tokio's blocking pool, for
    /// async callers.
    pub async fn verify_or_dummy_blocking(
        self: &Arc<Self>,
        password: String,
        hash: Option<HashedPassword>,
    ) -> Result<(), PasswordError> {
        let hasher = self.clone();
        tokio::task::spawn_blocking(move || hasher.verify_or_dummy(&password, hash.as_ref()))
            .await
            .unwrap_or_else(|e| Err(PasswordError::Hashing(format!("verification task failed: {e}"))))
    }

    /// [`PasswordHasher::hash`] on tokio's blocking pool.
    pub async fn hash_blocking(self: &Arc<Self>, password: String) -> Result<HashedPassword, PasswordError> {
        let hasher = self.clone();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .unwrap_or_else(|e| Err(PasswordError::Hashing(format!("hashing task failed: {e}"))))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn fast() -> PasswordHasher {
        PasswordHasher::new(PasswordParams::INSECURE_FAST_FOR_TESTS).expect("params")
    }

    #[test]
    fn hash_is_phc_argon2id_with_random_salt() {
        let hasher = PasswordHasher::new(PasswordParams::OWASP).expect("params");
        let a = hasher.hash("correct horse").expect("hash");
        let b = hasher.hash("correct horse").expect("hash");
        assert!(
            a.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            a.as_phc()
        );
        assert_ne!(a, b, "each hash has its own salt");
        hasher.verify("correct horse", &a).expect("right password");
        hasher.verify("correct horse", &b).expect("right password");
        assert_eq!(hasher.verify("wrong", &a), Err(PasswordError::Mismatch));
    }

    #[test]
    fn old_parameters_still_verify() {
        let old = fast().hash("pw").expect("hash");
        let new = PasswordHasher::new(PasswordParams {
            memory_kib: 64,
            iterations: 3,
            parallelism: 1,
        })
        .expect("params");
        new.verify("pw", &old).expect("parameters come from the hash");
    }

    #[test]
    fn validation() {
        let hasher = fast();
        assert!(matches!(hasher.hash(""), Err(PasswordError::InvalidPassword(_))));
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(hasher.hash(&long), Err(PasswordError::InvalidPassword(_))));
        let ok = hasher.hash("p").expect("hash");
        assert_eq!(hasher.verify(&long, &ok), Err(PasswordError::Mismatch));
        assert!(
            PasswordHasher::new(PasswordParams {
                memory_kib: 1,
                iterations: 1,
                parallelism: 1
            })
            .is_err()
        );
    }

    #[test]
    fn corrupted_hash_is_reported() {
        let hasher = fast();
        let err = hasher
            .verify_or_dummy("pw", Some(&HashedPassword::from_phc("not a hash")))
            .unwrap_err();
        assert!(matches!(err, PasswordError::InvalidStoredHash(_)), "{err:?}");
    }

    #[test]
    fn debug_never_shows_the_hash() {
        let hash = fast().hash("pw").expect("hash");
        let text = format!("{hash:?}");
        assert!(!text.contains("argon2"), "{text}");
        let json = serde_json::to_string(&hash).expect("serialize");
        assert!(json.contains("$argon2id$"), "the stored form keeps the PHC string");
    }

    /// Unknown user and wrong password give the same error and take
    /// comparable time (both run one full argon2id verification with the
    /// OWASP parameters).
    #[test]
    fn unknown_user_costs_the_same_as_wrong_password() {
        let hasher = PasswordHasher::new(PasswordParams::OWASP).expect("params");
        let stored = hasher.hash("right password").expect("hash");
        // Interleave the two cases so that load from other processes hits
        // both alike, and compare the fastest run of each (the least
        // disturbed estimate of the real cost).
        let mut wrong = Vec::new();
        let mut unknown = Vec::new();
        for _ in 0..7 {
            for (hash, samples) in [(Some(&stored), &mut wrong), (None, &mut unknown)] {
                let start = Instant::now();
                let result = hasher.verify_or_dummy("guess", hash);
                samples.push(start.elapsed());
                assert_eq!(result, Err(PasswordError::Mismatch));
            }
        }
        let wrong_password = wrong.iter().min().copied().unwrap_or_default();
        let unknown_user = unknown.iter().min().copied().unwrap_or_default();
        let (lo, hi) = if wrong_password < unknown_user {
            (wrong_password, unknown_user)
        } else {
            (unknown_user, wrong_password)
        };
        assert!(
            hi.as_secs_f64() < lo.as_secs_f64() * 1.5,
            "fastest wrong-password {wrong_password:?} vs unknown-user {unknown_user:?}"
        );
        // And both really ran argon2 (not a fast-path refusal).
        assert!(lo > Duration::from_millis(2), "{lo:?}");
        let err_unknown = hasher.verify_or_dummy("guess", None).unwrap_err().to_string();
        let err_wrong = hasher.verify_or_dummy("guess", Some(&stored)).unwrap_err().to_string();
        assert_eq!(err_unknown, err_wrong);
        assert_eq!(err_unknown, "invalid username or password");
    }
}
