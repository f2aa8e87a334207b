//! USER_CREATE/UPDATE/DELETE/GET/LIST (0x73-0x77) and ROLE_LIST (0x7D),
//! WIRE.md §12.2. The user-management check ran before these.

use std::sync::Arc;

use flymq_proto::{
    OkMessage, Response, RoleInfo, RoleListResponse, UserInfo, UserListResponse, UserRequest, UsernameRequest,
};
use flymq_security::password::validate_password;
use flymq_security::{SecurityState, User};

use crate::auth::SecurityChange;
use crate::core::{Broker, BrokerError, now_ms};
use crate::server::connection::Session;
use crate::server::dispatch::Answer;

fn caller(session: &Session) -> (String, String) {
    (session.username.lock().clone(), session.peer.ip().to_string())
}

/// Hashes a new password off the async workers (argon2 is deliberately slow).
pub async fn hash_password(broker: &Broker, password: String) -> Result<flymq_security::HashedPassword, BrokerError> {
    validate_password(&password).map_err(|e| BrokerError::Security(e.to_string()))?;
    let hasher = broker.security().hasher.clone();
    tokio::task::spawn_blocking(move || hasher.hash(&password))
        .await
        .map_err(|e| BrokerError::Security(format!("internal error: hashing task failed: {e}")))?
        .map_err(|e| BrokerError::Security(e.to_string()))
}

pub async fn create(session: &Session, broker: &Arc<Broker>, req: UserRequest) -> Answer {
    let (user, ip) = caller(session);
    let hash = match hash_password(broker, req.password).await {
        Ok(hash) => hash,
        Err(err) => return Answer::error(err),
    };
    let change = SecurityChange::CreateUser {
        name: req.username.clone(),
        roles: req.roles.clone(),
        password_hash: hash,
        enabled: true,
        now_secs: now_ms() / 1000,
    };
    match broker.change_security(change, &user, &ip).await {
        // §12.2: roles as given, enabled, no permissions, times 0.
        Ok(_) => Answer::Response(Response::UserCreate(UserInfo {
            username: req.username,
            roles: req.roles,
            permissions: vec![],
            enabled: true,
            created: 0,
            updated: 0,
        })),
        Err(err) => Answer::error(err),
    }
}

pub async fn update(session: &Session, broker: &Arc<Broker>, req: UserRequest) -> Answer {
    let (user, ip) = caller(session);
    if req.username == user && !req.enabled {
        return Answer::error(BrokerError::Security("you cannot disable your own account".into()));
    }
    let change = SecurityChange::UpdateUser {
        name: req.username.clone(),
        roles: Some(req.roles),
        enabled: Some(req.enabled),
        now_secs: now_ms() / 1000,
    };
    match broker.change_security(change, &user, &ip).await {
        Ok(_) => Answer::Response(Response::UserUpdate(OkMessage {
            success: true,
            message: format!("user '{}' updated", req.username),
        })),
        Err(err) => Answer::error(err),
    }
}

pub async fn delete(session: &Session, broker: &Arc<Broker>, req: UsernameRequest) -> Answer {
    let (user, ip) = caller(session);
    if req.username == user {
        return Answer::error(BrokerError::Security("you cannot delete your own account".into()));
    }
    let change = SecurityChange::DeleteUser {
        name: req.username.clone(),
    };
    match broker.change_security(change, &user, &ip).await {
        Ok(_) => Answer::Response(Response::UserDelete(OkMessage {
            success: true,
            message: req.username,
        })),
        Err(err) => Answer::error(err),
    }
}

fn user_info(state: &SecurityState, user: &User, with_permissions: bool) -> UserInfo {
    UserInfo {
        username: user.name.clone(),
        roles: user.roles.iter().cloned().collect(),
        permissions: if with_permissions {
            state.permissions_of(user).names()
        } else {
            vec![]
        },
        enabled: user.enabled,
        created: user.created_at,
        updated: user.updated_at,
    }
}

/// The applied security state of this broker (admin reads only; requests
/// are checked against the in-memory authorizer).
pub fn stored_state(broker: &Broker) -> Result<SecurityState, BrokerError> {
    Ok(broker.store().load_security_state()?)
}

pub fn get(broker: &Broker, req: UsernameRequest) -> Answer {
    let state = match stored_state(broker) {
        Ok(state) => state,
        Err(err) => return Answer::error(err),
    };
    match state.users.get(&req.username) {
        Some(user) => Answer::Response(Response::UserGet(user_info(&state, user, true))),
        None => Answer::error(BrokerError::Security(format!("user not found: {}", req.username))),
    }
}

pub fn list(broker: &Broker) -> Answer {
    match stored_state(broker) {
        Ok(state) => Answer::Response(Response::UserList(UserListResponse {
            users: state.users.values().map(|u| user_info(&state, u, false)).collect(),
        })),
        Err(err) => Answer::error(err),
    }
}

pub fn roles(broker: &Broker) -> Answer {
    match stored_state(broker) {
        Ok(state) => Answer::Response(Response::RoleList(RoleListResponse {
            roles: state
                .all_roles()
                .into_iter()
                .map(|r| RoleInfo {
                    permissions: r.permission_set().names(),
                    name: r.name,
                    description: r.description,
                })
                .collect(),
        })),
        Err(err) => Answer::error(err),
    }
}
