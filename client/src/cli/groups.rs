//! `groups list|describe|lag|delete|reset`.

use anyhow::bail;
use flymq_client::{Client, GroupRecord, LagInfo, ResetTo};
use serde_json::json;

use crate::cli::args::GroupsCommand;
use crate::cli::output::Output;

/// Runs a `groups` subcommand.
pub async fn run(client: &Client, cmd: GroupsCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        GroupsCommand::List => {
            let groups = client.list_groups().await?;
            if !out.is_json() && groups.is_empty() {
                eprintln!("no consumer groups");
                return Ok(());
            }
            out.table(
                &["TOPIC", "GROUP", "MEMBERS", "COMMITTED"],
                &groups,
                |g| {
                    vec![
                        g.topic.clone(),
                        g.group_id.clone(),
                        g.members.to_string(),
                        committed_summary(g),
                    ]
                },
                group_json,
            )?;
        }
        GroupsCommand::Describe { topic, group } => {
            let record = client.describe_group(&topic, &group).await?;
            if out.is_json() {
                out.line(&group_json(&record).to_string())?;
                return Ok(());
            }
            out.line(&format!(
                "group '{}' on topic '{}': {} live member(s)",
                record.group_id, record.topic, record.members
            ))?;
            out.table(
                &["PARTITION", "COMMITTED"],
                &record.offsets,
                |o| vec![o.partition.to_string(), o.offset.to_string()],
                |_| json!(null),
            )?;
        }
        GroupsCommand::Lag { topic, group } => {
            let meta = client.topic_metadata(&topic).await?;
            let partitions: Vec<i32> = meta.partitions.iter().map(|p| p.partition).collect();
            let lags =
                futures::future::try_join_all(partitions.iter().map(|&p| client.get_lag(&topic, &group, p))).await?;
            let rows: Vec<(i32, LagInfo)> = partitions.into_iter().zip(lags).collect();
            out.table(
                &["PARTITION", "COMMITTED", "LATEST", "LAG"],
                &rows,
                |(p, l)| {
                    vec![
                        p.to_string(),
                        l.committed.to_string(),
                        l.latest.to_string(),
                        l.lag.to_string(),
                    ]
                },
                |(p, l)| {
                    json!({"topic": topic, "group": group, "partition": p,
                           "committed": l.committed, "latest": l.latest, "lag": l.lag})
                },
            )?;
            if !out.is_json() {
                let total: u64 = rows.iter().map(|(_, l)| l.lag).sum();
                out.line(&format!("total lag: {total}"))?;
            }
        }
        GroupsCommand::Delete { topic, group } => {
            client.delete_group(&topic, &group).await?;
            out.item(
                || format!("deleted group '{group}' of topic '{topic}'"),
                json!({"topic": topic, "group": group, "deleted": true}),
            )?;
        }
        GroupsCommand::Reset {
            topic,
            group,
            partition,
            to,
        } => {
            let target = parse_reset_target(&to)?;
            let partitions = match partition {
                Some(p) => vec![p],
                None => {
                    let meta = client.topic_metadata(&topic).await?;
                    meta.partitions.iter().map(|p| p.partition).collect()
                }
            };
            for p in partitions {
                client.reset_offset(&topic, &group, p, target).await?;
                let offset = client.get_offset(&topic, &group, p).await?;
                out.item(
                    || format!("group '{group}' topic '{topic}' partition {p}: committed offset now {offset}"),
                    json!({"topic": topic, "group": group, "partition": p, "offset": offset}),
                )?;
            }
        }
    }
    Ok(())
}

/// Parses `--to`: `earliest`, `latest` or an offset.
fn parse_reset_target(to: &str) -> anyhow::Result<ResetTo> {
    match to {
        "earliest" => Ok(ResetTo::Earliest),
        "latest" => Ok(ResetTo::Latest),
        n => match n.parse::<u64>() {
            Ok(offset) => Ok(ResetTo::Offset(offset)),
            Err(_) => bail!("invalid --to '{to}': expected earliest, latest or an offset number"),
        },
    }
}

fn committed_summary(g: &GroupRecord) -> String {
    if g.offsets.is_empty() {
        return "-".into();
    }
    g.offsets
        .iter()
        .map(|o| format!("{}:{}", o.partition, o.offset))
        .collect::<Vec<_>>()
        .join(" ")
}

fn group_json(g: &GroupRecord) -> serde_json::Value {
    json!({
        "topic": g.topic,
        "group": g.group_id,
        "members": g.members,
        "offsets": g.offsets.iter().map(|o| json!({"partition": o.partition, "offset": o.offset})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_targets() {
        assert_eq!(parse_reset_target("earliest").unwrap(), ResetTo::Earliest);
        assert_eq!(parse_reset_target("latest").unwrap(), ResetTo::Latest);
        assert_eq!(parse_reset_target("42").unwrap(), ResetTo::Offset(42));
        assert!(parse_reset_target("soon").is_err());
    }
}
