//! CREATE_TOPIC (0x03), DELETE_TOPIC (0x09), LIST_TOPICS (0x08).

use std::sync::Arc;

use flymq_proto::{CreateTopicRequest, ListTopicsResponse, Response, TopicRequest};

use crate::core::Broker;
use crate::server::dispatch::Reply;

/// Creating an existing topic succeeds (WIRE.md §8.3).
pub fn create(broker: &Arc<Broker>, req: CreateTopicRequest) -> Reply {
    let broker = broker.clone();
    Reply::pending(async move {
        let created = broker.create_topic(&req.topic, req.partitions).await?;
        if created {
            tracing::info!(topic = %req.topic, partitions = req.partitions.max(1), "topic created");
        }
        Ok(Response::CreateTopic)
    })
}

/// Deleting a missing topic succeeds (WIRE.md §8.4).
pub fn delete(broker: &Arc<Broker>, req: TopicRequest) -> Reply {
    let broker = broker.clone();
    Reply::pending(async move {
        if broker.delete_topic(&req.topic).await? {
            tracing::info!(topic = %req.topic, "topic deleted");
        }
        Ok(Response::DeleteTopic)
    })
}

pub fn list(broker: &Arc<Broker>) -> Reply {
    Reply::Response(Response::ListTopics(ListTopicsResponse {
        topics: broker.list_topics(),
    }))
}
