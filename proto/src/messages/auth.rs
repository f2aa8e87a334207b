//! Authentication, WHOAMI, and user / ACL / role management (WIRE.md §6, §12).

use bytes::BytesMut;

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Wire, put, wire_struct, write_bool, write_str16};

/// AUTH (0x70): `str16 username | str16 password`. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AuthRequest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Wire for AuthRequest {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AuthRequest {
            username: r.str16()?,
            password: r.str16()?,
        })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_str16(out, &self.username)?;
        write_str16(out, &self.password)
    }
}

wire_struct! {
    /// AUTH reply, opcode 0x71 (Go server layout):
    /// `u8 success | str16 username | u32 n × str8 role | str16 error`.
    pub struct AuthResponse {
        /// Whether the credentials were accepted.
        pub success: bool => bool,
        /// User name on success, empty on failure.
        pub username: String => str16,
        /// Role names (str8 each).
        pub roles: Vec<String> => str8_list,
        /// Reason on failure, empty on success.
        pub error: String => str16,
    }
}

wire_struct! {
    /// WHOAMI (0x72) reply (pyflymq layout): `u8 authenticated | str16 username |
    /// list32<str16> roles | list32<str16> permissions`.
    pub struct WhoamiResponse {
        /// Whether the connection is authenticated.
        pub authenticated: bool => bool,
        /// User name, empty if not authenticated.
        pub username: String => str16,
        /// Role names.
        pub roles: Vec<String> => str16_list,
        /// Permissions (`read`, `write`, `admin`).
        pub permissions: Vec<String> => str16_list,
    }
}

/// user-request (§12.1), for USER_CREATE, USER_UPDATE, PASSWORD_CHANGE:
/// `str16 username | str16 password | str16 old_password | list32<str16> roles | [u8 enabled]`.
/// A missing `enabled` byte decodes as false; it is always encoded.
/// `Debug` hides both passwords.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct UserRequest {
    /// User name.
    pub username: String,
    /// Password (the new one for PASSWORD_CHANGE).
    pub password: String,
    /// Old password (PASSWORD_CHANGE only).
    pub old_password: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Whether the account is enabled.
    pub enabled: bool,
}

impl std::fmt::Debug for UserRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("old_password", &"<redacted>")
            .field("roles", &self.roles)
            .field("enabled", &self.enabled)
            .finish()
    }
}

impl Wire for UserRequest {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let username = r.str16()?;
        let password = r.str16()?;
        let old_password = r.str16()?;
        let roles = r.str16_list()?;
        let enabled = if r.is_empty() { false } else { r.bool()? };
        Ok(UserRequest {
            username,
            password,
            old_password,
            roles,
            enabled,
        })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_str16(out, &self.username)?;
        write_str16(out, &self.password)?;
        write_str16(out, &self.old_password)?;
        put::str16_list(out, &self.roles)?;
        write_bool(out, self.enabled);
        Ok(())
    }
}

wire_struct! {
    /// USER_DELETE (0x74) and USER_GET (0x77): `str16 username`.
    pub struct UsernameRequest {
        /// User name.
        pub username: String => str16,
    }
}

wire_struct! {
    /// user-info (§12.1): `str16 username | list32<str16> roles |
    /// list32<str16> permissions | u8 enabled | i64 created | i64 updated`.
    pub struct UserInfo {
        /// User name.
        pub username: String => str16,
        /// Roles.
        pub roles: Vec<String> => str16_list,
        /// Effective permissions.
        pub permissions: Vec<String> => str16_list,
        /// Whether the account is enabled.
        pub enabled: bool => bool,
        /// Creation time, Unix seconds.
        pub created: i64 => i64,
        /// Last update, Unix seconds.
        pub updated: i64 => i64,
    }
}

wire_struct! {
    /// USER_LIST (0x76) reply: `list32<user-info>`.
    pub struct UserListResponse {
        /// Users.
        pub users: Vec<UserInfo> => list,
    }
}

wire_struct! {
    /// ACL_SET (0x78): `str16 topic | u8 public | list32<str16> users | list32<str16> roles`.
    pub struct AclSetRequest {
        /// Topic.
        pub topic: String => str16,
        /// Whether the topic is public.
        pub public: bool => bool,
        /// Users allowed.
        pub users: Vec<String> => str16_list,
        /// Roles allowed.
        pub roles: Vec<String> => str16_list,
    }
}

wire_struct! {
    /// ACL_SET / ACL_DELETE reply: `u8 success | str16 topic`.
    pub struct AclAck {
        /// Whether the operation succeeded.
        pub success: bool => bool,
        /// Topic.
        pub topic: String => str16,
    }
}

wire_struct! {
    /// acl-info (§12.1), the ACL_GET reply: `str16 topic | u8 exists | u8 public |
    /// u8 default_public | list32<str16> users | list32<str16> roles`.
    pub struct AclInfo {
        /// Topic.
        pub topic: String => str16,
        /// Whether an ACL is stored for the topic.
        pub exists: bool => bool,
        /// Whether the topic is public.
        pub public: bool => bool,
        /// Server default for topics without an ACL.
        pub default_public: bool => bool,
        /// Users allowed.
        pub users: Vec<String> => str16_list,
        /// Roles allowed.
        pub roles: Vec<String> => str16_list,
    }
}

wire_struct! {
    /// One entry of ACL_LIST: `str16 topic | u8 exists | u8 public |
    /// list32<str16> users | list32<str16> roles`.
    pub struct AclListEntry {
        /// Topic.
        pub topic: String => str16,
        /// Whether an ACL is stored.
        pub exists: bool => bool,
        /// Whether the topic is public.
        pub public: bool => bool,
        /// Users allowed.
        pub users: Vec<String> => str16_list,
        /// Roles allowed.
        pub roles: Vec<String> => str16_list,
    }
}

wire_struct! {
    /// ACL_LIST (0x7B) reply: `u32 n × entry | u8 default_public`.
    pub struct AclListResponse {
        /// ACLs.
        pub entries: Vec<AclListEntry> => list,
        /// Server default for topics without an ACL.
        pub default_public: bool => bool,
    }
}

wire_struct! {
    /// One role in ROLE_LIST: `str16 name | list32<str16> permissions | str16 description`.
    pub struct RoleInfo {
        /// Role name.
        pub name: String => str16,
        /// Permissions granted.
        pub permissions: Vec<String> => str16_list,
        /// Description.
        pub description: String => str16,
    }
}

wire_struct! {
    /// ROLE_LIST (0x7D) reply: `u32 n × role`.
    pub struct RoleListResponse {
        /// Roles.
        pub roles: Vec<RoleInfo> => list,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_passwords() {
        let auth = AuthRequest {
            username: "alice".into(),
            password: "s3cret".into(),
        };
        let user = UserRequest {
            username: "bob".into(),
            password: "n3w".into(),
            old_password: "0ld".into(),
            roles: vec!["admin".into()],
            enabled: true,
        };
        let text = format!("{auth:?} {user:?}");
        assert!(
            text.contains("alice") && text.contains("bob") && text.contains("admin"),
            "{text}"
        );
        for secret in ["s3cret", "n3w", "0ld"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
