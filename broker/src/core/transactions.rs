//! Transactions (BEGIN_TX / PRODUCE_TX / COMMIT_TX / ABORT_TX, WIRE.md §9.11).
//!
//! Records produced in a transaction are buffered on the broker the client
//! is connected to and are invisible until COMMIT. ABORT, the connection
//! closing, or `transaction_timeout_ms` without a request discard them.
//!
//! A commit to one partition is one `Append`: atomic like any produce. A
//! commit to several partitions is first stored in the metadata as a
//! decision (`CommitTransaction`, with its records): from that moment it is
//! committed. Each partition's share is then delivered (`DeliverTransaction`,
//! which a partition applies once however often it is proposed) and the
//! decision dropped. If the committing broker fails in between, the
//! metadata leader finishes the delivery (`finish_pending`): a transaction
//! whose decision was stored becomes readable in every partition, one
//! whose decision was not is readable nowhere. Between the decision and the
//! last delivery a reader may see one partition's share before another's.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::broker::{Broker, now_ms, unexpected};
use super::command::{Applied, Command, Decision, NewRecord, TransactionPart};
use super::error::{BrokerError, BrokerResult};
use crate::shutdown::Shutdown;

/// Most records buffered in one transaction.
pub const MAX_TXN_RECORDS: usize = 10_000;
/// Most key and value bytes in one transaction: a multi-partition commit is
/// one Raft entry of the metadata group, kept well under the transport limit.
pub const MAX_TXN_BYTES: usize = 4 << 20;
/// Most open transactions per connection.
pub const MAX_OPEN_PER_CONNECTION: usize = 64;
/// Most uncommitted record bytes buffered on the broker, all connections
/// together: transactions are held in memory until COMMIT.
pub const MAX_BUFFERED_BYTES: usize = 256 << 20;
/// Finished transaction ids remembered, so a late COMMIT or ABORT is told
/// what happened instead of "not found".
const FINISHED_REMEMBERED: usize = 10_000;
/// How often idle transactions are expired and pending deliveries finished.
const TICK: Duration = Duration::from_secs(1);
/// A decision younger than this is left to the broker that committed it.
const RECOVERY_GRACE_MS: i64 = 5_000;
/// Attempts of the committing broker to deliver every share before leaving
/// the rest to the metadata leader.
const DELIVERY_ATTEMPTS: u32 = 3;

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Committed,
    Aborted,
    /// Idle past the timeout.
    Expired,
    /// Its connection closed before COMMIT.
    Abandoned,
    /// COMMIT failed before the decision was stored: nothing was committed.
    Failed,
    /// COMMIT could not confirm the decision: all or nothing, unknown which.
    Unknown,
}

impl Outcome {
    fn describe(self) -> &'static str {
        match self {
            Outcome::Committed => "was already committed",
            Outcome::Aborted => "was aborted",
            Outcome::Expired => "expired (idle past transaction_timeout_ms) and was aborted",
            Outcome::Abandoned => "was aborted when the connection that began it closed",
            Outcome::Failed => "failed to commit; nothing of it was committed",
            Outcome::Unknown => "had a COMMIT that could not be confirmed: it is entirely committed or not at all",
        }
    }
}

/// A record waiting for its transaction's commit.
struct Buffered {
    topic: String,
    topic_id: u32,
    partition: u32,
    record: NewRecord,
}

struct OpenTxn {
    session: u64,
    last_used: Instant,
    records: Vec<Buffered>,
    bytes: usize,
}

/// The transactions of this broker's connections.
pub struct Transactions {
    open: Mutex<HashMap<String, OpenTxn>>,
    /// Value bytes buffered in `open`.
    buffered: AtomicUsize,
    finished: Mutex<(VecDeque<String>, HashMap<String, Outcome>)>,
    counter: AtomicU64,
    timeout: Duration,
}

impl Transactions {
    pub fn new(timeout: Duration) -> Self {
        Self {
            open: Mutex::default(),
            buffered: AtomicUsize::new(0),
            finished: Mutex::default(),
            counter: AtomicU64::new(0),
            timeout,
        }
    }

