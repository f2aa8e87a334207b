//! One client connection: a reader that decodes frames and dispatches them
//! in arrival order, and a writer that sends the replies in that same order.
//! Up to `max_in_flight` requests are read ahead (pipelining); the bounded
//! queue between the two halves is the backpressure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use flymq_security::tls::CertIdentity;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::dispatch::{Answer, Outgoing, Reply, dispatch};
use super::sequencer::Sequencer;
use crate::core::{Broker, writer};
use crate::shutdown::Shutdown;
use flymq_proto::{Frame, Opcode, Response};

/// Flush the write buffer once it holds this much, even if more replies are ready.
const WRITE_FLUSH_BYTES: usize = 256 << 10;
const READ_BUFFER: usize = 64 << 10;

#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_in_flight: usize,
    /// `None`: never close idle connections.
    pub idle_timeout: Option<Duration>,
}

/// What handlers may know about the connection a request came on; shared
/// with the tasks that run its requests.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub peer: SocketAddr,
    /// User bound by AUTH ("" when none).
    pub username: parking_lot::Mutex<String>,
    /// Slows down repeated failed AUTH attempts on this connection.
    pub auth_backoff: parking_lot::Mutex<flymq_security::authorizer::AuthBackoff>,
    /// The verified client certificate's names (TLS with
    /// `tls_client_auth: optional|required`), `None` without one.
    pub cert_identity: Option<CertIdentity>,
    /// The user the client certificate stands for (its CN, else its first
    /// DNS name; see [`CertIdentity::username`]).
    pub cert_user: Option<String>,
}

/// Per-connection state of the reader: the session and the request order.
pub struct ConnectionContext {
    pub session: Arc<Session>,
    pub sequencer: Sequencer,
}

pub struct Connection {
    context: ConnectionContext,
    broker: Arc<Broker>,
    limits: ConnectionLimits,
    shutdown: Shutdown,
}

impl Connection {
    pub fn new(id: u64, peer: SocketAddr, broker: Arc<Broker>, limits: ConnectionLimits, shutdown: Shutdown) -> Self {
        Self {
            context: ConnectionContext {
                session: Arc::new(Session {
                    id,
                    peer,
                    username: parking_lot::Mutex::new(String::new()),
                    auth_backoff: Default::default(),
                    cert_identity: None,
                    cert_user: None,
                }),
                sequencer: Sequencer::default(),
            },
            broker,
            limits,
            shutdown,
        }
    }

    /// Records the verified client certificate of a TLS connection. Its
    /// user is bound to the connection from the start, as if it had
    /// authenticated (a later AUTH may rebind it, WIRE.md §6.1).
    pub fn with_cert_identity(mut self, identity: Option<CertIdentity>) -> Self {
        let (id, peer) = (self.context.session.id, self.context.session.peer);
        let cert_user = identity.as_ref().and_then(|i| i.username().map(str::to_owned));
        self.context.session = Arc::new(Session {
            id,
            peer,
            username: parking_lot::Mutex::new(cert_user.clone().unwrap_or_default()),
            auth_backoff: Default::default(),
            cert_user,
            cert_identity: identity,
        });
        self
    }

    /// Serves a plaintext connection.
    pub async fn run(self, stream: TcpStream) {
        let (read, write) = stream.into_split();
        self.run_halves(read, write).await;
    }

