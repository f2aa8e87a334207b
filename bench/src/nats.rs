//! NATS JetStream with `async-nats`. A FlyMQ partition maps to a stream
//! (`<topic>-<p>`, subject `<topic>.<p>`, file storage, `--replicas`
//! replicas): both are one ordered log with one leader and, when
//! replicated, one Raft group. Each lane connects to its stream's leader
//! server only (discovered servers ignored), as FlyMQ lanes go to their
//! partition's leader, and keeps `window` JetStream publishes awaiting
//! their acks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, consumer, context::ContextBuilder, stream};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::harness::{Backend, ConsumePlan, LanePlan, Placement};
use crate::stats::Recorder;

/// How long stream creation and leader placement may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Publish-ack timeout (far above any latency worth measuring).
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// A NATS server or cluster.
pub struct Nats {
    /// Client URL per server name.
    urls: HashMap<String, String>,
    /// Replicas of each stream.
    replicas: usize,
    /// JetStream API context on the first server.
    admin: jetstream::Context,
}

/// Stream of partition `p` of `topic`.
pub fn stream_name(topic: &str, p: u32) -> String {
    format!("{topic}-{p}")
}

/// Subject of partition `p` of `topic`.
pub fn subject(topic: &str, p: u32) -> String {
    format!("{topic}.{p}")
}

