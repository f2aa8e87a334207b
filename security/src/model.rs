//! The security state the broker replicates: users, roles, ACLs and the
//! auth settings, as plain serde data, with validated mutations.
//!
//! The broker stores one [`SecurityState`] in its metadata state machine and
//! applies changes with the `SecurityState` methods (each validates its
//! input and takes the time from the replicated command, so every node
//! computes the same state). After each change it rebuilds the
//! [`Authorizer`](crate::authorizer::Authorizer) snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::password::HashedPassword;
use crate::pattern::{PatternError, TopicPattern, is_pattern};

/// Longest user name (long enough for a DNS name taken from a certificate).
pub const MAX_USERNAME_LEN: usize = 253;
/// Longest role name.
pub const MAX_ROLE_NAME_LEN: usize = 64;
/// Longest role description.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Longest exact topic name in an ACL (the broker's topic-name limit).
pub const MAX_TOPIC_LEN: usize = 249;
/// Most users or roles one ACL may name.
pub const MAX_ACL_MEMBERS: usize = 1024;

/// A permission a role grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Read records of a topic (consume, fetch, subscribe, offsets).
    Read,
    /// Write records to a topic (produce in all its forms).
    Write,
    /// Administer: topics, groups, users, ACLs, audit.
    Admin,
}

impl Permission {
    /// All permissions, in wire order.
    pub const ALL: [Permission; 3] = [Permission::Read, Permission::Write, Permission::Admin];

    /// The wire name (`read`, `write`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }

    /// Parses a wire name, case-insensitively.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        match text.to_ascii_lowercase().as_str() {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "admin" => Ok(Permission::Admin),
            _ => Err(ModelError::Invalid(format!(
                "unknown permission '{text}'; use read, write or admin"
            ))),
        }
    }

    fn bit(self) -> u8 {
        match self {
            Permission::Read => 1,
            Permission::Write => 2,
            Permission::Admin => 4,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions (a bit set; cheap to copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Permissions(u8);

impl Permissions {
    /// No permission.
    pub const NONE: Permissions = Permissions(0);

    /// True when `permission` is in the set.
    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    /// Adds `permission`.
    pub fn insert(&mut self, permission: Permission) {
        self.0 |= permission.bit();
    }

    /// The union of two sets.
    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// The permissions in the set, in wire order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.contains(*p))
    }

    /// The wire names, in order (`["read", "write"]`).
    pub fn names(self) -> Vec<String> {
        self.iter().map(|p| p.as_str().to_owned()).collect()
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<T: IntoIterator<Item = Permission>>(iter: T) -> Self {
        let mut set = Permissions::NONE;
        for p in iter {
            set.insert(p);
        }
        set
    }
}

/// Invalid input to a state change, or a change that conflicts with the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A name, password or setting is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The user does not exist.
    #[error("user '{0}' does not exist")]
    UnknownUser(String),
    /// The user exists already.
    #[error("user '{0}' already exists; use `flymq-cli user update` to change it")]
    UserExists(String),
    /// A role named by a user does not exist.
    #[error("role '{0}' does not exist; built-in roles are admin, producer, consumer, guest")]
    UnknownRole(String),
    /// A built-in role cannot be changed or deleted.
    #[error("role '{0}' is built in and cannot be changed or deleted")]
    BuiltInRole(String),
    /// The role is still assigned to users.
    #[error("role '{role}' is still assigned to {users:?}; remove it from them first")]
    RoleInUse {
        /// The role.
        role: String,
        /// Users that have it.
        users: Vec<String>,
    },
    /// No ACL exists for the topic or pattern.
    #[error("no ACL exists for '{0}'")]
    UnknownAcl(String),
    /// A pattern is malformed.
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

/// Checks a user name: 1-253 characters of `[A-Za-z0-9._@-]`, starting
/// with a letter or digit (so DNS names and e-mail style names from client
/// certificates fit).
pub fn validate_username(name: &str) -> Result<(), ModelError> {
    let fail = |reason: &str| Err(ModelError::Invalid(format!("invalid user name '{name}': {reason}")));
    if name.is_empty() {
        return Err(ModelError::Invalid("user name must not be empty".into()));
    }
    if name.len() > MAX_USERNAME_LEN {
        return fail("it is longer than 253 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return fail("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return fail("use only letters, digits, '.', '_', '-' and '@'");
    }
    Ok(())
}

/// Checks a role name: 1-64 characters of `[A-Za-z0-9_-]`, starting with a
/// letter.
pub fn validate_role_name(name: &str) -> Result<(), ModelError> {
    let fail = |reason: &str| Err(ModelError::Invalid(format!("invalid role name '{name}': {reason}")));
    if name.is_empty() {
        return Err(ModelError::Invalid("role name must not be empty".into()));
    }
    if name.len() > MAX_ROLE_NAME_LEN {
        return fail("it is longer than 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return fail("it must start with a letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        return fail("use only letters, digits, '_' and '-'");
    }
    Ok(())
}

/// Checks an exact topic name in an ACL (the broker's rule: 1-249
/// characters of `[A-Za-z0-9._-]` in levels separated by `/`, no empty
/// level, no level `.` or `..`).
pub fn validate_topic(name: &str) -> Result<(), ModelError> {
    let fail = |reason: &str| Err(ModelError::Invalid(format!("invalid topic name '{name}': {reason}")));
    if name.is_empty() {
        return Err(ModelError::Invalid("topic name must not be empty".into()));
    }
    if name.len() > MAX_TOPIC_LEN {
        return fail("it is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    {
        return fail("use only letters, digits, '.', '_', '-' and '/' (or '*', '+', '#' for a pattern)");
    }
    if name
        .split('/')
        .any(|level| level.is_empty() || level == "." || level == "..")
    {
        return fail("no empty level, and no level '.' or '..'");
    }
    Ok(())
}

/// A user account. `Debug` never shows the password hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User name (unique).
    pub name: String,
    /// Role names (built-in or custom), sorted.
    pub roles: BTreeSet<String>,
    /// A disabled user cannot authenticate and is refused everywhere.
    pub enabled: bool,
    /// argon2id PHC hash; empty for certificate-only users (no password
    /// authentication possible).
    pub password_hash: HashedPassword,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("enabled", &self.enabled)
            .field("password_hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// A role: a named set of permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Role name.
    pub name: String,
    /// Permissions granted.
    pub permissions: BTreeSet<Permission>,
    /// Free text shown by ROLE_LIST.
    pub description: String,
}

impl Role {
    /// The permissions as a bit set.
    pub fn permission_set(&self) -> Permissions {
        self.permissions.iter().copied().collect()
    }
}

/// The built-in roles: `admin` = {read, write, admin}, `producer` = {write},
/// `consumer` = {read}, `guest` = {} (public topics only).
pub fn builtin_roles() -> Vec<Role> {
    let role = |name: &str, perms: &[Permission], description: &str| Role {
        name: name.to_owned(),
        permissions: perms.iter().copied().collect(),
        description: description.to_owned(),
    };
    vec![
        role(
            "admin",
            &[Permission::Read, Permission::Write, Permission::Admin],
            "Full access: every topic, topic and group administration, users, ACLs, audit",
        ),
        role("producer", &[Permission::Write], "Write to every topic"),
        role("consumer", &[Permission::Read], "Read from every topic"),
        role("guest", &[], "Public topics only"),
    ]
}

/// True for `admin`, `producer`, `consumer` and `guest`.
pub fn is_builtin_role(name: &str) -> bool {
    matches!(name, "admin" | "producer" | "consumer" | "guest")
}

/// What an ACL applies to: one topic, or every topic a pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclTarget {
    /// Exactly this topic.
    Topic(String),
    /// Topics matching the pattern.
    Pattern(TopicPattern),
}

impl AclTarget {
    /// Parses ACL_SET's `topic` field: a pattern when it contains `*`, `+`
    /// or `#`, else an exact topic name.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        if is_pattern(text) {
            Ok(AclTarget::Pattern(TopicPattern::parse(text)?))
        } else {
            validate_topic(text)?;
            Ok(AclTarget::Topic(text.to_owned()))
        }
    }

    /// Builds a target from admin gRPC's (`topic`, `is_pattern`) pair.
    pub fn from_parts(text: &str, is_pattern_flag: bool) -> Result<Self, ModelError> {
        if is_pattern_flag {
            Ok(AclTarget::Pattern(TopicPattern::parse(text)?))
        } else if is_pattern(text) {
            Err(ModelError::Invalid(format!(
                "'{text}' contains a wildcard but is_pattern is false; set is_pattern for a pattern ACL"
            )))
        } else {
            validate_topic(text)?;
            Ok(AclTarget::Topic(text.to_owned()))
        }
    }

    /// The topic or pattern text.
    pub fn as_str(&self) -> &str {
        match self {
            AclTarget::Topic(t) => t,
            AclTarget::Pattern(p) => p.as_str(),
        }
    }

    /// True for a pattern.
    pub fn is_pattern(&self) -> bool {
        matches!(self, AclTarget::Pattern(_))
    }
}

impl fmt::Display for AclTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may use the topics an ACL covers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AclRule {
    /// Public topics allow any authenticated user (and anonymous users when
    /// allow-anonymous is on) to read and write.
    pub public: bool,
    /// Users allowed (names need not exist yet).
    pub users: BTreeSet<String>,
    /// Roles allowed (names need not exist yet).
    pub roles: BTreeSet<String>,
}

impl AclRule {
    /// A rule from lists, validating every name.
    pub fn new<U, R>(public: bool, users: U, roles: R) -> Result<Self, ModelError>
    where
        U: IntoIterator,
        U::Item: Into<String>,
        R: IntoIterator,
        R::Item: Into<String>,
    {
        let users: BTreeSet<String> = users.into_iter().map(Into::into).collect();
        let roles: BTreeSet<String> = roles.into_iter().map(Into::into).collect();
        if users.len() > MAX_ACL_MEMBERS || roles.len() > MAX_ACL_MEMBERS {
            return Err(ModelError::Invalid(format!(
                "an ACL may name at most {MAX_ACL_MEMBERS} users and {MAX_ACL_MEMBERS} roles"
            )));
        }
        for user in &users {
            validate_username(user)?;
        }
        for role in &roles {
            validate_role_name(role)?;
        }
        Ok(Self { public, users, roles })
    }
}

/// Server-wide auth settings (WIRE.md §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecuritySettings {
    /// When off, every check passes (default off, for standalone dev use).
    pub auth_enabled: bool,
    /// Unauthenticated connections may use public topics (default off).
    pub allow_anonymous: bool,
    /// Topics without an ACL are public (default on).
    pub default_public: bool,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            auth_enabled: false,
            allow_anonymous: false,
            default_public: true,
        }
    }
}