    fn finish(&self, txn_id: String, outcome: Outcome) {
        let mut finished = self.finished.lock();
        let (order, outcomes) = &mut *finished;
        if outcomes.insert(txn_id.clone(), outcome).is_none() {
            order.push_back(txn_id);
        }
        while order.len() > FINISHED_REMEMBERED {
            if let Some(old) = order.pop_front() {
                outcomes.remove(&old);
            }
        }
    }

    /// The error for an id that is not open (on this connection).
    fn not_open(&self, txn_id: &str) -> BrokerError {
        match self.finished.lock().1.get(txn_id) {
            Some(outcome) => BrokerError::Transaction(format!("transaction {txn_id} {}", outcome.describe())),
            None => BrokerError::Transaction(format!(
                "transaction not found: {txn_id} (begin one with BEGIN_TX on this broker; \
                 transactions do not survive a broker restart)"
            )),
        }
    }

    /// Takes an open transaction of `session` out of the table (one idle
    /// past the timeout is expired, whether or not the sweep ran).
    fn take(&self, session: u64, txn_id: &str) -> BrokerResult<OpenTxn> {
        let mut open = self.open.lock();
        match open.get(txn_id) {
            Some(txn) if txn.session != session => Err(other_connection(txn_id)),
            Some(txn) if txn.last_used.elapsed() > self.timeout => {
                if let Some(txn) = open.remove(txn_id) {
                    self.released(&txn);
                }
                drop(open);
                self.finish(txn_id.to_owned(), Outcome::Expired);
                Err(self.not_open(txn_id))
            }
            Some(_) => {
                let txn = open.remove(txn_id).expect("present");
                self.released(&txn);
                Ok(txn)
            }
            None => Err(self.not_open(txn_id)),
        }
    }

    /// A transaction left the table: its bytes are no longer buffered.
    fn released(&self, txn: &OpenTxn) {
        self.buffered.fetch_sub(txn.bytes, Ordering::Relaxed);
    }

    /// Number of open transactions.
    pub fn open_count(&self) -> usize {
        self.open.lock().len()
    }

    /// Discards the transactions idle past the timeout; returns how many.
    fn expire_idle(&self) -> usize {
        let expired: Vec<String> = {
            let mut open = self.open.lock();
            let ids: Vec<String> = open
                .iter()
                .filter(|(_, t)| t.last_used.elapsed() > self.timeout)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &ids {
                if let Some(txn) = open.remove(id) {
                    self.released(&txn);
                }
            }
            ids
        };
        for id in &expired {
            tracing::info!(txn = %id, timeout_ms = self.timeout.as_millis() as u64, "transaction expired and was aborted");
            self.finish(id.clone(), Outcome::Expired);
        }
        expired.len()
    }
}

fn other_connection(txn_id: &str) -> BrokerError {
    BrokerError::Transaction(format!(
        "transaction {txn_id} belongs to another connection; use a transaction on the connection that began it"
    ))
}

impl Broker {
    /// BEGIN_TX: a new transaction owned by connection `session`.
    pub fn begin_transaction(&self, session: u64) -> BrokerResult<String> {
        let txns = &self.transactions;
        let n = txns.counter.fetch_add(1, Ordering::Relaxed);
        let txn_id = format!("txn-{}-{}-{n}", self.settings.node_id, now_ms());
        let mut open = txns.open.lock();
        if open.values().filter(|t| t.session == session).count() >= MAX_OPEN_PER_CONNECTION {
            return Err(BrokerError::Transaction(format!(
                "this connection already has {MAX_OPEN_PER_CONNECTION} open transactions; commit or abort one first"
            )));
        }
        open.insert(
            txn_id.clone(),
            OpenTxn {
                session,
                last_used: Instant::now(),
                records: Vec::new(),
                bytes: 0,
            },
        );
        Ok(txn_id)
    }

