//! Retention by time and size: a background task finds, per partition, the
//! oldest whole batches to drop and proposes a `Truncate` for them.

use std::sync::Arc;
use std::time::Duration;

use super::broker::{Broker, now_ms};
use super::command::Command;
use super::error::BrokerResult;
use crate::shutdown::Shutdown;

/// Batches examined per partition per pass (bounds the work of one pass).
const BATCHES_PER_PASS: usize = 10_000;

/// Runs retention every `interval` until shutdown.
pub async fn run(broker: Arc<Broker>, interval: Duration, mut shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.recv() => return,
        }
        if let Err(err) = enforce_once(&broker).await {
            tracing::warn!(error = %err, "retention pass failed; will retry");
        }
    }
}

/// One retention pass over every topic that has a limit.
pub async fn enforce_once(broker: &Arc<Broker>) -> BrokerResult<u64> {
    let mut truncated = 0;
    for view in broker.catalog().topics() {
        let config = view.record.config.clone();
        if config.retention_ms.is_none() && config.retention_bytes.is_none() {
            continue;
        }
        for partition in 0..view.partition_count() {
            let Some(state) = view.partition(partition) else {
                continue;
            };
            // In a cluster only the partition's leader decides what to drop.
            if !broker.leads(view.record.id, partition) {
                continue;
            }
            let (start, end, size) = (state.start_offset(), state.next_offset(), state.size_bytes());
            let topic_id = view.record.id;
            let store = broker.store().clone();
            let infos = tokio::task::spawn_blocking(move || {
                store.batch_infos(topic_id, partition, start, end, BATCHES_PER_PASS)
            })
            .await
            .map_err(|e| super::BrokerError::Storage(format!("retention task failed: {e}")))??;
            let cutoff = config.retention_ms.map(|ms| now_ms().saturating_sub(ms as i64));
            let (mut new_start, mut removed, mut remaining) = (start, 0u64, size);
            for info in infos {
                let too_old = cutoff.is_some_and(|c| info.max_timestamp < c);
                let too_big = config.retention_bytes.is_some_and(|limit| remaining > limit);
                if !(too_old || too_big) {
                    break;
                }
                new_start = info.end_offset();
                removed += info.size_bytes;
                remaining = remaining.saturating_sub(info.size_bytes);
            }
            if new_start > start {
                broker
                    .propose(Command::Truncate {
                        topic: view.name().to_owned(),
                        topic_id,
                        partition,
                        new_start,
                        removed_bytes: removed,
                    })
                    .await?;
                tracing::info!(
                    topic = view.name(),
                    partition,
                    from = start,
                    to = new_start,
                    bytes = removed,
                    "retention removed old records"
                );
                truncated += new_start - start;
            }
        }
    }
    Ok(truncated)
}
