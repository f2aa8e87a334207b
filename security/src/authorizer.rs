//! The authorization decision (WIRE.md §6.4) and the per-opcode table of
//! §6.5's "Recommendation" column.
//!
//! An [`Authorizer`] is an immutable snapshot built from a
//! [`SecurityState`]; it is cheap to clone (one `Arc`) and answers every
//! check from memory. The broker keeps the current snapshot behind an
//! `ArcSwap`/`RwLock<Authorizer>` and swaps in a new one after every change
//! to users, roles, ACLs or settings: no storage read per request, and a
//! swap invalidates the cache along with the old snapshot.
//!
//! ## Decision rules (§6.4)
//!
//! With auth disabled every check passes. Otherwise, for permission P on
//! topic T by user U (U = "" when the connection has not authenticated):
//!
//! 1. The ACL of T is the exact-topic ACL if one exists, else the most
//!    specific matching pattern ACL ([`TopicPattern::specificity`]), else none.
//!    T is public if that ACL is marked public, or there is none and
//!    default-public is on.
//! 2. Public and P ≠ admin: allowed for any non-empty U (even an unknown
//!    one, as in Go); U = "" is allowed only with allow-anonymous, else
//!    `authentication required`.
//! 3. Otherwise: U = "" → `authentication required`; unknown U →
//!    `unauthorized`; disabled U → `user account is disabled`; U's roles
//!    grant P → allowed; U named in the ACL's users or one of U's roles in
//!    its roles → allowed; else `unauthorized`.
//!
//! The admin and user-management checks: U non-empty (else `authentication
//! required`), known (else `unauthorized`), enabled (else `user account is
//! disabled`) and holding the admin permission (else `unauthorized`). Go's
//! user-management check skips the enabled test; this one does not, so a
//! connection that authenticated before its account was disabled loses
//! its admin rights at once.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use flymq_proto::Opcode;
use parking_lot::RwLock;

use crate::model::{AclRule, Permission, Permissions, SecuritySettings, SecurityState};
use crate::password::{HashedPassword, PasswordError, PasswordHasher};
use crate::pattern::TopicPattern;

/// Text of §5.4 for an unauthenticated caller.
pub const AUTHENTICATION_REQUIRED: &str = "authentication required";
/// Text of §5.4 for a caller without the permission.
pub const UNAUTHORIZED: &str = "unauthorized";
/// Text of §5.4 for a disabled account.
pub const ACCOUNT_DISABLED: &str = "user account is disabled";
/// AUTH failure text for a wrong password or an unknown user.
pub const INVALID_CREDENTIALS: &str = "invalid username or password";

/// Most topics whose ACL resolution is cached per snapshot; the cache is
/// cleared when full (topics are bounded by the catalog anyway).
const MAX_CACHED_TOPICS: usize = 65_536;

/// A refused check. `Display` gives exactly the Go texts, for error frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    /// No user is bound to the connection.
    #[error("authentication required")]
    AuthenticationRequired,
    /// The user lacks the permission, or does not exist.
    #[error("unauthorized")]
    Unauthorized,
    /// The user is disabled.
    #[error("user account is disabled")]
    AccountDisabled,
}

/// A refused AUTH. `Display` gives the text for AUTH's in-band `error`
/// field (§6.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// Wrong password or unknown user (indistinguishable on purpose).
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Right password, disabled account.
    #[error("user account is disabled")]
    AccountDisabled,
    /// The stored hash is corrupt or hashing failed: log `detail` (it
    /// names no secret), answer the client with `invalid username or
    /// password`.
    #[error("invalid username or password")]
    Internal {
        /// What went wrong, for the broker's log.
        detail: String,
    },
}

/// A successful AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The user name to bind to the connection.
    pub username: String,
    /// The user's roles (empty when auth is disabled).
    pub roles: Vec<String>,
}

/// The check an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// No check (LIST_TOPICS, CLUSTER_METADATA, AUTH, WHOAMI, ROLE_LIST, ...).
    None,
    /// A known, enabled user when auth is on (transactions).
    Authenticated,
    /// The user's roles grant this permission, topic-independently
    /// (schema reads).
    Permission(Permission),
    /// This permission on the request's topic (§6.4 topic access check).
    Topic(Permission),
    /// The "admin" check: topic administration, schema and DLQ changes.
    Admin,
    /// The "user-management" check: groups, users, ACLs, audit.
    UserManagement,
    /// PASSWORD_CHANGE: the caller's own account with the correct old
    /// password, else user-management. See [`Authorizer::password_change`].
    PasswordChange,
}

