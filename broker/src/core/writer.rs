//! The single writer: a dedicated thread that takes proposed commands,
//! applies as many as are waiting in one WriteBatch (group commit: concurrent
//! producers share one WAL sync), writes it, publishes the result to readers
//! and only then answers the proposers.
//!
//! With `acks=leader`, a command proposed while the writer is idle (nothing
//! queued, no commit running) is committed at once by the proposer itself,
//! on its own thread (`Writer::commit_in_place`): handing it to the writer
//! thread and the answer back cost two wake-ups of parked threads, about
//! 65 µs of a one-at-a-time produce on this VM, against 15 µs for the
//! commit itself. Not when the connection has other requests in flight
//! (`with_other_requests_in_flight`): a pipelining client's commands come
//! one after another, and the writer thread commits them together, where
//! committing each alone would cost a RocksDB write apiece (measured:
//! pipelined produce 0.6x as fast).
//!
//! With `acks=all`, the writer thread polls its queue briefly after a commit
//! while commands keep arriving quickly (`Waiter`), which spares a
//! one-at-a-time producer the writer's wake-up.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvError, RecvTimeoutError, Sender, TryRecvError};
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
/// With `acks=all`, how long the writer polls for the next command before
/// it sleeps, when the previous one came that soon after it went idle: a
/// one-at-a-time producer's next command arrives within about 100 µs of
/// its answer, and waking a sleeping thread costs about 30 µs on this VM.
const SPIN: Duration = Duration::from_micros(150);
thread_local! {
    /// Set while a connection dispatches a request and has others in
    /// flight (unanswered, or read and not dispatched yet).
    static OTHER_REQUESTS_IN_FLIGHT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `dispatch` (which proposes synchronously, on this thread) knowing
/// whether its connection has other requests in flight: a command it
/// proposes then goes to the writer thread, to be committed with theirs.
pub fn with_other_requests_in_flight<T>(in_flight: bool, dispatch: impl FnOnce() -> T) -> T {
    let before = OTHER_REQUESTS_IN_FLIGHT.replace(in_flight);
    let result = dispatch();
    OTHER_REQUESTS_IN_FLIGHT.set(before);
    result
}

/// Largest command committed by its proposer; a larger one goes to the
/// writer thread, so an async worker is not busy encoding MiBs.
const MAX_IN_PLACE_BYTES: usize = crate::storage::in_place::IN_PLACE_COPY_BYTES;

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
    shared: Arc<Shared>,
    /// `acks=all`: every commit goes to the writer thread. Its WAL sync
    /// blocks for a few hundred µs, and handing an async worker over for it
    /// (`block_in_place`) wakes as many threads as the writer thread does
    /// (measured: no faster).
    sync_each_commit: bool,
}

