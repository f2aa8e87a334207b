//! `cluster status|members|decommission|transfer-leader` through the admin
//! gRPC API, and `cluster wire-status|metadata` over the binary protocol.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use flymq_client::admin::{AdminClient, AdminOptions, ClusterStatusReply, GroupStatus, Member};
use flymq_client::{Client, Error};
use serde_json::{Value, json};

use crate::cli::args::ClusterCommand;
use crate::cli::output::{Output, format_table};
use crate::cli::topic::partition_table;

/// How often `cluster decommission` says it is still waiting.
const DECOMMISSION_PROGRESS_EVERY: Duration = Duration::from_secs(10);

const MEMBER_HEADERS: [&str; 6] = [
    "NODE",
    "CLIENT_ADDR",
    "ROLE",
    "HEALTH",
    "METADATA_LEADER",
    "PARTITIONS_LED",
];

const GROUP_HEADERS: [&str; 8] = [
    "GROUP",
    "NAME",
    "LEADER",
    "TERM",
    "COMMITTED",
    "APPLIED",
    "VOTERS",
    "IN_SYNC",
];

/// Runs a `cluster` subcommand that uses the admin API at `addr`.
pub async fn run_admin(
    addr: &str,
    options: &AdminOptions,
    timeout: Duration,
    cmd: ClusterCommand,
    out: Output,
) -> anyhow::Result<()> {
    let admin = AdminClient::connect_with(addr, options.clone())
        .await
        .map_err(admin_error)?
        .with_request_timeout(timeout);
    match cmd {
        ClusterCommand::Status { groups } => {
            let status = admin.cluster_status().await.map_err(admin_error)?;
            if out.is_json() {
                out.line(&status_json(&status).to_string())?;
            } else {
                out.line(status_text(&status, groups).trim_end())?;
            }
        }
        ClusterCommand::Members => {
            let status = admin.cluster_status().await.map_err(admin_error)?;
            if out.is_json() {
                for member in sorted_members(&status.members) {
                    out.line(&member_json(member).to_string())?;
                }
            } else {
                out.line(members_text(&status.members).trim_end())?;
            }
        }
        ClusterCommand::Decommission { node_id, wait } => {
            decommission(&admin.with_decommission_timeout(wait), node_id, out).await?;
        }
        ClusterCommand::TransferLeader { group, from, to } => {
            let (transferred, text) = match (group, from) {
                (_, Some(from)) => {
                    let n = admin.transfer_leadership_from(from, to).await.map_err(admin_error)?;
                    (n, format!("transferred {n} group(s) from node {from} to node {to}"))
                }
                (Some(group), None) => {
                    let n = admin.transfer_leadership(group, to).await.map_err(admin_error)?;
                    (
                        n,
                        format!("transferred {n} group(s): group {group} is now led by node {to}"),
                    )
                }
                (None, None) => anyhow::bail!("give --group <id> or --from <node> with --to <node>"),
            };
            out.item(
                || text,
                json!({"group_id": group, "from_node": from, "to_node": to, "transferred": transferred}),
            )?;
        }
        ClusterCommand::WireStatus | ClusterCommand::Metadata => {
            anyhow::bail!("this cluster command uses the binary protocol, not the admin API")
        }
    }
    Ok(())
}

/// `cluster decommission`: progress on stderr, the result on stdout.
async fn decommission(admin: &AdminClient, node_id: u64, out: Output) -> anyhow::Result<()> {
    eprintln!("decommissioning node {node_id}: moving replicas…");
    let started = Instant::now();
    let call = admin.decommission(node_id);
    tokio::pin!(call);
    let mut progress = tokio::time::interval_at(
        tokio::time::Instant::now() + DECOMMISSION_PROGRESS_EVERY,
        DECOMMISSION_PROGRESS_EVERY,
    );
    let moved = loop {
        tokio::select! {
            result = &mut call => break result.map_err(admin_error)?,
            _ = progress.tick() => {
                eprintln!(
                    "still decommissioning node {node_id} ({}s): moving replicas…",
                    started.elapsed().as_secs()
                );
            }
        }
    };
    out.item(
        || format!("done: moved {moved} partition replicas; node {node_id} removed"),
        json!({"node_id": node_id, "moved": moved, "removed": true}),
    )?;
    Ok(())
}

