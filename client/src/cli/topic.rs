//! `topic create|delete|list|info` (binary protocol) and `topic alter` (admin API).

use std::time::Duration;

use flymq_client::admin::{AdminClient, AdminOptions, TopicConfig};
use flymq_client::{Client, PartitionMetadata};
use serde_json::json;

use crate::cli::args::TopicCommand;
use crate::cli::output::Output;

/// Runs a `topic` subcommand.
pub async fn run(client: &Client, cmd: TopicCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        TopicCommand::Create { topic, partitions } => {
            client.create_topic(&topic, partitions).await?;
            out.item(
                || format!("created topic '{topic}' with {partitions} partition(s)"),
                json!({"topic": topic, "partitions": partitions, "created": true}),
            )?;
        }
        TopicCommand::Delete { topic } => {
            client.delete_topic(&topic).await?;
            out.item(
                || format!("deleted topic '{topic}'"),
                json!({"topic": topic, "deleted": true}),
            )?;
        }
        TopicCommand::List => {
            let topics = client.list_topics().await?;
            if !out.is_json() && topics.is_empty() {
                eprintln!("no topics");
            }
            for topic in topics {
                out.item(|| topic.clone(), json!({"topic": topic}))?;
            }
        }
        TopicCommand::Info { topic } => {
            let meta = match client.topic_metadata(&topic).await {
                Err(err) if err.is_topic_not_found() => {
                    anyhow::bail!("topic '{topic}' does not exist; create it with `flymq-cli topic create {topic}`")
                }
                other => other?,
            };
            if !out.is_json() {
                out.line(&format!("topic {} ({} partitions)", meta.topic, meta.partitions.len()))?;
            }
            partition_table(&out, &meta.topic, &meta.partitions)?;
        }
        TopicCommand::Alter { .. } => unreachable!("`topic alter` runs through run_admin"),
    }
    Ok(())
}

/// Runs `topic alter` against the admin API: partitions first, then retention.
pub async fn run_admin(
    addr: &str,
    options: &AdminOptions,
    timeout: Duration,
    cmd: TopicCommand,
    out: Output,
) -> anyhow::Result<()> {
    let TopicCommand::Alter {
        topic,
        partitions,
        retention,
        retention_bytes,
        message_ttl,
        max_deliveries,
    } = cmd
    else {
        anyhow::bail!("only `topic alter` uses the admin API");
    };
    let admin = AdminClient::connect_with(addr, options.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e} (is the admin API at {addr}? set --admin / FLYMQ_ADMIN_ADDR)"))?
        .with_request_timeout(timeout);
    let mut info = None;
    if let Some(partitions) = partitions {
        info = Some(admin.add_partitions(&topic, partitions).await?);
    }
    if retention.is_some() || retention_bytes.is_some() || message_ttl.is_some() || max_deliveries.is_some() {
        let current = match &info {
            Some(i) => i.config.unwrap_or_default(),
            None => admin.describe_topic(&topic).await?.config.unwrap_or_default(),
        };
        let config = TopicConfig {
            retention_ms: retention.map_or(current.retention_ms, |d| d.as_millis() as u64),
            retention_bytes: retention_bytes.unwrap_or(current.retention_bytes),
            message_ttl_ms: message_ttl.map_or(current.message_ttl_ms, |d| d.as_millis() as u64),
            max_deliveries: max_deliveries.unwrap_or(current.max_deliveries),
        };
        info = Some(admin.update_topic_config(&topic, config).await?);
    }
    let Some(info) = info else {
        anyhow::bail!(
            "nothing to change: give --partitions, --retention, --retention-bytes, --message-ttl or --max-deliveries"
        );
    };
    let config = info.config.unwrap_or_default();
    let show = |v: u64, unit: &str| {
        if v == 0 {
            "unlimited".to_owned()
        } else {
            format!("{v}{unit}")
        }
    };
    out.item(
        || {
            format!(
                "topic '{}': {} partition(s), retention {}, retention bytes {}, message TTL {}, max deliveries {}",
                info.name,
                info.partitions,
                show(config.retention_ms, "ms"),
                show(config.retention_bytes, ""),
                show(config.message_ttl_ms, "ms"),
                match config.max_deliveries {
                    0 => "off (no dead-letter queue)".to_owned(),
                    n => n.to_string(),
                }
            )
        },
        json!({
            "topic": info.name,
            "partitions": info.partitions,
            "retention_ms": config.retention_ms,
            "retention_bytes": config.retention_bytes,
            "message_ttl_ms": config.message_ttl_ms,
            "max_deliveries": config.max_deliveries,
        }),
    )?;
    Ok(())
}

/// Prints partitions with their leader, state and replicas.
pub fn partition_table(out: &Output, topic: &str, partitions: &[PartitionMetadata]) -> std::io::Result<()> {
    out.table(
        &[
            "PARTITION",
            "LEADER",
            "LEADER_ADDR",
            "EPOCH",
            "STATE",
            "REPLICAS",
            "ISR",
        ],
        partitions,
        |p| {
            vec![
                p.partition.to_string(),
                p.leader_id.clone(),
                p.leader_addr.clone(),
                p.epoch.to_string(),
                p.state.clone(),
                p.replicas.join(","),
                p.isr.join(","),
            ]
        },
        |p| {
            json!({
                "topic": topic,
                "partition": p.partition,
                "leader_id": p.leader_id,
                "leader_addr": p.leader_addr,
                "epoch": p.epoch,
                "state": p.state,
                "replicas": p.replicas,
                "isr": p.isr,
            })
        },
    )
}
