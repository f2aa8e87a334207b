//! Delayed delivery (PRODUCE_DELAYED). A delayed record is appended to its
//! partition at once as a *scheduled* record, which readers never see, and
//! joins the partition's schedule (the `d/` index, ordered by due time).
//! On the partition's leader a task finds what is due with one seek per
//! partition and proposes a replicated `Release`, which appends a copy of
//! each record at the log end: that copy is what consumers read. Being in
//! the log and the schedule, a delayed record survives restarts and leader
//! changes; a release proposed twice delivers once (see `Command::Release`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::broker::{Broker, now_ms};
use super::command::{Applied, Command, DueRecord, NewRecord};
use super::error::{BrokerError, BrokerResult};
use crate::shutdown::Shutdown;
use crate::storage::record_batch::{FLAG_DELAYED, with_field};

/// The longest delay accepted: 30 days.
pub const MAX_DELAY_MS: u64 = 30 * 24 * 3600 * 1000;
/// How often the leader looks for due records (delivery is within about
/// this plus one replication round trip of the due time).
pub const SCHEDULER_TICK: Duration = Duration::from_millis(20);
/// Most records delivered by one `Release`.
const RELEASE_BATCH: usize = 1000;
/// Most payload bytes in one `Release` (a Raft entry stays well under the
/// transport limit; at least one record is always taken).
const RELEASE_BYTES: usize = 4 << 20;

/// Refuses a delay of 0 and delays that are negative on the wire (Go reads
/// an i64) or absurdly long.
pub fn validate_delay(delay_ms: u64) -> BrokerResult<u64> {
    if delay_ms == 0 {
        return Err(BrokerError::InvalidArgument(
            "invalid delay: 0 ms; a delay must be positive (send a plain PRODUCE to deliver now)".into(),
        ));
    }
    if delay_ms > MAX_DELAY_MS {
        let shown = if delay_ms > i64::MAX as u64 {
            format!("{} ms (in the past: negative as a signed value)", delay_ms as i64)
        } else {
            format!("{delay_ms} ms")
        };
        return Err(BrokerError::InvalidArgument(format!(
            "invalid delay: {shown}; the most accepted is {MAX_DELAY_MS} ms (30 days)"
        )));
    }
    Ok(delay_ms)
}

impl NewRecord {
    /// A scheduled record, due `delay_ms` after `now_ms`.
    pub fn scheduled(key: Bytes, value: &[u8], now_ms: i64, delay_ms: u64) -> Self {
        let due = now_ms.saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX));
        Self {
            key,
            value: Bytes::from(with_field(due.to_be_bytes(), value)),
            flags: FLAG_DELAYED,
        }
    }

    /// Whether the record is a scheduled (delayed) one.
    pub fn is_scheduled(&self) -> bool {
        self.flags & FLAG_DELAYED != 0
    }
}

/// Delivers due records of the partitions this broker leads, every
/// `SCHEDULER_TICK`, until shutdown.
pub async fn run(broker: Arc<Broker>, mut shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(SCHEDULER_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.recv() => return,
        }
        if let Err(err) = release_due(&broker).await {
            tracing::debug!(error = %err, "delivering delayed records failed; will retry");
        }
    }
}

/// One pass: for each led partition with due records, one `Release`.
/// Only partitions that have scheduled records at all are visited: finding
/// them costs one seek when there are none (a blocking-thread hand-off per
/// led partition per pass kept a broker with hundreds of partitions busy
/// while idle). One partition's due records are in memory at a time.
pub async fn release_due(broker: &Arc<Broker>) -> BrokerResult<u32> {
    let scheduled = broker
        .read_store("partitions with delayed records", |store| store.delayed_partitions())
        .await?;
    if scheduled.is_empty() {
        return Ok(0);
    }
    let topics: std::collections::HashMap<u32, _> = broker
        .catalog()
        .topics()
        .into_iter()
        .map(|view| (view.record.id, view))
        .collect();
    let mut delivered = 0;
    for (topic_id, partition) in scheduled {
        // A topic being deleted (or not known here yet) has nothing to deliver.
        let Some(view) = topics.get(&topic_id) else {
            continue;
        };
        if partition >= view.partition_count() || !broker.leads(topic_id, partition) {
            continue;
        }
        let now = now_ms();
        let records = broker
            .read_store("due delayed records", move |store| {
                due_records(store, topic_id, partition, now)
            })
            .await?;
        if records.is_empty() {
            continue;
        }
        let command = Command::Release {
            topic: view.name().to_owned(),
            topic_id,
            partition,
            timestamp_ms: now,
            records,
        };
        if let Applied::Released { count } = broker.propose(command).await? {
            delivered += count;
        }
    }
    Ok(delivered)
}

/// The due records of a partition, read from its log.
fn due_records(
    store: &crate::storage::Store,
    topic_id: u32,
    partition: u32,
    now: i64,
) -> Result<Vec<DueRecord>, crate::storage::StorageError> {
    let mut records = Vec::new();
    let mut bytes = 0usize;
    for (due_ms, offset) in store.due_delayed(topic_id, partition, now, RELEASE_BATCH)? {
        if bytes >= RELEASE_BYTES {
            break;
        }
        let mut found = None;
        store.read_records(topic_id, partition, offset, offset + 1, |_, r| {
            found = Some((Bytes::copy_from_slice(r.key), Bytes::copy_from_slice(r.payload())));
            std::ops::ControlFlow::Break(())
        })?;
        // A scheduled record is kept until delivered; if it cannot be read,
        // deliver it empty rather than block the schedule behind it.
        let (key, payload) = found.unwrap_or_default();
        bytes += key.len() + payload.len();
        records.push(DueRecord {
            offset,
            due_ms,
            key,
            payload,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_past_and_absurd_delays_are_refused_with_the_reason() {
        assert!(validate_delay(0).unwrap_err().to_string().contains("must be positive"));
        let past = validate_delay(u64::MAX).unwrap_err().to_string();
        assert!(past.contains("in the past"), "{past}");
        assert!(
            validate_delay(MAX_DELAY_MS + 1)
                .unwrap_err()
                .to_string()
                .contains("30 days")
        );
        assert_eq!(validate_delay(MAX_DELAY_MS).unwrap(), MAX_DELAY_MS);
    }

    #[test]
    fn a_scheduled_record_carries_its_due_time_before_the_payload() {
        let r = NewRecord::scheduled(Bytes::new(), b"later", 1_000, 250);
        assert!(r.is_scheduled());
        assert_eq!(&r.value[..8], &1_250i64.to_be_bytes());
        assert_eq!(&r.value[8..], b"later");
    }
}
