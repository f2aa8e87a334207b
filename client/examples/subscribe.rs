//! Consumes every topic matching `examples/#` as group `examples`, as a
//! `futures::Stream`, including topics created while it runs; stops after
//! 10 records or 30 s.
//!
//! `cargo run --release -p flymq-client --example subscribe [-- host:port]`
//! (run the `produce` example to give it something to read).

use std::time::Duration;

use flymq_client::{Client, ClientConfig, ConsumerConfig, PatternConsumer, StartFrom};
use futures::StreamExt;

#[tokio::main]
async fn main() -> flymq_client::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9092".into());
    let client = Client::connect(ClientConfig::new([addr])).await?;
    let config = ConsumerConfig::new("examples").with_from(StartFrom::Earliest);
    let consumer = PatternConsumer::subscribe(client, "examples/#", config).await?;
    println!("consuming {:?}", consumer.topics());
    let mut records = Box::pin(consumer.stream(100).take(10));
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            next = records.next() => match next {
                Some(record) => {
                    let r = record?;
                    println!("{} {}/{}: {}", r.topic, r.partition, r.offset, String::from_utf8_lossy(&r.value));
                }
                None => break,
            },
        }
    }
    Ok(())
}
