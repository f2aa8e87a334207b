//! The benchmark engine: one task per connection drives a raw socket with
//! many requests in flight. It writes whatever requests fit into the
//! in-flight window with one write, reads responses in large chunks, splits
//! frames without copying and matches them to send times in FIFO order
//! (the protocol answers strictly in order).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use flymq_client::{ClientConfig, Credentials};
use flymq_proto::{AuthRequest, Frame, Opcode, Request, Response};
use flymq_security::tls::TlsClient;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bench::stats::{Stats, progress_line};

/// Read buffer growth step.
const READ_CHUNK: usize = 256 * 1024;

/// What one connection sends and how it accounts the replies.
pub trait Workload: Send {
    /// Appends the next request frame to `out`; returns false when there is
    /// nothing more to send.
    fn next_request(&mut self, out: &mut BytesMut) -> anyhow::Result<bool>;

    /// Accounts a successful (non-error) response to the oldest request.
    /// Returns the number of messages and value bytes it carried.
    fn on_response(&mut self, frame: Frame) -> anyhow::Result<(u64, u64)>;
}

/// Counters shared by all connections, read by the progress printer.
#[derive(Debug, Default)]
pub struct Progress {
    /// Messages acknowledged / received so far.
    pub messages: AtomicU64,
    /// Error responses so far.
    pub errors: AtomicU64,
    /// Set when the run is over.
    pub done: AtomicBool,
}

/// Drives one connection until the workload has nothing more to send and
/// every response has arrived.
pub async fn run_connection<W: Workload>(
    target: &Target,
    workload: W,
    in_flight: usize,
    progress: Arc<Progress>,
) -> anyhow::Result<Stats> {
    let addr = target.addr.as_str();
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("bench could not connect to {addr}"))?;
    stream.set_nodelay(true)?;
    match &target.tls {
        None => drive(stream, target, workload, in_flight, progress).await,
        Some(tls) => {
            let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
            let stream = tls.connect(host, stream).await?;
            drive(stream, target, workload, in_flight, progress).await
        }
    }
}

async fn drive<S, W>(
    mut stream: S,
    target: &Target,
    mut workload: W,
    in_flight: usize,
    progress: Arc<Progress>,
) -> anyhow::Result<Stats>
where
    S: AsyncRead + AsyncWrite + Unpin,
    W: Workload,
{
    let addr = target.addr.as_str();
    if let Some(credentials) = &target.credentials {
        authenticate(&mut stream, addr, credentials).await?;
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let in_flight = in_flight.max(1);
    let mut stats = Stats::new();
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(in_flight);
    let mut exhausted = false;

    loop {
        while !exhausted && sent.len() < in_flight {
            if workload.next_request(&mut wbuf)? {
                sent.push_back(Instant::now());
            } else {
                exhausted = true;
            }
        }
        if sent.is_empty() {
            break;
        }
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        tokio::select! {
            read = reader.read_buf(&mut rbuf) => {
                if read.with_context(|| format!("reading from {addr}"))? == 0 {
                    bail!("broker {addr} closed the connection with {} request(s) unanswered", sent.len());
                }
                while let Some(frame) = Frame::decode(&mut rbuf).with_context(|| format!("bad frame from {addr}"))? {
                    let Some(started) = sent.pop_front() else {
                        bail!("broker {addr} sent a response to no request");
                    };
                    stats.record_latency(started.elapsed());
                    if frame.opcode == Opcode::Error.code() {
                        let message = match Response::decode_frame(&frame) {
                            Ok(Response::Error(e)) => e.message,
                            _ => "unreadable error frame".to_owned(),
                        };
                        stats.record_error(&message);
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let (messages, bytes) = workload.on_response(frame)?;
                    stats.messages += messages;
                    stats.bytes += bytes;
                    progress.messages.fetch_add(messages, Ordering::Relaxed);
                }
            }
            written = writer.write(&wbuf), if !wbuf.is_empty() => {
                let n = written.with_context(|| format!("writing to {addr}"))?;
                wbuf.advance(n);
                // TLS keeps records until flushed; a no-op on TCP.
                writer.flush().await.with_context(|| format!("writing to {addr}"))?;
            }
        }
    }
    Ok(stats)
}

/// Where a bench connection goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// Broker address.
    pub addr: String,
    /// AUTH sent first when set.
    pub credentials: Option<Credentials>,
    /// Implicit TLS when set.
    pub tls: Option<TlsClient>,
}

impl Target {
    /// The first bootstrap address and the credentials of `config`.
    pub fn from_config(config: &ClientConfig) -> anyhow::Result<Self> {
        Ok(Self {
            addr: config.bootstrap.first().cloned().context("no bootstrap address")?,
            credentials: config.credentials.clone(),
            tls: config.tls.as_ref().map(TlsClient::new).transpose()?,
        })
    }
}

/// One AUTH exchange before the pipelined traffic starts.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    addr: &str,
    credentials: &Credentials,
) -> anyhow::Result<()> {
    let request = Request::Auth(AuthRequest {
        username: credentials.username.clone(),
        password: credentials.password.clone(),
    });
    stream.write_all(&request.to_frame_bytes()?).await?;
    stream.flush().await?;
    let mut buf = BytesMut::with_capacity(1024);
    let frame = loop {
        if let Some(frame) = Frame::decode(&mut buf)? {
            break frame;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("broker {addr} closed the connection during AUTH");
        }
    };
    match Response::decode_frame(&frame)? {
        Response::Auth(resp) if resp.success => Ok(()),
        Response::Auth(resp) => bail!("authentication as '{}' failed: {}", credentials.username, resp.error),
        Response::Error(err) => bail!("AUTH failed: {}", err.message),
        other => bail!("unexpected response opcode 0x{:02x} to AUTH", other.opcode()),
    }
}

