//! AUDIT_QUERY / AUDIT_EXPORT in both numberings (0x80/0x81 and
//! 0xA0/0xA1), WIRE.md §12.3. Newest events first. The user-management
//! check ran before.

use std::sync::Arc;

use flymq_proto::{AuditEvent, AuditExportRequest, AuditExportResponse, AuditQuery, AuditQueryResponse, Response};

use crate::auth::AuditRecord;
use crate::auth::audit::{DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT, export as render};
use crate::core::{Broker, BrokerError};
use crate::server::dispatch::{Answer, blocking};

/// The matching events (newest first), the page `offset..offset+limit`,
/// and how many match in all.
fn search(broker: &Broker, query: &AuditQuery, page: bool) -> Result<(Vec<AuditEvent>, usize), BrokerError> {
    let limit = match usize::try_from(query.limit) {
        Ok(0) | Err(_) => DEFAULT_QUERY_LIMIT,
        Ok(n) => n.min(MAX_QUERY_LIMIT),
    };
    let offset = usize::try_from(query.offset).unwrap_or(0);
    let mut events = Vec::new();
    let mut total = 0usize;
    for item in broker.store().audit_events() {
        let (seq, json) = item?;
        let record: AuditRecord = serde_json::from_slice(&json)
            .map_err(|e| BrokerError::Storage(format!("stored audit event {seq} is corrupt: {e}")))?;
        if !record.matches(query) {
            continue;
        }
        if !page || (total >= offset && events.len() < limit) {
            events.push(record.to_event(seq));
        }
        total += 1;
    }
    Ok((events, total))
}

pub async fn query(broker: Arc<Broker>, query: AuditQuery, alt: bool) -> Answer {
    blocking(move || match search(&broker, &query, true) {
        Ok((events, total)) => {
            let offset = usize::try_from(query.offset).unwrap_or(0);
            let response = AuditQueryResponse {
                has_more: offset + events.len() < total,
                total: i32::try_from(total).unwrap_or(i32::MAX),
                events,
            };
            Answer::Response(if alt {
                Response::AuditQueryAlt(response)
            } else {
                Response::AuditQuery(response)
            })
        }
        Err(err) => Answer::error(err),
    })
    .await
}

pub async fn export(broker: Arc<Broker>, req: AuditExportRequest, alt: bool) -> Answer {
    blocking(move || {
        let (events, _) = match search(&broker, &req.query, false) {
            Ok(found) => found,
            Err(err) => return Answer::error(err),
        };
        let format = if req.format.is_empty() {
            "json".to_owned()
        } else {
            req.format.to_ascii_lowercase()
        };
        match render(&events, &format) {
            Ok(data) => {
                let response = AuditExportResponse {
                    format,
                    data: data.into(),
                };
                Answer::Response(if alt {
                    Response::AuditExportAlt(response)
                } else {
                    Response::AuditExport(response)
                })
            }
            Err(message) => Answer::error(BrokerError::InvalidArgument(message)),
        }
    })
    .await
}
