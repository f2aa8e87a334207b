//! Per-connection order: the requests of one connection take effect in the
//! order they were sent, even when a client pipelines them.
//!
//! Replies are written strictly in request order by the connection's writer
//! task, which waits for each reply before the next. Two kinds of requests:
//!
//! - **Writes** (PRODUCE, PRODUCE_BATCH, COMMIT) are queued to the replicator
//!   at once, while the connection reads them, when everything sent before
//!   has taken effect: pipelined produces keep their order and their speed.
//!   A write sent while an earlier request is still taking effect (a topic
//!   being created, a read, an AUTH) is queued by a task as soon as that
//!   request is done, after the writes before it.
//! - **Everything else** runs lazily, when the writer reaches its reply,
//!   that is after every earlier request has been answered. A read therefore
//!   sees the connection's earlier writes, and a CREATE_TOPIC completes
//!   before a later produce is queued.

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::oneshot;

use super::dispatch::{Answer, Reply};
use crate::core::BrokerError;

type Gate = Shared<oneshot::Receiver<()>>;

#[derive(Default)]
pub struct Sequencer {
    /// Resolves once every request so far has taken effect (for a write:
    /// has been queued). `None`: nothing outstanding.
    gate: Option<Gate>,
}

impl Sequencer {
    /// Whether every earlier request has taken effect.
    fn is_open(&self) -> bool {
        self.gate.as_ref().is_none_or(|g| g.peek().is_some())
    }

    /// A request that runs after every earlier one has taken effect.
    pub fn ordered(&mut self, work: impl Future<Output = Answer> + Send + 'static) -> Reply {
        let (done, gate) = oneshot::channel::<()>();
        self.gate = Some(gate.shared());
        Reply::Pending(
            async move {
                let answer = work.await;
                drop(done);
                answer
            }
            .boxed(),
        )
    }

    /// A write. `prepare` (e.g. creating the topic) runs first, after every
    /// earlier request took effect; `submit` queues the write and returns
    /// the future of its answer.
    pub fn write<S>(&mut self, prepare: Option<BoxFuture<'static, Result<(), BrokerError>>>, submit: S) -> Reply
    where
        S: FnOnce() -> BoxFuture<'static, Answer> + Send + 'static,
    {
        if prepare.is_none() && self.is_open() {
            self.gate = None;
            return Reply::Pending(submit());
        }
        let previous = self.gate.take();
        let (queued, gate) = oneshot::channel::<()>();
        self.gate = Some(gate.shared());
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            if let Some(prepare) = prepare
                && let Err(err) = prepare.await
            {
                return Answer::error(err);
            }
            let answer = submit();
            drop(queued);
            answer.await
        });
        Reply::Pending(
            async move {
                task.await
                    .unwrap_or_else(|e| Answer::error(format!("internal error: request task failed: {e}")))
            }
            .boxed(),
        )
    }
}
