//! `bench txn`: transactions back to back on each connection. Each one is
//! BEGIN_TX, `records` PRODUCE_TX requests (pipelined) and COMMIT_TX; the
//! latency is the whole transaction, BEGIN to COMMIT's answer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use flymq_client::{Client, ClientConfig};

use super::produce::prepare_topic;
use super::stats::{Report, Stats};

/// What `bench txn` runs.
pub struct TxnPlan {
    pub topic: String,
    pub size: usize,
    /// Messages in all (rounded up to whole transactions).
    pub count: u64,
    pub duration: Option<Duration>,
    pub partitions: u32,
    pub connections: usize,
    /// Records per transaction.
    pub records: usize,
}

pub async fn run(config: &ClientConfig, plan: &TxnPlan) -> anyhow::Result<Report> {
    prepare_topic(config, &plan.topic, plan.partitions).await?;
    let records = plan.records.max(1);
    let connections = plan.connections.max(1);
    let txns_per_connection = plan.count.div_ceil((records * connections) as u64);
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(Client::connect(config.clone()).await?);
    }
    let started = Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let workers = clients.into_iter().map(|client| {
        let topic = plan.topic.clone();
        let value = Bytes::from(vec![b'x'; plan.size]);
        tokio::spawn(async move {
            let mut stats = Stats::new();
            let mut done = 0;
            while deadline.map_or(done < txns_per_connection, |d| Instant::now() < d) {
                let began = Instant::now();
                match one_transaction(&client, &topic, &value, records).await {
                    Ok(()) => {
                        stats.record_latency(began.elapsed());
                        stats.messages += records as u64;
                        stats.bytes += (records * value.len()) as u64;
                    }
                    Err(err) => stats.record_error(&err.to_string()),
                }
                done += 1;
            }
            stats
        })
    });
    let mut total = Stats::new();
    for worker in futures::future::join_all(workers).await {
        total.merge(&worker?);
    }
    let mut report = Report::new("txn", &plan.topic, plan.size, &total, started.elapsed());
    report.connections = connections;
    report.batch = records;
    Ok(report)
}

async fn one_transaction(client: &Client, topic: &str, value: &Bytes, records: usize) -> flymq_client::Result<()> {
    let txn = client.begin_transaction().await?;
    let produced = futures::future::join_all((0..records).map(|_| txn.produce(topic, value.clone()))).await;
    if let Some(err) = produced.into_iter().find_map(Result::err) {
        let _ = txn.abort().await;
        return Err(err);
    }
    txn.commit().await
}
