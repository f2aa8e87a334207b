//! Retention by time and size, and removal of expired TTL records: a
//! background task finds, per partition, the oldest records to drop and
//! proposes a replicated `Truncate` for them. Expired records are removed
//! from the front of a partition: once every record before an offset has
//! expired, the start moves there (an expired record behind one that has
//! not is hidden from reads and removed when the front reaches it).

use std::sync::Arc;
use std::time::Duration;

use super::broker::{Broker, now_ms};
use super::command::Command;
use super::error::BrokerResult;
use crate::shutdown::Shutdown;

/// Batches examined per partition per pass (bounds the work of one pass).
const BATCHES_PER_PASS: usize = 10_000;
/// Records examined for expiry per partition per pass.
const EXPIRY_SCAN_RECORDS: usize = 100_000;

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
            if start >= end {
                continue;
            }
            let now = now_ms();
            let (infos, expired_until) = tokio::task::spawn_blocking(move || {
                let expired_until = expired_prefix_end(&store, topic_id, partition, start, end, now)?;
                let infos = store.batch_infos(topic_id, partition, start, end, BATCHES_PER_PASS)?;
                Ok::<_, crate::storage::StorageError>((infos, expired_until))
            })
            .await
            .map_err(|e| super::BrokerError::Storage(format!("retention task failed: {e}")))??;
            let cutoff = config.retention_ms.map(|ms| now.saturating_sub(ms as i64));
            let (mut new_start, mut removed, mut remaining) = (start, 0u64, size);
            for info in infos {
                let too_old = cutoff.is_some_and(|c| info.max_timestamp < c);
                let too_big = config.retention_bytes.is_some_and(|limit| remaining > limit);
                let expired = info.end_offset() <= expired_until;
                if !(too_old || too_big || expired) {
                    break;
                }
                new_start = info.end_offset();
                removed += info.size_bytes;
                remaining = remaining.saturating_sub(info.size_bytes);
            }
            // Expired records at the front of a batch that also holds live
            // ones: the start moves past them; the batch stays until its end.
            let new_start = new_start.max(expired_until);
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

/// The first offset from `start` whose record has not expired at `now`
/// (`start` when the first record has not), examining a bounded number.
fn expired_prefix_end(
    store: &crate::storage::Store,
    topic_id: u32,
    partition: u32,
    start: u64,
    end: u64,
    now: i64,
) -> Result<u64, crate::storage::StorageError> {
    let mut first_live = start;
    let mut examined = 0usize;
    store.read_records(topic_id, partition, start, end, |offset, record| {
        examined += 1;
        if !record.is_expired(now) || examined > EXPIRY_SCAN_RECORDS {
            first_live = offset;
            return std::ops::ControlFlow::Break(());
        }
        first_live = offset + 1;
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(first_live)
}
