//! Consumer groups: SUBSCRIBE, COMMIT, offsets, lag, and group listing.
//! Committed offsets live in the metadata (replicated on every broker).

use super::broker::{Broker, now_ms, unexpected};
use super::command::{Applied, Command};
use super::error::{BrokerError, BrokerResult};
use super::names::validate_group_id;
use super::writer::await_applied;

/// A consumer group with its live member count and committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub topic: String,
    pub group: String,
    pub members: u32,
    pub offsets: Vec<(u32, u64)>,
}

/// Lag of a group on one partition (GET_LAG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    pub committed: u64,
    pub latest: u64,
    pub lag: u64,
}

/// What a SUBSCRIBE start mode asks for.
fn start_offset(mode: &str, start: u64, end: u64, committed: Option<u64>) -> BrokerResult<u64> {
    match mode {
        "earliest" => Ok(start),
        "latest" | "" => Ok(end),
        "commit" => Ok(committed.unwrap_or(start)),
        other => Err(BrokerError::UnknownSubscribeMode(other.to_owned())),
    }
}

impl Broker {
    /// SUBSCRIBE: the start offset for `mode`; with a group id, creates the
    /// group and registers `connection` as a member.
    pub async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        partition: i32,
        mode: &str,
        connection: u64,
    ) -> BrokerResult<u64> {
        let pos = self.position(topic, partition)?;
        // One read on a blocking thread: the group's offset and whether it exists.
        let (committed, known) = if group.is_empty() {
            (None, true)
        } else {
            self.metadata_barrier().await?;
            let (t, g, p) = (topic.to_owned(), group.to_owned(), pos.partition);
            self.read_store("the group's offset", move |store| {
                Ok((store.committed_offset(&t, &g, p)?, store.group_exists(&t, &g)?))
            })
            .await?
        };
        let offset = start_offset(mode, pos.start, pos.end, committed)?;
        if !group.is_empty() {
            validate_group_id(group)?;
            if !known {
                self.propose(Command::EnsureGroup {
                    topic: topic.to_owned(),
                    group: group.to_owned(),
                })
                .await?;
            }
            self.members.join(connection, topic, group);
        }
        Ok(offset)
    }

    /// COMMIT: stores `offset` as the group's next offset to read.
    pub fn submit_commit(
        &self,
        topic: &str,
        group: &str,
        partition: i32,
        offset: u64,
    ) -> BrokerResult<impl Future<Output = BrokerResult<()>> + Send + 'static> {
        validate_group_id(group)?;
        let partition = u32::try_from(partition)
            .map_err(|_| BrokerError::InvalidArgument(format!("partition {partition} must not be negative")))?;
        let rx = self.replicator.submit(Command::CommitOffset {
            topic: topic.to_owned(),
            group: group.to_owned(),
            partition,
            offset,
        });
        Ok(async move { await_applied(rx).await.map(|_| ()) })
    }

    pub async fn commit(&self, topic: &str, group: &str, partition: i32, offset: u64) -> BrokerResult<()> {
        self.submit_commit(topic, group, partition, offset)?.await
    }

    fn require_group(&self, topic: &str, group: &str) -> BrokerResult<()> {
        // Group reads must include this broker's acknowledged commits.
        self.replicator.check_metadata_fresh()?;
        if self.store.group_exists(topic, group)? {
            Ok(())
        } else {
            Err(group_not_found(topic, group))
        }
    }

    /// The group's committed offset for a partition, read on a blocking thread.
    pub(super) async fn read_committed_offset(
        &self,
        topic: &str,
        group: &str,
        partition: u32,
    ) -> BrokerResult<Option<u64>> {
        let (t, g) = (topic.to_owned(), group.to_owned());
        self.read_store("the committed offset", move |store| {
            store.committed_offset(&t, &g, partition)
        })
        .await
    }

    /// GET_OFFSET: committed offset, 0 when the group has none for the
    /// partition; linearizable (see `metadata_barrier`).
    pub async fn committed_offset(&self, topic: &str, group: &str, partition: i32) -> BrokerResult<u64> {
        self.metadata_barrier().await?;
        let (t, g) = (topic.to_owned(), group.to_owned());
        let (exists, offset) = self
            .read_store("the committed offset", move |store| {
                let offset = match u32::try_from(partition) {
                    Ok(p) => store.committed_offset(&t, &g, p)?,
                    Err(_) => None,
                };
                Ok((store.group_exists(&t, &g)?, offset))
            })
            .await?;
        if !exists {
            return Err(group_not_found(topic, group));
        }
        Ok(offset.unwrap_or(0))
    }

    /// RESET_OFFSET: sets the committed offset to earliest, latest or `offset`.
    pub async fn reset_offset(
        &self,
        topic: &str,
        group: &str,
        partition: i32,
        mode: &str,
        offset: u64,
    ) -> BrokerResult<()> {
        let target = match mode {
            "offset" => offset,
            "earliest" | "latest" => {
                let pos = self.position(topic, partition)?;
                if mode == "earliest" { pos.start } else { pos.end }
            }
            other => return Err(BrokerError::UnknownResetMode(other.to_owned())),
        };
        self.commit(topic, group, partition, target).await
    }

    /// GET_LAG for one partition; linearizable.
    pub async fn lag(&self, topic: &str, group: &str, partition: i32) -> BrokerResult<Lag> {
        self.metadata_barrier().await?;
        // A missing group is reported before a bad partition.
        let pos = self.position(topic, partition);
        let (t, g, p) = (
            topic.to_owned(),
            group.to_owned(),
            pos.as_ref().ok().map(|pos| pos.partition),
        );
        let (exists, committed) = self
            .read_store("the group's offset", move |store| {
                let committed = match p {
                    Some(p) => store.committed_offset(&t, &g, p)?,
                    None => None,
                };
                Ok((store.group_exists(&t, &g)?, committed))
            })
            .await?;
        if !exists {
            return Err(group_not_found(topic, group));
        }
        let latest = pos?.end;
        let committed = committed.unwrap_or(0);
        Ok(Lag {
            committed,
            latest,
            lag: latest.saturating_sub(committed),
        })
    }

    /// LIST_GROUPS; linearizable.
    pub async fn list_groups(&self) -> BrokerResult<Vec<GroupInfo>> {
        self.metadata_barrier().await?;
        let groups = self.read_store("the groups", |store| store.list_groups()).await?;
        Ok(groups
            .into_iter()
            .map(|g| GroupInfo {
                members: self.members.count(&g.topic, &g.group),
                topic: g.topic,
                group: g.group,
                offsets: g.offsets,
            })
            .collect())
    }

    /// DESCRIBE_GROUP; linearizable.
    pub async fn describe_group(&self, topic: &str, group: &str) -> BrokerResult<GroupInfo> {
        self.metadata_barrier().await?;
        let (t, g) = (topic.to_owned(), group.to_owned());
        let found = self
            .read_store("the group", move |store| {
                if !store.group_exists(&t, &g)? {
                    return Ok(None);
                }
                let offsets = store
                    .list_groups()?
                    .into_iter()
                    .find(|found| found.topic == t && found.group == g)
                    .map(|found| found.offsets)
                    .unwrap_or_default();
                Ok(Some(offsets))
            })
            .await?;
        let offsets = found.ok_or_else(|| group_not_found(topic, group))?;
        Ok(GroupInfo {
            topic: topic.to_owned(),
            group: group.to_owned(),
            members: self.members.count(topic, group),
            offsets,
        })
    }

    pub async fn delete_group(&self, topic: &str, group: &str) -> BrokerResult<()> {
        self.require_group(topic, group)?;
        self.propose(Command::DeleteGroup {
            topic: topic.to_owned(),
            group: group.to_owned(),
        })
        .await
        .map(|_| ())
    }
}

