//! One pipelined connection (TCP, or TLS over TCP) to a broker.
//!
//! The protocol has no request ids: responses come back strictly in request
//! order. A connection therefore runs one task that drives a writer half and
//! a reader half. The writer takes encoded frames from a bounded queue,
//! records each caller's reply slot in a FIFO (bounded by `max_in_flight`)
//! *before* the bytes go out, and coalesces whatever is queued into one
//! write. The reader decodes response frames and hands each to the oldest
//! waiting slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flymq_proto::Frame;
use flymq_security::tls::TlsClient;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::error::{Error, Result};

/// Largest number of bytes the writer gathers before it writes.
const WRITE_COALESCE_BYTES: usize = 256 * 1024;
/// Initial read buffer capacity.
const READ_BUFFER_BYTES: usize = 64 * 1024;

type ReplySlot = oneshot::Sender<Result<Frame>>;

struct Outgoing {
    frame: Bytes,
    reply: ReplySlot,
}

/// A live connection. Cheap to share behind an `Arc`; dropping the last
/// handle closes the socket.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    requests: mpsc::Sender<Outgoing>,
    /// Set by [`Connection::close`] and when the I/O task ends.
    closed: Arc<AtomicBool>,
    task: AbortHandle,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing").field("len", &self.frame.len()).finish()
    }
}

