//! FlyMQ over its binary protocol. Topics are set up with the SDK
//! (`flymq-client`); each lane then drives one raw pipelined connection
//! to its partition's leader (from CLUSTER_METADATA) with pre-encoded
//! PRODUCE or PRODUCE_BATCH frames (`flymq-proto`), matching responses to
//! send times in order: the protocol answers strictly in request order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use flymq_client::{Client, ClientConfig};
use flymq_proto::{BatchRecord, FetchRequest, Frame, Opcode, ProduceBatchRequest, ProduceRequest, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Backend, ConsumePlan, LanePlan, Placement};
use crate::stats::Recorder;

/// How long a new topic may take to have a writable leader per partition.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Read buffer growth step.
const READ_CHUNK: usize = 256 * 1024;

/// A FlyMQ broker or cluster.
pub struct Flymq {
    bootstrap: Vec<String>,
    client: Client,
}

impl Flymq {
    /// Connects to the first reachable of `bootstrap` (retrying while the
    /// brokers start).
    pub async fn connect(bootstrap: Vec<String>) -> anyhow::Result<Self> {
        let mut config = ClientConfig::new(bootstrap.clone());
        config.connect_rounds = 50;
        config.request_timeout = Duration::from_secs(30);
        let client = Client::connect(config)
            .await
            .with_context(|| format!("connecting to FlyMQ at {}", bootstrap.join(",")))?;
        Ok(Self { bootstrap, client })
    }

    /// Where each partition's produces go: its leader's client address, or
    /// the first bootstrap address when all partitions live on one broker.
    async fn placement(&self, topic: &str, partitions: u32) -> anyhow::Result<Option<Placement>> {
        let meta = match self.client.topic_metadata(topic).await {
            Ok(meta) => meta,
            Err(_) => return Ok(None),
        };
        if meta.partitions.len() != partitions as usize {
            return Ok(None);
        }
        let mut parts = meta.partitions.clone();
        parts.sort_by_key(|p| p.partition);
        if parts.iter().any(|p| p.leader_id.is_empty()) {
            return Ok(None);
        }
        let single_node = parts
            .iter()
            .all(|p| p.replicas.len() <= 1 && p.leader_id == parts[0].leader_id);
        let routes = parts
            .iter()
            .map(|p| {
                if single_node || p.leader_addr.is_empty() {
                    self.bootstrap[0].clone()
                } else {
                    p.leader_addr.clone()
                }
            })
            .collect();
        let leaders = parts.iter().map(|p| format!("node {}", p.leader_id)).collect();
        Ok(Some(Placement { routes, leaders }))
    }
}