/// A member's place in a group (JOIN_GROUP / GROUP_HEARTBEAT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub member_id: String,
    pub generation: u64,
    pub partitions: Vec<u32>,
}

impl Broker {
    /// JOIN_GROUP: adds the member (a new id when `member_id` is empty) and
    /// answers its assignment.
    pub async fn join_group(
        &self,
        topic: &str,
        group: &str,
        member_id: &str,
        session_timeout_ms: u32,
    ) -> BrokerResult<Assignment> {
        use super::membership::{MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS};
        validate_group_id(group)?;
        self.topic(topic)?;
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&session_timeout_ms) {
            return Err(BrokerError::InvalidArgument(format!(
                "session timeout {session_timeout_ms} ms must be between {MIN_SESSION_TIMEOUT_MS} and \
                 {MAX_SESSION_TIMEOUT_MS} ms"
            )));
        }
        let member_id = if member_id.is_empty() {
            format!("member-{:016x}", rand::random::<u64>())
        } else {
            validate_member_id(member_id)?;
            member_id.to_owned()
        };
        let command = Command::JoinGroup {
            topic: topic.to_owned(),
            group: group.to_owned(),
            member_id: member_id.clone(),
            session_timeout_ms,
            now_ms: now_ms(),
        };
        self.assignment_of(member_id, command).await
    }

    /// GROUP_HEARTBEAT: keeps the member alive and answers its current
    /// assignment (a new generation after a rebalance).
    pub async fn group_heartbeat(&self, topic: &str, group: &str, member_id: &str) -> BrokerResult<Assignment> {
        validate_group_id(group)?;
        validate_member_id(member_id)?;
        let command = Command::GroupHeartbeat {
            topic: topic.to_owned(),
            group: group.to_owned(),
            member_id: member_id.to_owned(),
            now_ms: now_ms(),
        };
        self.assignment_of(member_id.to_owned(), command).await
    }

    async fn assignment_of(&self, member_id: String, command: Command) -> BrokerResult<Assignment> {
        match self.propose(command).await? {
            Applied::GroupAssignment { generation, partitions } => Ok(Assignment {
                member_id,
                generation,
                partitions,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// LEAVE_GROUP: the member's partitions go to the others at once.
    /// Leaving twice is not an error.
    pub async fn leave_group(&self, topic: &str, group: &str, member_id: &str) -> BrokerResult<bool> {
        validate_group_id(group)?;
        validate_member_id(member_id)?;
        let command = Command::LeaveGroup {
            topic: topic.to_owned(),
            group: group.to_owned(),
            member_id: member_id.to_owned(),
            now_ms: now_ms(),
        };
        match self.propose(command).await? {
            Applied::GroupLeft { was_member } => Ok(was_member),
            other => Err(unexpected(other)),
        }
    }

    /// COMMIT_FENCED: stores the offset only for the current generation's
    /// owner of the partition.
    pub async fn commit_fenced(
        &self,
        topic: &str,
        group: &str,
        partition: i32,
        offset: u64,
        member_id: &str,
        generation: u64,
    ) -> BrokerResult<()> {
        validate_group_id(group)?;
        validate_member_id(member_id)?;
        let view = self.topic(topic)?;
        let partition = Broker::checked_partition(&view, partition)?;
        let command = Command::CommitFenced {
            topic: topic.to_owned(),
            group: group.to_owned(),
            partition,
            offset,
            member_id: member_id.to_owned(),
            generation,
            now_ms: now_ms(),
        };
        match self.propose(command).await? {
            Applied::OffsetCommitted => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// Member ids: 1-255 bytes without control characters.
fn validate_member_id(member_id: &str) -> BrokerResult<()> {
    if member_id.is_empty() || member_id.len() > 255 || member_id.chars().any(char::is_control) {
        return Err(BrokerError::InvalidArgument(format!(
            "invalid member id '{}': 1-255 bytes without control characters",
            member_id
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        )));
    }
    Ok(())
}

fn group_not_found(topic: &str, group: &str) -> BrokerError {
    BrokerError::GroupNotFound {
        topic: topic.to_owned(),
        group: group.to_owned(),
    }
}