    /// PRODUCE_TX: buffers one record (no key; partitions taken in turn).
    /// The topic must exist (or is created, as a produce would).
    pub async fn produce_in_transaction(
        &self,
        session: u64,
        txn_id: &str,
        topic: &str,
        value: Bytes,
    ) -> BrokerResult<()> {
        self.check_transaction(session, txn_id)?;
        let max = self.settings.max_message_bytes;
        if value.len() > max {
            return Err(BrokerError::InvalidArgument(format!(
                "message too large: {} bytes exceeds max_message_bytes ({max})",
                value.len()
            )));
        }
        self.auto_create_topic(topic).await?;
        let view = self.topic(topic)?;
        let partition = view.next_round_robin();
        let mut open = self.transactions.open.lock();
        let txn = match open.get_mut(txn_id) {
            Some(txn) if txn.session == session => txn,
            Some(_) => return Err(other_connection(txn_id)),
            None => {
                drop(open);
                return Err(self.transactions.not_open(txn_id));
            }
        };
        if txn.records.len() >= MAX_TXN_RECORDS || txn.bytes + value.len() > MAX_TXN_BYTES {
            return Err(BrokerError::InvalidArgument(format!(
                "transaction {txn_id} is full: at most {MAX_TXN_RECORDS} records and {MAX_TXN_BYTES} bytes; \
                 commit it and continue in a new one"
            )));
        }
        let buffered = self.transactions.buffered.load(Ordering::Relaxed);
        if buffered + value.len() > MAX_BUFFERED_BYTES {
            return Err(BrokerError::Transaction(format!(
                "this broker holds {} MiB of uncommitted transaction records, its limit; commit or abort \
                 transactions, or retry later",
                MAX_BUFFERED_BYTES >> 20
            )));
        }
        self.transactions.buffered.fetch_add(value.len(), Ordering::Relaxed);
        txn.bytes += value.len();
        txn.last_used = Instant::now();
        txn.records.push(Buffered {
            topic: topic.to_owned(),
            topic_id: view.record.id,
            partition,
            record: NewRecord::new(Bytes::new(), value),
        });
        Ok(())
    }

    /// Ok when `txn_id` is open and belongs to `session`.
    fn check_transaction(&self, session: u64, txn_id: &str) -> BrokerResult<()> {
        let txns = &self.transactions;
        let expired = match txns.open.lock().get(txn_id) {
            Some(txn) if txn.session != session => return Err(other_connection(txn_id)),
            Some(txn) => txn.last_used.elapsed() > txns.timeout,
            None => return Err(txns.not_open(txn_id)),
        };
        if expired {
            // Takes it out and reports the expiry.
            txns.take(session, txn_id)?;
        }
        Ok(())
    }

    /// ABORT_TX: discards the buffered records.
    pub fn abort_transaction(&self, session: u64, txn_id: &str) -> BrokerResult<()> {
        self.transactions.take(session, txn_id)?;
        self.transactions.finish(txn_id.to_owned(), Outcome::Aborted);
        Ok(())
    }

    /// A connection closed: its open transactions are aborted.
    pub fn end_transactions(&self, session: u64) {
        let abandoned: Vec<String> = {
            let mut open = self.transactions.open.lock();
            let ids: Vec<String> = open
                .iter()
                .filter(|(_, t)| t.session == session)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &ids {
                if let Some(txn) = open.remove(id) {
                    self.transactions.released(&txn);
                }
            }
            ids
        };
        for id in abandoned {
            self.transactions.finish(id, Outcome::Abandoned);
        }
    }

    /// COMMIT_TX: makes every buffered record readable, or none of them.
    pub async fn commit_transaction(&self, session: u64, txn_id: &str) -> BrokerResult<()> {
        let txn = self.transactions.take(session, txn_id)?;
        let (result, outcome) = match self.commit_buffered(txn_id, txn.records).await {
            Ok(()) => (Ok(()), Outcome::Committed),
            Err(Committing::Refused(err)) => (
                Err(BrokerError::Transaction(format!(
                    "transaction {txn_id} was not committed (nothing of it is readable): {err}"
                ))),
                Outcome::Failed,
            ),
            Err(Committing::Unconfirmed(err)) => (
                Err(BrokerError::Transaction(format!(
                    "the commit of transaction {txn_id} could not be confirmed ({err}); it is either \
                     entirely committed or not at all: read before producing it again"
                ))),
                Outcome::Unknown,
            ),
        };
        self.transactions.finish(txn_id.to_owned(), outcome);
        result
    }

