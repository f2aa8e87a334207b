//! `topic create|delete|list|info`.

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
    }
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
