//! The per-request authorization gate. It is evaluated when the request
//! takes effect (after the connection's earlier requests, so a pipelined
//! AUTH counts for the requests sent after it), against the broker's
//! current in-memory authorizer: no storage read per request.

use std::sync::Arc;

use flymq_proto::Request;
use flymq_security::Check;

use super::connection::Session;
use crate::auth::request_check;
use crate::core::{Broker, BrokerError};

/// What one request must pass; `None` when auth is off (costs nothing).
pub struct AccessCheck {
    session: Arc<Session>,
    check: Check,
    topic: Option<String>,
}

impl AccessCheck {
    /// The gate of `request` on this connection, or `None` when the broker
    /// runs without authentication or the request needs no check here
    /// (PASSWORD_CHANGE decides in its handler).
    pub fn of(broker: &Broker, session: &Arc<Session>, request: &Request) -> Option<AccessCheck> {
        if !broker.settings().security.auth_enabled {
            return None;
        }
        let (check, topic) = request_check(request);
        if matches!(check, Check::None | Check::PasswordChange) {
            return None;
        }
        Some(AccessCheck {
            session: session.clone(),
            check,
            topic: topic.map(str::to_owned),
        })
    }

    /// Runs the check for the user bound to the connection now.
    pub fn verify(&self, broker: &Broker) -> Result<(), BrokerError> {
        let user = self.session.username.lock().clone();
        broker
            .authorizer()
            .authorize(&user, self.check, self.topic.as_deref())
            .map_err(|denied| {
                tracing::debug!(peer = %self.session.peer, user = %user, check = ?self.check,
                    topic = ?self.topic, %denied, "request refused");
                BrokerError::Denied(denied)
            })
    }
}

/// Runs `gate` if there is one.
pub fn verify(gate: &Option<AccessCheck>, broker: &Broker) -> Result<(), BrokerError> {
    gate.as_ref().map_or(Ok(()), |g| g.verify(broker))
}
