//! The single writer: a dedicated thread that takes proposed commands,
//! applies as many as are waiting in one WriteBatch (group commit: concurrent
//! producers share one WAL sync), writes it, publishes the result to readers
//! and only then answers the proposers.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::oneshot;

use super::catalog::Catalog;
use super::command::{Applied, Command};
use super::error::{BrokerError, BrokerResult};
use super::state_machine::StateMachine;
use crate::observe::metrics::Metrics;
use crate::storage::Store;

/// Most commands applied in one group commit.
const MAX_GROUP_COMMANDS: usize = 8192;
/// Most record bytes in one group commit.
const MAX_GROUP_BYTES: usize = 16 << 20;

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every group commit syncs the WAL before anyone is answered (`acks=all`).
    SyncEachCommit,
    /// Writes are answered after the WAL write; the WAL is synced every interval
    /// (`acks=leader`).
    SyncEvery(Duration),
}

struct Proposal {
    command: Command,
    reply: oneshot::Sender<BrokerResult<Applied>>,
}

enum Msg {
    Propose(Proposal),
    /// Finish what is queued before this, sync the WAL and exit.
    Stop,
}

/// Handle to propose commands to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: Sender<Msg>,
}

/// Joins the writer thread when the last `Writer` handle is gone.
pub struct WriterThread {
    handle: Option<JoinHandle<()>>,
}

impl WriterThread {
    /// Waits until every proposal made so far is written and answered.
    /// Call after dropping every `Writer`.
    pub fn join(mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Writer {
    pub fn start(
        machine: StateMachine,
        store: Store,
        catalog: Arc<Catalog>,
        durability: Durability,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Writer, WriterThread)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new().name("flymq-writer".into()).spawn(move || {
            WriterLoop {
                machine,
                store,
                catalog,
                durability,
                metrics,
            }
            .run(rx)
        })?;
        Ok((Writer { tx }, WriterThread { handle: Some(handle) }))
    }

    /// Queues a command and returns the receiver of its result. Queueing is
    /// synchronous so commands from one connection keep their order.
    pub fn submit(&self, command: Command) -> oneshot::Receiver<BrokerResult<Applied>> {
        let (reply, rx) = oneshot::channel();
        // If the writer is gone the reply sender drops and the receiver errors.
        let _ = self.tx.send(Msg::Propose(Proposal { command, reply }));
        rx
    }

    /// Asks the writer to finish the queued commands and stop; later
    /// proposals fail with `ShuttingDown`.
    pub fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
    }

    /// Proposes a command and waits until it is applied and durable.
    pub async fn propose(&self, command: Command) -> BrokerResult<Applied> {
        self.submit(command).await.map_err(|_| BrokerError::ShuttingDown)?
    }
}

/// Waits for a submitted command.
pub async fn await_applied(rx: oneshot::Receiver<BrokerResult<Applied>>) -> BrokerResult<Applied> {
    rx.await.map_err(|_| BrokerError::ShuttingDown)?
}

struct WriterLoop {
    machine: StateMachine,
    store: Store,
    catalog: Arc<Catalog>,
    durability: Durability,
    metrics: Arc<Metrics>,
}

impl WriterLoop {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        loop {
            let first = match self.durability {
                Durability::SyncEachCommit => match rx.recv() {
                    Ok(Msg::Propose(p)) => p,
                    Ok(Msg::Stop) | Err(_) => break,
                },
                Durability::SyncEvery(interval) => {
                    let wait = interval.saturating_sub(last_sync.elapsed());
                    match rx.recv_timeout(wait) {
                        Ok(Msg::Propose(p)) => p,
                        Ok(Msg::Stop) => break,
                        Err(RecvTimeoutError::Timeout) => {
                            if unsynced {
                                self.sync_wal();
                                unsynced = false;
                            }
                            last_sync = Instant::now();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let (group, stop) = Self::drain(first, &rx);
            self.commit(group);
            if stop {
                break;
            }
            if let Durability::SyncEvery(interval) = self.durability {
                unsynced = true;
                if last_sync.elapsed() >= interval {
                    self.sync_wal();
                    unsynced = false;
                    last_sync = Instant::now();
                }
            }
        }
        if unsynced {
            self.sync_wal();
        }
        // Anything still queued is answered with ShuttingDown when `rx` drops.
    }

    /// Takes the first proposal plus whatever else is already waiting, up to the limits.
    /// Also reports whether a stop request was found behind them.
    fn drain(first: Proposal, rx: &Receiver<Msg>) -> (Vec<Proposal>, bool) {
        let mut bytes = first.command.size_hint();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_COMMANDS && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(Msg::Propose(p)) => {
                    bytes += p.command.size_hint();
                    group.push(p);
                }
                Ok(Msg::Stop) => return (group, true),
                Err(_) => break,
            }
        }
        (group, false)
    }

    fn commit(&mut self, group: Vec<Proposal>) {
        let started = Instant::now();
        let (commands, replies): (Vec<_>, Vec<_>) = group.into_iter().map(|p| (p.command, p.reply)).unzip();
        let sync = self.durability == Durability::SyncEachCommit;
        let write = self.machine.apply_all(commands).and_then(|output| {
            self.store
                .write(output.batch, sync)
                .map(|()| (output.results, output.publish))
        });
        self.metrics.observe_group_commit(replies.len(), started.elapsed());
        match write {
            Ok((results, publish)) => {
                self.catalog.publish(publish);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "group commit failed; no proposal in it was applied");
                let failure = BrokerError::from(err);
                for reply in replies {
                    let _ = reply.send(Err(failure.clone()));
                }
                // The in-memory state saw the failed commands; reload the durable state.
                match StateMachine::load(self.store.clone()) {
                    Ok(machine) => self.machine = machine,
                    Err(err) => tracing::error!(error = %err, "reloading state after a failed write failed"),
                }
            }
        }
    }

    fn sync_wal(&self) {
        if let Err(err) = self.store.sync_wal() {
            tracing::error!(error = %err, "syncing the write-ahead log failed");
        }
    }
}
