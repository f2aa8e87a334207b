//! Accepts client connections, bounded by `max_connections`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::connection::{Connection, ConnectionLimits};
use crate::core::Broker;
use crate::shutdown::Shutdown;

/// How long shutdown waits for open connections to answer what they read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the client protocol on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    limits: ConnectionLimits,
    max_connections: usize,
    mut shutdown: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let next_id = AtomicU64::new(1);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.recv() => break,
        };
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "connection refused: too many open connections (max_connections)");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Connection::new(id, peer, broker.clone(), limits.clone(), shutdown.clone());
        connections.spawn(async move {
            connection.run(stream).await;
            drop(permit);
        });
    }
    tracing::info!(
        open = connections.len(),
        "client listener stopped; draining connections"
    );
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections did not finish within {DRAIN_TIMEOUT:?}; closing them");
        connections.abort_all();
    }
}
