//! Graceful shutdown signal shared by every task (as in mini-redis).

use tokio::sync::watch;

/// Sends the shutdown signal.
#[derive(Clone)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// Receives the shutdown signal; cheap to clone into every task.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes once shutdown has been triggered (immediately if it was).
    pub async fn recv(&mut self) {
        // An error means the trigger was dropped: treat it as shutdown too.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}