    /// Serves a connection after its TLS handshake.
    pub async fn run_tls<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        self.run_halves(read, write).await;
    }

    async fn run_halves<R, W>(mut self, read: R, write: W)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let metrics_broker = self.broker.clone();
        metrics_broker.metrics().active_connections.inc();
        tracing::debug!(peer = %self.context.session.peer, id = self.context.session.id, "connection opened");
        let (tx, rx) = mpsc::channel(self.limits.max_in_flight.max(1));
        let unanswered = Arc::new(AtomicUsize::new(0));
        let writer = tokio::spawn(write_replies(write, rx, self.broker.clone(), unanswered.clone()));
        if let Err(reason) = self.read_requests(read, tx, &unanswered).await {
            tracing::debug!(peer = %self.context.session.peer, %reason, "closing connection");
        }
        // The reader dropped its sender: the writer finishes what is queued.
        let _ = writer.await;
        self.broker.members().leave(self.context.session.id);
        self.broker.end_transactions(self.context.session.id);
        metrics_broker.metrics().active_connections.dec();
        tracing::debug!(peer = %self.context.session.peer, id = self.context.session.id, "connection closed");
    }

    /// Reads and dispatches requests; `unanswered` counts those dispatched
    /// whose answer is not ready yet.
    async fn read_requests<R: AsyncRead + Unpin>(
        &mut self,
        mut read: R,
        tx: mpsc::Sender<Outgoing>,
        unanswered: &AtomicUsize,
    ) -> Result<(), String> {
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        loop {
            loop {
                match Frame::decode(&mut buf) {
                    Ok(Some(frame)) => {
                        // Earlier requests unanswered, or bytes of another one
                        // read: the client pipelines.
                        let in_flight = unanswered.load(Ordering::Relaxed) > 0 || !buf.is_empty();
                        let outgoing = writer::with_other_requests_in_flight(in_flight, || {
                            dispatch(&mut self.context, &self.broker, frame)
                        });
                        unanswered.fetch_add(1, Ordering::Relaxed);
                        tx.send(outgoing).await.map_err(|_| "writer stopped".to_string())?;
                    }
                    Ok(None) => break,
                    // Framing errors close the connection without an error frame (WIRE.md §2, §15 row 25).
                    Err(err) => return Err(format!("framing error: {err}")),
                }
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(READ_BUFFER);
            }
            let read_more = read.read_buf(&mut buf);
            let n = tokio::select! {
                n = with_timeout(self.limits.idle_timeout, read_more) => n,
                _ = self.shutdown.recv() => return Err("broker shutting down".into()),
            };
            match n {
                Some(Ok(0)) if buf.is_empty() => return Ok(()),
                Some(Ok(0)) => return Err("peer closed the connection mid-frame".into()),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(format!("read failed: {err}")),
                None => return Err("idle timeout".into()),
            }
        }
    }
}

async fn with_timeout<F: Future>(timeout: Option<Duration>, fut: F) -> Option<F::Output> {
    match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// Writes replies strictly in request order, batching ready replies into few syscalls.
async fn write_replies<W: AsyncWrite + Unpin>(
    mut write: W,
    mut rx: mpsc::Receiver<Outgoing>,
    broker: Arc<Broker>,
    unanswered: Arc<AtomicUsize>,
) {
    let mut out = BytesMut::with_capacity(WRITE_FLUSH_BYTES);
    loop {
        let next = match rx.try_recv() {
            Ok(next) => next,
            Err(mpsc::error::TryRecvError::Empty) => {
                if flush(&mut write, &mut out).await.is_err() {
                    return;
                }
                match rx.recv().await {
                    Some(next) => next,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let Outgoing { opcode, reply } = next;
        let answer = match reply {
            Reply::Ready(answer) => answer,
            Reply::Pending(mut pending) => match (&mut pending).now_or_never() {
                Some(answer) => answer,
                None => {
                    // Send what is ready before waiting (e.g. for the next group commit).
                    if flush(&mut write, &mut out).await.is_err() {
                        return;
                    }
                    pending.await
                }
            },
        };
        unanswered.fetch_sub(1, Ordering::Relaxed);
        match answer {
            Answer::Encoded(bytes) => out.extend_from_slice(&bytes),
            Answer::Response(response) => encode(&broker, opcode, &response, &mut out),
        }
        if out.len() >= WRITE_FLUSH_BYTES && flush(&mut write, &mut out).await.is_err() {
            return;
        }
    }
    let _ = flush(&mut write, &mut out).await;
    let _ = write.shutdown().await;
}

fn encode(broker: &Broker, opcode: u8, response: &Response, out: &mut BytesMut) {
    if response.is_error() {
        let name = Opcode::from_u8(opcode).map_or_else(|| format!("0x{opcode:02x}"), |o| o.name().to_owned());
        broker.metrics().record_error(&name);
    }
    let start = out.len();
    if let Err(err) = response.encode_frame(out) {
        out.truncate(start);
        let fallback = Response::error(format!("cannot encode the response: {err}"));
        // An error frame with a short ASCII message always encodes.
        let _ = fallback.encode_frame(out);
    }
}

async fn flush<W: AsyncWrite + Unpin>(write: &mut W, out: &mut BytesMut) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = write.write_all(out).await;
    out.clear();
    result?;
    // TLS buffers inside the stream: flush sends it (a no-op for TCP).
    write.flush().await
}
