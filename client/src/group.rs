//! The coordinated group consumer: members of a consumer group share a
//! topic's partitions (FlyMQ extension opcodes JOIN_GROUP, GROUP_HEARTBEAT,
//! LEAVE_GROUP, COMMIT_FENCED; see the repository's docs/messaging.md).
//!
//! The broker assigns partitions (sticky and balanced) and starts a new
//! generation whenever a member joins, leaves or misses its session timeout.
//! [`GroupConsumer::poll`] heartbeats, picks up a new assignment (calling the
//! rebalance callback) and reads only the partitions this member owns.
//! Commits carry the generation: after a rebalance a commit of the old
//! generation is refused by the broker, so a member that was replaced
//! cannot move the group's offsets back. Records read but not committed
//! before a partition moves are read again by its new owner (at least once).

use std::time::{Duration, Instant};

use flymq_proto::{GroupAssignment, GroupMemberRequest, JoinGroupRequest, Request, Response};

use crate::client::{Client, StartFrom};
use crate::consumer::{Consumer, ConsumerConfig, ConsumerRecord, Fence};
use crate::error::{Error, Result};

/// Settings of a [`GroupConsumer`].
#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    /// Reading and committing settings (group id, start, auto-commit, filter).
    pub consumer: ConsumerConfig,
    /// The broker removes this member when no heartbeat arrives for this
    /// long (1 s to 5 min).
    pub session_timeout: Duration,
    /// How often `poll` heartbeats (a third of the session timeout by default).
    pub heartbeat_interval: Duration,
}

impl GroupConsumerConfig {
    /// Settings for `group`: resume from the committed offsets, auto-commit
    /// every 5 s, a 10 s session timeout with a heartbeat every 3 s.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            consumer: ConsumerConfig::new(group),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
        }
    }

    /// The session timeout; the heartbeat interval becomes a third of it.
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self.heartbeat_interval = timeout / 3;
        self
    }

    /// Where partitions without a committed offset start.
    pub fn with_from(mut self, from: StartFrom) -> Self {
        self.consumer = self.consumer.with_from(from);
        self
    }

    /// Auto-commit interval (`None`: manual commits only).
    pub fn with_auto_commit(mut self, interval: Option<Duration>) -> Self {
        self.consumer = self.consumer.with_auto_commit(interval);
        self
    }
}

/// A change of this member's partitions, given to the rebalance callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebalance {
    /// The group's new generation.
    pub generation: u64,
    /// Partitions this member no longer reads.
    pub revoked: Vec<i32>,
    /// Partitions this member reads from now on.
    pub assigned: Vec<i32>,
}

type RebalanceCallback = Box<dyn FnMut(&Rebalance) + Send>;

/// A member of a coordinated consumer group.
///
/// ```no_run
/// # async fn demo(client: flymq_client::Client) -> flymq_client::Result<()> {
/// use std::time::Duration;
/// use flymq_client::{GroupConsumer, GroupConsumerConfig};
///
/// let mut consumer = GroupConsumer::join(client, "orders", GroupConsumerConfig::new("billing"))
///     .await?
///     .on_rebalance(|r| println!("generation {}: now reading {:?}", r.generation, r.assigned));
/// loop {
///     for record in consumer.poll(100, Duration::from_secs(1)).await? {
///         println!("{}/{}: {:?}", record.partition, record.offset, record.value);
///     }
/// }
/// # }
/// ```
pub struct GroupConsumer {
    client: Client,
    inner: Consumer,
    config: GroupConsumerConfig,
    member_id: String,
    generation: u64,
    last_heartbeat: Instant,
    on_rebalance: Option<RebalanceCallback>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("topic", &self.inner.topic())
            .field("group", &self.inner.group())
            .field("member_id", &self.member_id)
            .field("generation", &self.generation)
            .field("assignment", &self.inner.assignment())
            .finish()
    }
}

/// A refusal that a rejoin or a fresh assignment fixes.
fn is_membership_error(err: &Error) -> bool {
    flymq_proto::is_membership_refusal(&err.to_string())
}

impl GroupConsumer {
    /// Joins `config.consumer.group` on `topic` and positions the assigned
    /// partitions.
    pub async fn join(client: Client, topic: &str, config: GroupConsumerConfig) -> Result<Self> {
        let assignment = join_group(&client, topic, &config, "").await?;
        let fence = Fence {
            member_id: assignment.member_id.clone(),
            generation: assignment.generation,
        };
        let inner = Consumer::with_partitions(
            client.clone(),
            topic,
            config.consumer.clone(),
            assignment.partitions.clone(),
            Some(fence),
        )
        .await?;
        Ok(Self {
            client,
            inner,
            config,
            member_id: assignment.member_id,
            generation: assignment.generation,
            last_heartbeat: Instant::now(),
            on_rebalance: None,
        })
    }

    /// Calls `callback` whenever this member's partitions change (after
    /// the change; not for the first assignment, see [`Self::assignment`]).
    pub fn on_rebalance(mut self, callback: impl FnMut(&Rebalance) + Send + 'static) -> Self {
        self.on_rebalance = Some(Box::new(callback));
        self
    }