impl Backend for Flymq {
    fn system(&self) -> &'static str {
        "flymq"
    }

    async fn prepare(&self, topic: &str, partitions: u32) -> anyhow::Result<Placement> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut last_error = String::new();
        loop {
            match self.client.create_topic(topic, partitions).await {
                Ok(()) => break,
                Err(err) if Instant::now() < deadline => {
                    last_error = err.to_string();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err).with_context(|| format!("creating topic '{topic}'")),
            }
        }
        // A new topic may not have leaders yet: wait for every partition to
        // name one and accept a produce there. Leaders start spread (each
        // group is initialised by its preferred, rotated, replica); give an
        // election that put two on one broker a few seconds to settle.
        let spread_by = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(placement) = self.placement(topic, partitions).await? {
                let distinct = placement.routes.iter().collect::<std::collections::HashSet<_>>().len();
                let brokers = self.bootstrap.len().max(1);
                if distinct < placement.routes.len().min(brokers) {
                    if Instant::now() < spread_by {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    eprintln!(
                        "warning: partition leaders of '{topic}' are not spread: {:?}",
                        placement.leaders
                    );
                }
                let mut writable = true;
                for (p, route) in placement.routes.iter().enumerate() {
                    let probe = Request::Produce(ProduceRequest {
                        topic: topic.to_owned(),
                        key: Bytes::new(),
                        value: Bytes::from_static(b"bench warm-up probe"),
                        partition: p as i32,
                    });
                    match request_once(route, &probe).await {
                        Ok(Response::Produce(_)) => {}
                        Ok(Response::Error(e)) => {
                            last_error = format!("partition {p} at {route}: {}", e.message);
                            writable = false;
                        }
                        Ok(other) => bail!("unexpected response 0x{:02x} to PRODUCE", other.opcode()),
                        Err(err) => {
                            last_error = format!("partition {p} at {route}: {err:#}");
                            writable = false;
                        }
                    }
                }
                if writable {
                    return Ok(placement);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "topic '{topic}' has no writable leader for every partition after {SETUP_TIMEOUT:?}: {last_error}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn run_lane(&self, plan: LanePlan) -> anyhow::Result<Recorder> {
        let frame = encode_produce(&plan)?;
        let expected = if plan.batch > 1 {
            Opcode::ProduceBatch
        } else {
            Opcode::Produce
        };
        drive(&plan, frame, expected).await
    }

    async fn consume_lane(&self, plan: ConsumePlan) -> anyhow::Result<Recorder> {
        fetch_all(&plan).await
    }

    async fn cleanup(&self, topic: &str, _partitions: u32) -> anyhow::Result<()> {
        self.client
            .delete_topic(topic)
            .await
            .with_context(|| format!("deleting topic '{topic}'"))
    }
}

/// The one request frame a lane sends over and over: a PRODUCE of one
/// message, or a PRODUCE_BATCH of `plan.batch`, to the lane's partition.
pub fn encode_produce(plan: &LanePlan) -> anyhow::Result<Bytes> {
    let request = if plan.batch > 1 {
        Request::ProduceBatch(ProduceBatchRequest {
            topic: plan.topic.clone(),
            partition: plan.partition as i32,
            records: (0..plan.batch)
                .map(|_| BatchRecord {
                    key: Bytes::new(),
                    value: plan.value.clone(),
                })
                .collect(),
        })
    } else {
        Request::Produce(ProduceRequest {
            topic: plan.topic.clone(),
            key: Bytes::new(),
            value: plan.value.clone(),
            partition: plan.partition as i32,
        })
    };
    Ok(request
        .to_frame_bytes()
        .context("request does not fit in a frame; lower --size or --batch")?
        .freeze())
}

/// One connection: keeps `plan.window` requests in flight until the
/// deadline, writing whatever fits the window with one write and reading
/// responses in large chunks.
async fn drive(plan: &LanePlan, frame: Bytes, expected: Opcode) -> anyhow::Result<Recorder> {
    let addr = plan.route.as_str();
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.split();
    let window = plan.window.max(1);
    let messages_per_request = plan.batch.max(1) as u64;
    let mut rec = Recorder::new(plan.measure_from);
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(window);
    let mut done = false;
    // Requests left when the plan caps the message count.
    let mut requests_left = plan.max_messages.map(|max| max.div_ceil(messages_per_request));
    loop {
        if !done {
            let now = Instant::now();
            if now >= plan.deadline || requests_left == Some(0) {
                done = true;
            } else {
                while sent.len() < window && requests_left != Some(0) {
                    wbuf.extend_from_slice(&frame);
                    sent.push_back(now);
                    requests_left = requests_left.map(|n| n - 1);
                }
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
                let now = Instant::now();
                while let Some(response) = Frame::decode(&mut rbuf).with_context(|| format!("bad frame from {addr}"))? {
                    let Some(started) = sent.pop_front() else {
                        bail!("broker {addr} sent a response to no request");
                    };
                    if response.opcode == expected.code() {
                        rec.ack(started, now, messages_per_request);
                    } else {
                        let message = match Response::decode_frame(&response) {
                            Ok(Response::Error(e)) => e.message,
                            _ => format!("unexpected response opcode 0x{:02x}", response.opcode),
                        };
                        rec.error(message);
                    }
                }
            }
            written = writer.write(&wbuf), if !wbuf.is_empty() => {
                let n = written.with_context(|| format!("writing to {addr}"))?;
                wbuf.advance(n);
            }
        }
    }
    Ok(rec)
}

/// Reads offsets `0..plan.count` of one partition with pipelined FETCH
/// requests of `plan.batch` records; a short answer is followed by a
/// request for the rest of its range.
async fn fetch_all(plan: &ConsumePlan) -> anyhow::Result<Recorder> {
    let addr = plan.route.as_str();
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.split();
    let batch = plan.batch.max(1) as u64;
    let mut rec = Recorder::new(plan.measure_from);
    // Ranges not yet asked for, and requests in flight: (offset, count, sent).
    let mut todo: VecDeque<(u64, u64)> = VecDeque::from([(0, plan.count)]);
    let mut in_flight: VecDeque<(u64, u64, Instant)> = VecDeque::new();
    let mut wbuf = BytesMut::new();
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        while in_flight.len() < plan.window.max(1) {
            let Some((from, to)) = todo.pop_front() else { break };
            let count = (to - from).min(batch);
            Request::Fetch(FetchRequest {
                topic: plan.topic.clone(),
                partition: plan.partition as i32,
                offset: from,
                max_messages: count as i32,
                filter: String::new(),
            })
            .encode_frame(&mut wbuf)?;
            in_flight.push_back((from, count, Instant::now()));
            if from + count < to {
                todo.push_front((from + count, to));
            }
        }
        if in_flight.is_empty() {
            break;
        }
        if !wbuf.is_empty() {
            writer.write_all_buf(&mut wbuf).await?;
        }
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        if reader
            .read_buf(&mut rbuf)
            .await
            .with_context(|| format!("reading from {addr}"))?
            == 0
        {
            bail!("broker {addr} closed the connection during FETCH");
        }
        let now = Instant::now();
        while let Some(frame) = Frame::decode(&mut rbuf).with_context(|| format!("bad frame from {addr}"))? {
            let Some((offset, asked, sent)) = in_flight.pop_front() else {
                bail!("broker {addr} sent a response to no request");
            };
            let resp = match Response::decode_frame(&frame)? {
                Response::Fetch(resp) => resp,
                Response::Error(e) => bail!(
                    "FETCH at offset {offset} of partition {}: {}",
                    plan.partition,
                    e.message
                ),
                other => bail!("unexpected response opcode 0x{:02x} to FETCH", other.opcode()),
            };
            if resp.records.is_empty() {
                bail!(
                    "FETCH at offset {offset} of partition {} returned nothing, though {} messages were acknowledged",
                    plan.partition,
                    plan.count
                );
            }
            rec.ack(sent, now, resp.records.len() as u64);
            let end = offset + asked;
            if resp.next_offset > offset && resp.next_offset < end {
                todo.push_front((resp.next_offset, end));
            }
        }
    }
    Ok(rec)
}

