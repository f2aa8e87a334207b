//! Opcodes of features that are not built yet answer a clear error frame,
//! plus the behaviour WIRE.md requires while authentication and DLQs are off.

use flymq_proto::{AuthRequest, AuthResponse, FetchDlqResponse, OkMessage, Request, Response, WhoamiResponse};

use crate::core::BrokerError;
use crate::server::connection::Session;
use crate::server::dispatch::Answer;

/// Authentication is not enabled on this broker: AUTH must succeed and bind
/// the user name (WIRE.md §6.2), since pyflymq sends it whenever configured.
pub fn auth_disabled(session: &Session, req: AuthRequest) -> Answer {
    *session.username.lock() = req.username.clone();
    Answer::Response(Response::Auth(AuthResponse {
        success: true,
        username: req.username,
        roles: vec![],
        error: String::new(),
    }))
}

pub fn whoami(session: &Session) -> Answer {
    let username = session.username.lock().clone();
    Answer::Response(Response::Whoami(WhoamiResponse {
        authenticated: !username.is_empty(),
        username,
        roles: vec![],
        permissions: vec![],
    }))
}

/// Dead-letter queues are not enabled: FETCH_DLQ returns no entries, as the Go
/// broker does with DLQs disabled (WIRE.md §11.1).
pub fn fetch_dlq_disabled() -> Answer {
    Answer::Response(Response::FetchDlq(FetchDlqResponse { entries: vec![] }))
}

/// PURGE_DLQ with DLQs disabled: `success 0` in-band, never an error frame (§11.3).
pub fn purge_dlq_disabled() -> Answer {
    Answer::Response(Response::PurgeDlq(OkMessage {
        success: false,
        message: "dead-letter queues are not enabled on this broker (not supported yet)".into(),
    }))
}

pub fn not_supported(request: &Request) -> Answer {
    let feature = match request {
        Request::RegisterSchema(_)
        | Request::GetSchema(_)
        | Request::ListSchemas(_)
        | Request::ValidateSchema(_)
        | Request::ProduceWithSchema(_)
        | Request::DeleteSchema(_) => "the schema registry",
        Request::ReplayDlq(_) => "dead-letter queues",
        Request::ProduceDelayed(_) | Request::CancelDelayed(_) => "delayed messages",
        Request::ProduceWithTtl(_) => "TTL messages",
        Request::BeginTx | Request::CommitTx(_) | Request::AbortTx(_) | Request::ProduceTx(_) => "transactions",
        Request::UserCreate(_)
        | Request::UserDelete(_)
        | Request::UserUpdate(_)
        | Request::UserList
        | Request::UserGet(_)
        | Request::AclSet(_)
        | Request::AclGet(_)
        | Request::AclDelete(_)
        | Request::AclList
        | Request::PasswordChange(_)
        | Request::RoleList => "authentication (users, roles and ACLs)",
        Request::AuditQuery(_) | Request::AuditExport(_) | Request::AuditQueryAlt(_) | Request::AuditExportAlt(_) => {
            "the audit trail"
        }
        Request::Metadata(_) => {
            return Answer::error("METADATA (0x04) is not supported; use CLUSTER_METADATA (0x53)");
        }
        _ => "this operation",
    };
    Answer::error(BrokerError::NotSupported(feature))
}
