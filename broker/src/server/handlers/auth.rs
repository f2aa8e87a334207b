//! AUTH (0x70), WHOAMI (0x72) and PASSWORD_CHANGE (0x7C), WIRE.md §6.2,
//! §6.3 and §12.2.

use std::sync::Arc;

use flymq_proto::{AuthRequest, AuthResponse, OkMessage, Response, UserRequest, WhoamiResponse};
use flymq_security::authorizer::{INVALID_CREDENTIALS, PasswordChangeMode};
use flymq_security::{AuthFailure, password::validate_password};

use crate::auth::SecurityChange;
use crate::core::{Broker, BrokerError, now_ms};
use crate::server::connection::Session;
use crate::server::dispatch::Answer;

/// AUTH: verifies the password (one argon2 run whether or not the user
/// exists), binds the user to the connection, and answers in-band. Failed
/// attempts on a connection are answered more and more slowly.
pub async fn authenticate(session: &Session, broker: &Arc<Broker>, req: AuthRequest) -> Answer {
    let authorizer = broker.authorizer();
    let client_ip = session.peer.ip().to_string();
    if !authorizer.auth_enabled() {
        // §6.2: with auth off, AUTH succeeds and binds the name.
        *session.username.lock() = req.username.clone();
        return Answer::Response(Response::Auth(AuthResponse {
            success: true,
            username: req.username,
            roles: vec![],
            error: String::new(),
        }));
    }
    let username = req.username.clone();
    let result = authorizer
        .authenticate_blocking(broker.security().hasher.clone(), req.username, req.password)
        .await;
    let mut record = broker.audit_record("auth", &username, &client_ip, "broker", "login");
    match result {
        Ok(ok) => {
            session.auth_backoff.lock().on_success();
            *session.username.lock() = ok.username.clone();
            broker.audit(record);
            Answer::Response(Response::Auth(AuthResponse {
                success: true,
                username: ok.username,
                roles: ok.roles,
                error: String::new(),
            }))
        }
        Err(failure) => {
            if let AuthFailure::Internal { detail } = &failure {
                tracing::error!(user = %username, %detail, "authentication failed internally");
            }
            let delay = session.auth_backoff.lock().on_failure();
            record.result = "failure".into();
            record.details.push(("reason".into(), failure.to_string()));
            broker.audit(record);
            tokio::time::sleep(delay).await;
            Answer::Response(Response::Auth(AuthResponse {
                success: false,
                username: String::new(),
                roles: vec![],
                error: failure.to_string(),
            }))
        }
    }
}

/// WHOAMI: the bound user with its roles and permissions (pyflymq layout).
pub fn whoami(session: &Session, broker: &Broker) -> Answer {
    let username = session.username.lock().clone();
    let authorizer = broker.authorizer();
    Answer::Response(Response::Whoami(WhoamiResponse {
        authenticated: !username.is_empty(),
        roles: authorizer.roles_of(&username),
        permissions: authorizer.permissions_of(&username).names(),
        username,
    }))
}

/// PASSWORD_CHANGE: a user changes its own password with the old one, or
/// a user manager changes anyone's.
pub async fn change_password(session: &Session, broker: &Arc<Broker>, req: UserRequest) -> Answer {
    let caller = session.username.lock().clone();
    let target = if req.username.is_empty() {
        caller.clone()
    } else {
        req.username.clone()
    };
    let authorizer = broker.authorizer();
    let mode = match authorizer.password_change(&caller, &target) {
        Ok(mode) => mode,
        Err(denied) => return Answer::error(BrokerError::Denied(denied)),
    };
    if let Err(err) = validate_password(&req.password) {
        return Answer::error(BrokerError::Security(err.to_string()));
    }
    let hasher = broker.security().hasher.clone();
    if mode == PasswordChangeMode::OwnAccount
        && authorizer
            .authenticate_blocking(hasher.clone(), target.clone(), req.old_password)
            .await
            .is_err()
    {
        let delay = session.auth_backoff.lock().on_failure();
        tokio::time::sleep(delay).await;
        return Answer::error(BrokerError::Security(INVALID_CREDENTIALS.into()));
    }
    let password = req.password;
    let hashed = match tokio::task::spawn_blocking(move || hasher.hash(&password)).await {
        Ok(Ok(hash)) => hash,
        Ok(Err(err)) => return Answer::error(BrokerError::Security(err.to_string())),
        Err(err) => return Answer::error(format!("internal error: hashing task failed: {err}")),
    };
    let change = SecurityChange::SetPassword {
        name: target.clone(),
        password_hash: hashed,
        now_secs: now_ms() / 1000,
    };
    match broker
        .change_security(change, &caller, &session.peer.ip().to_string())
        .await
    {
        Ok(_) => Answer::Response(Response::PasswordChange(OkMessage {
            success: true,
            message: format!("password of '{target}' changed"),
        })),
        Err(err) => Answer::error(err),
    }
}
