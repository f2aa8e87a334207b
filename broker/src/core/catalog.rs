//! The read side of broker state: topics and partition positions that are
//! durable, published by the writer after each group commit. Readers (fetch,
//! metadata, lag) never see a record before it is durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use parking_lot::RwLock;

use super::topic_trie::{TopicPattern, TopicTrie};
use crate::storage::{PartitionState, TopicRecord};
use flymq_security::{Authorizer, SecuritySettings, SecurityState, SharedAuthorizer};

/// Published position of one partition.
#[derive(Debug, Default)]
pub struct PartitionView {
    next_offset: AtomicU64,
    start_offset: AtomicU64,
    size_bytes: AtomicU64,
    last_timestamp: AtomicI64,
}

impl PartitionView {
    fn new(state: &PartitionState) -> Self {
        let view = Self::default();
        view.store(state);
        view
    }

    fn store(&self, state: &PartitionState) {
        self.start_offset.store(state.start_offset, Ordering::Release);
        self.size_bytes.store(state.size_bytes, Ordering::Release);
        self.last_timestamp.store(state.last_timestamp, Ordering::Release);
        // Last: a reader that sees the new end sees the rest too.
        self.next_offset.store(state.next_offset, Ordering::Release);
    }

    /// Log end: the offset the next record will get (the high watermark).
    pub fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub fn start_offset(&self) -> u64 {
        self.start_offset.load(Ordering::Acquire)
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Acquire)
    }

    pub fn last_timestamp(&self) -> i64 {
        self.last_timestamp.load(Ordering::Acquire)
    }
}

/// A topic as readers see it.
#[derive(Debug)]
pub struct TopicView {
    pub record: TopicRecord,
    /// Shared with later versions of the topic (a reassignment or a config
    /// change keeps the partitions' published positions).
    pub partitions: Box<[Arc<PartitionView>]>,
    round_robin: AtomicU32,
}

impl TopicView {
    pub fn new(record: TopicRecord, states: &[PartitionState]) -> Self {
        let partitions = (0..record.partitions as usize)
            .map(|p| Arc::new(PartitionView::new(states.get(p).unwrap_or(&PartitionState::default()))))
            .collect();
        Self {
            record,
            partitions,
            round_robin: AtomicU32::new(0),
        }
    }

    /// A new version of `previous` (same topic id): existing partitions keep
    /// their views, added partitions start empty.
    fn updated(record: TopicRecord, previous: &TopicView) -> Self {
        let partitions = (0..record.partitions as usize)
            .map(|p| {
                previous
                    .partitions
                    .get(p)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(PartitionView::default()))
            })
            .collect();
        Self {
            record,
            partitions,
            round_robin: AtomicU32::new(previous.round_robin.load(Ordering::Relaxed)),
        }
    }

    pub fn name(&self) -> &str {
        &self.record.name
    }

    pub fn partition_count(&self) -> u32 {
        self.record.partitions
    }

    pub fn partition(&self, partition: u32) -> Option<&PartitionView> {
        self.partitions.get(partition as usize).map(|p| &**p)
    }

    /// Next partition for a keyless record: a per-topic counter from 0, as Go does.
    pub fn next_round_robin(&self) -> u32 {
        self.round_robin.fetch_add(1, Ordering::Relaxed) % self.record.partitions.max(1)
    }
}

/// A change the writer publishes after a successful write.
#[derive(Debug)]
pub enum Publish {
    /// A topic was created or changed (partition positions are kept).
    TopicUpserted {
        record: TopicRecord,
    },
    TopicRemoved {
        name: String,
    },
    Partition {
        topic_id: u32,
        name: String,
        partition: u32,
        state: PartitionState,
    },
    /// Users, roles or ACLs changed: readers get a new authorizer.
    Security {
        state: Box<SecurityState>,
    },
    /// A schema version was registered or deleted.
    SchemasChanged,
}

#[derive(Debug)]
pub struct Catalog {
    topics: RwLock<HashMap<String, Arc<TopicView>>>,
    /// The same topic names by level, for pattern subscriptions.
    trie: RwLock<TopicTrie>,
    /// Bumped whenever the set of topics or their replica assignments change
    /// (cluster mode watches it to start and stop partition groups).
    version: tokio::sync::watch::Sender<u64>,
    /// The authorization snapshot every request is checked against, rebuilt
    /// when users, roles or ACLs change (no storage read per request).
    authorizer: SharedAuthorizer,
    /// Auth settings come from this broker's configuration, not from the
    /// replicated state.
    security_settings: RwLock<SecuritySettings>,
    /// Bumped after every schema registration or deletion (and metadata
    /// snapshot install), so cached schema lookups know to read again.
    schema_epoch: AtomicU64,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::load(Vec::new())
    }
}

