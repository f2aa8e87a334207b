//! Changes to users, roles and ACLs, as replicated commands. A change
//! carries every input its effect depends on (the password *hash*, never
//! the password; the time), so every replica applies it the same way.

use flymq_security::model::ModelError;
use flymq_security::{AclRule, AclTarget, HashedPassword, Permission, SecurityState};
use serde::{Deserialize, Serialize};

/// One change to the security state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityChange {
    /// Adds a user; an existing user is an error.
    CreateUser {
        name: String,
        roles: Vec<String>,
        password_hash: HashedPassword,
        enabled: bool,
        now_secs: i64,
    },
    /// Changes roles and/or the enabled flag (`None` = unchanged).
    UpdateUser {
        name: String,
        roles: Option<Vec<String>>,
        enabled: Option<bool>,
        now_secs: i64,
    },
    /// Creates the user or replaces its roles (and password when given).
    UpsertUser {
        name: String,
        roles: Vec<String>,
        password_hash: Option<HashedPassword>,
        now_secs: i64,
    },
    /// The bootstrap admin: created with the admin role when absent, left
    /// alone when it exists (its password may have been changed since).
    EnsureUser {
        name: String,
        roles: Vec<String>,
        password_hash: HashedPassword,
        now_secs: i64,
    },
    SetPassword {
        name: String,
        password_hash: HashedPassword,
        now_secs: i64,
    },
    DeleteUser {
        name: String,
    },
    UpsertRole {
        name: String,
        permissions: Vec<Permission>,
        description: String,
    },
    DeleteRole {
        name: String,
    },
    /// Sets the ACL of a topic (`is_pattern` false) or a pattern.
    SetAcl {
        target: String,
        is_pattern: bool,
        public: bool,
        users: Vec<String>,
        roles: Vec<String>,
    },
    DeleteAcl {
        target: String,
        is_pattern: bool,
    },
}

impl SecurityChange {
    /// What the change is about, for the audit trail: (event type, resource, action).
    pub fn describe(&self) -> (&'static str, String, &'static str) {
        match self {
            SecurityChange::CreateUser { name, .. } => ("user", format!("user:{name}"), "create"),
            SecurityChange::UpdateUser { name, .. } => ("user", format!("user:{name}"), "update"),
            SecurityChange::UpsertUser { name, .. } => ("user", format!("user:{name}"), "upsert"),
            SecurityChange::EnsureUser { name, .. } => ("user", format!("user:{name}"), "bootstrap"),
            SecurityChange::SetPassword { name, .. } => ("user", format!("user:{name}"), "password_change"),
            SecurityChange::DeleteUser { name } => ("user", format!("user:{name}"), "delete"),
            SecurityChange::UpsertRole { name, .. } => ("role", format!("role:{name}"), "upsert"),
            SecurityChange::DeleteRole { name } => ("role", format!("role:{name}"), "delete"),
            SecurityChange::SetAcl { target, .. } => ("acl", format!("acl:{target}"), "set"),
            SecurityChange::DeleteAcl { target, .. } => ("acl", format!("acl:{target}"), "delete"),
        }
    }

    /// Applies the change to `state`. Returns whether anything changed
    /// (false only for an `EnsureUser` of an existing user).
    pub fn apply(self, state: &mut SecurityState) -> Result<bool, ModelError> {
        match self {
            SecurityChange::CreateUser {
                name,
                roles,
                password_hash,
                enabled,
                now_secs,
            } => state
                .create_user(&name, roles, password_hash, enabled, now_secs)
                .map(|_| true),
            SecurityChange::UpdateUser {
                name,
                roles,
                enabled,
                now_secs,
            } => state.update_user(&name, roles, enabled, now_secs).map(|_| true),
            SecurityChange::UpsertUser {
                name,
                roles,
                password_hash,
                now_secs,
            } => state.upsert_user(&name, roles, password_hash, now_secs).map(|_| true),
            SecurityChange::EnsureUser {
                name,
                roles,
                password_hash,
                now_secs,
            } => {
                if state.users.contains_key(&name) {
                    return Ok(false);
                }
                state
                    .create_user(&name, roles, password_hash, true, now_secs)
                    .map(|_| true)
            }
            SecurityChange::SetPassword {
                name,
                password_hash,
                now_secs,
            } => state.set_password(&name, password_hash, now_secs).map(|()| true),
            SecurityChange::DeleteUser { name } => state.delete_user(&name).map(|_| true),
            SecurityChange::UpsertRole {
                name,
                permissions,
                description,
            } => state.upsert_role(&name, permissions, &description).map(|_| true),
            SecurityChange::DeleteRole { name } => state.delete_role(&name).map(|_| true),
            SecurityChange::SetAcl {
                target,
                is_pattern,
                public,
                users,
                roles,
            } => {
                let target = AclTarget::from_parts(&target, is_pattern)?;
                let rule = AclRule::new(public, users, roles)?;
                state.set_acl(&target, rule);
                Ok(true)
            }
            SecurityChange::DeleteAcl { target, is_pattern } => {
                let target = AclTarget::from_parts(&target, is_pattern)?;
                state.delete_acl(&target).map(|_| true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> HashedPassword {
        HashedPassword::from_phc("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
    }

    #[test]
    fn ensure_user_creates_once_and_keeps_later_changes() {
        let mut state = SecurityState::default();
        let ensure = SecurityChange::EnsureUser {
            name: "admin".into(),
            roles: vec!["admin".into()],
            password_hash: hash(),
            now_secs: 1,
        };
        assert!(ensure.clone().apply(&mut state).unwrap());
        SecurityChange::UpdateUser {
            name: "admin".into(),
            roles: Some(vec!["consumer".into()]),
            enabled: None,
            now_secs: 2,
        }
        .apply(&mut state)
        .unwrap();
        assert!(!ensure.apply(&mut state).unwrap());
        assert!(state.users["admin"].roles.contains("consumer"));
    }

    #[test]
    fn invalid_changes_leave_the_state_alone() {
        let mut state = SecurityState::default();
        let before = state.clone();
        let bad_role = SecurityChange::CreateUser {
            name: "bob".into(),
            roles: vec!["no-such-role".into()],
            password_hash: hash(),
            enabled: true,
            now_secs: 1,
        };
        assert!(matches!(bad_role.apply(&mut state), Err(ModelError::UnknownRole(_))));
        let wildcard_as_topic = SecurityChange::SetAcl {
            target: "orders.*".into(),
            is_pattern: false,
            public: false,
            users: vec![],
            roles: vec![],
        };
        assert!(wildcard_as_topic.apply(&mut state).is_err());
        assert!(
            SecurityChange::DeleteUser { name: "ghost".into() }
                .apply(&mut state)
                .is_err()
        );
        assert_eq!(state, before);
    }
}