/// What the writer thread and the proposers that commit in place share.
struct Shared {
    /// The state machine and its store: whoever holds the lock commits.
    committer: parking_lot::Mutex<Committer>,
    /// Proposals sent to the thread and not committed yet. A proposer
    /// commits in place only when there is none, so a command never
    /// overtakes one of the same connection queued before it.
    queued: AtomicUsize,
    /// A commit was written without a sync since the WAL was last synced
    /// (`acks=leader`); set after the write.
    unsynced: AtomicBool,
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
        let shared = Arc::new(Shared {
            committer: parking_lot::Mutex::new(Committer {
                machine,
                store: store.clone(),
                catalog,
                sync: durability == Durability::SyncEachCommit,
                metrics,
                stopped: false,
            }),
            queued: AtomicUsize::new(0),
            unsynced: AtomicBool::new(false),
        });
        let writer_loop = WriterLoop {
            shared: shared.clone(),
            store,
            durability,
        };
        let handle = std::thread::Builder::new()
            .name("flymq-writer".into())
            .spawn(move || writer_loop.run(rx))?;
        let writer = Writer {
            tx,
            shared,
            sync_each_commit: durability == Durability::SyncEachCommit,
        };
        Ok((writer, WriterThread { handle: Some(handle) }))
    }

    /// Commits a command at once when the writer is idle, else queues it;
    /// returns the receiver of its result. Both are synchronous, so
    /// commands from one connection keep their order.
    pub fn submit(&self, command: Command) -> oneshot::Receiver<BrokerResult<Applied>> {
        let (reply, rx) = oneshot::channel();
        let Some(proposal) = self.commit_in_place(Proposal { command, reply }) else {
            return rx;
        };
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        if let Err(refused) = self.tx.send(Msg::Propose(proposal)) {
            // The writer is gone: the reply sender drops with the message,
            // and the receiver answers `ShuttingDown`.
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            drop(refused);
        }
        rx
    }

    /// Commits `proposal` on the calling thread if no commit is running,
    /// nothing is queued, its connection has nothing else in flight and its
    /// apply reads nothing from RocksDB; gives it back otherwise.
    fn commit_in_place(&self, proposal: Proposal) -> Option<Proposal> {
        if self.sync_each_commit || proposal.command.size_hint() > MAX_IN_PLACE_BYTES || OTHER_REQUESTS_IN_FLIGHT.get()
        {
            return Some(proposal);
        }
        let Some(mut committer) = self.shared.committer.try_lock() else {
            return Some(proposal);
        };
        // Read under the lock: the thread counts a commit done before it
        // lets the lock go.
        if self.shared.queued.load(Ordering::SeqCst) != 0 {
            return Some(proposal);
        }
        if committer.stopped {
            // Dropping the reply sender answers `ShuttingDown`.
            return None;
        }
        // A command whose apply reads RocksDB (a partition's first append
        // since the start, metadata, truncation) goes to the thread.
        if !committer.machine.applies_from_memory(&proposal.command) {
            return Some(proposal);
        }
        let answers = committer.commit(vec![proposal], WriteOn::Caller);
        self.shared.unsynced.store(true, Ordering::SeqCst);
        drop(committer);
        answers.send();
        None
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

/// Where a commit's RocksDB write is made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteOn {
    /// The writer thread: it may block.
    WriterThread,
    /// The proposer's thread, maybe an async worker (`Store::write_in_place`);
    /// never with a sync.
    Caller,
}

/// The state machine and what a commit needs.
struct Committer {
    machine: StateMachine,
    store: Store,
    catalog: Arc<Catalog>,
    /// Sync the WAL in every commit (`acks=all`).
    sync: bool,
    metrics: Arc<Metrics>,
    /// The writer has stopped: nothing more is committed.
    stopped: bool,
}

struct WriterLoop {
    shared: Arc<Shared>,
    /// For WAL syncs, made without holding the committer.
    store: Store,
    durability: Durability,
}

