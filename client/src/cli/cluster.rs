//! `cluster status|metadata`.

use flymq_client::Client;
use serde_json::json;

use crate::cli::args::ClusterCommand;
use crate::cli::output::Output;
use crate::cli::topic::partition_table;

/// Runs a `cluster` subcommand.
pub async fn run(client: &Client, cmd: ClusterCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status => {
            let status = client.cluster_status().await?;
            if out.is_json() {
                out.line(
                    &json!({
                        "cluster_id": status.cluster_id,
                        "node_id": status.node_id,
                        "leader_id": status.leader_id,
                        "nodes": status.nodes.iter().map(|n| json!({
                            "node_id": n.node_id, "address": n.address, "role": n.role, "state": n.state,
                        })).collect::<Vec<_>>(),
                    })
                    .to_string(),
                )?;
                return Ok(());
            }
            let leader = if status.leader_id.is_empty() {
                "(none)"
            } else {
                status.leader_id.as_str()
            };
            out.line(&format!(
                "cluster {}: answered by node {}, leader {}",
                status.cluster_id, status.node_id, leader
            ))?;
            out.table(
                &["NODE", "ADDRESS", "ROLE", "STATE"],
                &status.nodes,
                |n| vec![n.node_id.clone(), n.address.clone(), n.role.clone(), n.state.clone()],
                |_| json!(null),
            )?;
        }
        ClusterCommand::Metadata => {
            let meta = client.cluster_metadata().await?;
            if !out.is_json() {
                out.line(&format!("cluster {}: {} topic(s)", meta.cluster_id, meta.topics.len()))?;
            }
            for topic in &meta.topics {
                if !out.is_json() {
                    out.line(&format!(
                        "\ntopic {} ({} partitions)",
                        topic.topic,
                        topic.partitions.len()
                    ))?;
                }
                partition_table(&out, &topic.topic, &topic.partitions)?;
            }
        }
    }
    Ok(())
}