/// One-line errors with a hint where the user can act on it.
fn admin_error(err: Error) -> anyhow::Error {
    match &err {
        Error::AdminUnavailable { .. } => anyhow!("{err} (is the broker running? is --admin right?)"),
        Error::Timeout { op, addr, after } => anyhow!(
            "admin {op} at {addr} got no answer within {after:?}; the broker may still be working on it \
             (raise --timeout, or --wait for decommission)"
        ),
        _ => err.into(),
    }
}

fn sorted_members(members: &[Member]) -> Vec<&Member> {
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by_key(|m| m.node_id);
    sorted
}

/// The member table.
fn members_text(members: &[Member]) -> String {
    let rows: Vec<Vec<String>> = sorted_members(members)
        .into_iter()
        .map(|m| {
            vec![
                m.node_id.to_string(),
                m.client_addr.clone(),
                m.role.clone(),
                m.health.clone(),
                if m.is_metadata_leader { "*" } else { "" }.to_owned(),
                m.leading.to_string(),
            ]
        })
        .collect();
    format_table(&MEMBER_HEADERS, &rows)
}

/// The Raft group table.
fn groups_text(groups: &[GroupStatus]) -> String {
    let mut sorted: Vec<&GroupStatus> = groups.iter().collect();
    sorted.sort_by_key(|g| g.group_id);
    let ids = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let rows: Vec<Vec<String>> = sorted
        .into_iter()
        .map(|g| {
            vec![
                g.group_id.to_string(),
                g.name.clone(),
                if g.has_leader {
                    g.leader.to_string()
                } else {
                    "-".to_owned()
                },
                g.term.to_string(),
                g.committed_index.to_string(),
                g.applied_index.to_string(),
                ids(&g.voters),
                ids(&g.in_sync),
            ]
        })
        .collect();
    format_table(&GROUP_HEADERS, &rows)
}

/// `cluster status` for people.
fn status_text(status: &ClusterStatusReply, with_groups: bool) -> String {
    let mut text = format!(
        "cluster {}: {} member(s), answered by node {}\n",
        status.cluster_id,
        status.members.len(),
        status.node_id
    );
    text.push_str(&members_text(&status.members));
    if with_groups {
        text.push('\n');
        text.push_str(&groups_text(&status.groups));
    }
    if status.under_replicated.is_empty() {
        text.push_str("under-replicated partitions: none\n");
    } else {
        text.push_str(&format!(
            "under-replicated partitions ({}): {}\n",
            status.under_replicated.len(),
            status.under_replicated.join(", ")
        ));
    }
    text
}

fn member_json(m: &Member) -> Value {
    json!({
        "node_id": m.node_id,
        "client_addr": m.client_addr,
        "cluster_addr": m.cluster_addr,
        "admin_addr": m.admin_addr,
        "role": m.role,
        "health": m.health,
        "metadata_leader": m.is_metadata_leader,
        "partitions_led": m.leading,
    })
}

fn group_json(g: &GroupStatus) -> Value {
    json!({
        "group_id": g.group_id,
        "name": g.name,
        "leader": g.has_leader.then_some(g.leader),
        "term": g.term,
        "committed_index": g.committed_index,
        "applied_index": g.applied_index,
        "voters": g.voters,
        "in_sync": g.in_sync,
    })
}

/// `cluster status -o json`: one object.
fn status_json(status: &ClusterStatusReply) -> Value {
    let mut groups: Vec<&GroupStatus> = status.groups.iter().collect();
    groups.sort_by_key(|g| g.group_id);
    json!({
        "cluster_id": status.cluster_id,
        "node_id": status.node_id,
        "members": sorted_members(&status.members).into_iter().map(member_json).collect::<Vec<_>>(),
        "under_replicated": status.under_replicated,
        "groups": groups.into_iter().map(group_json).collect::<Vec<_>>(),
    })
}