impl WriterLoop {
    fn run(self, rx: Receiver<Msg>) {
        let mut last_sync = Instant::now();
        let mut waiter = Waiter::new();
        loop {
            let first = match self.durability {
                Durability::SyncEachCommit => match waiter.next(&rx) {
                    Ok(Msg::Propose(p)) => p,
                    Ok(Msg::Stop) | Err(_) => break,
                },
                Durability::SyncEvery(interval) => {
                    let wait = interval.saturating_sub(last_sync.elapsed());
                    match rx.recv_timeout(wait) {
                        Ok(Msg::Propose(p)) => p,
                        Ok(Msg::Stop) => break,
                        Err(RecvTimeoutError::Timeout) => {
                            self.sync_wal_if_unsynced();
                            last_sync = Instant::now();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let (answers, stop) = {
                let mut committer = self.shared.committer.lock();
                let (group, stop) = Self::drain(first, &rx);
                let count = group.len();
                let answers = committer.commit(group, WriteOn::WriterThread);
                self.shared.queued.fetch_sub(count, Ordering::SeqCst);
                (answers, stop)
            };
            answers.send();
            if stop {
                break;
            }
            if let Durability::SyncEvery(interval) = self.durability {
                self.shared.unsynced.store(true, Ordering::SeqCst);
                if last_sync.elapsed() >= interval {
                    self.sync_wal_if_unsynced();
                    last_sync = Instant::now();
                }
            }
        }
        // No commit in place after this; the last sync covers every commit.
        self.shared.committer.lock().stopped = true;
        self.sync_wal_if_unsynced();
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

    fn sync_wal_if_unsynced(&self) {
        if self.shared.unsynced.swap(false, Ordering::SeqCst)
            && let Err(err) = self.store.sync_wal()
        {
            tracing::error!(error = %err, "syncing the write-ahead log failed");
        }
    }
}

/// How the writer waits for its next command when each commit is synced:
/// it polls for up to [`SPIN`] first while the previous command came within
/// that time of the writer going idle, then sleeps. So a writer spins only
/// while commands keep arriving that quickly (a one-at-a-time producer is
/// spared the writer thread's wake-up), and goes back to sleeping at once
/// after one poll that found nothing. Never with one CPU, where a spin would
/// hold the core the sender needs.
struct Waiter {
    may_spin: bool,
    spin: bool,
}

impl Waiter {
    fn new() -> Self {
        Self {
            may_spin: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
            spin: false,
        }
    }

    fn next(&mut self, rx: &Receiver<Msg>) -> Result<Msg, RecvError> {
        let idle_since = Instant::now();
        if self.spin {
            while idle_since.elapsed() < SPIN {
                match rx.try_recv() {
                    Ok(msg) => return Ok(msg),
                    Err(TryRecvError::Empty) => std::hint::spin_loop(),
                    Err(TryRecvError::Disconnected) => return Err(RecvError),
                }
            }
        }
        let msg = rx.recv();
        self.spin = self.may_spin && idle_since.elapsed() < SPIN;
        msg
    }
}

impl Committer {
    /// Applies and writes `group`; returns each proposer's answer, to be
    /// sent once the lock is released (so a proposer answered can commit
    /// its next command in place at once).
    fn commit(&mut self, group: Vec<Proposal>, write_on: WriteOn) -> Answers {
        let started = Instant::now();
        let (commands, replies): (Vec<_>, Vec<_>) = group.into_iter().map(|p| (p.command, p.reply)).unzip();
        let sync = self.sync;
        let write = self.machine.apply_all(commands).and_then(|output| {
            let written = match write_on {
                WriteOn::WriterThread => self.store.write(output.batch, sync),
                // Only without a sync (`Writer::sync_each_commit`).
                WriteOn::Caller => self.store.write_in_place(output.batch),
            };
            written.map(|()| (output.results, output.publish))
        });
        self.metrics.observe_group_commit(replies.len(), started.elapsed());
        match write {
            Ok((results, publish)) => {
                self.catalog.publish(publish);
                Answers(replies.into_iter().zip(results).collect())
            }
            Err(err) => {
                tracing::error!(error = %err, "group commit failed; no proposal in it was applied");
                let failure = BrokerError::from(err);
                // The in-memory state saw the failed commands; reload the durable state.
                let store = self.store.clone();
                match crate::storage::in_place::blocking(|| StateMachine::load(store)) {
                    Ok(machine) => self.machine = machine,
                    Err(err) => tracing::error!(error = %err, "reloading state after a failed write failed"),
                }
                Answers(replies.into_iter().map(|reply| (reply, Err(failure.clone()))).collect())
            }
        }
    }
}

/// The results of a commit, for its proposers.
#[must_use = "the proposers wait for their answers"]
struct Answers(Vec<(oneshot::Sender<BrokerResult<Applied>>, BrokerResult<Applied>)>);

impl Answers {
    fn send(self) {
        for (reply, result) in self.0 {
            let _ = reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::core::command::NewRecord;
    use crate::storage::TopicConfig;

    #[test]
    fn the_writer_spins_only_while_commands_arrive_within_the_spin() {
        let (tx, rx) = crossbeam_channel::unbounded();
        // Spinning and a command waiting: taken, and the writer keeps spinning.
        tx.send(Msg::Stop).expect("send");
        let mut waiter = Waiter {
            may_spin: true,
            spin: true,
        };
        assert!(matches!(waiter.next(&rx), Ok(Msg::Stop)));
        assert!(waiter.spin);
        // A command long after the spin ended: the writer slept for it and
        // does not spin for the next one.
        let late = tx.clone();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            late.send(Msg::Stop).expect("send");
        });
        assert!(matches!(waiter.next(&rx), Ok(Msg::Stop)));
        assert!(!waiter.spin);
        sender.join().expect("sender");
        // With one CPU it never spins, however quickly commands come.
        let mut single = Waiter {
            may_spin: false,
            spin: false,
        };
        tx.send(Msg::Stop).expect("send");
        assert!(matches!(single.next(&rx), Ok(Msg::Stop)));
        assert!(!single.spin);
        // Every sender gone: an error, spinning or not.
        drop(tx);
        assert!(waiter.next(&rx).is_err());
        waiter.spin = true;
        assert!(waiter.next(&rx).is_err());
    }

    fn start(dir: &std::path::Path, durability: Durability) -> (Writer, WriterThread) {
        let store = Store::open(dir).expect("open");
        let machine = StateMachine::load(store.clone()).expect("load");
        Writer::start(machine, store, Arc::default(), durability, Arc::new(Metrics::new())).expect("start")
    }

    fn create(name: &str) -> Command {
        Command::CreateTopic {
            name: name.into(),
            partitions: 1,
            config: TopicConfig::default(),
            created_ms: 0,
            replicas: Vec::new(),
        }
    }

    fn append(topic: &str) -> Command {
        Command::Append {
            topic: topic.into(),
            partition: 0,
            timestamp_ms: 1,
            records: vec![NewRecord::new(Bytes::new(), Bytes::from_static(b"v"))],
        }
    }

    fn base_offset(result: BrokerResult<Applied>) -> u64 {
        match result {
            Ok(Applied::Appended { base_offset, .. }) => base_offset,
            other => panic!("not appended: {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_writer_commits_a_lone_command_before_submit_returns() {
        let dir = tempfile::tempdir().unwrap();
        let leader = Durability::SyncEvery(Duration::from_millis(10));
        let (writer, thread) = start(dir.path(), leader);
        writer.propose(create("t")).await.expect("create");
        // The partition's first append loads its state from RocksDB: the
        // writer thread commits it.
        assert_eq!(base_offset(writer.propose(append("t")).await), 0);
        let mut rx = writer.submit(append("t"));
        assert_eq!(base_offset(rx.try_recv().expect("answered in place")), 1);
        // With other requests of the connection in flight, the command
        // goes to the writer thread and is still answered.
        let queued = with_other_requests_in_flight(true, || writer.submit(append("t")));
        assert_eq!(base_offset(await_applied(queued).await), 2);
        writer.stop();
        thread.join();
        let after = writer.submit(append("t"));
        assert!(matches!(await_applied(after).await, Err(BrokerError::ShuttingDown)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_keep_their_order_whichever_way_they_are_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, thread) = start(dir.path(), Durability::SyncEvery(Duration::from_millis(10)));
        writer.propose(create("t")).await.expect("create");
        // One proposer alternating between in place and the writer thread
        // (pipelined bursts, then a lone request), as a connection does.
        let mut replies = Vec::new();
        for i in 0..2_000 {
            let in_flight = i % 7 != 0;
            replies.push(with_other_requests_in_flight(in_flight, || writer.submit(append("t"))));
        }
        for (i, reply) in replies.into_iter().enumerate() {
            assert_eq!(base_offset(await_applied(reply).await), i as u64);
        }
        writer.stop();
        thread.join();
        // Everything was written (and synced at the stop): a reopened
        // store continues after the last offset.
        drop(writer);
        let (writer, thread) = start(dir.path(), Durability::SyncEachCommit);
        assert_eq!(base_offset(writer.propose(append("t")).await), 2_000);
        writer.stop();
        thread.join();
    }
}