async fn connect_one(url: &str) -> anyhow::Result<async_nats::Client> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let attempt = async_nats::ConnectOptions::new()
            .ignore_discovered_servers()
            .retain_servers_order()
            .no_echo()
            .connect(url)
            .await;
        match attempt {
            Ok(client) => return Ok(client),
            Err(err) if Instant::now() >= deadline => {
                return Err(err).with_context(|| format!("connecting to NATS at {url}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

impl Nats {
    /// Connects to every server in `urls` (learning their names) and keeps
    /// the first as the JetStream API connection.
    pub async fn connect(urls: Vec<String>, replicas: usize) -> anyhow::Result<Self> {
        let mut names = HashMap::new();
        let mut admin = None;
        for url in &urls {
            let client = connect_one(url).await?;
            names.insert(client.server_info().server_name.clone(), url.clone());
            admin.get_or_insert(client);
        }
        let admin = admin.context("no NATS server URL given")?;
        Ok(Self {
            urls: names,
            replicas: replicas.max(1),
            admin: ContextBuilder::new().timeout(Duration::from_secs(10)).build(admin),
        })
    }

    /// Leader server name of each stream, `None` while one has none.
    async fn leaders(&self, topic: &str, partitions: u32) -> anyhow::Result<Vec<Option<String>>> {
        let mut leaders = Vec::new();
        for p in 0..partitions {
            let name = stream_name(topic, p);
            let mut s = self
                .admin
                .get_stream(&name)
                .await
                .with_context(|| format!("looking up stream {name}"))?;
            let info = s.info().await.with_context(|| format!("stream info of {name}"))?;
            let leader = info
                .cluster
                .as_ref()
                .and_then(|c| c.leader.clone())
                .filter(|l| !l.is_empty());
            // A server outside a cluster names no leader: it is the only one.
            let leader = match (leader, self.urls.len()) {
                (None, 1) => self.urls.keys().next().cloned(),
                (leader, _) => leader,
            };
            leaders.push(leader);
        }
        Ok(leaders)
    }

    /// Creates the streams of `topic`, retrying while JetStream starts.
    async fn create_streams(&self, topic: &str, partitions: u32) -> anyhow::Result<()> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        for p in 0..partitions {
            // Left over from an interrupted run: start empty.
            let _ = self.admin.delete_stream(stream_name(topic, p)).await;
            let config = stream::Config {
                name: stream_name(topic, p),
                subjects: vec![subject(topic, p)],
                storage: stream::StorageType::File,
                num_replicas: self.replicas,
                ..Default::default()
            };
            loop {
                match self.admin.create_stream(config.clone()).await {
                    Ok(_) => break,
                    Err(err) if Instant::now() >= deadline => {
                        return Err(err).with_context(|| format!("creating stream {}", config.name));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
                }
            }
        }
        Ok(())
    }
}

/// Index of a stream to move so that leaders spread over `servers`: one
/// that shares its leader with an earlier stream while some server leads
/// fewer streams than the fair share. `None` when the spread is even.
pub fn stream_to_move(leaders: &[String], servers: usize) -> Option<usize> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let fair = leaders.len().div_ceil(servers.max(1));
    if servers <= 1 {
        return None;
    }
    let distinct = leaders.iter().collect::<std::collections::HashSet<_>>().len();
    let want_distinct = leaders.len().min(servers);
    for (i, leader) in leaders.iter().enumerate() {
        let count = seen.entry(leader.as_str()).or_default();
        *count += 1;
        if *count > 1 && (distinct < want_distinct || *count > fair) {
            return Some(i);
        }
    }
    None
}

impl Backend for Nats {
    fn system(&self) -> &'static str {
        "nats"
    }

    async fn prepare(&self, topic: &str, partitions: u32) -> anyhow::Result<Placement> {
        self.create_streams(topic, partitions).await?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        loop {
            let leaders = self.leaders(topic, partitions).await?;
            if let Some(leaders) = leaders.iter().cloned().collect::<Option<Vec<String>>>() {
                // JetStream places stream leaders as elections fall; ask a
                // doubled-up leader to step down until they are spread, as
                // FlyMQ spreads partition leaders (bounded, then accept).
                match stream_to_move(&leaders, self.urls.len()) {
                    Some(i) if Instant::now() < deadline => {
                        let name = stream_name(topic, i as u32);
                        // The server takes only an empty object (`null` is a bad request).
                        let reply: serde_json::Value = self
                            .admin
                            .request(format!("STREAM.LEADER.STEPDOWN.{name}"), &serde_json::json!({}))
                            .await
                            .with_context(|| format!("stepping down the leader of {name}"))?;
                        if let Some(error) = reply.get("error") {
                            bail!("stepping down the leader of {name} failed: {error}");
                        }
                        // Wait for the election to settle before looking again.
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                        continue;
                    }
                    _ => {}
                }
                let routes = leaders
                    .iter()
                    .map(|l| {
                        self.urls
                            .get(l)
                            .cloned()
                            .with_context(|| format!("stream leader '{l}' is not one of the given servers"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                return Ok(Placement { routes, leaders });
            }
            if Instant::now() >= deadline {
                bail!("streams of '{topic}' have no leader after {SETUP_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn run_lane(&self, plan: LanePlan) -> anyhow::Result<Recorder> {
        let client = connect_one(&plan.route).await?;
        let window = plan.window.max(1) * plan.batch.max(1);
        let js = ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .max_ack_inflight(window + 1)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let subject = subject(&plan.topic, plan.partition);
        let mut rec = Recorder::new(plan.measure_from);
        let mut in_flight = FuturesUnordered::new();
        let mut left = plan.max_messages.unwrap_or(u64::MAX);
        loop {
            if Instant::now() < plan.deadline {
                while in_flight.len() < window && left > 0 {
                    left -= 1;
                    let sent = Instant::now();
                    let ack = js
                        .publish(subject.clone(), plan.value.clone())
                        .await
                        .with_context(|| format!("publishing to {subject}"))?;
                    in_flight.push(async move { (sent, ack.await) });
                }
            }
            match in_flight.next().await {
                Some((sent, Ok(_))) => rec.ack(sent, Instant::now(), 1),
                Some((_, Err(err))) => rec.error(err.to_string()),
                None => break,
            }
        }
        drop(js);
        client.drain().await.ok();
        Ok(rec)
    }

    async fn consume_lane(&self, plan: ConsumePlan) -> anyhow::Result<Recorder> {
        let client = connect_one(&plan.route).await?;
        let js = ContextBuilder::new().timeout(ACK_TIMEOUT).build(client.clone());
        let name = stream_name(&plan.topic, plan.partition);
        let stream = js
            .get_stream(&name)
            .await
            .with_context(|| format!("looking up stream {name}"))?;
        // An ephemeral pull consumer without acks: FlyMQ's FETCH does not
        // acknowledge either.
        let reader = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating a pull consumer on {name}"))?;
        let mut messages = reader
            .stream()
            .max_messages_per_batch(plan.batch.max(1))
            .messages()
            .await
            .with_context(|| format!("pulling from {name}"))?;
        let mut rec = Recorder::new(plan.measure_from);
        let mut read = 0;
        while read < plan.count {
            match messages.next().await {
                Some(Ok(_)) => {
                    read += 1;
                    rec.count(Instant::now(), 1);
                }
                Some(Err(err)) => bail!("reading {name}: {err}"),
                None => bail!("{name} ended after {read} of {} messages", plan.count),
            }
        }
        drop(messages);
        client.drain().await.ok();
        Ok(rec)
    }

    async fn cleanup(&self, topic: &str, partitions: u32) -> anyhow::Result<()> {
        for p in 0..partitions {
            let name = stream_name(topic, p);
            self.admin
                .delete_stream(&name)
                .await
                .with_context(|| format!("deleting stream {name}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_are_valid_for_nats() {
        assert_eq!(stream_name("bench-batch-r1", 2), "bench-batch-r1-2");
        assert_eq!(subject("bench-batch-r1", 2), "bench-batch-r1.2");
    }

    #[test]
    fn leaders_spread_one_per_server() {
        assert_eq!(stream_to_move(&v(&["a", "b", "c"]), 3), None);
        assert_eq!(stream_to_move(&v(&["a", "a", "c"]), 3), Some(1));
        assert_eq!(stream_to_move(&v(&["a", "b", "b"]), 3), Some(2));
        // One server: nothing to spread.
        assert_eq!(stream_to_move(&v(&["a", "a", "a"]), 1), None);
        // More streams than servers: at most the fair share each.
        assert_eq!(stream_to_move(&v(&["a", "b", "a", "b"]), 2), None);
        assert_eq!(stream_to_move(&v(&["a", "a", "a", "b"]), 2), Some(2));
    }
}
