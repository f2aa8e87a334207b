//! `consume` (one partition by offset) and `subscribe` (a consumer group
//! over all partitions, or over every topic a pattern matches, committing as
//! it goes).

use std::collections::HashMap;
use std::time::Duration;

use flymq_client::{
    Client, Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer, GroupConsumerConfig, PatternConsumer, StartFrom,
};

use crate::cli::args::{ConsumeArgs, FromArg, SubscribeArgs};
use crate::cli::output::{Output, record_json, record_text};

/// Records asked for per FETCH.
const FETCH_MAX: u32 = 500;
/// Pause between polls when caught up with --follow.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// Runs `consume`: prints records of one partition from an offset.
pub async fn consume(client: &Client, args: ConsumeArgs, out: Output) -> anyhow::Result<()> {
    let filter = args.filter.clone().unwrap_or_default();
    let mut offset = args.offset;
    let mut printed = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let remaining = args.count.map(|c| c.saturating_sub(printed));
        if remaining == Some(0) {
            break;
        }
        let ask = remaining.map_or(FETCH_MAX, |r| r.min(u64::from(FETCH_MAX)) as u32);
        let resp = client.fetch(&args.topic, args.partition, offset, ask, &filter).await?;
        let got = resp.records.len();
        for record in resp.records {
            if args.count.is_some_and(|c| printed >= c) {
                break;
            }
            out.item(
                || record_text(&record.key, &record.value, args.show_key),
                record_json(&args.topic, args.partition, record.offset, &record.key, &record.value),
            )?;
            printed += 1;
            offset = offset.max(record.offset + 1);
        }
        offset = offset.max(resp.next_offset);
        if got == 0 {
            if !args.follow {
                break;
            }
            tokio::select! {
                _ = &mut ctrl_c => break,
                () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            }
        }
    }
    if !out.is_json() && printed == 0 {
        eprintln!(
            "no messages in {} partition {} from offset {}",
            args.topic, args.partition, args.offset
        );
    }
    Ok(())
}

/// Runs `subscribe`: consumes all partitions as a group member, commits on
/// an interval and on exit (Ctrl-C or --count reached).
pub async fn subscribe(client: &Client, args: SubscribeArgs, out: Output) -> anyhow::Result<()> {
    let mut config = ConsumerConfig::new(args.group.clone());
    config.from = match args.from {
        FromArg::Earliest => StartFrom::Earliest,
        FromArg::Latest => StartFrom::Latest,
        FromArg::Commit => StartFrom::Committed,
    };
    config.auto_commit_interval = Some(args.commit_interval);
    let pattern = args.topic.contains(['+', '#']);
    if pattern && args.share {
        anyhow::bail!("--share works on one topic, not on a pattern ('{}')", args.topic);
    }
    let mut consumer = if args.share {
        let shared = GroupConsumerConfig {
            consumer: config,
            session_timeout: args.session_timeout,
            heartbeat_interval: args.session_timeout / 3,
        };
        let quiet = out.is_json();
        let c = GroupConsumer::join(client.clone(), &args.topic, shared)
            .await?
            .on_rebalance(move |r| {
                if !quiet {
                    eprintln!(
                        "rebalanced (generation {}): gave up partitions {:?}, took {:?}",
                        r.generation, r.revoked, r.assigned
                    );
                }
            });
        if !out.is_json() {
            eprintln!(
                "joined group '{}' on {} as member {} (generation {}), reading partitions {:?}; Ctrl-C to leave",
                args.group,
                args.topic,
                c.member_id(),
                c.generation(),
                c.assignment()
            );
        }
        Subscription::Shared(Box::new(c))
    } else if pattern {
        let c = PatternConsumer::subscribe(client.clone(), &args.topic, config).await?;
        if !out.is_json() {
            eprintln!(
                "subscribed to pattern {} ({} matching topics now: {}) as group '{}'; new matching topics are \
                 picked up within a second; Ctrl-C to stop",
                args.topic,
                c.topics().len(),
                c.topics().join(", "),
                args.group
            );
        }
        Subscription::Pattern(c)
    } else {
        let c = Consumer::subscribe(client.clone(), &args.topic, config).await?;
        if !out.is_json() {
            eprintln!(
                "subscribed to {} ({} partitions) as group '{}'; Ctrl-C to stop",
                args.topic,
                c.assignment().len(),
                args.group
            );
        }
        Subscription::Topic(c)
    };
    let mut printed = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    'outer: loop {
        let max = args.count.map_or(500, |c| c.saturating_sub(printed).min(500) as usize);
        if max == 0 {
            break;
        }
        let records = tokio::select! {
            _ = &mut ctrl_c => break,
            records = consumer.poll(max, Duration::from_secs(1)) => records?,
        };
        let mut unprinted: HashMap<(String, i32), u64> = HashMap::new();
        for record in records {
            if args.count.is_some_and(|c| printed >= c) {
                // Rewind so that the commit does not skip what was not printed.
                let first = unprinted
                    .entry((record.topic.clone(), record.partition))
                    .or_insert(record.offset);
                *first = (*first).min(record.offset);
                continue;
            }
            let text = record_text(&record.key, &record.value, args.show_key);
            out.item(
                // With a pattern, say which topic each message came from.
                || {
                    if pattern {
                        format!("{}: {text}", record.topic)
                    } else {
                        text.clone()
                    }
                },
                record_json(
                    &record.topic,
                    record.partition,
                    record.offset,
                    &record.key,
                    &record.value,
                ),
            )?;
            printed += 1;
        }
        for ((topic, partition), offset) in unprinted {
            consumer.seek(&topic, partition, offset)?;
        }
        if args.count.is_some_and(|c| printed >= c) {
            break 'outer;
        }
    }
    consumer.close().await?;
    Ok(())
}

/// A subscription to one topic or to a pattern.
enum Subscription {
    Topic(Consumer),
    Pattern(PatternConsumer),
    Shared(Box<GroupConsumer>),
}

impl Subscription {
    async fn poll(&mut self, max: usize, timeout: Duration) -> flymq_client::Result<Vec<ConsumerRecord>> {
        match self {
            Subscription::Topic(c) => c.poll(max, timeout).await,
            Subscription::Pattern(c) => c.poll(max, timeout).await,
            Subscription::Shared(c) => c.poll(max, timeout).await,
        }
    }

    fn seek(&mut self, topic: &str, partition: i32, offset: u64) -> flymq_client::Result<()> {
        match self {
            Subscription::Topic(c) => c.seek(partition, offset),
            Subscription::Pattern(c) => c.seek(topic, partition, offset),
            Subscription::Shared(c) => c.consumer().seek(partition, offset),
        }
    }

    async fn close(self) -> flymq_client::Result<()> {
        match self {
            Subscription::Topic(c) => c.close().await,
            Subscription::Pattern(c) => c.close().await,
            Subscription::Shared(c) => c.close().await,
        }
    }
}
