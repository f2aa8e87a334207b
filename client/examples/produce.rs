//! Produces a few records with the batching producer (gzip above 1 KiB) and
//! prints where they landed and the producer's counters.
//!
//! Run a broker (`cargo run --release -p flymq-broker --bin flymq`), then:
//! `cargo run --release -p flymq-client --example produce [-- host:port]`

use std::time::Duration;

use flymq_client::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> flymq_client::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9092".into());
    let client = Client::connect(ClientConfig::new([addr]).with_keep_alive(Duration::from_secs(30))).await?;
    client.create_topic("examples/orders", 3).await?;
    let producer = Producer::new(
        client.clone(),
        ProducerConfig::default()
            .with_linger(Duration::from_millis(10))
            .with_gzip_above(1024),
    );
    let sends: Vec<_> = (0..10)
        .map(|i| {
            producer.send(
                ProducerRecord::new("examples/orders", format!("order {i}")).with_key(format!("customer-{}", i % 3)),
            )
        })
        .collect();
    for meta in futures::future::join_all(sends).await {
        let meta = meta?;
        println!("{} partition {} offset {}", meta.topic, meta.partition, meta.offset);
    }
    println!("producer: {:?}", producer.metrics());
    println!(
        "client:   {:?} (round trip {:?})",
        client.metrics(),
        client.health_check().await?
    );
    Ok(())
}
