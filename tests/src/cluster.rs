//! Helpers for tests that run several brokers as a cluster: HTTP probes,
//! waiting, and reading or writing one partition through a chosen broker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use flymq_client::{Client, ClientConfig};

/// `GET path` over plain HTTP/1.1: `(status, body)`, `None` when unreachable.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Some((status, body))
}

/// Whether `/health/ready` answers 200.
pub fn is_ready(health: SocketAddr) -> bool {
    http_get(health, "/health/ready").is_some_and(|(status, _)| status == 200)
}

/// Polls `check` every 100 ms; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A client bootstrapped from `client_addrs` (`host:port`).
pub async fn client_for(client_addrs: &[String], request_timeout: Duration) -> Client {
    let config = ClientConfig {
        bootstrap: client_addrs.to_vec(),
        connect_timeout: Duration::from_secs(2),
        request_timeout,
        connect_rounds: 2,
        ..ClientConfig::default()
    };
    Client::connect(config).await.expect("connect to the cluster")
}

/// Every `(offset, value)` of partition 0 of `topic`, read from the broker
/// `client` is connected to.
pub async fn read_all(client: &Client, topic: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let fetched = client.fetch(topic, 0, offset, 1000, "").await.expect("fetch");
        if fetched.records.is_empty() {
            break;
        }
        for r in &fetched.records {
            out.push((r.offset, String::from_utf8_lossy(&r.value).into_owned()));
        }
        offset = fetched.next_offset;
    }
    out
}

/// Reads with `read` every 100 ms, for up to 60 s, until the records reach
/// offset `last` (a replica catching up); returns the last read.
pub async fn read_until_offset<F, Fut>(last: u64, mut read: F) -> Vec<(u64, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<(u64, String)>>,
{
    let mut records = Vec::new();
    for _ in 0..600 {
        records = read().await;
        if records.last().is_some_and(|(o, _)| *o >= last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    records
}

/// Produces one record, retrying while a partition elects its leader.
pub async fn produce_retrying(client: &Client, topic: &str, partition: i32, value: String) -> u64 {
    let mut last = None;
    for _ in 0..50 {
        match client.produce_to_partition(topic, partition, "", value.clone()).await {
            Ok(meta) => return meta.offset,
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("produce to {topic}/{partition} kept failing: {last:?}");
}

/// Checks that `records` (read from one broker) hold every acknowledged
/// `(offset, value)`, store no value twice, and keep values in order.
pub fn assert_holds_acked(who: &str, records: &[(u64, String)], acked: &[(u64, String)]) {
    let by_offset: std::collections::BTreeMap<u64, &str> = records.iter().map(|(o, v)| (*o, v.as_str())).collect();
    for (offset, value) in acked {
        assert_eq!(
            by_offset.get(offset).copied(),
            Some(value.as_str()),
            "{who}: acknowledged record at offset {offset} is missing or different"
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (_, value) in records {
        assert!(seen.insert(value.clone()), "{who}: {value} stored twice");
    }
    let values: Vec<&String> = records.iter().map(|(_, v)| v).collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]), "{who}: records out of order");
}
