//! Typed errors of the SDK.

use std::sync::Arc;
use std::time::Duration;

use flymq_proto::{DecodeError, EncodeError, FrameError};

/// Result with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything an SDK call can fail with. Each variant carries enough context
/// (operation, address, input) to tell what went wrong and where. Errors are
/// cheap to clone, so one failure can complete many pending records.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (empty bootstrap list, bad address...).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// An argument given to an SDK call is not acceptable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// No broker of the bootstrap list accepted a connection.
    #[error(
        "could not connect to any broker of [{}] after {rounds} round(s): {last_error}; check that a broker is running and --bootstrap / FLYMQ_BOOTSTRAP points at it",
        addrs.join(", ")
    )]
    NoBrokerAvailable {
        /// The addresses that were tried.
        addrs: Vec<String>,
        /// Rounds over the list that were made.
        rounds: u32,
        /// The error of the last attempt.
        last_error: String,
    },

    /// A socket operation on an established connection failed.
    #[error("I/O error talking to {addr}: {source}")]
    Io {
        /// The broker address.
        addr: String,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The connection closed before the response arrived. The request may or
    /// may not have been carried out by the broker.
    #[error("connection to {addr} closed before {op} got its response")]
    ConnectionClosed {
        /// The broker address.
        addr: String,
        /// The operation that was waiting.
        op: &'static str,
    },

    /// No response arrived within the request timeout; the connection was dropped.
    #[error("{op} to {addr} timed out after {after:?}")]
    Timeout {
        /// The operation that timed out.
        op: &'static str,
        /// The broker address.
        addr: String,
        /// The timeout that expired.
        after: Duration,
    },

    /// The broker sent bytes that are not a valid frame.
    #[error("broken frame from {addr}: {source}")]
    Frame {
        /// The broker address.
        addr: String,
        /// What was wrong.
        #[source]
        source: FrameError,
    },

    /// A response payload could not be decoded.
    #[error("could not decode the {op} response: {source}")]
    Decode {
        /// The operation whose response was bad.
        op: &'static str,
        /// What was wrong.
        #[source]
        source: DecodeError,
    },

    /// A request could not be encoded (for example a topic name over 65 535 bytes).
    #[error("could not encode the {op} request: {source}")]
    Encode {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        #[source]
        source: EncodeError,
    },

    /// The broker answered with an opcode that does not belong to the request.
    #[error("unexpected response to {op}: opcode 0x{got:02x}")]
    UnexpectedResponse {
        /// The operation.
        op: &'static str,
        /// The opcode received.
        got: u8,
    },

    /// The broker (or the node reached) is not the leader for the request.
    #[error("{op} failed: not leader{}", leader_addr.as_deref().map(|a| format!(" (leader is {a})")).unwrap_or_default())]
    NotLeader {
        /// The operation.
        op: &'static str,
        /// The leader's address, when the broker named one (`leader_addr=`).
        leader_addr: Option<String>,
        /// The broker's full message.
        message: String,
    },

    /// The broker refused the request with an error frame.
    #[error("{op} failed: {message}")]
    Server {
        /// The operation.
        op: &'static str,
        /// The broker's message.
        message: String,
    },

    /// The broker refused a record that its schema does not accept
    /// (PRODUCE_WITH_SCHEMA); nothing was written.
    #[error("{op} failed: {message}")]
    SchemaValidation {
        /// The operation.
        op: &'static str,
        /// Each problem the broker named (for JSON, `/field: reason`);
        /// empty when the message did not list them in the usual form.
        problems: Vec<String>,
        /// The broker's full message, with the schema name and version.
        message: String,
    },

    /// The broker sent more records than asked or a reply that contradicts the request.
    #[error("{op}: {message}")]
    Protocol {
        /// The operation.
        op: &'static str,
        /// What was inconsistent.
        message: String,
    },

    /// The TLS handshake with a broker failed (untrusted or expired
    /// certificate, wrong name, plaintext port, client certificate refused).
    #[error("TLS with {addr} failed: {reason}")]
    Tls {
        /// The broker address.
        addr: String,
        /// What went wrong, with a hint.
        reason: String,
    },

    /// The broker refused the configured credentials.
    #[error("authentication as '{username}' failed: {reason}")]
    Authentication {
        /// The user name tried.
        username: String,
        /// The broker's reason.
        reason: String,
    },

    /// The producer or consumer was closed.
    #[error("the {0} is closed")]
    Closed(&'static str),

    /// The admin gRPC API could not be reached (connection refused, timeout,
    /// not a gRPC endpoint). Nothing was carried out.
    #[error("cannot reach the admin API at {addr}: {reason}")]
    AdminUnavailable {
        /// The admin address (`host:port`).
        addr: String,
        /// Why, e.g. "connection refused".
        reason: String,
    },

    /// The admin gRPC API answered with an error status; `message` is the
    /// broker's text, unchanged.
    #[error("admin {op} failed: {message}")]
    Admin {
        /// The admin operation (`ClusterStatus`, `Decommission`, ...).
        op: &'static str,
        /// The gRPC status code (`NotFound`, `FailedPrecondition`, `Unavailable`, ...).
        code: tonic::Code,
        /// The status message (the code's description when the broker sent none).
        message: String,
    },
}

impl Error {
    /// Maps an error frame's message to [`Error::NotLeader`] (message contains
    /// "not leader", case-insensitively), [`Error::SchemaValidation`]
    /// (message starts with "schema validation failed") or [`Error::Server`].
    pub fn from_server(op: &'static str, message: String) -> Self {
        if message.starts_with(SCHEMA_VALIDATION_FAILED) {
            let problems = parse_schema_problems(&message);
            Error::SchemaValidation { op, problems, message }
        } else if message.to_ascii_lowercase().contains("not leader") {
            let leader_addr = parse_leader_addr(&message);
            Error::NotLeader {
                op,
                leader_addr,
                message,
            }
        } else {
            Error::Server { op, message }
        }
    }

    /// True when the request never reached a broker or the connection broke:
    /// a retry on a fresh connection may succeed.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Error::NoBrokerAvailable { .. }
                | Error::Io { .. }
                | Error::ConnectionClosed { .. }
                | Error::Timeout { .. }
                | Error::Frame { .. }
                | Error::AdminUnavailable { .. }
                | Error::Tls { .. }
        )
    }

    /// True when retrying the same request later may succeed (connection
    /// problems, leader changes, and admin calls answered UNAVAILABLE while
    /// no leader is known).
    pub fn is_retriable(&self) -> bool {
        self.is_connection_error()
            || matches!(
                self,
                Error::NotLeader { .. }
                    | Error::Admin {
                        code: tonic::Code::Unavailable,
                        ..
                    }
            )
    }

    /// The gRPC status code of an [`Error::Admin`] answer.
    pub fn admin_code(&self) -> Option<tonic::Code> {
        match self {
            Error::Admin { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the broker refused the request for lack of
    /// authentication or permission (`authentication required`,
    /// `unauthorized`, `user account is disabled`), or refused AUTH.
    pub fn is_auth_error(&self) -> bool {
        match self {
            Error::Authentication { .. } => true,
            Error::Server { message, .. } => {
                message == "authentication required"
                    || message == "unauthorized"
                    || message == "user account is disabled"
            }
            _ => false,
        }
    }

    /// True for "topic not found" refusals.
    pub fn is_topic_not_found(&self) -> bool {
        matches!(self, Error::Server { message, .. } if message.contains("topic not found"))
    }

    /// True when the broker has no schema under the name, or not that
    /// version (`no schema found for topic: <name>`, `schema not found:
    /// <name> v<n>`).
    pub fn is_schema_not_found(&self) -> bool {
        matches!(self, Error::Server { message, .. }
            if message.starts_with("no schema found for topic:") || message.starts_with("schema not found:"))
    }
}

/// How the broker's refusal of a record its schema rejects begins.
const SCHEMA_VALIDATION_FAILED: &str = "schema validation failed";

/// The problems of `schema validation failed: [p1; p2] (schema 'x' version N)`.
fn parse_schema_problems(message: &str) -> Vec<String> {
    let Some(rest) = message
        .strip_prefix(SCHEMA_VALIDATION_FAILED)
        .and_then(|r| r.trim_start_matches(':').trim_start().strip_prefix('['))
    else {
        return Vec::new();
    };
    let list = match rest.rfind("] (schema ") {
        Some(end) => &rest[..end],
        None => rest.strip_suffix(']').unwrap_or(rest),
    };
    list.split("; ").filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

impl Error {
    /// An I/O error on the connection to `addr`.
    pub fn io(addr: &str, source: std::io::Error) -> Self {
        Error::Io {
            addr: addr.to_owned(),
            source: Arc::new(source),
        }
    }
}

/// Extracts the address after `leader_addr=` (up to the next blank), as the
/// Go client does. Empty values yield `None`.
pub fn parse_leader_addr(message: &str) -> Option<String> {
    let start = message.find("leader_addr=")? + "leader_addr=".len();
    let addr: String = message[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',')
        .collect();
    (!addr.is_empty()).then_some(addr)
}

impl From<flymq_proto::UnknownSchemaType> for Error {
    /// A schema type parsed from text (`"json".parse::<SchemaType>()?`).
    fn from(err: flymq_proto::UnknownSchemaType) -> Self {
        Error::InvalidArgument(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_with_address() {
        let err = Error::from_server(
            "produce",
            "not leader: leader_addr=10.0.0.7:9092 current leader is node-2".into(),
        );
        match err {
            Error::NotLeader { leader_addr, .. } => {
                assert_eq!(leader_addr.as_deref(), Some("10.0.0.7:9092"))
            }
            other => panic!("expected NotLeader, got {other:?}"),
        }
    }

    #[test]
    fn not_leader_without_address() {
        let err = Error::from_server("produce", "Not Leader: no leader elected".into());
        assert!(matches!(err, Error::NotLeader { leader_addr: None, .. }));
        assert!(err.is_retriable());
    }

    #[test]
    fn other_messages_are_server_errors() {
        let err = Error::from_server("fetch", "topic not found: t9".into());
        assert!(err.is_topic_not_found());
        assert!(!err.is_retriable());
        assert_eq!(err.to_string(), "fetch failed: topic not found: t9");
    }

    #[test]
    fn schema_refusals_are_typed_with_their_problems() {
        let message = "schema validation failed: [/id: \"one\" is not of type \"integer\"; /item: 3 is not of type \"string\"] (schema 'orders' version 2)";
        match Error::from_server("PRODUCE_WITH_SCHEMA", message.into()) {
            Error::SchemaValidation {
                problems, message: m, ..
            } => {
                assert_eq!(
                    problems,
                    [
                        "/id: \"one\" is not of type \"integer\"",
                        "/item: 3 is not of type \"string\""
                    ]
                );
                assert_eq!(m, message);
            }
            other => panic!("expected SchemaValidation, got {other:?}"),
        }
        let odd = Error::from_server("PRODUCE_WITH_SCHEMA", "schema validation failed".into());
        assert!(matches!(odd, Error::SchemaValidation { ref problems, .. } if problems.is_empty()));
        assert!(Error::from_server("GET_SCHEMA", "schema not found: orders v7".into()).is_schema_not_found());
        assert!(Error::from_server("GET_SCHEMA", "no schema found for topic: x".into()).is_schema_not_found());
        assert!(!Error::from_server("FETCH", "topic not found: x".into()).is_schema_not_found());
    }

    #[test]
    fn leader_addr_parsing() {
        assert_eq!(parse_leader_addr("leader_addr="), None);
        assert_eq!(parse_leader_addr("x leader_addr=h:1"), Some("h:1".into()));
        assert_eq!(parse_leader_addr("nothing here"), None);
    }
}
