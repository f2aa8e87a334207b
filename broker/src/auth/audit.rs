//! The audit trail: security events (authentication, user, role and ACL
//! changes, topic changes, membership changes). Each event is written as a
//! JSON log line (target `flymq::audit`) by the broker that saw it and is
//! stored replicated through the metadata group, keeping the newest
//! `audit_max_entries`. Queried with AUDIT_QUERY / AUDIT_EXPORT.

use flymq_proto::{AuditDetail, AuditEvent, AuditQuery};
use serde::{Deserialize, Serialize};

/// One audit event as stored (the sequence number is its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub timestamp_ms: i64,
    /// `auth`, `user`, `role`, `acl`, `topic`, `cluster`.
    pub event_type: String,
    /// Who did it ("" for an anonymous connection or the broker itself).
    pub user: String,
    pub client_ip: String,
    /// What it was done to, e.g. `topic:orders`, `user:alice`.
    pub resource: String,
    pub action: String,
    /// `success` or `failure`.
    pub result: String,
    pub node_id: String,
    /// Extra facts (never a password or key).
    pub details: Vec<(String, String)>,
}

impl AuditRecord {
    /// Writes the event as one JSON log line.
    pub fn log(&self) {
        let json = serde_json::json!({
            "timestamp_ms": self.timestamp_ms,
            "type": self.event_type,
            "user": self.user,
            "client_ip": self.client_ip,
            "resource": self.resource,
            "action": self.action,
            "result": self.result,
            "node_id": self.node_id,
            "details": self.details.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        });
        tracing::info!(target: "flymq::audit", "{json}");
    }

    pub fn to_event(&self, seq: u64) -> AuditEvent {
        AuditEvent {
            id: seq.to_string(),
            timestamp_ms: self.timestamp_ms,
            event_type: self.event_type.clone(),
            user: self.user.clone(),
            client_ip: self.client_ip.clone(),
            resource: self.resource.clone(),
            action: self.action.clone(),
            result: self.result.clone(),
            node_id: self.node_id.clone(),
            details: self
                .details
                .iter()
                .map(|(key, value)| AuditDetail {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
        }
    }

    /// Whether the event passes the query's filters (WIRE.md §12.3: times
    /// in Unix seconds, 0 = unbounded; empty strings match everything).
    pub fn matches(&self, query: &AuditQuery) -> bool {
        let secs = self.timestamp_ms.div_euclid(1000);
        let in_time = (query.start <= 0 || secs >= query.start) && (query.end <= 0 || secs <= query.end);
        let typed = query.event_types.is_empty() || query.event_types.iter().any(|t| t == &self.event_type);
        let eq = |want: &str, have: &str| want.is_empty() || want == have;
        let search = query.search.is_empty() || {
            let needle = query.search.to_lowercase();
            [
                &self.user,
                &self.resource,
                &self.action,
                &self.event_type,
                &self.client_ip,
            ]
            .iter()
            .any(|f| f.to_lowercase().contains(&needle))
                || self
                    .details
                    .iter()
                    .any(|(k, v)| k.to_lowercase().contains(&needle) || v.to_lowercase().contains(&needle))
        };
        in_time
            && typed
            && eq(&query.user, &self.user)
            && eq(&query.resource, &self.resource)
            && eq(&query.result, &self.result)
            && search
    }
}

/// Default and largest page of AUDIT_QUERY.
pub const DEFAULT_QUERY_LIMIT: usize = 100;
pub const MAX_QUERY_LIMIT: usize = 10_000;

/// Renders events for AUDIT_EXPORT: `json` (an array) or `csv`.
pub fn export(events: &[AuditEvent], format: &str) -> Result<Vec<u8>, String> {
    match format.to_ascii_lowercase().as_str() {
        "" | "json" => {
            let rows: Vec<_> = events
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "id": e.id,
                        "timestamp_ms": e.timestamp_ms,
                        "type": e.event_type,
                        "user": e.user,
                        "client_ip": e.client_ip,
                        "resource": e.resource,
                        "action": e.action,
                        "result": e.result,
                        "node_id": e.node_id,
                        "details": e.details.iter().map(|d| (d.key.clone(), d.value.clone()))
                            .collect::<std::collections::BTreeMap<_, _>>(),
                    })
                })
                .collect();
            serde_json::to_vec_pretty(&rows).map_err(|e| e.to_string())
        }
        "csv" => {
            let mut out = String::from("id,timestamp_ms,type,user,client_ip,resource,action,result,node_id\n");
            for e in events {
                let fields = [
                    e.id.clone(),
                    e.timestamp_ms.to_string(),
                    e.event_type.clone(),
                    e.user.clone(),
                    e.client_ip.clone(),
                    e.resource.clone(),
                    e.action.clone(),
                    e.result.clone(),
                    e.node_id.clone(),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                out.push_str(&line.join(","));
                out.push('\n');
            }
            Ok(out.into_bytes())
        }
        other => Err(format!("unsupported audit export format '{other}': use json or csv")),
    }
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str, ts: i64) -> AuditRecord {
        AuditRecord {
            timestamp_ms: ts,
            event_type: "auth".into(),
            user: user.into(),
            client_ip: "127.0.0.1".into(),
            resource: "broker".into(),
            action: "login".into(),
            result: "failure".into(),
            node_id: "0".into(),
            details: vec![("reason".into(), "invalid username or password".into())],
        }
    }

    #[test]
    fn filters_by_time_user_and_search() {
        let r = record("alice", 5_000);
        assert!(r.matches(&AuditQuery::default()));
        assert!(r.matches(&AuditQuery {
            start: 5,
            end: 5,
            ..Default::default()
        }));
        assert!(!r.matches(&AuditQuery {
            start: 6,
            ..Default::default()
        }));
        assert!(!r.matches(&AuditQuery {
            user: "bob".into(),
            ..Default::default()
        }));
        assert!(r.matches(&AuditQuery {
            search: "INVALID".into(),
            ..Default::default()
        }));
        assert!(!r.matches(&AuditQuery {
            event_types: vec!["acl".into()],
            ..Default::default()
        }));
    }

    #[test]
    fn csv_quotes_fields() {
        let mut r = record("a,b", 1);
        r.resource = "say \"hi\"".into();
        let data = String::from_utf8(export(&[r.to_event(7)], "csv").unwrap()).unwrap();
        assert!(data.contains("7,1,auth,\"a,b\",127.0.0.1,\"say \"\"hi\"\"\""), "{data}");
        assert!(export(&[], "xml").is_err());
    }
}
