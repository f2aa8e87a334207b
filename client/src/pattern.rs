//! Pattern subscriptions: one consumer group over every topic an MQTT-style
//! pattern matches (`sensors/+/temp`, `logs/#`), including topics created
//! after the subscription started.
//!
//! The broker matches the pattern against its topics (MATCH_TOPICS, a walk
//! of its topic trie); the consumer asks again every
//! [`PatternConsumer::refresh_interval`] and joins the group on each new
//! topic from the group's committed offset, or the start of the topic, so
//! nothing produced to a new topic before it was noticed is missed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::client::{Client, StartFrom};
use crate::consumer::{Consumer, ConsumerConfig, ConsumerRecord};
use crate::error::{Error, Result};

/// How often the matching topics are looked up again by default.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(1);

/// A group consumer over the topics a pattern matches.
#[derive(Debug)]
pub struct PatternConsumer {
    client: Client,
    /// The pattern, or `None` for a fixed list of topics.
    pattern: Option<String>,
    config: ConsumerConfig,
    consumers: BTreeMap<String, Consumer>,
    refresh_interval: Duration,
    last_refresh: Instant,
    /// Topic index the next poll starts at.
    cursor: usize,
}

impl PatternConsumer {
    /// Joins `config.group` on every topic `pattern` matches now (each at
    /// `config.from`); later topics are picked up by [`Self::poll`].
    pub async fn subscribe(client: Client, pattern: &str, config: ConsumerConfig) -> Result<Self> {
        let mut consumer = Self {
            client,
            pattern: Some(pattern.to_owned()),
            config,
            consumers: BTreeMap::new(),
            refresh_interval: DEFAULT_REFRESH,
            last_refresh: Instant::now(),
            cursor: 0,
        };
        let from = consumer.config.from;
        consumer.add_matching(from).await?;
        Ok(consumer)
    }

    /// Joins `config.group` on each of `topics` (a multi-topic subscription;
    /// nothing is looked up again).
    pub async fn subscribe_topics(client: Client, topics: &[&str], config: ConsumerConfig) -> Result<Self> {
        let mut consumers = BTreeMap::new();
        for topic in topics {
            let consumer = Consumer::subscribe(client.clone(), topic, config.clone()).await?;
            consumers.insert((*topic).to_owned(), consumer);
        }
        Ok(Self {
            client,
            pattern: None,
            config,
            consumers,
            refresh_interval: DEFAULT_REFRESH,
            last_refresh: Instant::now(),
            cursor: 0,
        })
    }

    /// The records as a `futures::Stream` (see [`Consumer::stream`]).
    pub fn stream(self, max: usize) -> impl futures::Stream<Item = Result<ConsumerRecord>> {
        crate::consumer::records_stream(self, max, |c, max| Box::pin(c.poll(max, Duration::from_secs(1))))
    }

    /// Looks the matching topics up this often during `poll`.
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The pattern (`None` for a fixed list of topics).
    pub fn pattern(&self) -> Option<&str> {
        self.pattern.as_deref()
    }

    /// The topics consumed now, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.consumers.keys().cloned().collect()
    }

    /// Looks the matching topics up now; returns the topics added. Topics
    /// that no longer exist are dropped. Nothing for a fixed list.
    pub async fn refresh(&mut self) -> Result<Vec<String>> {
        // A topic appearing after the start is read from the group's commit,
        // else from its beginning.
        self.add_matching(StartFrom::Committed).await
    }

    async fn add_matching(&mut self, from: StartFrom) -> Result<Vec<String>> {
        let Some(pattern) = &self.pattern else {
            return Ok(Vec::new());
        };
        let matching = self.client.match_topics(pattern).await?;
        self.last_refresh = Instant::now();
        self.consumers.retain(|topic, _| matching.contains(topic));
        let mut added = Vec::new();
        for topic in matching {
            if self.consumers.contains_key(&topic) {
                continue;
            }
            let mut config = self.config.clone();
            config.from = from;
            match Consumer::subscribe(self.client.clone(), &topic, config).await {
                Ok(consumer) => {
                    self.consumers.insert(topic.clone(), consumer);
                    added.push(topic);
                }
                // Deleted between the match and the subscribe: skip it.
                Err(Error::Server { ref message, .. }) if message.contains("not found") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(added)
    }

    /// Waits up to `timeout` for records from any matching topic and
    /// returns at most `max`, topics taken round robin.
    pub async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        let max = max.max(1);
        loop {
            if self.last_refresh.elapsed() >= self.refresh_interval {
                self.refresh().await?;
            }
            let mut out = Vec::new();
            let n = self.consumers.len();
            let topics: Vec<String> = self.consumers.keys().cloned().collect();
            for step in 0..n {
                if out.len() >= max {
                    break;
                }
                let topic = &topics[(self.cursor + step) % n];
                if let Some(consumer) = self.consumers.get_mut(topic) {
                    out.extend(consumer.poll(max - out.len(), Duration::ZERO).await?);
                }
            }
            if n > 0 {
                self.cursor = (self.cursor + 1) % n;
            }
            let now = Instant::now();
            if !out.is_empty() || now >= deadline {
                return Ok(out);
            }
            tokio::time::sleep(self.config.poll_interval.min(deadline - now)).await;
        }
    }

    /// Moves the position of one partition of one topic (the next offset to
    /// read).
    pub fn seek(&mut self, topic: &str, partition: i32, offset: u64) -> Result<()> {
        self.consumers
            .get_mut(topic)
            .ok_or_else(|| Error::InvalidArgument(format!("topic '{topic}' is not consumed")))?
            .seek(partition, offset)
    }

    /// Commits the positions of every topic.
    pub async fn commit(&mut self) -> Result<()> {
        for consumer in self.consumers.values_mut() {
            consumer.commit().await?;
        }
        Ok(())
    }

    /// Commits (when auto-commit is on) and ends every topic's consumer.
    pub async fn close(self) -> Result<()> {
        for (_, consumer) in self.consumers {
            consumer.close().await?;
        }
        Ok(())
    }
}
