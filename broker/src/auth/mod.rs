//! Authentication and authorization in the broker: users, roles and ACLs
//! live in the replicated metadata state (`SecurityChange`, applied by the
//! metadata state machine); every request is checked against the current
//! in-memory `Authorizer` snapshot (WIRE.md §6.4/§6.5); security events go
//! to the audit trail. The decision logic itself is in `flymq-security`.

pub mod audit;
pub mod change;

use std::sync::Arc;

use flymq_proto::Request;
use flymq_security::{Check, PasswordHasher, PasswordParams, required_check};

pub use audit::AuditRecord;
pub use change::SecurityChange;

use flymq_security::model::ModelError;

use crate::core::{Broker, BrokerError, Command, now_ms};

/// The check a request needs and the topic it is made on, per §6.5.
pub fn request_check(request: &Request) -> (Check, Option<&str>) {
    let topic = request_topic(request);
    (required_check(request.opcode()), topic)
}

/// The topic a request names, for topic permission checks.
pub fn request_topic(request: &Request) -> Option<&str> {
    let topic = match request {
        Request::Produce(r) => &r.topic,
        Request::ProduceBatch(r) => &r.topic,
        Request::Consume(r) | Request::ConsumeZeroCopy(r) => &r.topic,
        Request::Fetch(r) | Request::FetchBinary(r) => &r.topic,
        Request::CreateTopic(r) => &r.topic,
        Request::DeleteTopic(r) | Request::Metadata(r) | Request::PurgeDlq(r) => &r.topic,
        Request::Subscribe(r) => &r.topic,
        Request::Commit(r) => &r.topic,
        Request::JoinGroup(r) => &r.topic,
        Request::GroupHeartbeat(r) | Request::LeaveGroup(r) => &r.topic,
        Request::CommitFenced(r) => &r.topic,
        Request::RejectRecord(r) => &r.topic,
        Request::GetOffset(r) | Request::GetLag(r) => &r.topic,
        Request::ResetOffset(r) => &r.topic,
        Request::DescribeGroup(r) | Request::DeleteGroup(r) => &r.topic,
        Request::SeekToTimestamp(r) => &r.topic,
        Request::ProduceDelayed(r) => &r.topic,
        Request::ProduceWithTtl(r) => &r.topic,
        Request::ProduceWithSchema(r) => &r.topic,
        Request::ProduceTx(r) => &r.topic,
        Request::FetchDlq(r) => &r.topic,
        Request::ReplayDlq(r) => &r.topic,
        _ => return None,
    };
    Some(topic)
}

/// Most audit events being stored at once; beyond it events are only
/// logged (a flood of failed logins must not fill the Raft log).
const MAX_PENDING_AUDIT: usize = 256;

/// The broker's security helpers: password hashing and the audit sink.
pub struct Security {
    pub hasher: Arc<PasswordHasher>,
    /// Newest audit events kept.
    pub audit_keep: u64,
    pending_audit: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("audit_keep", &self.audit_keep)
            .finish()
    }
}

impl Security {
    pub fn new(audit_keep: u64) -> Self {
        // The default parameters are valid by construction.
        let hasher = PasswordHasher::new(PasswordParams::default())
            .unwrap_or_else(|_| unreachable!("default argon2 parameters are valid"));
        Self {
            hasher: Arc::new(hasher),
            audit_keep,
            pending_audit: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_AUDIT)),
        }
    }
}

impl Broker {
    /// A new audit record of this broker, for `user` at `client_ip`.
    pub fn audit_record(
        &self,
        event_type: &str,
        user: &str,
        client_ip: &str,
        resource: impl Into<String>,
        action: &str,
    ) -> AuditRecord {
        AuditRecord {
            timestamp_ms: now_ms(),
            event_type: event_type.to_owned(),
            user: user.to_owned(),
            client_ip: client_ip.to_owned(),
            resource: resource.into(),
            action: action.to_owned(),
            result: "success".into(),
            node_id: self.node_id(),
            details: Vec::new(),
        }
    }

    /// Logs `record` and stores it in the replicated trail in the
    /// background (dropped from the trail, still logged, when too many
    /// are pending).
    pub fn audit(self: &Arc<Self>, record: AuditRecord) {
        record.log();
        let Ok(permit) = self.security().pending_audit.clone().try_acquire_owned() else {
            tracing::warn!("audit trail busy: event logged but not stored");
            return;
        };
        let broker = self.clone();
        let keep = self.security().audit_keep;
        tokio::spawn(async move {
            if let Err(err) = broker
                .propose(Command::Audit {
                    record: Box::new(record),
                    keep,
                })
                .await
            {
                tracing::warn!(error = %err, "could not store an audit event (it was logged)");
            }
            drop(permit);
        });
    }

    /// Applies a user, role or ACL change through the metadata group, with
    /// its audit event. The change is first tried on this broker's applied
    /// state, so a change that cannot apply (an unknown user, a duplicate)
    /// is refused with a typed error and costs no Raft entry; the audit
    /// trail records it either way.
    pub async fn change_security(
        self: &Arc<Self>,
        change: SecurityChange,
        user: &str,
        client_ip: &str,
    ) -> crate::core::BrokerResult<bool> {
        let (event_type, resource, action) = change.describe();
        let mut audit = self.audit_record(event_type, user, client_ip, resource, action);
        let mut preview = self.store().load_security_state()?;
        if let Err(refused) = change.clone().apply(&mut preview) {
            audit.result = "failure".into();
            audit.details.push(("error".into(), refused.to_string()));
            audit.log();
            let keep = self.security().audit_keep;
            let record = Box::new(audit);
            if let Err(err) = self.propose(Command::Audit { record, keep }).await {
                tracing::warn!(error = %err, "could not store an audit event (it was logged)");
            }
            return Err(match refused {
                ModelError::UnknownUser(_) | ModelError::UnknownAcl(_) => BrokerError::NotFound(refused.to_string()),
                other => BrokerError::Security(other.to_string()),
            });
        }
        let keep = self.security().audit_keep;
        let result = self
            .propose(Command::Security {
                change: Box::new(change),
                audit: Box::new(audit.clone()),
                keep,
            })
            .await;
        if let Err(err) = &result {
            audit.result = "failure".into();
            audit.details.push(("error".into(), err.to_string()));
        }
        audit.log();
        match result? {
            crate::core::Applied::SecurityChanged { changed } => Ok(changed),
            other => Err(crate::core::broker::unexpected(other)),
        }
    }
}