/// The check each opcode needs, per WIRE.md §6.5's "Recommendation" column
/// (FlyMQ extensions: PRODUCE_BATCH needs topic write, SEEK_TO_TIMESTAMP
/// topic read, CLUSTER_STATUS nothing, CLUSTER_JOIN/LEAVE admin).
pub fn required_check(opcode: Opcode) -> Check {
    use Opcode::*;
    match opcode {
        Produce | ProduceBatch | ProduceDelayed | ProduceWithTtl | ProduceWithSchema | ProduceTx => {
            Check::Topic(Permission::Write)
        }
        Consume | Fetch | ConsumeZeroCopy | FetchBinary | Subscribe | GetOffset | GetLag | Commit | SeekToTimestamp
        | FetchDlq | JoinGroup | GroupHeartbeat | LeaveGroup | CommitFenced | RejectRecord => {
            Check::Topic(Permission::Read)
        }
        CreateTopic | DeleteTopic | ResetOffset => Check::Admin,
        RegisterSchema | DeleteSchema | ReplayDlq | PurgeDlq => Check::Admin,
        GetSchema | ListSchemas | ValidateSchema => Check::Permission(Permission::Read),
        ListGroups | DescribeGroup | DeleteGroup => Check::UserManagement,
        UserCreate | UserDelete | UserUpdate | UserList | UserGet | AclSet | AclGet | AclDelete | AclList => {
            Check::UserManagement
        }
        AuditQuery | AuditExport | AuditQueryAlt | AuditExportAlt => Check::UserManagement,
        PasswordChange => Check::PasswordChange,
        BeginTx | CommitTx | AbortTx => Check::Authenticated,
        ClusterJoin | ClusterLeave => Check::Admin,
        ListTopics | MatchTopics | ClusterMetadata | ClusterStatus | Metadata | Auth | AuthResponse | Whoami
        | RoleList | CancelDelayed | Error => Check::None,
    }
}

/// How a PASSWORD_CHANGE may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChangeMode {
    /// The caller changes its own password: verify the old password first
    /// (failure → `invalid username or password`).
    OwnAccount,
    /// The caller passes the user-management check: no old password needed.
    Administrator,
}

/// Whether a user exists and may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// No such user.
    Unknown,
    /// The account is disabled.
    Disabled,
    /// The account is enabled.
    Enabled,
}

#[derive(Clone)]
struct UserEntry {
    enabled: bool,
    permissions: Permissions,
    roles: Vec<String>,
    role_set: HashSet<String>,
    password_hash: HashedPassword,
}

struct CompiledAcl {
    public: bool,
    users: HashSet<String>,
    roles: HashSet<String>,
}

impl From<&AclRule> for CompiledAcl {
    fn from(rule: &AclRule) -> Self {
        Self {
            public: rule.public,
            users: rule.users.iter().cloned().collect(),
            roles: rule.roles.iter().cloned().collect(),
        }
    }
}

struct Inner {
    settings: SecuritySettings,
    users: HashMap<String, UserEntry>,
    topic_acls: HashMap<String, Arc<CompiledAcl>>,
    /// Most specific first.
    pattern_acls: Vec<(TopicPattern, Arc<CompiledAcl>)>,
    /// Topic -> the ACL that applies (None = no ACL): pattern matching
    /// runs once per topic and snapshot.
    resolved: RwLock<HashMap<String, Option<Arc<CompiledAcl>>>>,
    /// User -> HMAC of the last password verified for it in this snapshot
    /// (see [`Authorizer::authenticate_cached`]).
    verified: parking_lot::Mutex<HashMap<String, [u8; 32]>>,
    /// Random per-snapshot HMAC key: the cache holds nothing that can be
    /// guessed offline.
    cache_key: [u8; 32],
}

/// Most users whose verified password is cached per snapshot.
const MAX_CACHED_CREDENTIALS: usize = 4096;

/// An immutable authorization snapshot with a decision cache. Clones share
/// the snapshot.
#[derive(Clone)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("settings", &self.inner.settings)
            .field("users", &self.inner.users.len())
            .field("topic_acls", &self.inner.topic_acls.len())
            .field("pattern_acls", &self.inner.pattern_acls.len())
            .finish()
    }
}

impl Default for Authorizer {
    fn default() -> Self {
        Self::new(&SecurityState::default())
    }
}