/// Sends one request on a new connection and returns the decoded answer.
async fn request_once(addr: &str, request: &Request) -> anyhow::Result<Response> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(&request.to_frame_bytes()?).await?;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if let Some(frame) = Frame::decode(&mut buf)? {
                return Ok(Response::decode_frame(&frame)?);
            }
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("{addr} closed the connection without answering");
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .with_context(|| format!("{addr} did not answer within 10 s"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use flymq_proto::RecordMetadata;
    use tokio::net::TcpListener;

    fn plan(batch: usize, route: String, run_for: Duration) -> LanePlan {
        let now = Instant::now();
        LanePlan {
            topic: "t".into(),
            partition: 2,
            route,
            window: 8,
            batch,
            value: Bytes::from_static(b"0123456789"),
            deadline: now + run_for,
            measure_from: now,
            max_messages: None,
        }
    }

    #[test]
    fn frames_name_the_partition() {
        let frame = encode_produce(&plan(1, String::new(), Duration::ZERO)).expect("encodes");
        let mut buf = BytesMut::from(&frame[..]);
        let Ok(Request::Produce(p)) = Request::decode_frame(&Frame::decode(&mut buf).unwrap().unwrap()) else {
            panic!("expected PRODUCE");
        };
        assert_eq!((p.partition, p.value.len()), (2, 10));

        let frame = encode_produce(&plan(5, String::new(), Duration::ZERO)).expect("encodes");
        let mut buf = BytesMut::from(&frame[..]);
        let Ok(Request::ProduceBatch(b)) = Request::decode_frame(&Frame::decode(&mut buf).unwrap().unwrap()) else {
            panic!("expected PRODUCE_BATCH");
        };
        assert_eq!((b.partition, b.records.len()), (2, 5));
    }

    /// Answers every PRODUCE, and every fourth with an error frame; never
    /// more than `window` requests are outstanding.
    async fn fake_broker(window: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = BytesMut::new();
            let mut n = 0u64;
            loop {
                let mut out = BytesMut::new();
                let mut pending = 0;
                while let Some(frame) = Frame::decode(&mut buf).expect("frame") {
                    let Ok(Request::Produce(p)) = Request::decode_frame(&frame) else {
                        panic!("expected PRODUCE");
                    };
                    let reply = if n % 4 == 3 {
                        Response::error("not now")
                    } else {
                        Response::Produce(RecordMetadata::new(p.topic, p.partition, n, 0, &p.key, &p.value))
                    };
                    n += 1;
                    pending += 1;
                    reply.encode_frame(&mut out).expect("encode");
                }
                assert!(pending <= window, "{pending} requests in flight");
                socket.write_all(&out).await.expect("write");
                if socket.read_buf(&mut buf).await.expect("read") == 0 {
                    return;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn lane_counts_acks_and_errors_until_the_deadline() {
        let addr = fake_broker(8).await;
        let plan = plan(1, addr, Duration::from_millis(100));
        let rec = Backend::run_lane(
            &Flymq {
                bootstrap: vec![],
                client: unreachable_client().await,
            },
            plan,
        )
        .await
        .expect("runs");
        assert!(rec.messages > 10, "{}", rec.messages);
        assert!(rec.errors > 3, "{}", rec.errors);
        // One in four fails: errors ≈ acks / 3.
        let ratio = rec.errors as f64 / rec.messages as f64;
        assert!((0.25..0.45).contains(&ratio), "{ratio}");
        assert_eq!(rec.first_error.as_deref(), Some("not now"));
        assert_eq!(rec.latency().count, rec.messages);
    }

    /// A client for the struct literal; `run_lane` never uses it.
    async fn unreachable_client() -> Client {
        // A listener that accepts and never answers is enough to connect.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let _keep = listener.accept().await;
            std::future::pending::<()>().await;
        });
        Client::connect(ClientConfig::new([addr])).await.expect("connects")
    }
}
