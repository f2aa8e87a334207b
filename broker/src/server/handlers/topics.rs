//! CREATE_TOPIC (0x03), DELETE_TOPIC (0x09), LIST_TOPICS (0x08).

use std::sync::Arc;

use flymq_proto::{CreateTopicRequest, ListTopicsResponse, Response, TopicRequest};

use crate::core::Broker;
use crate::server::connection::Session;
use crate::server::dispatch::Answer;

/// Creating an existing topic succeeds (WIRE.md §8.3). The answer comes
/// once every partition has a leader, so the next produce is accepted.
pub async fn create(session: &Session, broker: Arc<Broker>, req: CreateTopicRequest) -> Answer {
    match broker.create_topic(&req.topic, req.partitions).await {
        Ok(created) => {
            if created {
                tracing::info!(topic = %req.topic, partitions = req.partitions.max(1), "topic created");
                audit(session, &broker, &req.topic, "create");
            }
            Response::CreateTopic.into()
        }
        Err(err) => Answer::error(err),
    }
}

/// Deleting a missing topic succeeds (WIRE.md §8.4).
pub async fn delete(session: &Session, broker: Arc<Broker>, req: TopicRequest) -> Answer {
    match broker.delete_topic(&req.topic).await {
        Ok(existed) => {
            if existed {
                tracing::info!(topic = %req.topic, "topic deleted");
                audit(session, &broker, &req.topic, "delete");
            }
            Response::DeleteTopic.into()
        }
        Err(err) => Answer::error(err),
    }
}

fn audit(session: &Session, broker: &Arc<Broker>, topic: &str, action: &str) {
    let user = session.username.lock().clone();
    let record = broker.audit_record(
        "topic",
        &user,
        &session.peer.ip().to_string(),
        format!("topic:{topic}"),
        action,
    );
    broker.audit(record);
}

/// MATCH_TOPICS (FlyMQ extension): the topics a pattern matches now.
pub fn matching(broker: &Broker, req: TopicRequest) -> Answer {
    Answer::from_result(
        broker
            .match_topics(&req.topic)
            .map(|topics| Response::MatchTopics(ListTopicsResponse { topics })),
    )
}

pub fn list(broker: &Broker) -> Answer {
    Response::ListTopics(ListTopicsResponse {
        topics: broker.list_topics(),
    })
    .into()
}
