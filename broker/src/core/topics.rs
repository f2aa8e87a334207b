//! Topic operations: create (writable when it answers), delete, alter,
//! list, and the partition metadata clients route by.

use std::sync::Arc;
use std::time::Duration;

use super::broker::{Broker, now_ms, unexpected};
use super::catalog::TopicView;
use super::command::{Applied, Command};
use super::error::{BrokerError, BrokerResult};
use super::names::{is_internal, validate_topic_name};
use super::replicator::ClusterMember;
use crate::storage::TopicConfig;

/// How long a topic change waits to become visible (and, for a new topic,
/// for every partition to elect a leader) before the caller gets an error.
pub const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    pub leader_id: String,
    pub leader_addr: String,
    pub epoch: u64,
    pub state: &'static str,
    pub replicas: Vec<String>,
    pub isr: Vec<String>,
    pub start_offset: u64,
    pub end_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

impl Broker {
    /// Creates a topic; `Ok(false)` when it already existed.
    pub async fn create_topic(&self, name: &str, partitions: i32) -> BrokerResult<bool> {
        validate_topic_name(name)?;
        let partitions = match partitions {
            0 => 1,
            p if p < 0 => {
                return Err(BrokerError::InvalidArgument(format!(
                    "partition count {p} for topic '{name}' must be positive"
                )));
            }
            p => p as u32,
        };
        self.create_topic_with(name, partitions, 0, self.settings.default_topic_config.clone())
            .await
    }