/// The whole replicated security state. Plain data: `serde` in, `serde`
/// out; mutations validate and are deterministic given their inputs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SecurityState {
    /// Auth settings.
    pub settings: SecuritySettings,
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Custom roles by name (built-in roles are not stored).
    pub roles: BTreeMap<String, Role>,
    /// ACLs of exact topics, by topic name.
    pub topic_acls: BTreeMap<String, AclRule>,
    /// ACLs of patterns, by pattern text (validated when applied and when
    /// the authorizer is built).
    pub pattern_acls: BTreeMap<String, AclRule>,
}

impl SecurityState {
    /// An empty state with `settings`.
    pub fn new(settings: SecuritySettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// The role called `name`, built-in or custom.
    pub fn role(&self, name: &str) -> Option<Role> {
        builtin_roles()
            .into_iter()
            .find(|r| r.name == name)
            .or_else(|| self.roles.get(name).cloned())
    }

    /// Every role: built-in first, then custom ones by name.
    pub fn all_roles(&self) -> Vec<Role> {
        let mut roles = builtin_roles();
        roles.extend(self.roles.values().cloned());
        roles
    }

    /// The union of the permissions of `user`'s roles (unknown roles grant
    /// nothing).
    pub fn permissions_of(&self, user: &User) -> Permissions {
        user.roles
            .iter()
            .filter_map(|r| self.role(r))
            .fold(Permissions::NONE, |acc, r| acc.union(r.permission_set()))
    }

    fn check_roles_exist<'a>(&self, roles: impl IntoIterator<Item = &'a String>) -> Result<(), ModelError> {
        for role in roles {
            validate_role_name(role)?;
            if self.role(role).is_none() {
                return Err(ModelError::UnknownRole(role.clone()));
            }
        }
        Ok(())
    }

