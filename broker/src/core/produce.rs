//! Produce: pick the partition, queue the append, answer when durable.

use super::broker::{Broker, now_ms, unexpected};
use super::command::{Applied, Command, NewRecord};
use super::error::{BrokerError, BrokerResult};
use super::names::validate_topic_name;
use super::partitioner::partition_for_key;
use super::writer::await_applied;

/// Acknowledgement of a produce: where the records went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceAck {
    pub partition: u32,
    pub base_offset: u64,
    pub count: u32,
    pub timestamp_ms: i64,
}

impl Broker {
    /// Whether a produce to `topic` must first create it (it does not exist
    /// and `auto_create_topics` is on).
    pub fn needs_auto_create(&self, topic: &str) -> bool {
        self.settings.auto_create_topics && self.catalog.topic(topic).is_none()
    }

    /// Creates `topic` with the default partitions and configuration if it
    /// is missing and auto-creation is on; returns once it is writable.
    pub async fn auto_create_topic(&self, topic: &str) -> BrokerResult<()> {
        if self.catalog.topic(topic).is_some() {
            return Ok(());
        }
        if !self.settings.auto_create_topics {
            return Err(BrokerError::TopicNotFound(topic.to_owned()));
        }
        validate_topic_name(topic)?;
        let created = self
            .create_topic_with(
                topic,
                self.settings.default_partitions,
                0,
                self.settings.default_topic_config.clone(),
            )
            .await?;
        if created {
            tracing::info!(
                topic,
                partitions = self.settings.default_partitions,
                "topic auto-created"
            );
        }
        Ok(())
    }

    /// Validates a produce to an existing topic and queues it; await the
    /// returned future for the durable acknowledgement. Queueing happens
    /// before this returns, so produces from one connection are applied in
    /// the order they arrived.
    pub fn submit_produce(
        &self,
        topic: &str,
        partition: i32,
        records: Vec<NewRecord>,
    ) -> BrokerResult<impl Future<Output = BrokerResult<ProduceAck>> + Send + 'static> {
        if records.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "a produce must carry at least one record".into(),
            ));
        }
        let max = self.settings.max_message_bytes;
        if let Some(big) = records.iter().find(|r| r.key.len() + r.value.len() > max) {
            return Err(BrokerError::InvalidArgument(format!(
                "message too large: {} bytes exceeds max_message_bytes ({max}); raise FLYMQ_MAX_MESSAGE_BYTES or split the message",
                big.key.len() + big.value.len()
            )));
        }
        let view = self.topic(topic)?;
        let count = view.partition_count();
        let partition = match partition {
            p if p >= 0 => Self::checked_partition(&view, p)?,
            -1 if !records[0].key.is_empty() => partition_for_key(&records[0].key, count),
            -1 => view.next_round_robin(),
            p => {
                return Err(BrokerError::PartitionNotFound {
                    topic: topic.to_owned(),
                    partition: p.into(),
                    count,
                });
            }
        };
        let bytes: u64 = records.iter().map(|r| (r.key.len() + r.value.len()) as u64).sum();
        let messages = records.len() as u64;
        let timestamp_ms = now_ms();
        let records = match view.record.message_ttl_ms {
            Some(ttl) => records
                .into_iter()
                .map(|r| match r.expires() || r.is_scheduled() {
                    true => r,
                    false => NewRecord::expiring(r.key, &r.value, timestamp_ms, ttl),
                })
                .collect(),
            None => records,
        };
        let rx = self.replicator.submit(Command::Append {
            topic: topic.to_owned(),
            partition,
            timestamp_ms,
            records,
        });
        let metrics = self.metrics.clone();
        let topic = topic.to_owned();
        Ok(async move {
            match await_applied(rx).await? {
                Applied::Appended {
                    partition,
                    base_offset,
                    count,
                    timestamp_ms,
                } => {
                    metrics.record_produced(&topic, messages, bytes);
                    Ok(ProduceAck {
                        partition,
                        base_offset,
                        count,
                        timestamp_ms,
                    })
                }
                other => Err(unexpected(other)),
            }
        })
    }

    /// Produces one record (creating the topic if allowed) and waits for
    /// the acknowledgement.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        key: bytes::Bytes,
        value: bytes::Bytes,
    ) -> BrokerResult<ProduceAck> {
        self.auto_create_topic(topic).await?;
        self.submit_produce(topic, partition, vec![NewRecord::new(key, value)])?
            .await
    }
}