/// Prints a progress line to stderr once per second until `progress.done`.
pub async fn print_progress(progress: Arc<Progress>, started: Instant) {
    let mut last_messages = 0;
    let mut last_at = started;
    let mut ticker = tokio::time::interval_at((started + Duration::from_secs(1)).into(), Duration::from_secs(1));
    loop {
        ticker.tick().await;
        if progress.done.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let messages = progress.messages.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        eprintln!(
            "{}",
            progress_line(now - started, messages, messages - last_messages, now - last_at, errors)
        );
        last_messages = messages;
        last_at = now;
    }
}

/// Hands out request slots to all connections: a fixed number, or as many
/// as fit before a deadline.
#[derive(Debug)]
pub enum Budget {
    /// At most this many requests in total.
    Requests {
        /// Requests handed out so far.
        claimed: AtomicU64,
        /// Total requests.
        total: u64,
    },
    /// Requests until this instant.
    Until(Instant),
}

impl Budget {
    /// A budget of `total` requests.
    pub fn requests(total: u64) -> Self {
        Budget::Requests {
            claimed: AtomicU64::new(0),
            total,
        }
    }

    /// Takes one request slot; false when the budget is spent.
    pub fn claim(&self) -> bool {
        match self {
            Budget::Requests { claimed, total } => claimed.fetch_add(1, Ordering::Relaxed) < *total,
            Budget::Until(deadline) => Instant::now() < *deadline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use flymq_proto::{ProduceRequest, RecordMetadata};
    use tokio::net::TcpListener;

    /// Sends `n` copies of one pre-encoded frame.
    struct Fixed {
        frame: Bytes,
        left: u32,
    }

    impl Workload for Fixed {
        fn next_request(&mut self, out: &mut BytesMut) -> anyhow::Result<bool> {
            if self.left == 0 {
                return Ok(false);
            }
            self.left -= 1;
            out.extend_from_slice(&self.frame);
            Ok(true)
        }

        fn on_response(&mut self, frame: Frame) -> anyhow::Result<(u64, u64)> {
            assert_eq!(frame.opcode, Opcode::Produce.code());
            Ok((1, 2))
        }
    }

    /// Answers every PRODUCE with RecordMetadata, and every fifth with an error.
    async fn fake_broker() -> std::net::SocketAddr {
        fake_broker_with(None).await
    }

    /// The same, over TLS when `tls` is given.
    async fn fake_broker_with(tls: Option<tokio_rustls::TlsAcceptor>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            match tls {
                None => answer_produces(socket).await,
                Some(acceptor) => answer_produces(acceptor.accept(socket).await.expect("TLS handshake")).await,
            }
        });
        addr
    }

