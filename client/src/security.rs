//! User, role, ACL and audit operations of the binary protocol (WIRE.md
//! §6.3, §12): the Go client's opcodes 0x72-0x7D and 0x80/0x81.
//!
//! All of them except WHOAMI, PASSWORD_CHANGE (own account) and ROLE_LIST
//! need a user with the admin permission when the broker has
//! authentication enabled; a refusal is [`Error::Server`] with the
//! broker's text (`authentication required`, `unauthorized`, `user account
//! is disabled`; see [`Error::is_auth_error`]).

use flymq_proto::{
    AclInfo, AclListResponse, AclSetRequest, AuditExportRequest, AuditExportResponse, AuditQuery, AuditQueryResponse,
    OkMessage, Request, Response, RoleInfo, TopicRequest, UserInfo, UserRequest, UsernameRequest, WhoamiResponse,
};

use crate::client::Client;
use crate::error::{Error, Result};

/// Changes made by [`Client::update_user`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserUpdate {
    /// The new roles (the wire request always carries the full list).
    pub roles: Vec<String>,
    /// Whether the account is enabled.
    pub enabled: bool,
}

fn ok_message(op: &'static str, reply: OkMessage) -> Result<String> {
    if reply.success {
        Ok(reply.message)
    } else {
        Err(Error::Server {
            op,
            message: if reply.message.is_empty() {
                "refused".into()
            } else {
                reply.message
            },
        })
    }
}

fn unexpected(op: &'static str, response: &Response) -> Error {
    Error::UnexpectedResponse {
        op,
        got: response.opcode(),
    }
}

impl Client {
    /// Who the connection is authenticated as, with roles and permissions.
    pub async fn whoami(&self) -> Result<WhoamiResponse> {
        match self.request(&Request::Whoami).await? {
            Response::Whoami(who) => Ok(who),
            other => Err(unexpected("WHOAMI", &other)),
        }
    }