    /// Adds a user. `password_hash` comes from
    /// [`PasswordHasher::hash`](crate::password::PasswordHasher::hash)
    /// (hash before proposing the change, so the log never holds a
    /// password); every role must exist.
    pub fn create_user(
        &mut self,
        name: &str,
        roles: impl IntoIterator<Item = String>,
        password_hash: HashedPassword,
        enabled: bool,
        now_secs: i64,
    ) -> Result<&User, ModelError> {
        validate_username(name)?;
        if self.users.contains_key(name) {
            return Err(ModelError::UserExists(name.to_owned()));
        }
        let roles: BTreeSet<String> = roles.into_iter().collect();
        self.check_roles_exist(&roles)?;
        let user = User {
            name: name.to_owned(),
            roles,
            enabled,
            password_hash,
            created_at: now_secs,
            updated_at: now_secs,
        };
        Ok(self.users.entry(name.to_owned()).or_insert(user))
    }

    /// Changes a user's roles and/or enabled flag (`None` = unchanged).
    pub fn update_user(
        &mut self,
        name: &str,
        roles: Option<Vec<String>>,
        enabled: Option<bool>,
        now_secs: i64,
    ) -> Result<&User, ModelError> {
        if let Some(roles) = &roles {
            self.check_roles_exist(roles)?;
        }
        let user = self
            .users
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownUser(name.to_owned()))?;
        if let Some(roles) = roles {
            user.roles = roles.into_iter().collect();
        }
        if let Some(enabled) = enabled {
            user.enabled = enabled;
        }
        user.updated_at = now_secs;
        Ok(user)
    }

    /// Creates the user or replaces its roles and password (admin gRPC's
    /// `UpsertUser`). `password_hash` `None` keeps the current one.
    pub fn upsert_user(
        &mut self,
        name: &str,
        roles: Vec<String>,
        password_hash: Option<HashedPassword>,
        now_secs: i64,
    ) -> Result<&User, ModelError> {
        if !self.users.contains_key(name) {
            return self.create_user(name, roles, password_hash.unwrap_or_default(), true, now_secs);
        }
        self.update_user(name, Some(roles), None, now_secs)?;
        if let Some(hash) = password_hash {
            self.set_password(name, hash, now_secs)?;
        }
        self.users
            .get(name)
            .ok_or_else(|| ModelError::UnknownUser(name.to_owned()))
    }

    /// Replaces a user's password hash.
    pub fn set_password(&mut self, name: &str, password_hash: HashedPassword, now_secs: i64) -> Result<(), ModelError> {
        let user = self
            .users
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownUser(name.to_owned()))?;
        user.password_hash = password_hash;
        user.updated_at = now_secs;
        Ok(())
    }

    /// Removes a user; returns it.
    pub fn delete_user(&mut self, name: &str) -> Result<User, ModelError> {
        self.users
            .remove(name)
            .ok_or_else(|| ModelError::UnknownUser(name.to_owned()))
    }

    /// Adds or replaces a custom role.
    pub fn upsert_role(
        &mut self,
        name: &str,
        permissions: impl IntoIterator<Item = Permission>,
        description: &str,
    ) -> Result<&Role, ModelError> {
        validate_role_name(name)?;
        if is_builtin_role(name) {
            return Err(ModelError::BuiltInRole(name.to_owned()));
        }
        if description.len() > MAX_DESCRIPTION_LEN {
            return Err(ModelError::Invalid(format!(
                "description of role '{name}' is longer than {MAX_DESCRIPTION_LEN} bytes"
            )));
        }
        let role = Role {
            name: name.to_owned(),
            permissions: permissions.into_iter().collect(),
            description: description.to_owned(),
        };
        self.roles.insert(name.to_owned(), role);
        self.roles
            .get(name)
            .ok_or_else(|| ModelError::UnknownRole(name.to_owned()))
    }

    /// Removes a custom role that no user has.
    pub fn delete_role(&mut self, name: &str) -> Result<Role, ModelError> {
        if is_builtin_role(name) {
            return Err(ModelError::BuiltInRole(name.to_owned()));
        }
        let users: Vec<String> = self
            .users
            .values()
            .filter(|u| u.roles.contains(name))
            .map(|u| u.name.clone())
            .collect();
        if !users.is_empty() {
            return Err(ModelError::RoleInUse {
                role: name.to_owned(),
                users,
            });
        }
        self.roles
            .remove(name)
            .ok_or_else(|| ModelError::UnknownRole(name.to_owned()))
    }

    /// Sets (creates or replaces) the ACL of a topic or pattern.
    pub fn set_acl(&mut self, target: &AclTarget, rule: AclRule) {
        match target {
            AclTarget::Topic(t) => self.topic_acls.insert(t.clone(), rule),
            AclTarget::Pattern(p) => self.pattern_acls.insert(p.as_str().to_owned(), rule),
        };
    }

    /// The ACL of a topic or pattern, if set.
    pub fn acl(&self, target: &AclTarget) -> Option<&AclRule> {
        match target {
            AclTarget::Topic(t) => self.topic_acls.get(t),
            AclTarget::Pattern(p) => self.pattern_acls.get(p.as_str()),
        }
    }

    /// Removes the ACL of a topic or pattern; returns it.
    pub fn delete_acl(&mut self, target: &AclTarget) -> Result<AclRule, ModelError> {
        let removed = match target {
            AclTarget::Topic(t) => self.topic_acls.remove(t),
            AclTarget::Pattern(p) => self.pattern_acls.remove(p.as_str()),
        };
        removed.ok_or_else(|| ModelError::UnknownAcl(target.as_str().to_owned()))
    }

    /// Every ACL: exact topics then patterns, each sorted by text.
    pub fn acls(&self) -> impl Iterator<Item = (AclTarget, &AclRule)> {
        let topics = self.topic_acls.iter().map(|(t, r)| (AclTarget::Topic(t.clone()), r));
        let patterns = self
            .pattern_acls
            .iter()
            .filter_map(|(p, r)| TopicPattern::parse(p).ok().map(|p| (AclTarget::Pattern(p), r)));
        topics.chain(patterns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> HashedPassword {
        HashedPassword::from_phc("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
    }

    #[test]
    fn names_are_validated() {
        for ok in ["alice", "svc-1", "broker-0.flymq.svc", "a@b.c", "A_B"] {
            validate_username(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "é"] {
            assert!(validate_username(bad).is_err(), "{bad:?}");
        }
        assert!(validate_username(&"a".repeat(254)).is_err());
        for ok in ["ops", "team-a", "r_1"] {
            validate_role_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "1x", "a.b", "a b"] {
            assert!(validate_role_name(bad).is_err(), "{bad:?}");
        }
        let err = validate_username("a b").unwrap_err().to_string();
        assert!(err.contains("'a b'") && err.contains("letters"), "{err}");
    }

    #[test]
    fn users_need_existing_roles() {
        let mut state = SecurityState::default();
        let err = state
            .create_user("alice", vec!["ops".into()], hash(), true, 1)
            .unwrap_err();
        assert_eq!(err, ModelError::UnknownRole("ops".into()));
        state.upsert_role("ops", [Permission::Read], "operators").expect("role");
        state
            .create_user("alice", vec!["ops".into(), "producer".into()], hash(), true, 1)
            .expect("user");
        let alice = &state.users["alice"];
        assert_eq!(
            state.permissions_of(alice),
            [Permission::Read, Permission::Write].into_iter().collect()
        );
        assert!(matches!(
            state.create_user("alice", Vec::new(), hash(), true, 2),
            Err(ModelError::UserExists(_))
        ));
        let err = state.delete_role("ops").unwrap_err();
        assert!(matches!(err, ModelError::RoleInUse { .. }), "{err}");
        assert!(matches!(state.delete_role("admin"), Err(ModelError::BuiltInRole(_))));
        assert!(matches!(
            state.upsert_role("guest", [], ""),
            Err(ModelError::BuiltInRole(_))
        ));
        state
            .update_user("alice", Some(vec![]), Some(false), 5)
            .expect("update");
        assert!(!state.users["alice"].enabled);
        assert_eq!(state.users["alice"].updated_at, 5);
        state.delete_role("ops").expect("no longer used");
        state.delete_user("alice").expect("delete");
        assert!(matches!(state.delete_user("alice"), Err(ModelError::UnknownUser(_))));
    }

    #[test]
    fn upsert_keeps_password_when_none() {
        let mut state = SecurityState::default();
        state
            .upsert_user("op", vec!["admin".into()], Some(hash()), 1)
            .expect("create");
        state
            .upsert_user("op", vec!["consumer".into()], None, 2)
            .expect("update");
        let op = &state.users["op"];
        assert_eq!(op.password_hash, hash());
        assert_eq!(op.roles.iter().collect::<Vec<_>>(), ["consumer"]);
        assert_eq!((op.created_at, op.updated_at), (1, 2));
    }

    #[test]
    fn acl_targets() {
        assert_eq!(
            AclTarget::parse("orders").expect("topic"),
            AclTarget::Topic("orders".into())
        );
        assert!(AclTarget::parse("orders.*").expect("pattern").is_pattern());
        assert!(AclTarget::parse("bad topic").is_err());
        assert!(AclTarget::from_parts("orders.*", false).is_err());
        assert!(
            AclTarget::from_parts("orders", true).is_err(),
            "a pattern needs a wildcard"
        );
        let mut state = SecurityState::default();
        let target = AclTarget::parse("orders.#").expect("pattern");
        state.set_acl(&target, AclRule::new(false, ["alice"], ["ops"]).expect("rule"));
        assert!(state.acl(&target).is_some());
        assert_eq!(state.acls().count(), 1);
        state.delete_acl(&target).expect("delete");
        assert!(matches!(state.delete_acl(&target), Err(ModelError::UnknownAcl(_))));
        assert!(AclRule::new(false, ["bad name"], Vec::<String>::new()).is_err());
    }

    #[test]
    fn debug_redacts_and_serde_round_trips() {
        let mut state = SecurityState::default();
        state
            .create_user("alice", vec!["admin".into()], hash(), true, 1)
            .expect("user");
        state.set_acl(
            &AclTarget::parse("orders.*").expect("pattern"),
            AclRule::new(true, ["alice"], ["consumer"]).expect("rule"),
        );
        let debug = format!("{state:?}");
        assert!(!debug.contains("argon2"), "{debug}");
        let json = serde_json::to_string(&state).expect("serialize");
        let back: SecurityState = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, state);
    }

    #[test]
    fn permission_names() {
        let all: Permissions = Permission::ALL.into_iter().collect();
        assert_eq!(all.names(), ["read", "write", "admin"]);
        assert_eq!(Permission::parse("WRITE").expect("parse"), Permission::Write);
        assert!(Permission::parse("root").is_err());
    }
}