impl Authorizer {
    /// Builds the snapshot of `state`. Pattern ACLs whose text does not
    /// parse (never produced by [`SecurityState::set_acl`]) are skipped with
    /// an error log.
    pub fn new(state: &SecurityState) -> Self {
        let users = state
            .users
            .values()
            .map(|u| {
                let entry = UserEntry {
                    enabled: u.enabled,
                    permissions: state.permissions_of(u),
                    roles: u.roles.iter().cloned().collect(),
                    role_set: u.roles.iter().cloned().collect(),
                    password_hash: u.password_hash.clone(),
                };
                (u.name.clone(), entry)
            })
            .collect();
        let topic_acls = state
            .topic_acls
            .iter()
            .map(|(t, r)| (t.clone(), Arc::new(CompiledAcl::from(r))))
            .collect();
        let mut pattern_acls: Vec<(TopicPattern, Arc<CompiledAcl>)> = state
            .pattern_acls
            .iter()
            .filter_map(|(p, r)| match TopicPattern::parse(p) {
                Ok(pattern) => Some((pattern, Arc::new(CompiledAcl::from(r)))),
                Err(err) => {
                    tracing::error!(error = %err, "ignoring a stored pattern ACL that does not parse");
                    None
                }
            })
            .collect();
        pattern_acls.sort_by(|(a, _), (b, _)| b.specificity().cmp(&a.specificity()));
        Self {
            inner: Arc::new(Inner {
                settings: state.settings,
                users,
                topic_acls,
                pattern_acls,
                resolved: RwLock::new(HashMap::new()),
                verified: parking_lot::Mutex::new(HashMap::new()),
                cache_key: {
                    let mut key = [0u8; 32];
                    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
                    key
                },
            }),
        }
    }

    /// The settings of the snapshot.
    pub fn settings(&self) -> SecuritySettings {
        self.inner.settings
    }

    /// True when auth is enabled.
    pub fn auth_enabled(&self) -> bool {
        self.inner.settings.auth_enabled
    }

    /// Whether `user` exists and is enabled.
    pub fn user_status(&self, user: &str) -> UserStatus {
        match self.inner.users.get(user) {
            None => UserStatus::Unknown,
            Some(u) if !u.enabled => UserStatus::Disabled,
            Some(_) => UserStatus::Enabled,
        }
    }

    /// The union of `user`'s role permissions (none for unknown users).
    pub fn permissions_of(&self, user: &str) -> Permissions {
        self.inner.users.get(user).map_or(Permissions::NONE, |u| u.permissions)
    }

    /// `user`'s roles, sorted (empty for unknown users).
    pub fn roles_of(&self, user: &str) -> Vec<String> {
        self.inner.users.get(user).map(|u| u.roles.clone()).unwrap_or_default()
    }

    /// Checks a password and returns what to bind to the connection
    /// (AUTH, §6.2). With auth disabled every AUTH succeeds with no roles.
    /// Runs one argon2 verification whether or not the user exists: call it
    /// from a blocking thread (see [`Authorizer::authenticate_blocking`]).
    pub fn authenticate(
        &self,
        hasher: &PasswordHasher,
        username: &str,
        password: &str,
    ) -> Result<Authenticated, AuthFailure> {
        if !self.auth_enabled() {
            return Ok(Authenticated {
                username: username.to_owned(),
                roles: Vec::new(),
            });
        }
        let user = self.inner.users.get(username);
        // A user without a password (certificate-only) cannot log in with
        // one; verify against the dummy so the timing stays the same.
        let hash = user.map(|u| &u.password_hash).filter(|h| !h.is_empty());
        match hasher.verify_or_dummy(password, hash) {
            Ok(()) => {}
            Err(PasswordError::InvalidStoredHash(detail)) => {
                return Err(AuthFailure::Internal {
                    detail: format!("stored password hash of user '{username}' is invalid: {detail}"),
                });
            }
            Err(PasswordError::Hashing(detail)) => return Err(AuthFailure::Internal { detail }),
            Err(_) => return Err(AuthFailure::InvalidCredentials),
        }
        match user {
            Some(u) if u.enabled => Ok(Authenticated {
                username: username.to_owned(),
                roles: u.roles.clone(),
            }),
            Some(_) => Err(AuthFailure::AccountDisabled),
            None => Err(AuthFailure::InvalidCredentials),
        }
    }