impl Catalog {
    pub fn load(topics: Vec<(TopicRecord, Vec<PartitionState>)>) -> Self {
        let map = topics
            .into_iter()
            .map(|(record, states)| (record.name.clone(), Arc::new(TopicView::new(record, &states))))
            .collect::<HashMap<_, _>>();
        Self {
            trie: RwLock::new(TopicTrie::from_names(map.keys().map(String::as_str))),
            topics: RwLock::new(map),
            version: tokio::sync::watch::Sender::new(0),
            authorizer: SharedAuthorizer::default(),
            security_settings: RwLock::new(SecuritySettings::default()),
            schema_epoch: AtomicU64::new(0),
        }
    }

    /// Sets this broker's auth settings and the stored security state.
    pub fn init_security(&self, settings: SecuritySettings, state: &SecurityState) {
        *self.security_settings.write() = settings;
        self.update_security(state);
    }

    /// Rebuilds the authorizer from `state` (with this broker's settings).
    pub fn update_security(&self, state: &SecurityState) {
        let mut state = state.clone();
        state.settings = *self.security_settings.read();
        self.authorizer.rebuild(&state);
    }

    /// The current authorization snapshot.
    pub fn authorizer(&self) -> Authorizer {
        self.authorizer.current()
    }

    /// Replaces every topic (after a metadata snapshot is installed).
    pub fn reload(&self, topics: Vec<(TopicRecord, Vec<PartitionState>)>) {
        self.reload_with(|| Ok::<_, std::convert::Infallible>(topics))
            .unwrap_or_else(|never| match never {});
    }