    /// The id the broker gave this member.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The group generation of this member's assignment.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The partitions this member reads, ascending.
    pub fn assignment(&self) -> Vec<i32> {
        self.inner.assignment()
    }

    /// The underlying consumer (pause, resume, seek, lag).
    pub fn consumer(&mut self) -> &mut Consumer {
        &mut self.inner
    }

    /// Heartbeats when due, then waits up to `timeout` for at most `max`
    /// records of this member's partitions.
    pub async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.last_heartbeat.elapsed() >= self.config.heartbeat_interval {
                self.heartbeat().await?;
            }
            let slice = self
                .config
                .heartbeat_interval
                .min(deadline.saturating_duration_since(Instant::now()));
            match self.inner.poll(max, slice).await {
                Ok(records) if !records.is_empty() || Instant::now() >= deadline => return Ok(records),
                Ok(_) => {}
                // An auto-commit refused after a rebalance: take the new
                // assignment (those positions are read again by their owner).
                Err(err) if is_membership_error(&err) => self.heartbeat().await?,
                Err(err) => return Err(err),
            }
        }
    }

    /// Commits the positions of this member's partitions (fenced by its
    /// generation). A refusal after a rebalance is returned as the broker's
    /// error; the next `poll` picks up the new assignment.
    pub async fn commit(&mut self) -> Result<()> {
        self.inner.commit().await
    }

    /// The records as a `futures::Stream`, polled `max` at a time.
    pub fn stream(self, max: usize) -> impl futures::Stream<Item = Result<ConsumerRecord>> {
        crate::consumer::records_stream(self, max, |c, max| Box::pin(c.poll(max, Duration::from_secs(1))))
    }

    /// Sends a heartbeat now and applies a new assignment if the group
    /// rebalanced; rejoins if the broker no longer knows this member.
    pub async fn heartbeat(&mut self) -> Result<()> {
        let request = Request::GroupHeartbeat(GroupMemberRequest {
            topic: self.inner.topic().to_owned(),
            group_id: self.inner.group().to_owned(),
            member_id: self.member_id.clone(),
        });
        let assignment = match self.client.request(&request).await {
            Ok(Response::GroupHeartbeat(a)) => a,
            Ok(other) => {
                return Err(Error::UnexpectedResponse {
                    op: "GROUP_HEARTBEAT",
                    got: other.opcode(),
                });
            }
            Err(err) if err.to_string().contains(flymq_proto::REFUSED_UNKNOWN_MEMBER) => {
                let topic = self.inner.topic().to_owned();
                join_group(&self.client, &topic, &self.config, &self.member_id).await?
            }
            Err(err) => return Err(err),
        };
        self.last_heartbeat = Instant::now();
        self.apply(assignment).await
    }

    async fn apply(&mut self, assignment: GroupAssignment) -> Result<()> {
        if assignment.generation == self.generation && assignment.partitions == self.inner.assignment() {
            return Ok(());
        }
        let fence = Fence {
            member_id: assignment.member_id.clone(),
            generation: assignment.generation,
        };
        let (revoked, assigned) = self.inner.reassign(assignment.partitions, Some(fence)).await?;
        self.generation = assignment.generation;
        self.member_id = assignment.member_id;
        tracing::debug!(generation = self.generation, ?revoked, ?assigned, "group rebalanced");
        if let Some(callback) = self.on_rebalance.as_mut() {
            callback(&Rebalance {
                generation: self.generation,
                revoked,
                assigned,
            });
        }
        Ok(())
    }

    /// Commits (when auto-commit is on) and leaves the group, so the other
    /// members take this member's partitions over at once.
    pub async fn close(mut self) -> Result<()> {
        let committed = if self.config.consumer.auto_commit_interval.is_some() {
            self.inner.commit().await
        } else {
            Ok(())
        };
        let leave = Request::LeaveGroup(GroupMemberRequest {
            topic: self.inner.topic().to_owned(),
            group_id: self.inner.group().to_owned(),
            member_id: self.member_id.clone(),
        });
        self.client.request(&leave).await?;
        committed
    }
}

/// JOIN_GROUP (as `member_id`, or a new member when empty).
async fn join_group(
    client: &Client,
    topic: &str,
    config: &GroupConsumerConfig,
    member_id: &str,
) -> Result<GroupAssignment> {
    let timeout_ms = u32::try_from(config.session_timeout.as_millis()).unwrap_or(u32::MAX);
    let request = Request::JoinGroup(JoinGroupRequest {
        topic: topic.to_owned(),
        group_id: config.consumer.group.clone(),
        member_id: member_id.to_owned(),
        session_timeout_ms: timeout_ms,
    });
    match client.request(&request).await? {
        Response::JoinGroup(assignment) => Ok(assignment),
        other => Err(Error::UnexpectedResponse {
            op: "JOIN_GROUP",
            got: other.opcode(),
        }),
    }
}
