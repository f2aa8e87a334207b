//! `bench schema`: PRODUCE_WITH_SCHEMA of a small JSON record against a
//! registered JSON schema, and plain PRODUCE of the same bytes with the
//! same connections and pipelining, run one after the other (alternating
//! which goes first) so both see the same machine state.

use anyhow::{Context, bail};
use bytes::Bytes;
use flymq_client::{Client, ClientConfig, SchemaType};
use flymq_proto::{Opcode, ProduceRequest, ProduceWithSchemaRequest, Request};
use serde_json::json;

use super::args::SchemaBenchArgs;
use super::produce::{ProducePlan, prepare_topic, run_frames};
use super::stats::{Report, format_micros};
use crate::cli::output::Output;

/// The JSON Schema the bench registers: the usual keywords of an order
/// record (types, required fields, bounds, an array of strings).
pub const BENCH_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "id": {"type": "integer", "minimum": 0},
    "item": {"type": "string", "maxLength": 1048576},
    "qty": {"type": "integer", "minimum": 1},
    "price": {"type": "number"},
    "tags": {"type": "array", "items": {"type": "string"}}
  },
  "required": ["id", "item", "qty"]
}"#;

/// A record the bench schema accepts, `size` bytes long when `size` is at
/// least the record's minimum length (the `item` string is padded).
pub fn bench_record(size: usize) -> Bytes {
    let head = r#"{"id":1234567,"item":""#;
    let tail = r#"","qty":2,"price":3.25,"tags":["a","b"]}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut record = String::with_capacity(head.len() + pad + tail.len());
    record.push_str(head);
    record.extend(std::iter::repeat_n('x', pad));
    record.push_str(tail);
    Bytes::from(record)
}

/// One plain run and one schema run.
struct Round {
    plain: Report,
    schema: Report,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.schema.msgs_per_sec / self.plain.msgs_per_sec.max(1e-9)
    }
}