    /// Replaces the topics with what `load` reads (the metadata after a
    /// snapshot install). Partition groups keep publishing meanwhile, so:
    /// - a topic that stays keeps its partition views, which hold what its
    ///   groups published (a state read from disk could be older);
    /// - `load` runs under the write lock, so a partition update of a new
    ///   topic waits and lands in the new views instead of being lost.
    pub fn reload_with<E>(
        &self,
        load: impl FnOnce() -> Result<Vec<(TopicRecord, Vec<PartitionState>)>, E>,
    ) -> Result<(), E> {
        let mut current = self.topics.write();
        let map = load()?
            .into_iter()
            .map(|(record, states)| {
                let view = match current.get(&record.name).filter(|v| v.record.id == record.id) {
                    Some(previous) => {
                        let view = TopicView::updated(record, previous);
                        // Never behind what is on disk (appends only grow the end).
                        for (p, state) in states.iter().enumerate() {
                            if let Some(shown) = view.partitions.get(p)
                                && state.next_offset > shown.next_offset()
                            {
                                shown.store(state);
                            }
                        }
                        view
                    }
                    None => TopicView::new(record, &states),
                };
                (view.record.name.clone(), Arc::new(view))
            })
            .collect::<HashMap<_, _>>();
        *self.trie.write() = TopicTrie::from_names(map.keys().map(String::as_str));
        *current = map;
        drop(current);
        self.version.send_modify(|v| *v += 1);
        // A snapshot may have brought other schemas too.
        self.schema_epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Changes after every schema registration or deletion applied here.
    pub fn schema_epoch(&self) -> u64 {
        self.schema_epoch.load(Ordering::Acquire)
    }

    /// Changes whenever topics are created, deleted or reassigned.
    pub fn watch_topics(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicView>> {
        self.topics.read().get(name).cloned()
    }

    /// The visible topics `pattern` matches, sorted (a walk of the trie).
    pub fn matching_topics(&self, pattern: &TopicPattern) -> Vec<String> {
        self.trie.read().matching(pattern)
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<TopicView>> {
        let mut all: Vec<_> = self.topics.read().values().cloned().collect();
        all.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        all
    }

    pub fn publish(&self, changes: Vec<Publish>) {
        if changes.is_empty() {
            return;
        }
        let mut changes = changes;
        changes.retain_mut(|change| match change {
            Publish::Security { state } => {
                self.update_security(state);
                false
            }
            Publish::SchemasChanged => {
                self.schema_epoch.fetch_add(1, Ordering::AcqRel);
                false
            }
            _ => true,
        });
        if changes.is_empty() {
            return;
        }
        // Partition updates only touch atomics: take the write lock only when
        // the set of topics changes.
        let structural = changes.iter().any(|c| !matches!(c, Publish::Partition { .. }));
        if structural {
            let mut topics = self.topics.write();
            let mut trie = self.trie.write();
            for change in changes {
                match &change {
                    Publish::TopicUpserted { record } => trie.insert(&record.name),
                    Publish::TopicRemoved { name } => trie.remove(name),
                    _ => {}
                }
                apply_change(&mut topics, change);
            }
            drop(trie);
            drop(topics);
            self.version.send_modify(|v| *v += 1);
        } else {
            let topics = self.topics.read();
            for change in changes {
                if let Publish::Partition {
                    topic_id,
                    name,
                    partition,
                    state,
                } = change
                {
                    update_partition(&topics, topic_id, &name, partition, &state);
                }
            }
        }
    }
}

fn apply_change(topics: &mut HashMap<String, Arc<TopicView>>, change: Publish) {
    match change {
        Publish::TopicUpserted { record } => {
            let view = match topics.get(&record.name).filter(|v| v.record.id == record.id) {
                Some(previous) => TopicView::updated(record, previous),
                None => TopicView::new(record, &[]),
            };
            topics.insert(view.record.name.clone(), Arc::new(view));
        }
        Publish::TopicRemoved { name } => {
            topics.remove(&name);
        }
        Publish::Partition {
            topic_id,
            name,
            partition,
            state,
        } => {
            update_partition(topics, topic_id, &name, partition, &state);
        }
        // Handled before the topic lock is taken.
        Publish::Security { .. } | Publish::SchemasChanged => {}
    }
}

fn update_partition(
    topics: &HashMap<String, Arc<TopicView>>,
    topic_id: u32,
    name: &str,
    partition: u32,
    state: &PartitionState,
) {
    if let Some(view) = topics.get(name).filter(|v| v.record.id == topic_id)
        && let Some(p) = view.partition(partition)
    {
        p.store(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::TopicConfig;

    fn record(id: u32, name: &str) -> TopicRecord {
        TopicRecord {
            id,
            name: name.into(),
            partitions: 1,
            created_ms: 1,
            config: TopicConfig::default(),
            replicas: vec![],
            initializers: vec![],
            message_ttl_ms: None,
            max_deliveries: None,
        }
    }

    fn at(next_offset: u64) -> PartitionState {
        PartitionState {
            next_offset,
            ..PartitionState::default()
        }
    }

    /// A metadata snapshot install reloads the catalog while partition
    /// groups keep applying: the reload read an older partition state from
    /// disk than the group published since. Readers must keep seeing the
    /// newer end (the jepsen test found reads stuck behind it).
    #[test]
    fn a_reload_never_shows_a_partition_behind_what_its_group_published() {
        let catalog = Catalog::load(vec![(record(1, "orders"), vec![at(10)])]);
        let published_before = catalog.topic("orders").unwrap();
        catalog.publish(vec![Publish::Partition {
            topic_id: 1,
            name: "orders".into(),
            partition: 0,
            state: at(20),
        }]);
        catalog.reload(vec![
            (record(1, "orders"), vec![at(15)]),
            (record(2, "new"), vec![at(3)]),
        ]);
        let view = catalog.topic("orders").unwrap();
        assert_eq!(view.partition(0).unwrap().next_offset(), 20);
        // The same partition view: later publishes reach readers holding either.
        catalog.publish(vec![Publish::Partition {
            topic_id: 1,
            name: "orders".into(),
            partition: 0,
            state: at(25),
        }]);
        assert_eq!(published_before.partition(0).unwrap().next_offset(), 25);
        assert_eq!(catalog.topic("new").unwrap().partition(0).unwrap().next_offset(), 3);
        // A disk state ahead of the view (a publish lost before) wins.
        catalog.reload(vec![(record(1, "orders"), vec![at(40)])]);
        assert_eq!(catalog.topic("orders").unwrap().partition(0).unwrap().next_offset(), 40);
        assert!(catalog.topic("new").is_none());
    }
}
