//! A member of a coordinated consumer group: run it in two or three
//! terminals and watch the members split the partitions of `examples/work`
//! (and take over when one is stopped with Ctrl-C or killed). Stops after
//! 60 s.
//!
//! `cargo run --release -p flymq-client --example group [-- host:port]`

use std::time::{Duration, Instant};

use flymq_client::{Client, ClientConfig, GroupConsumer, GroupConsumerConfig, StartFrom};

const TOPIC: &str = "examples/work";

#[tokio::main]
async fn main() -> flymq_client::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9092".into());
    let client = Client::connect(ClientConfig::new([addr])).await?;
    client.create_topic(TOPIC, 6).await?;
    let config = GroupConsumerConfig::new("examples")
        .with_from(StartFrom::Earliest)
        .with_session_timeout(Duration::from_secs(6));
    let mut consumer = GroupConsumer::join(client.clone(), TOPIC, config)
        .await?
        .on_rebalance(|r| {
            println!(
                "generation {}: gave up {:?}, took {:?}",
                r.generation, r.revoked, r.assigned
            )
        });
    println!(
        "member {} reads partitions {:?}",
        consumer.member_id(),
        consumer.assignment()
    );
    let started = Instant::now();
    let mut next_produce = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(60) {
        // Keep some work flowing: one record per second, round robin.
        if Instant::now() >= next_produce {
            client.produce(TOPIC, format!("job {n}")).await?;
            n += 1;
            next_produce += Duration::from_secs(1);
        }
        for r in consumer.poll(100, Duration::from_millis(500)).await? {
            println!("{}/{}: {}", r.partition, r.offset, String::from_utf8_lossy(&r.value));
        }
    }
    consumer.close().await
}