/// Runs `bench schema` and prints its report.
pub async fn run(
    config: &ClientConfig,
    args: &SchemaBenchArgs,
    default_count: u64,
    out: &Output,
) -> anyhow::Result<()> {
    let common = &args.common;
    let client = Client::connect(config.clone()).await?;
    let version = client
        .register_schema(&args.schema, SchemaType::Json, BENCH_SCHEMA)
        .await
        .with_context(|| {
            format!(
                "registering the bench schema '{}' (choose another name with --schema if it holds another schema)",
                args.schema
            )
        })?;
    let value = bench_record(common.size);
    let check = client.validate_schema(&args.schema, value.clone()).await?;
    if !check.valid {
        bail!(
            "the bench record does not match schema '{}' version {version}: {}",
            args.schema,
            check.errors.join("; ")
        );
    }
    let plain_topic = format!("{}-plain", common.topic);
    let partitions = prepare_topic(config, &common.topic, common.partitions).await?;
    prepare_topic(config, &plain_topic, partitions).await?;
    let plan = |topic: &str| ProducePlan {
        topic: topic.to_owned(),
        size: value.len(),
        count: common.count_or(default_count),
        duration: common.duration,
        partitions,
        connections: args.connections.max(1),
        in_flight: args.in_flight.max(1),
        batch: 1,
        keyed: false,
        progress: !common.quiet,
    };
    let plain_frame = Request::Produce(ProduceRequest {
        topic: plain_topic.clone(),
        key: Bytes::new(),
        value: value.clone(),
        partition: -1,
    })
    .to_frame_bytes()?
    .freeze();
    let schema_frame = Request::ProduceWithSchema(ProduceWithSchemaRequest {
        topic: common.topic.clone(),
        data: value.clone(),
        schema_name: args.schema.clone(),
    })
    .to_frame_bytes()?
    .freeze();

    let (plain_plan, schema_plan) = (plan(&plain_topic), plan(&common.topic));
    let mut rounds = Vec::new();
    for round in 0..args.rounds.max(1) {
        let plain_run = || {
            run_frames(
                config,
                &plain_plan,
                vec![plain_frame.clone()],
                Opcode::Produce,
                "produce",
            )
        };
        let schema_run = || {
            run_frames(
                config,
                &schema_plan,
                vec![schema_frame.clone()],
                Opcode::ProduceWithSchema,
                "produce-with-schema",
            )
        };
        let (plain, schema) = if round % 2 == 0 {
            let plain = plain_run().await?;
            (plain, schema_run().await?)
        } else {
            let schema = schema_run().await?;
            (plain_run().await?, schema)
        };
        rounds.push(Round { plain, schema });
    }
    print(out, args, version, value.len(), &rounds)?;
    let errors: u64 = rounds.iter().map(|r| r.plain.errors + r.schema.errors).sum();
    if errors > 0 {
        let first = rounds
            .iter()
            .flat_map(|r| [&r.plain.first_error, &r.schema.first_error])
            .find_map(|e| e.clone())
            .unwrap_or_default();
        bail!("{errors} request(s) failed; first error: {first}");
    }
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn print(out: &Output, args: &SchemaBenchArgs, version: u32, size: usize, rounds: &[Round]) -> anyhow::Result<()> {
    let plain = median(rounds.iter().map(|r| r.plain.msgs_per_sec).collect());
    let schema = median(rounds.iter().map(|r| r.schema.msgs_per_sec).collect());
    let ratio = median(rounds.iter().map(Round::ratio).collect());
    if out.is_json() {
        let runs: Vec<_> = rounds
            .iter()
            .map(|r| json!({"plain": r.plain, "schema": r.schema, "ratio": r.ratio()}))
            .collect();
        out.line(
            &json!({
                "mode": "schema",
                "schema": args.schema,
                "schema_version": version,
                "message_size": size,
                "connections": args.connections.max(1),
                "in_flight": args.in_flight.max(1),
                "rounds": runs,
                "median_plain_msgs_per_sec": plain,
                "median_schema_msgs_per_sec": schema,
                "median_ratio": ratio,
            })
            .to_string(),
        )?;
        return Ok(());
    }
    let first = &rounds[0].plain;
    out.line(&format!(
        "schema bench: {} msgs of a {size} B JSON record per run, schema '{}' version {version} (json), \
         {} connection(s) x {} in flight, {} round(s)",
        first.messages,
        args.schema,
        first.connections,
        first.in_flight,
        rounds.len()
    ))?;
    for (i, r) in rounds.iter().enumerate() {
        for (label, report) in [("plain PRODUCE", &r.plain), ("PRODUCE_WITH_SCHEMA", &r.schema)] {
            out.line(&format!(
                "round {}: {label:<20} {:>10.0} msgs/s  p50 {} p99 {} max {}{}",
                i + 1,
                report.msgs_per_sec,
                format_micros(report.latency.p50_us as f64),
                format_micros(report.latency.p99_us as f64),
                format_micros(report.latency.max_us as f64),
                if report.errors > 0 {
                    format!("  ({} errors)", report.errors)
                } else {
                    String::new()
                }
            ))?;
        }
        out.line(&format!("round {}: ratio {:.3}", i + 1, r.ratio()))?;
    }
    out.line(&format!(
        "median: plain {plain:.0} msgs/s, with schema {schema:.0} msgs/s, ratio {ratio:.3}"
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_record_has_the_asked_size_and_is_json() {
        for size in [0, 40, 100, 1000] {
            let record = bench_record(size);
            let value: serde_json::Value = serde_json::from_slice(&record).expect("JSON");
            assert_eq!(value["qty"], 2);
            if size >= 100 {
                assert_eq!(record.len(), size);
            }
        }
        let schema: serde_json::Value = serde_json::from_str(BENCH_SCHEMA).expect("schema is JSON");
        assert_eq!(schema["required"][0], "id");
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }
}
