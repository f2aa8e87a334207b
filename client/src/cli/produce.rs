//! `produce <topic> [message]`: one message from the argument, or one per
//! line of stdin (batched through the [`Producer`]; with `--ttl`, `--delay`
//! or `--schema`, one request per message).

use std::collections::VecDeque;

use anyhow::bail;
use bytes::Bytes;
use flymq_client::{Client, Delivery, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::args::ProduceArgs;
use crate::cli::output::Output;
use crate::cli::schema;

/// Records awaiting their result before the oldest is printed; bounds memory
/// while keeping the output in input order.
const MAX_PENDING: usize = 4096;

/// Runs `produce`.
pub async fn run(client: &Client, args: ProduceArgs, out: Output) -> anyhow::Result<()> {
    if args.ttl.is_some() || args.delay.is_some() || args.schema.is_some() {
        return run_single(client, &args, &out).await;
    }
    let key = args.key.clone().map(Bytes::from).unwrap_or_default();
    if let Some(message) = args.message.clone() {
        let meta = match args.partition {
            Some(p) => client.produce_to_partition(&args.topic, p, key, message).await?,
            None => client.produce_with_key(&args.topic, key, message).await?,
        };
        return print_metadata(&out, &meta).map_err(Into::into);
    }

    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending: VecDeque<Delivery> = VecDeque::new();
    let mut failures = 0u64;
    while let Some(line) = lines.next_line().await? {
        let mut record = ProducerRecord::new(args.topic.clone(), line).with_key(key.clone());
        if let Some(p) = args.partition {
            record = record.with_partition(p);
        }
        pending.push_back(producer.enqueue(record).await?);
        if pending.len() >= MAX_PENDING
            && let Some(delivery) = pending.pop_front()
        {
            failures += report(&out, delivery.await)?;
        }
    }
    producer.flush().await?;
    while let Some(delivery) = pending.pop_front() {
        failures += report(&out, delivery.await)?;
    }
    if failures > 0 {
        bail!("{failures} message(s) could not be produced");
    }
    Ok(())
}

/// `--ttl` / `--delay` / `--schema`: one request per message (these
/// opcodes carry one keyless record each), from the argument or each line
/// of stdin.
async fn run_single(client: &Client, args: &ProduceArgs, out: &Output) -> anyhow::Result<()> {
    let send = |message: String| async move {
        match (args.ttl, args.delay, &args.schema) {
            (Some(ttl), _, _) => client.produce_with_ttl(&args.topic, message, ttl).await,
            (None, Some(delay), _) => client.produce_delayed(&args.topic, message, delay).await,
            (None, None, Some(schema)) => client.produce_with_schema(&args.topic, schema, message).await,
            (None, None, None) => Err(flymq_client::Error::InvalidArgument(
                "one request per message needs --ttl, --delay or --schema".into(),
            )),
        }
    };
    if let Some(message) = args.message.clone() {
        let meta = match (send(message).await, &args.schema) {
            (Err(err), Some(schema)) => return Err(schema::explain(err, schema)),
            (result, _) => result?,
        };
        return print_timed(out, args, &meta).map_err(Into::into);
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut failures = 0u64;
    while let Some(line) = lines.next_line().await? {
        match send(line).await {
            Ok(meta) => print_timed(out, args, &meta)?,
            Err(err) => {
                eprintln!("error: {err}");
                failures += 1;
            }
        }
    }
    if failures > 0 {
        bail!("{failures} message(s) could not be produced");
    }
    Ok(())
}

/// A delayed message has no offset until it is delivered: say when instead.
fn print_timed(out: &Output, args: &ProduceArgs, meta: &RecordMetadata) -> std::io::Result<()> {
    match args.delay {
        Some(delay) => out.item(
            || {
                format!(
                    "{} partition {} scheduled, delivered in {}",
                    meta.topic,
                    meta.partition,
                    humantime::format_duration(delay)
                )
            },
            json!({
                "topic": meta.topic,
                "partition": meta.partition,
                "delay_ms": delay.as_millis() as u64,
                "timestamp": meta.timestamp,
            }),
        ),
        None => print_metadata(out, meta),
    }
}

/// Prints one result; returns 1 for a failure (reported on stderr).
fn report(out: &Output, result: flymq_client::Result<RecordMetadata>) -> std::io::Result<u64> {
    match result {
        Ok(meta) => print_metadata(out, &meta).map(|()| 0),
        Err(err) => {
            eprintln!("error: {err}");
            Ok(1)
        }
    }
}

fn print_metadata(out: &Output, meta: &RecordMetadata) -> std::io::Result<()> {
    out.item(
        || format!("{} partition {} offset {}", meta.topic, meta.partition, meta.offset),
        json!({
            "topic": meta.topic,
            "partition": meta.partition,
            "offset": meta.offset,
            "timestamp": meta.timestamp,
        }),
    )
}