    /// [`Authorizer::authenticate`] with a per-snapshot cache of verified
    /// credentials, for callers that send the password with every request
    /// (admin gRPC `authorization: Basic`): the first call costs one argon2
    /// verification, later calls with the same password an HMAC. The cache
    /// holds HMACs under a random per-snapshot key, never passwords, and
    /// dies with the snapshot, so a password change or a disabled account
    /// takes effect with the next snapshot. Failures are never cached.
    pub fn authenticate_cached(
        &self,
        hasher: &PasswordHasher,
        username: &str,
        password: &str,
    ) -> Result<Authenticated, AuthFailure> {
        if !self.auth_enabled() {
            return self.authenticate(hasher, username, password);
        }
        let Some(tag) = self.credential_tag(username, password) else {
            return self.authenticate(hasher, username, password);
        };
        let hit = self
            .inner
            .verified
            .lock()
            .get(username)
            .is_some_and(|known| bool::from(subtle::ConstantTimeEq::ct_eq(&known[..], &tag[..])));
        if hit && let Some(user) = self.inner.users.get(username).filter(|u| u.enabled) {
            return Ok(Authenticated {
                username: username.to_owned(),
                roles: user.roles.clone(),
            });
        }
        let result = self.authenticate(hasher, username, password);
        if result.is_ok() {
            let mut verified = self.inner.verified.lock();
            if verified.len() >= MAX_CACHED_CREDENTIALS {
                verified.clear();
            }
            verified.insert(username.to_owned(), tag);
        }
        result
    }

    fn credential_tag(&self, username: &str, password: &str) -> Option<[u8; 32]> {
        use hmac::Mac;
        // HMAC accepts keys of any length; None only keeps this panic-free.
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.inner.cache_key).ok()?;
        mac.update(&(username.len() as u64).to_be_bytes());
        mac.update(username.as_bytes());
        mac.update(password.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    /// [`Authorizer::authenticate_cached`] on tokio's blocking pool.
    pub async fn authenticate_cached_blocking(
        &self,
        hasher: Arc<PasswordHasher>,
        username: String,
        password: String,
    ) -> Result<Authenticated, AuthFailure> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.authenticate_cached(&hasher, &username, &password))
            .await
            .unwrap_or_else(|e| {
                Err(AuthFailure::Internal {
                    detail: format!("authentication task failed: {e}"),
                })
            })
    }

    /// [`Authorizer::authenticate`] on tokio's blocking pool.
    pub async fn authenticate_blocking(
        &self,
        hasher: Arc<PasswordHasher>,
        username: String,
        password: String,
    ) -> Result<Authenticated, AuthFailure> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.authenticate(&hasher, &username, &password))
            .await
            .unwrap_or_else(|e| {
                Err(AuthFailure::Internal {
                    detail: format!("authentication task failed: {e}"),
                })
            })
    }

    /// Runs `check` for `user` (bound username, "" if none) on `topic`
    /// (required for [`Check::Topic`]; ignored otherwise). For
    /// [`Check::PasswordChange`] this is the administrator path only; use
    /// [`Authorizer::password_change`] to include the own-account path.
    pub fn authorize(&self, user: &str, check: Check, topic: Option<&str>) -> Result<(), AuthzError> {
        if !self.auth_enabled() {
            return Ok(());
        }
        match check {
            Check::None => Ok(()),
            Check::Authenticated => self.check_authenticated(user),
            Check::Permission(p) => self.check_permission(user, p),
            Check::Topic(p) => self.check_topic(user, topic.unwrap_or_default(), p),
            Check::Admin => self.check_admin(user),
            Check::UserManagement | Check::PasswordChange => self.check_user_management(user),
        }
    }

    /// The §6.4 topic access check for `permission` on `topic`.
    pub fn check_topic(&self, user: &str, topic: &str, permission: Permission) -> Result<(), AuthzError> {
        let settings = self.inner.settings;
        if !settings.auth_enabled {
            return Ok(());
        }
        let acl = self.resolve(topic);
        let public = acl.as_ref().map_or(settings.default_public, |a| a.public);
        if public && permission != Permission::Admin {
            if !user.is_empty() || settings.allow_anonymous {
                return Ok(());
            }
            return Err(AuthzError::AuthenticationRequired);
        }
        let entry = self.known_enabled(user)?;
        if entry.permissions.contains(permission) {
            return Ok(());
        }
        if let Some(acl) = acl
            && (acl.users.contains(user) || acl.roles.iter().any(|r| entry.role_set.contains(r)))
        {
            return Ok(());
        }
        Err(AuthzError::Unauthorized)
    }

    /// The "admin" check: a known, enabled user with the admin permission.
    pub fn check_admin(&self, user: &str) -> Result<(), AuthzError> {
        self.check_permission(user, Permission::Admin)
    }

    /// The "user-management" check (same as [`Authorizer::check_admin`]).
    pub fn check_user_management(&self, user: &str) -> Result<(), AuthzError> {
        self.check_permission(user, Permission::Admin)
    }

    /// A known, enabled user whose roles grant `permission`.
    pub fn check_permission(&self, user: &str, permission: Permission) -> Result<(), AuthzError> {
        if !self.auth_enabled() {
            return Ok(());
        }
        let entry = self.known_enabled(user)?;
        if entry.permissions.contains(permission) {
            Ok(())
        } else {
            Err(AuthzError::Unauthorized)
        }
    }

    /// A known, enabled user.
    pub fn check_authenticated(&self, user: &str) -> Result<(), AuthzError> {
        if !self.auth_enabled() {
            return Ok(());
        }
        self.known_enabled(user).map(|_| ())
    }

    /// Who may change `target`'s password: the caller itself (after
    /// verifying the old password) or a user manager. Refused otherwise.
    pub fn password_change(&self, caller: &str, target: &str) -> Result<PasswordChangeMode, AuthzError> {
        if !self.auth_enabled() {
            return Ok(PasswordChangeMode::Administrator);
        }
        if self.check_user_management(caller).is_ok() {
            return Ok(PasswordChangeMode::Administrator);
        }
        if !caller.is_empty() && caller == target {
            self.known_enabled(caller)?;
            return Ok(PasswordChangeMode::OwnAccount);
        }
        self.check_user_management(caller)
            .map(|()| PasswordChangeMode::Administrator)
    }

    /// The stored hash of `user`, for the own-account password change.
    pub fn password_hash(&self, user: &str) -> Option<&HashedPassword> {
        self.inner.users.get(user).map(|u| &u.password_hash)
    }

    fn known_enabled(&self, user: &str) -> Result<&UserEntry, AuthzError> {
        if user.is_empty() {
            return Err(AuthzError::AuthenticationRequired);
        }
        let entry = self.inner.users.get(user).ok_or(AuthzError::Unauthorized)?;
        if !entry.enabled {
            return Err(AuthzError::AccountDisabled);
        }
        Ok(entry)
    }

    /// The ACL that applies to `topic`: exact, else the most specific
    /// matching pattern. Cached per snapshot.
    fn resolve(&self, topic: &str) -> Option<Arc<CompiledAcl>> {
        if let Some(acl) = self.inner.topic_acls.get(topic) {
            return Some(acl.clone());
        }
        if self.inner.pattern_acls.is_empty() {
            return None;
        }
        if let Some(cached) = self.inner.resolved.read().get(topic) {
            return cached.clone();
        }
        let found = self
            .inner
            .pattern_acls
            .iter()
            .find(|(p, _)| p.matches(topic))
            .map(|(_, acl)| acl.clone());
        let mut cache = self.inner.resolved.write();
        if cache.len() >= MAX_CACHED_TOPICS {
            cache.clear();
        }
        cache.insert(topic.to_owned(), found.clone());
        found
    }

    /// The text of the ACL that applies to `topic` (`None` = no ACL), for
    /// ACL_GET and diagnostics.
    pub fn applicable_acl(&self, topic: &str) -> Option<String> {
        if self.inner.topic_acls.contains_key(topic) {
            return Some(topic.to_owned());
        }
        self.inner
            .pattern_acls
            .iter()
            .find(|(p, _)| p.matches(topic))
            .map(|(p, _)| p.as_str().to_owned())
    }
}