    /// Creates a user (USER_CREATE). The password travels in the request:
    /// use TLS.
    pub async fn create_user(&self, username: &str, password: &str, roles: Vec<String>) -> Result<UserInfo> {
        let req = Request::UserCreate(UserRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            old_password: String::new(),
            roles,
            enabled: true,
        });
        match self.request(&req).await? {
            Response::UserCreate(info) => Ok(info),
            other => Err(unexpected("USER_CREATE", &other)),
        }
    }

    /// Replaces a user's roles and enabled flag (USER_UPDATE).
    pub async fn update_user(&self, username: &str, update: UserUpdate) -> Result<String> {
        let req = Request::UserUpdate(UserRequest {
            username: username.to_owned(),
            password: String::new(),
            old_password: String::new(),
            roles: update.roles,
            enabled: update.enabled,
        });
        match self.request(&req).await? {
            Response::UserUpdate(reply) => ok_message("USER_UPDATE", reply),
            other => Err(unexpected("USER_UPDATE", &other)),
        }
    }

    /// Deletes a user (USER_DELETE).
    pub async fn delete_user(&self, username: &str) -> Result<String> {
        let req = Request::UserDelete(UsernameRequest {
            username: username.to_owned(),
        });
        match self.request(&req).await? {
            Response::UserDelete(reply) => ok_message("USER_DELETE", reply),
            other => Err(unexpected("USER_DELETE", &other)),
        }
    }

    /// Every user (USER_LIST; permissions are not filled in).
    pub async fn list_users(&self) -> Result<Vec<UserInfo>> {
        match self.request(&Request::UserList).await? {
            Response::UserList(list) => Ok(list.users),
            other => Err(unexpected("USER_LIST", &other)),
        }
    }

    /// One user with its effective permissions (USER_GET).
    pub async fn get_user(&self, username: &str) -> Result<UserInfo> {
        let req = Request::UserGet(UsernameRequest {
            username: username.to_owned(),
        });
        match self.request(&req).await? {
            Response::UserGet(info) => Ok(info),
            other => Err(unexpected("USER_GET", &other)),
        }
    }

    /// Changes a password (PASSWORD_CHANGE): your own with the old
    /// password, or anyone's as an administrator (old password may be empty).
    pub async fn change_password(&self, username: &str, old_password: &str, new_password: &str) -> Result<String> {
        let req = Request::PasswordChange(UserRequest {
            username: username.to_owned(),
            password: new_password.to_owned(),
            old_password: old_password.to_owned(),
            roles: Vec::new(),
            enabled: true,
        });
        match self.request(&req).await? {
            Response::PasswordChange(reply) => ok_message("PASSWORD_CHANGE", reply),
            other => Err(unexpected("PASSWORD_CHANGE", &other)),
        }
    }

    /// Built-in and custom roles with their permissions (ROLE_LIST).
    pub async fn list_roles(&self) -> Result<Vec<RoleInfo>> {
        match self.request(&Request::RoleList).await? {
            Response::RoleList(list) => Ok(list.roles),
            other => Err(unexpected("ROLE_LIST", &other)),
        }
    }

    /// Sets the ACL of a topic, or of a pattern when `topic` contains `*`,
    /// `+` or `#` (ACL_SET).
    pub async fn set_acl(&self, topic: &str, public: bool, users: Vec<String>, roles: Vec<String>) -> Result<()> {
        let req = Request::AclSet(AclSetRequest {
            topic: topic.to_owned(),
            public,
            users,
            roles,
        });
        match self.request(&req).await? {
            Response::AclSet(ack) if ack.success => Ok(()),
            Response::AclSet(ack) => Err(Error::Server {
                op: "ACL_SET",
                message: format!("ACL of '{}' was not set", ack.topic),
            }),
            other => Err(unexpected("ACL_SET", &other)),
        }
    }

    /// The ACL of a topic or pattern (ACL_GET); `exists` is false when
    /// none is set.
    pub async fn get_acl(&self, topic: &str) -> Result<AclInfo> {
        let req = Request::AclGet(TopicRequest {
            topic: topic.to_owned(),
        });
        match self.request(&req).await? {
            Response::AclGet(info) => Ok(info),
            other => Err(unexpected("ACL_GET", &other)),
        }
    }

    /// Deletes the ACL of a topic or pattern (ACL_DELETE).
    pub async fn delete_acl(&self, topic: &str) -> Result<()> {
        let req = Request::AclDelete(TopicRequest {
            topic: topic.to_owned(),
        });
        match self.request(&req).await? {
            Response::AclDelete(ack) if ack.success => Ok(()),
            Response::AclDelete(ack) => Err(Error::Server {
                op: "ACL_DELETE",
                message: format!("ACL of '{}' was not deleted", ack.topic),
            }),
            other => Err(unexpected("ACL_DELETE", &other)),
        }
    }

    /// Every ACL and the broker's default-public setting (ACL_LIST).
    pub async fn list_acls(&self) -> Result<AclListResponse> {
        match self.request(&Request::AclList).await? {
            Response::AclList(list) => Ok(list),
            other => Err(unexpected("ACL_LIST", &other)),
        }
    }

    /// One page of audit events (AUDIT_QUERY, opcode 0x80).
    pub async fn audit_query(&self, query: AuditQuery) -> Result<AuditQueryResponse> {
        match self.request(&Request::AuditQuery(query)).await? {
            Response::AuditQuery(page) => Ok(page),
            other => Err(unexpected("AUDIT_QUERY", &other)),
        }
    }

    /// Audit events as one `json` or `csv` document (AUDIT_EXPORT, 0x81).
    pub async fn audit_export(&self, query: AuditQuery, format: &str) -> Result<AuditExportResponse> {
        let req = Request::AuditExport(AuditExportRequest {
            query,
            format: format.to_owned(),
        });
        match self.request(&req).await? {
            Response::AuditExport(export) => Ok(export),
            other => Err(unexpected("AUDIT_EXPORT", &other)),
        }
    }
}