    async fn commit_buffered(&self, txn_id: &str, records: Vec<Buffered>) -> Result<(), Committing> {
        let parts = group_by_partition(records);
        for part in &parts {
            match self.catalog.topic(&part.topic) {
                Some(view) if view.record.id == part.topic_id => {}
                _ => {
                    return Err(Committing::Refused(BrokerError::TopicNotFound(format!(
                        "{} (deleted during the transaction)",
                        part.topic
                    ))));
                }
            }
        }
        match parts.len() {
            0 => Ok(()),
            // One partition: one append, atomic like any produce.
            1 => {
                let part = parts.into_iter().next().expect("one part");
                let pending = self
                    .submit_produce(&part.topic, part.partition as i32, part.records)
                    .map_err(Committing::Refused)?;
                pending.await.map(|_| ()).map_err(Committing::Unconfirmed)
            }
            _ => {
                let decision = Decision {
                    txn_id: txn_id.to_owned(),
                    committed_ms: now_ms(),
                    parts,
                };
                let seq = match self
                    .propose(Command::CommitTransaction {
                        decision: decision.clone(),
                    })
                    .await
                {
                    Ok(Applied::TransactionCommitted { seq }) => seq,
                    Ok(other) => return Err(Committing::Unconfirmed(unexpected(other))),
                    Err(err) => return Err(Committing::Unconfirmed(err)),
                };
                // Committed. Deliver now so the client reads its records
                // after the answer; if that keeps failing, the metadata
                // leader finishes it.
                let mut attempt = 0;
                while let Err(err) = self.deliver(seq, &decision).await {
                    attempt += 1;
                    if attempt >= DELIVERY_ATTEMPTS {
                        tracing::warn!(txn = txn_id, seq, error = %err,
                            "transaction committed but not yet delivered everywhere; the metadata leader will finish it");
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Ok(())
            }
        }
    }

    /// Delivers every share of committed transaction `seq`, then drops its
    /// decision. Safe to repeat: each partition appends its share once.
    async fn deliver(&self, seq: u64, decision: &Decision) -> BrokerResult<()> {
        let deliveries = decision.parts.iter().map(|part| async move {
            let records = self.with_topic_ttl(&part.topic, decision.committed_ms, part.records.clone());
            let bytes: u64 = records.iter().map(|r| r.value.len() as u64).sum();
            let command = Command::DeliverTransaction {
                seq,
                topic: part.topic.clone(),
                topic_id: part.topic_id,
                partition: part.partition,
                timestamp_ms: now_ms(),
                records,
            };
            match self.propose(command).await {
                Ok(Applied::Appended { count, .. }) => {
                    self.metrics.record_produced(&part.topic, u64::from(count), bytes);
                    Ok(())
                }
                Ok(Applied::AlreadyDelivered) => Ok(()),
                // The topic was deleted since: nothing left to deliver to.
                Err(BrokerError::TopicNotFound(_)) => Ok(()),
                Ok(other) => Err(unexpected(other)),
                Err(err) => Err(err),
            }
        });
        for result in futures::future::join_all(deliveries).await {
            result?;
        }
        match self.propose(Command::TransactionDelivered { seq }).await? {
            Applied::DecisionDropped => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The topic's message TTL applied to records that have no expiry, as a
    /// produce would.
    fn with_topic_ttl(&self, topic: &str, now: i64, records: Vec<NewRecord>) -> Vec<NewRecord> {
        match self.catalog.topic(topic).and_then(|v| v.record.message_ttl_ms) {
            Some(ttl) => records
                .into_iter()
                .map(|r| match r.expires() {
                    true => r,
                    false => NewRecord::expiring(r.key, &r.value, now, ttl),
                })
                .collect(),
            None => records,
        }
    }

    /// On the metadata leader: delivers the committed transactions whose
    /// committing broker did not finish (it failed, or a partition had no
    /// leader). Returns how many were finished.
    pub async fn finish_pending(&self) -> BrokerResult<usize> {
        if !self.replicator.leads_metadata() {
            return Ok(0);
        }
        let store = self.store.clone();
        let decisions = tokio::task::spawn_blocking(move || store.txn_decisions())
            .await
            .map_err(|e| BrokerError::Storage(format!("reading transaction decisions failed: {e}")))??;
        // Each decision on its own, each attempt bounded: one that cannot be
        // delivered yet (a partition without a leader, a hung forward) must
        // not hold back the others until the next tick.
        let mut finished = 0;
        for (seq, encoded) in decisions {
            let decision: Decision = match postcard::from_bytes(&encoded) {
                Ok(decision) => decision,
                Err(e) => {
                    tracing::error!(seq, error = %e, "a stored transaction decision cannot be decoded");
                    continue;
                }
            };
            if now_ms() - decision.committed_ms < RECOVERY_GRACE_MS {
                continue;
            }
            match tokio::time::timeout(DELIVERY_ATTEMPT, self.deliver(seq, &decision)).await {
                Ok(Ok(())) => {
                    tracing::info!(txn = %decision.txn_id, seq, "finished delivering a committed transaction");
                    finished += 1;
                }
                Ok(Err(err)) => tracing::warn!(txn = %decision.txn_id, seq, error = %err,
                    "delivering a committed transaction failed; retrying next tick"),
                Err(_) => tracing::warn!(txn = %decision.txn_id, seq,
                    "delivering a committed transaction timed out; retrying next tick"),
            }
        }
        Ok(finished)
    }
}

/// Longest one recovery delivery of a committed transaction may take
/// before the metadata leader moves on (and retries at its next tick).
const DELIVERY_ATTEMPT: Duration = Duration::from_secs(5);

/// Why a commit failed.
enum Committing {
    /// Before anything was stored: nothing committed.
    Refused(BrokerError),
    /// The decision may or may not have been stored.
    Unconfirmed(BrokerError),
}

/// The records per partition, partitions in the order first produced to,
/// records in produce order.
fn group_by_partition(records: Vec<Buffered>) -> Vec<TransactionPart> {
    let mut parts: Vec<TransactionPart> = Vec::new();
    for b in records {
        match parts
            .iter_mut()
            .find(|p| p.topic_id == b.topic_id && p.partition == b.partition)
        {
            Some(part) => part.records.push(b.record),
            None => parts.push(TransactionPart {
                topic: b.topic,
                topic_id: b.topic_id,
                partition: b.partition,
                records: vec![b.record],
            }),
        }
    }
    parts
}

/// Expires idle transactions and finishes pending deliveries every second,
/// until shutdown.
pub async fn run(broker: Arc<Broker>, mut shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.recv() => return,
        }
        broker.transactions.expire_idle();
        if let Err(err) = broker.finish_pending().await {
            tracing::debug!(error = %err, "finishing committed transactions failed; will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffered(topic_id: u32, partition: u32, value: &'static str) -> Buffered {
        Buffered {
            topic: format!("t{topic_id}"),
            topic_id,
            partition,
            record: NewRecord::new(Bytes::new(), Bytes::from_static(value.as_bytes())),
        }
    }

    #[test]
    fn records_are_grouped_per_partition_in_produce_order() {
        let parts = group_by_partition(vec![
            buffered(1, 1, "a"),
            buffered(1, 0, "b"),
            buffered(1, 1, "c"),
            buffered(2, 1, "d"),
        ]);
        let shape: Vec<(u32, u32, Vec<&[u8]>)> = parts
            .iter()
            .map(|p| {
                (
                    p.topic_id,
                    p.partition,
                    p.records.iter().map(|r| &r.value[..]).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (1, 1, vec![&b"a"[..], b"c"]),
                (1, 0, vec![&b"b"[..]]),
                (2, 1, vec![&b"d"[..]])
            ]
        );
    }

    #[test]
    fn finished_ids_are_remembered_with_their_outcome_up_to_a_bound() {
        let txns = Transactions::new(Duration::from_secs(60));
        txns.finish("a".into(), Outcome::Committed);
        assert!(txns.not_open("a").to_string().contains("already committed"));
        assert!(txns.not_open("zzz").to_string().contains("transaction not found: zzz"));
        for i in 0..FINISHED_REMEMBERED {
            txns.finish(format!("x{i}"), Outcome::Aborted);
        }
        assert!(txns.not_open("a").to_string().contains("not found"), "oldest forgotten");
        assert!(txns.not_open("x1").to_string().contains("was aborted"));
    }

    #[test]
    fn idle_transactions_expire_and_say_so() {
        let txns = Transactions::new(Duration::from_millis(0));
        txns.open.lock().insert(
            "t1".into(),
            OpenTxn {
                session: 1,
                last_used: Instant::now() - Duration::from_millis(5),
                records: vec![],
                bytes: 0,
            },
        );
        assert_eq!(txns.expire_idle(), 1);
        assert_eq!(txns.open_count(), 0);
        assert!(txns.take(1, "t1").err().unwrap().to_string().contains("expired"));
    }
}
