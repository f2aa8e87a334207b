//! Accepts client connections, bounded by `max_connections` (shared by
//! every client listener). On a TLS listener each connection's handshake
//! runs in that connection's task with a time limit, so a plaintext or slow
//! client delays nobody else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flymq_security::tls::CertIdentity;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::connection::{Connection, ConnectionLimits};
use crate::core::Broker;
use crate::shutdown::Shutdown;

/// How long shutdown waits for open connections to answer what they read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// One client listener: implicit TLS when `tls` is set (WIRE.md §7).
pub struct ClientListener {
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

/// Connection slots shared by the client listeners (`max_connections`).
pub fn connection_permits(max_connections: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(max_connections))
}

/// Ids of client connections, unique across listeners.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Serves the client protocol on `listener` until shutdown.
pub async fn serve(
    listener: ClientListener,
    broker: Arc<Broker>,
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    mut shutdown: Shutdown,
) {
    let ClientListener { listener, tls } = listener;
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
            tracing::warn!(%peer, "connection refused: too many open connections (max_connections)");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let connection = Connection::new(id, peer, broker.clone(), limits.clone(), shutdown.clone());
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => connection.run(stream).await,
                Some(acceptor) => run_tls(connection, &acceptor, stream).await,
            }
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

/// Handshakes, then runs the connection with the client certificate's user
/// (if the client sent a verified one) on its session.
async fn run_tls(connection: Connection, acceptor: &TlsAcceptor, stream: TcpStream) {
    match flymq_security::tls::server::accept(acceptor, stream, crate::tls::HANDSHAKE_TIMEOUT).await {
        Ok(tls) => {
            let identity = CertIdentity::of_peer(tls.get_ref().1.peer_certificates());
            connection.with_cert_identity(identity).run_tls(tls).await;
        }
        // A plaintext client, an untrusted or expired certificate, a
        // timeout: only this connection is closed.
        Err(err) => tracing::info!(error = %err, "TLS handshake on the client port failed; connection closed"),
    }
}