    async fn answer_produces<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S) {
        let mut buf = BytesMut::new();
        let mut n = 0u64;
        loop {
            while let Some(frame) = Frame::decode(&mut buf).expect("frame") {
                let Ok(Request::Produce(p)) = Request::decode_frame(&frame) else {
                    panic!("expected PRODUCE");
                };
                let reply = if n % 5 == 4 {
                    Response::error("broker says no")
                } else {
                    Response::Produce(RecordMetadata::new(p.topic, 0, n, 0, &p.key, &p.value))
                };
                n += 1;
                let mut out = BytesMut::new();
                reply.encode_frame(&mut out).expect("encode");
                socket.write_all(&out).await.expect("write");
                socket.flush().await.expect("flush");
            }
            if socket.read_buf(&mut buf).await.expect("read") == 0 {
                return;
            }
        }
    }

    #[tokio::test]
    async fn pipelined_requests_are_all_answered_and_counted() {
        let addr = fake_broker().await;
        let frame = Request::Produce(ProduceRequest {
            topic: "t".into(),
            value: Bytes::from_static(b"hi"),
            partition: -1,
            ..Default::default()
        })
        .to_frame_bytes()
        .expect("encode")
        .freeze();
        let progress = Arc::new(Progress::default());
        let target = Target {
            addr: addr.to_string(),
            credentials: None,
            tls: None,
        };
        let stats = run_connection(&target, Fixed { frame, left: 100 }, 16, progress.clone())
            .await
            .expect("run");
        assert_eq!(stats.messages, 80);
        assert_eq!(stats.bytes, 160);
        assert_eq!(stats.errors, 20);
        assert_eq!(stats.first_error.as_deref(), Some("broker says no"));
        assert_eq!(stats.latency.len(), 100);
        assert_eq!(progress.messages.load(Ordering::Relaxed), 80);
    }

    /// The bench speaks TLS when the configuration asks for it.
    #[tokio::test]
    async fn pipelined_requests_over_tls() {
        use flymq_security::tls::{ClientTlsOptions, ServerTls, ServerTlsOptions};
        let dir = tempfile::tempdir().expect("tmp");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write");
        std::fs::write(&key_path, key.serialize_pem()).expect("write");
        let server = ServerTls::new(ServerTlsOptions::new(&cert_path, &key_path).with_reload_interval(None))
            .expect("server TLS");
        let addr = fake_broker_with(Some(server.acceptor())).await;
        let config = ClientConfig {
            tls: Some(ClientTlsOptions {
                ca_file: Some(cert_path.clone()),
                ..ClientTlsOptions::default()
            }),
            ..ClientConfig::new([format!("localhost:{}", addr.port())])
        };
        let target = Target::from_config(&config).expect("target");
        let frame = Request::Produce(ProduceRequest {
            topic: "t".into(),
            value: Bytes::from_static(b"hi"),
            partition: -1,
            ..Default::default()
        })
        .to_frame_bytes()
        .expect("encode")
        .freeze();
        let progress = Arc::new(Progress::default());
        let stats = run_connection(&target, Fixed { frame, left: 500 }, 64, progress)
            .await
            .expect("run over TLS");
        assert_eq!((stats.messages, stats.errors), (400, 100));
    }

    #[test]
    fn request_budget_is_exact() {
        let b = Budget::requests(3);
        let claimed = (0..10).filter(|_| b.claim()).count();
        assert_eq!(claimed, 3);
        let b = Budget::Until(Instant::now());
        assert!(!b.claim());
    }
}