impl Connection {
    /// Connects to `addr` within `connect_timeout` (TCP connect and, with
    /// `tls`, the TLS handshake), allowing up to `max_in_flight`
    /// outstanding requests.
    pub async fn connect(
        addr: &str,
        tls: Option<&TlsClient>,
        connect_timeout: Duration,
        max_in_flight: usize,
    ) -> Result<Self> {
        let timed_out = || Error::Timeout {
            op: "connect",
            addr: addr.to_owned(),
            after: connect_timeout,
        };
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(Error::io(addr, source)),
            Err(_) => return Err(timed_out()),
        };
        // Requests are small and latency matters more than packet count;
        // the writer already coalesces what is queued.
        stream.set_nodelay(true).map_err(|source| Error::io(addr, source))?;
        let Some(tls) = tls else {
            return Ok(Self::from_stream(stream, addr.to_owned(), max_in_flight));
        };
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
        match tokio::time::timeout_at(deadline, tls.connect(host, stream)).await {
            Ok(Ok(stream)) => Ok(Self::from_io(stream, addr.to_owned(), max_in_flight)),
            Ok(Err(err)) => Err(Error::Tls {
                addr: addr.to_owned(),
                reason: match err {
                    flymq_security::tls::TlsError::Handshake { reason, .. } => reason,
                    other => other.to_string(),
                },
            }),
            Err(_) => Err(timed_out()),
        }
    }

    /// Wraps an established TCP stream.
    pub fn from_stream(stream: TcpStream, addr: String, max_in_flight: usize) -> Self {
        let (read_half, write_half) = stream.into_split();
        Self::from_halves(read_half, write_half, addr, max_in_flight)
    }

    /// Wraps any established byte stream (a TLS stream, for instance).
    pub fn from_io<S>(stream: S, addr: String, max_in_flight: usize) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(stream);
        Self::from_halves(read_half, write_half, addr, max_in_flight)
    }

    fn from_halves<R, W>(read_half: R, write_half: W, addr: String, max_in_flight: usize) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let max_in_flight = max_in_flight.max(1);
        let (requests, request_rx) = mpsc::channel(max_in_flight);
        let (slot_tx, slot_rx) = mpsc::channel(max_in_flight);
        let task_addr = addr.clone();
        let closed = Arc::new(AtomicBool::new(false));
        let task_closed = closed.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                result = write_loop(write_half, request_rx, slot_tx) => {
                    if let Err(err) = result {
                        tracing::debug!(addr = %task_addr, error = %err, "connection writer stopped");
                    }
                }
                result = read_loop(read_half, slot_rx, &task_addr) => {
                    if let Err(err) = result {
                        tracing::debug!(addr = %task_addr, error = %err, "connection reader stopped");
                    }
                }
            }
            task_closed.store(true, Ordering::Release);
        })
        .abort_handle();
        Self {
            addr,
            requests,
            closed,
            task,
        }
    }

    /// The broker address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// True once the socket is closed (by either side, an error or a timeout).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.requests.is_closed()
    }

    /// Closes the connection; requests waiting on it fail with
    /// [`Error::ConnectionClosed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.task.abort();
    }

    /// Queues an encoded request frame and returns the slot its response
    /// will arrive in. Waits while the queue is full.
    pub async fn send(&self, op: &'static str, frame: Bytes) -> Result<oneshot::Receiver<Result<Frame>>> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Outgoing { frame, reply })
            .await
            .map_err(|_| self.closed_error(op))?;
        Ok(rx)
    }

    /// Sends an encoded request frame and waits (at most `timeout`) for its
    /// response frame. On timeout the connection is closed, since a broker
    /// that does not answer is treated as gone.
    pub async fn request(&self, op: &'static str, frame: Bytes, timeout: Duration) -> Result<Frame> {
        let exchange = async {
            let rx = self.send(op, frame).await?;
            rx.await.map_err(|_| self.closed_error(op))?
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                self.close();
                Err(Error::Timeout {
                    op,
                    addr: self.addr.clone(),
                    after: timeout,
                })
            }
        }
    }

    fn closed_error(&self, op: &'static str) -> Error {
        Error::ConnectionClosed {
            addr: self.addr.clone(),
            op,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut socket: W,
    mut requests: mpsc::Receiver<Outgoing>,
    slots: mpsc::Sender<ReplySlot>,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(WRITE_COALESCE_BYTES);
    while let Some(first) = requests.recv().await {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            // Register the reply slot before the request is written, so the
            // reader always finds it. When max_in_flight responses are
            // outstanding, write what is buffered first: the broker cannot
            // answer requests it has not received.
            let permit = match slots.try_reserve() {
                Ok(permit) => permit,
                Err(mpsc::error::TrySendError::Full(())) => {
                    socket.write_all_buf(&mut buf).await?;
                    socket.flush().await?;
                    match slots.reserve().await {
                        Ok(permit) => permit,
                        Err(_) => return Ok(()),
                    }
                }
                Err(mpsc::error::TrySendError::Closed(())) => return Ok(()),
            };
            permit.send(out.reply);
            buf.extend_from_slice(&out.frame);
            if buf.len() >= WRITE_COALESCE_BYTES {
                break;
            }
            next = requests.try_recv().ok();
        }
        socket.write_all_buf(&mut buf).await?;
        // TLS buffers records until flushed; a no-op on TCP.
        socket.flush().await?;
    }
    Ok(())
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut socket: R,
    mut slots: mpsc::Receiver<ReplySlot>,
    addr: &str,
) -> Result<()> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    loop {
        while let Some(frame) = Frame::decode(&mut buf).map_err(|source| Error::Frame {
            addr: addr.to_owned(),
            source,
        })? {
            // The writer registers a slot before writing, so a slot exists for
            // every response; a frame without one is a broker bug.
            let Ok(slot) = slots.try_recv() else {
                return Err(Error::UnexpectedResponse {
                    op: "(no request outstanding)",
                    got: frame.opcode,
                });
            };
            // The caller may have given up (timeout, dropped future); the
            // frame is still consumed so that later replies stay aligned.
            let _ = slot.send(Ok(frame));
        }
        if buf.capacity() - buf.len() < READ_BUFFER_BYTES / 4 {
            buf.reserve(READ_BUFFER_BYTES);
        }
        let read = socket
            .read_buf(&mut buf)
            .await
            .map_err(|source| Error::io(addr, source))?;
        if read == 0 {
            return Ok(());
        }
    }
}
