//! ACL_SET/GET/DELETE/LIST (0x78-0x7B), WIRE.md §12.2. A `topic` with
//! `*`, `+` or `#` is a pattern ACL. The user-management check ran before.

use std::sync::Arc;

use flymq_proto::{AclAck, AclInfo, AclListEntry, AclListResponse, AclSetRequest, Response, TopicRequest};
use flymq_security::AclTarget;

use super::users::stored_state;
use crate::auth::SecurityChange;
use crate::core::{Broker, BrokerError};
use crate::server::connection::Session;
use crate::server::dispatch::Answer;

fn target(text: &str) -> Result<AclTarget, BrokerError> {
    AclTarget::parse(text).map_err(|e| BrokerError::Security(format!("invalid ACL target '{text}': {e}")))
}

pub async fn set(session: &Session, broker: &Arc<Broker>, req: AclSetRequest) -> Answer {
    let parsed = match target(&req.topic) {
        Ok(t) => t,
        Err(err) => return Answer::error(err),
    };
    let change = SecurityChange::SetAcl {
        target: parsed.as_str().to_owned(),
        is_pattern: parsed.is_pattern(),
        public: req.public,
        users: req.users,
        roles: req.roles,
    };
    let user = session.username.lock().clone();
    match broker
        .change_security(change, &user, &session.peer.ip().to_string())
        .await
    {
        Ok(_) => Answer::Response(Response::AclSet(AclAck {
            success: true,
            topic: req.topic,
        })),
        Err(err) => Answer::error(err),
    }
}

pub fn get(broker: &Broker, req: TopicRequest) -> Answer {
    let parsed = match target(&req.topic) {
        Ok(t) => t,
        Err(err) => return Answer::error(err),
    };
    let state = match stored_state(broker) {
        Ok(state) => state,
        Err(err) => return Answer::error(err),
    };
    let default_public = broker.settings().security.default_public;
    let rule = state.acl(&parsed);
    Answer::Response(Response::AclGet(AclInfo {
        topic: req.topic,
        exists: rule.is_some(),
        public: rule.is_some_and(|r| r.public),
        default_public,
        users: rule.map(|r| r.users.iter().cloned().collect()).unwrap_or_default(),
        roles: rule.map(|r| r.roles.iter().cloned().collect()).unwrap_or_default(),
    }))
}

pub async fn delete(session: &Session, broker: &Arc<Broker>, req: TopicRequest) -> Answer {
    let parsed = match target(&req.topic) {
        Ok(t) => t,
        Err(err) => return Answer::error(err),
    };
    let change = SecurityChange::DeleteAcl {
        target: parsed.as_str().to_owned(),
        is_pattern: parsed.is_pattern(),
    };
    let user = session.username.lock().clone();
    match broker
        .change_security(change, &user, &session.peer.ip().to_string())
        .await
    {
        Ok(_) => Answer::Response(Response::AclDelete(AclAck {
            success: true,
            topic: req.topic,
        })),
        Err(err) => Answer::error(err),
    }
}

pub fn list(broker: &Broker) -> Answer {
    let state = match stored_state(broker) {
        Ok(state) => state,
        Err(err) => return Answer::error(err),
    };
    let entries = state
        .acls()
        .map(|(target, rule)| AclListEntry {
            topic: target.as_str().to_owned(),
            exists: true,
            public: rule.public,
            users: rule.users.iter().cloned().collect(),
            roles: rule.roles.iter().cloned().collect(),
        })
        .collect();
    Answer::Response(Response::AclList(AclListResponse {
        entries,
        default_public: broker.settings().security.default_public,
    }))
}