/// The broker's current snapshot, swapped after every change. Readers get
/// a clone (one `Arc` increment) and keep using it for the whole request.
#[derive(Debug, Clone, Default)]
pub struct SharedAuthorizer {
    current: Arc<RwLock<Authorizer>>,
}

impl SharedAuthorizer {
    /// Starts with the snapshot of `state`.
    pub fn new(state: &SecurityState) -> Self {
        Self {
            current: Arc::new(RwLock::new(Authorizer::new(state))),
        }
    }

    /// The current snapshot.
    pub fn current(&self) -> Authorizer {
        self.current.read().clone()
    }

    /// Replaces the snapshot (call after applying a change to the state).
    pub fn rebuild(&self, state: &SecurityState) {
        let next = Authorizer::new(state);
        *self.current.write() = next;
    }
}

/// Slows down repeated failed AUTH attempts on one connection: the first
/// failure costs nothing extra, then the delay doubles from `base` up to
/// `max`. A success resets it.
#[derive(Debug, Clone)]
pub struct AuthBackoff {
    failures: u32,
    base: Duration,
    max: Duration,
}

impl Default for AuthBackoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl AuthBackoff {
    /// A backoff starting at `base` and capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { failures: 0, base, max }
    }

    /// Records a failure and returns how long to wait before answering.
    pub fn on_failure(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        if self.failures <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (self.failures - 2).min(16);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Records a success.
    pub fn on_success(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AclRule, AclTarget};
    use crate::password::PasswordParams;

    const ON: SecuritySettings = SecuritySettings {
        auth_enabled: true,
        allow_anonymous: false,
        default_public: true,
    };

    fn state(settings: SecuritySettings) -> SecurityState {
        let mut s = SecurityState::new(settings);
        let h = HashedPassword::default;
        s.upsert_role("auditor", [Permission::Admin], "").expect("role");
        s.create_user("root", vec!["admin".into()], h(), true, 0).expect("u");
        s.create_user("prod", vec!["producer".into()], h(), true, 0).expect("u");
        s.create_user("cons", vec!["consumer".into()], h(), true, 0).expect("u");
        s.create_user("guesty", vec!["guest".into()], h(), true, 0).expect("u");
        s.create_user("off", vec!["admin".into()], h(), false, 0).expect("u");
        s.create_user("aud", vec!["auditor".into()], h(), true, 0).expect("u");
        let acl = |public, users: &[&str], roles: &[&str]| {
            AclRule::new(public, users.iter().copied(), roles.iter().copied()).expect("rule")
        };
        s.set_acl(&AclTarget::parse("private").expect("t"), acl(false, &["guesty"], &[]));
        s.set_acl(&AclTarget::parse("open").expect("t"), acl(true, &[], &[]));
        s.set_acl(&AclTarget::parse("team.*").expect("p"), acl(false, &[], &["guest"]));
        s.set_acl(&AclTarget::parse("team.public.#").expect("p"), acl(true, &[], &[]));
        s
    }

    use AuthzError::*;
    use Permission::*;

    #[test]
    fn auth_disabled_allows_everything() {
        let a = Authorizer::new(&state(SecuritySettings::default()));
        assert_eq!(a.check_topic("", "private", Write), Ok(()));
        assert_eq!(a.check_admin(""), Ok(()));
        assert_eq!(a.authorize("", Check::UserManagement, None), Ok(()));
    }

    #[test]
    fn public_topics() {
        let a = Authorizer::new(&state(ON));
        // No ACL + default-public: any named user, even unknown ones.
        assert_eq!(a.check_topic("nobody", "misc", Write), Ok(()));
        assert_eq!(a.check_topic("guesty", "misc", Read), Ok(()));
        assert_eq!(a.check_topic("", "misc", Read), Err(AuthenticationRequired));
        // Public ACL.
        assert_eq!(a.check_topic("guesty", "open", Write), Ok(()));
        // Admin on a public topic is not granted by publicness.
        assert_eq!(a.check_topic("guesty", "open", Admin), Err(Unauthorized));
        assert_eq!(a.check_topic("root", "open", Admin), Ok(()));
        // Disabled user on a public topic: §6.4 step 2 allows it.
        assert_eq!(a.check_topic("off", "open", Read), Ok(()));
        // allow-anonymous.
        let anon = Authorizer::new(&state(SecuritySettings {
            allow_anonymous: true,
            ..ON
        }));
        assert_eq!(anon.check_topic("", "open", Write), Ok(()));
        assert_eq!(anon.check_topic("", "private", Read), Err(AuthenticationRequired));
    }

    #[test]
    fn private_topics() {
        let a = Authorizer::new(&state(ON));
        assert_eq!(a.check_topic("", "private", Read), Err(AuthenticationRequired));
        assert_eq!(a.check_topic("nobody", "private", Read), Err(Unauthorized));
        assert_eq!(a.check_topic("off", "private", Read), Err(AccountDisabled));
        assert_eq!(a.check_topic("cons", "private", Read), Ok(()), "role grants read");
        assert_eq!(a.check_topic("cons", "private", Write), Err(Unauthorized));
        assert_eq!(a.check_topic("prod", "private", Write), Ok(()));
        assert_eq!(a.check_topic("guesty", "private", Write), Ok(()), "named in the ACL");
        assert_eq!(a.check_topic("aud", "private", Read), Err(Unauthorized));
        // default-public off: topics without an ACL are private.
        let closed = Authorizer::new(&state(SecuritySettings {
            default_public: false,
            ..ON
        }));
        assert_eq!(closed.check_topic("guesty", "misc", Read), Err(Unauthorized));
        assert_eq!(closed.check_topic("cons", "misc", Read), Ok(()));
    }

    #[test]
    fn patterns_most_specific_wins() {
        let a = Authorizer::new(&state(ON));
        // team.* is private, roles [guest].
        assert_eq!(a.check_topic("guesty", "team.x", Read), Ok(()), "role in the ACL");
        assert_eq!(a.check_topic("nobody", "team.x", Read), Err(Unauthorized));
        // team.public.# is more specific and public.
        assert_eq!(a.check_topic("nobody", "team.public.x", Read), Ok(()));
        assert_eq!(a.applicable_acl("team.public.x").as_deref(), Some("team.public.#"));
        assert_eq!(a.applicable_acl("team.x").as_deref(), Some("team.*"));
        assert_eq!(a.applicable_acl("private").as_deref(), Some("private"));
        assert_eq!(a.applicable_acl("misc"), None);
        // The cached resolution gives the same answer.
        assert_eq!(a.check_topic("nobody", "team.public.x", Read), Ok(()));
        assert_eq!(a.check_topic("nobody", "team.x", Read), Err(Unauthorized));
    }

    #[test]
    fn admin_and_user_management() {
        let a = Authorizer::new(&state(ON));
        assert_eq!(a.check_admin(""), Err(AuthenticationRequired));
        assert_eq!(a.check_admin("nobody"), Err(Unauthorized));
        assert_eq!(a.check_admin("off"), Err(AccountDisabled));
        assert_eq!(a.check_admin("prod"), Err(Unauthorized));
        assert_eq!(a.check_admin("root"), Ok(()));
        assert_eq!(a.check_user_management("aud"), Ok(()), "custom role with admin");
        assert_eq!(a.check_authenticated("cons"), Ok(()));
        assert_eq!(a.check_authenticated(""), Err(AuthenticationRequired));
        assert_eq!(a.check_permission("cons", Read), Ok(()));
        assert_eq!(a.check_permission("prod", Read), Err(Unauthorized));
    }

    #[test]
    fn error_texts_are_the_go_texts() {
        assert_eq!(AuthenticationRequired.to_string(), AUTHENTICATION_REQUIRED);
        assert_eq!(Unauthorized.to_string(), UNAUTHORIZED);
        assert_eq!(AccountDisabled.to_string(), ACCOUNT_DISABLED);
        assert_eq!(AuthFailure::InvalidCredentials.to_string(), INVALID_CREDENTIALS);
        assert_eq!(AuthFailure::AccountDisabled.to_string(), ACCOUNT_DISABLED);
    }

    #[test]
    fn password_change_paths() {
        let a = Authorizer::new(&state(ON));
        assert_eq!(a.password_change("cons", "cons"), Ok(PasswordChangeMode::OwnAccount));
        assert_eq!(a.password_change("root", "cons"), Ok(PasswordChangeMode::Administrator));
        assert_eq!(a.password_change("cons", "prod"), Err(Unauthorized));
        assert_eq!(a.password_change("", ""), Err(AuthenticationRequired));
        assert_eq!(a.password_change("off", "off"), Err(AccountDisabled));
    }

    #[test]
    fn authenticate() {
        let hasher = PasswordHasher::new(PasswordParams::INSECURE_FAST_FOR_TESTS).expect("hasher");
        let mut s = state(ON);
        s.set_password("cons", hasher.hash("pw").expect("h"), 1).expect("set");
        s.set_password("off", hasher.hash("pw").expect("h"), 1).expect("set");
        let a = Authorizer::new(&s);
        let ok = a.authenticate(&hasher, "cons", "pw").expect("valid");
        assert_eq!(ok.roles, ["consumer"]);
        assert_eq!(
            a.authenticate(&hasher, "cons", "nope"),
            Err(AuthFailure::InvalidCredentials)
        );
        assert_eq!(
            a.authenticate(&hasher, "ghost", "pw"),
            Err(AuthFailure::InvalidCredentials)
        );
        assert_eq!(a.authenticate(&hasher, "off", "pw"), Err(AuthFailure::AccountDisabled));
        assert_eq!(
            a.authenticate(&hasher, "off", "nope"),
            Err(AuthFailure::InvalidCredentials),
            "a wrong password does not reveal that the account is disabled"
        );
        // Certificate-only user (no hash) cannot log in with a password.
        assert_eq!(
            a.authenticate(&hasher, "prod", ""),
            Err(AuthFailure::InvalidCredentials)
        );
        // Auth disabled: any AUTH succeeds, no roles.
        let open = Authorizer::new(&SecurityState::default());
        let ok = open.authenticate(&hasher, "whoever", "x").expect("disabled auth");
        assert_eq!((ok.username.as_str(), ok.roles.len()), ("whoever", 0));
    }

    #[test]
    fn cached_authentication() {
        let hasher = PasswordHasher::new(PasswordParams::INSECURE_FAST_FOR_TESTS).expect("hasher");
        let mut s = state(ON);
        s.set_password("cons", hasher.hash("pw").expect("h"), 1).expect("set");
        let shared = SharedAuthorizer::new(&s);
        let a = shared.current();
        assert!(a.authenticate_cached(&hasher, "cons", "pw").is_ok());
        assert!(a.authenticate_cached(&hasher, "cons", "pw").is_ok(), "from the cache");
        assert_eq!(
            a.authenticate_cached(&hasher, "cons", "other"),
            Err(AuthFailure::InvalidCredentials),
            "a different password is verified again"
        );
        // A password change makes a new snapshot: the old password stops working.
        s.set_password("cons", hasher.hash("pw2").expect("h"), 2).expect("set");
        shared.rebuild(&s);
        let b = shared.current();
        assert_eq!(
            b.authenticate_cached(&hasher, "cons", "pw"),
            Err(AuthFailure::InvalidCredentials)
        );
        assert!(b.authenticate_cached(&hasher, "cons", "pw2").is_ok());
        // Disabling also applies at once.
        s.update_user("cons", None, Some(false), 3).expect("disable");
        shared.rebuild(&s);
        assert_eq!(
            shared.current().authenticate_cached(&hasher, "cons", "pw2"),
            Err(AuthFailure::AccountDisabled)
        );
    }

    #[test]
    fn snapshot_swap_sees_changes() {
        let mut s = state(ON);
        let before = Authorizer::new(&s);
        assert_eq!(before.check_topic("nobody", "team.x", Read), Err(Unauthorized));
        s.set_acl(
            &AclTarget::parse("team.*").expect("p"),
            AclRule::new(false, ["nobody"], Vec::<String>::new()).expect("rule"),
        );
        let after = Authorizer::new(&s);
        assert_eq!(
            after.check_topic("nobody", "team.x", Read),
            Err(Unauthorized),
            "unknown user"
        );
        s.create_user("nobody", Vec::new(), HashedPassword::default(), true, 2)
            .expect("user");
        let after = Authorizer::new(&s);
        assert_eq!(after.check_topic("nobody", "team.x", Read), Ok(()));
        assert_eq!(
            before.check_topic("nobody", "team.x", Read),
            Err(Unauthorized),
            "old snapshot unchanged"
        );
    }

    /// Every row of §6.5's table maps to the recommended check.
    #[test]
    fn opcode_table() {
        use Opcode as O;
        let rows: &[(&[Opcode], Check)] = &[
            (&[O::Produce], Check::Topic(Write)),
            (
                &[
                    O::Consume,
                    O::Fetch,
                    O::ConsumeZeroCopy,
                    O::FetchBinary,
                    O::Subscribe,
                    O::GetOffset,
                    O::GetLag,
                ],
                Check::Topic(Read),
            ),
            (&[O::CreateTopic, O::DeleteTopic, O::ResetOffset], Check::Admin),
            (
                &[
                    O::ListGroups,
                    O::DescribeGroup,
                    O::DeleteGroup,
                    O::UserCreate,
                    O::UserDelete,
                    O::UserUpdate,
                    O::UserList,
                    O::UserGet,
                    O::AclSet,
                    O::AclGet,
                    O::AclDelete,
                    O::AclList,
                    O::AuditQuery,
                    O::AuditExport,
                    O::AuditQueryAlt,
                    O::AuditExportAlt,
                ],
                Check::UserManagement,
            ),
            (&[O::PasswordChange], Check::PasswordChange),
            (&[O::Commit], Check::Topic(Read)),
            (
                &[O::ProduceDelayed, O::ProduceWithTtl, O::ProduceWithSchema, O::ProduceTx],
                Check::Topic(Write),
            ),
            (&[O::BeginTx, O::CommitTx, O::AbortTx], Check::Authenticated),
            (
                &[O::RegisterSchema, O::DeleteSchema, O::ReplayDlq, O::PurgeDlq],
                Check::Admin,
            ),
            (
                &[O::GetSchema, O::ListSchemas, O::ValidateSchema],
                Check::Permission(Read),
            ),
            (&[O::FetchDlq], Check::Topic(Read)),
            (
                &[O::ListTopics, O::ClusterMetadata, O::Auth, O::Whoami, O::RoleList],
                Check::None,
            ),
        ];
        for (opcodes, check) in rows {
            for op in *opcodes {
                assert_eq!(required_check(*op), *check, "{}", op.name());
            }
        }
    }

    #[test]
    fn backoff_grows_and_resets() {
        let mut b = AuthBackoff::new(Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(b.on_failure(), Duration::ZERO);
        assert_eq!(b.on_failure(), Duration::from_millis(100));
        assert_eq!(b.on_failure(), Duration::from_millis(200));
        assert_eq!(b.on_failure(), Duration::from_millis(350));
        b.on_success();
        assert_eq!(b.on_failure(), Duration::ZERO);
    }
}