    /// Creates a topic with an explicit replication factor (0 = the default)
    /// and configuration; `Ok(false)` when it already existed. Returns once
    /// the topic is visible here and every partition has a leader, so a
    /// produce sent right after the answer is accepted.
    pub async fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        config: TopicConfig,
    ) -> BrokerResult<bool> {
        validate_topic_name(name)?;
        let command = self.create_topic_command(name, partitions, replication_factor, config)?;
        let created = match self.propose(command).await? {
            Applied::TopicCreated { created } => created,
            other => return Err(unexpected(other)),
        };
        let view = self.wait_for_topic(name, |_| true).await?;
        self.replicator.wait_writable(view, TOPIC_READY_TIMEOUT).await?;
        Ok(created)
    }

    pub(super) fn create_topic_command(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        config: TopicConfig,
    ) -> BrokerResult<Command> {
        let replicas = self.replicator.assign(name, partitions, replication_factor)?;
        Ok(Command::CreateTopic {
            name: name.to_owned(),
            partitions,
            config,
            created_ms: now_ms(),
            replicas,
        })
    }

    /// Waits until this broker's catalog shows `name` in a state `done`
    /// accepts: a change applied by the metadata group reaches every broker
    /// a moment after the proposer sees it committed.
    pub(super) async fn wait_for_topic(
        &self,
        name: &str,
        done: impl Fn(&TopicView) -> bool,
    ) -> BrokerResult<Arc<TopicView>> {
        let mut changes = self.catalog.watch_topics();
        let wait = async {
            loop {
                if let Some(view) = self.catalog.topic(name).filter(|t| done(t)) {
                    return view;
                }
                if changes.changed().await.is_err() {
                    // The catalog is gone: shutting down; poll until the timeout.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        tokio::time::timeout(TOPIC_READY_TIMEOUT, wait).await.map_err(|_| {
            BrokerError::Remote(format!(
                "the change to topic '{name}' was committed but is not visible on this broker after {}s; retry",
                TOPIC_READY_TIMEOUT.as_secs()
            ))
        })
    }

    /// Sets a topic's message TTL (`None`: never expire); no-op when unchanged.
    pub async fn set_message_ttl(&self, name: &str, message_ttl_ms: Option<u64>) -> BrokerResult<()> {
        if let Some(ttl) = message_ttl_ms {
            super::ttl::validate_ttl(ttl)?;
        }
        let command = Command::SetMessageTtl {
            name: name.to_owned(),
            message_ttl_ms,
        };
        self.set_topic_setting(name, command, |t| t.record.message_ttl_ms == message_ttl_ms)
            .await
    }

    /// Sets a topic's dead-letter limit (`None`: off); no-op when unchanged.
    pub async fn set_max_deliveries(&self, name: &str, max_deliveries: Option<u32>) -> BrokerResult<()> {
        if let Some(n) = max_deliveries {
            super::dlq::validate_max_deliveries(n)?;
            // The DLQ must be a valid topic name too (length limit).
            super::names::validate_topic_name(&super::dlq::dlq_topic(name))?;
        }
        let command = Command::SetMaxDeliveries {
            name: name.to_owned(),
            max_deliveries,
        };
        self.set_topic_setting(name, command, |t| t.record.max_deliveries == max_deliveries)
            .await
    }

    /// Proposes `command` (a change of one topic setting) unless `is_set`
    /// already holds, and returns once this broker's catalog shows it.
    async fn set_topic_setting(
        &self,
        name: &str,
        command: Command,
        is_set: impl Fn(&TopicView) -> bool,
    ) -> BrokerResult<()> {
        let view = self.topic(name)?;
        if is_set(&view) {
            return Ok(());
        }
        match self.propose(command).await? {
            Applied::TopicUpdated => {}
            other => return Err(unexpected(other)),
        }
        self.wait_for_topic(name, is_set).await?;
        Ok(())
    }

    /// Replaces a topic's retention settings.
    pub async fn update_topic_config(&self, name: &str, config: TopicConfig) -> BrokerResult<()> {
        self.topic(name)?;
        let command = Command::UpdateTopicConfig {
            name: name.to_owned(),
            config: config.clone(),
        };
        match self.propose(command).await? {
            Applied::TopicUpdated => {}
            other => return Err(unexpected(other)),
        }
        self.wait_for_topic(name, |t| t.record.config == config).await?;
        Ok(())
    }

    /// Grows a topic to `partitions` in total; returns the previous count.
    /// New partitions get replicas like a new topic's (cluster mode) and
    /// are writable when this returns.
    pub async fn add_partitions(&self, name: &str, partitions: u32) -> BrokerResult<u32> {
        let view = self.topic(name)?;
        let current = view.record.partitions;
        let replicas = match view.record.replicas.first() {
            Some(first) if partitions > current => {
                let mut all = self.replicator.assign(name, partitions, first.len() as u32)?;
                all.split_off(current as usize)
            }
            _ => Vec::new(),
        };
        let command = Command::AddPartitions {
            name: name.to_owned(),
            partitions,
            replicas,
        };
        let previous = match self.propose(command).await? {
            Applied::PartitionsAdded { previous } => previous,
            other => return Err(unexpected(other)),
        };
        let view = self.wait_for_topic(name, |t| t.record.partitions >= partitions).await?;
        self.replicator.wait_writable(view, TOPIC_READY_TIMEOUT).await?;
        Ok(previous)
    }

    /// Deletes a topic; `Ok(false)` when it did not exist.
    pub async fn delete_topic(&self, name: &str) -> BrokerResult<bool> {
        match self.propose(Command::DeleteTopic { name: name.to_owned() }).await? {
            Applied::TopicDeleted { existed } => {
                self.wait_for_topic_gone(name).await;
                Ok(existed)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Waits (bounded) until a deleted topic is gone from this broker's catalog.
    async fn wait_for_topic_gone(&self, name: &str) {
        let mut changes = self.catalog.watch_topics();
        let _ = tokio::time::timeout(TOPIC_READY_TIMEOUT, async {
            while self.catalog.topic(name).is_some() {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// Visible topic names, sorted (internal `__` topics hidden).
    pub fn list_topics(&self) -> Vec<String> {
        self.catalog
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|n| !is_internal(n))
            .collect()
    }

    /// The visible topics an MQTT-style pattern matches (`sensors/+/temp`,
    /// `logs/#`), sorted; an invalid pattern is an error naming the reason.
    pub fn match_topics(&self, pattern: &str) -> BrokerResult<Vec<String>> {
        let pattern = super::topic_trie::TopicPattern::parse(pattern)?;
        Ok(self.catalog.matching_topics(&pattern))
    }

    /// Partition metadata for one topic, or every visible topic when `topic` is empty.
    pub fn topic_metadata(&self, topic: &str) -> BrokerResult<Vec<TopicInfo>> {
        let views = if topic.is_empty() {
            self.catalog
                .topics()
                .into_iter()
                .filter(|t| !is_internal(t.name()))
                .collect()
        } else {
            vec![self.topic(topic)?]
        };
        Ok(views.iter().map(|view| self.topic_info(view)).collect())
    }

    fn topic_info(&self, view: &TopicView) -> TopicInfo {
        TopicInfo {
            name: view.name().to_owned(),
            partitions: view
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let placement = self.replicator.placement(view, i as u32);
                    PartitionInfo {
                        partition: i as u32,
                        leader_id: placement.leader_id,
                        leader_addr: placement.leader_addr,
                        epoch: placement.epoch,
                        state: if placement.online { "online" } else { "offline" },
                        replicas: placement.replicas,
                        isr: placement.isr,
                        start_offset: p.start_offset(),
                        end_offset: p.next_offset(),
                    }
                })
                .collect(),
        }
    }

    pub fn cluster_members(&self) -> Vec<ClusterMember> {
        let mut members = self.replicator.members();
        if !self.is_ready() {
            for m in members.iter_mut().filter(|m| m.node_id == self.node_id()) {
                m.state = "starting";
            }
        }
        members
    }
}