/// Runs a `cluster` subcommand over the binary protocol.
pub async fn run(client: &Client, cmd: ClusterCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::WireStatus => {
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
        other => anyhow::bail!("`cluster {other:?}` uses the admin API, not the binary protocol"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, role: &str, health: &str, leader: bool, leading: u32) -> Member {
        Member {
            node_id: id,
            cluster_addr: format!("10.0.0.{id}:9093"),
            client_addr: format!("10.0.0.{id}:9092"),
            admin_addr: format!("10.0.0.{id}:9096"),
            role: role.into(),
            health: health.into(),
            is_metadata_leader: leader,
            leading,
        }
    }

    fn sample() -> ClusterStatusReply {
        ClusterStatusReply {
            cluster_id: "prod".into(),
            node_id: 2,
            members: vec![
                member(2, "voter", "down", false, 0),
                member(1, "voter", "up", true, 4),
                member(3, "learner", "up", false, 1),
            ],
            groups: vec![
                GroupStatus {
                    group_id: 7,
                    name: "orders/0".into(),
                    leader: 0,
                    has_leader: false,
                    term: 2,
                    committed_index: 10,
                    applied_index: 9,
                    voters: vec![1, 2],
                    in_sync: vec![1],
                },
                GroupStatus {
                    group_id: 0,
                    name: "metadata".into(),
                    leader: 1,
                    has_leader: true,
                    term: 3,
                    committed_index: 120,
                    applied_index: 120,
                    voters: vec![1, 2, 3],
                    in_sync: vec![1, 3],
                },
            ],
            under_replicated: vec!["orders/0".into(), "orders/3".into()],
        }
    }

    #[test]
    fn status_text_lists_members_by_id_and_under_replicated_partitions() {
        let text = status_text(&sample(), false);
        assert_eq!(
            text,
            "cluster prod: 3 member(s), answered by node 2\n\
             NODE  CLIENT_ADDR    ROLE     HEALTH  METADATA_LEADER  PARTITIONS_LED\n\
             1     10.0.0.1:9092  voter    up      *                4\n\
             2     10.0.0.2:9092  voter    down                     0\n\
             3     10.0.0.3:9092  learner  up                       1\n\
             under-replicated partitions (2): orders/0, orders/3\n"
        );
        let mut healthy = sample();
        healthy.under_replicated.clear();
        assert!(status_text(&healthy, false).ends_with("under-replicated partitions: none\n"));
    }

    #[test]
    fn status_text_with_groups() {
        let text = status_text(&sample(), true);
        let groups: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("GROUP")).collect();
        assert_eq!(
            groups[..3],
            [
                "GROUP  NAME      LEADER  TERM  COMMITTED  APPLIED  VOTERS  IN_SYNC",
                "0      metadata  1       3     120        120      1,2,3   1,3",
                "7      orders/0  -       2     10         9        1,2     1",
            ]
        );
    }

    #[test]
    fn status_json_has_every_field() {
        let v = status_json(&sample());
        assert_eq!(v["cluster_id"], "prod");
        assert_eq!(v["node_id"], 2);
        let members = v["members"].as_array().expect("members");
        assert_eq!(members.len(), 3);
        assert_eq!(
            members[0],
            json!({
                "node_id": 1, "client_addr": "10.0.0.1:9092", "cluster_addr": "10.0.0.1:9093",
                "admin_addr": "10.0.0.1:9096", "role": "voter", "health": "up",
                "metadata_leader": true, "partitions_led": 4,
            })
        );
        assert_eq!(v["under_replicated"], json!(["orders/0", "orders/3"]));
        assert_eq!(v["groups"][0]["group_id"], 0);
        assert_eq!(v["groups"][1]["leader"], Value::Null, "no leader elected");
    }

    #[test]
    fn unreachable_admin_error_has_a_hint() {
        let err = admin_error(Error::AdminUnavailable {
            addr: "127.0.0.1:9096".into(),
            reason: "connection refused".into(),
        });
        assert_eq!(
            format!("{err:#}"),
            "cannot reach the admin API at 127.0.0.1:9096: connection refused (is the broker running? is --admin right?)"
        );
        let err = admin_error(Error::Admin {
            op: "Decommission",
            code: tonic::Code::NotFound,
            message: "node 9 is not a member".into(),
        });
        assert_eq!(format!("{err:#}"), "admin Decommission failed: node 9 is not a member");
    }
}
