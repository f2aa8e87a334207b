//! FlyMQ security building blocks, shared by the broker, the SDK and the
//! CLI. Nothing here touches storage: the broker persists the plain-data
//! types and calls these functions.
//!
//! - [`password`]: argon2id hashing and constant-time verification.
//! - [`model`]: users, roles, ACLs and settings (serde state, validated
//!   mutations); [`pattern`]: the ACL topic-pattern syntax.
//! - [`authorizer`]: the WIRE.md §6.4 decision, the §6.5 opcode table and
//!   AUTH, over an immutable, cheaply cloned snapshot.
//! - [`crypto`]: AES-256-GCM at rest with key ids and rotation.
//! - [`tls`]: rustls server/client configurations, certificate reloading,
//!   client-certificate identities and gRPC helpers.

pub mod authorizer;
pub mod model;
pub mod password;
pub mod pattern;

pub use authorizer::{AuthFailure, Authenticated, Authorizer, AuthzError, Check, SharedAuthorizer, required_check};
pub use model::{AclRule, AclTarget, Permission, Permissions, Role, SecuritySettings, SecurityState, User};
pub use password::{HashedPassword, PasswordError, PasswordHasher, PasswordParams};
pub use pattern::TopicPattern;
pub mod crypto;
pub mod tls;

pub use crypto::{CryptoError, KeyCheck, KeyId, Keyring};
