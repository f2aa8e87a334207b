//! A broker whose volume is lost rejoins its cluster (issue 10, item 5):
//!
//! 1. a 3-broker FlyMQCluster becomes Ready and records the cluster id the
//!    brokers report; a topic with replication factor 3 gets messages;
//! 2. broker 1's PersistentVolumeClaim and pod are deleted (under
//!    kube-node-emu, whose volumes are local directories, the directory is
//!    emptied too before the new pod starts);
//! 3. the new pod starts with an empty volume, the cluster id and
//!    bootstrapping off, rejoins as a new incarnation of node 1 (a learner,
//!    shown in the status, until it has caught up), and the cluster is Ready
//!    with 3 voters, the same cluster id, and every message.
//!
//! Skipped (with the reason printed) without `KUBECONFIG`, and when the
//! broker binary under test (`FLYMQ_E2E_BROKER_BIN`) does not know
//! `FLYMQ_CLUSTER_BOOTSTRAP` yet: without it a broker with an empty volume
//! cannot tell joining from founding a cluster.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flymq_k8s_e2e::{
    brief, cluster_or_skip, condition, env_or, in_namespace, install_operator, record, service_client, step, wait_for,
};
use flymq_operator::crd::FlyMQCluster;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const TEST: &str = "volume_loss";
const CLUSTER: &str = "lost";

/// Why the broker under test cannot run this test, if it cannot.
fn broker_cannot_rejoin() -> Option<String> {
    let bin = std::env::var("FLYMQ_E2E_BROKER_BIN").ok().filter(|b| !b.is_empty())?;
    match std::fs::read(&bin) {
        Ok(bytes) if bytes.windows(17).any(|w| w == b"cluster_bootstrap") => None,
        Ok(_) => Some(format!(
            "the broker at {bin} does not know FLYMQ_CLUSTER_BOOTSTRAP yet (the broker side of volume loss)"
        )),
        Err(e) => Some(format!("cannot read the broker binary {bin}: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_whose_volume_was_lost_rejoins_as_a_new_incarnation() {
    let Some(client) = cluster_or_skip(TEST).await else {
        return;
    };
    if let Some(why) = broker_cannot_rejoin() {
        println!("{TEST}: skipped: {why}");
        return;
    }
    let mode = install_operator(&client, TEST)
        .await
        .unwrap_or_else(|e| panic!("{TEST}: installing the operator: {e}"));
    in_namespace(&client, TEST, mode, volume_loss).await;
}

async fn volume_loss(client: Client, ns: String) -> Result<(), String> {
    let clusters: Api<FlyMQCluster> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let topics: Api<flymq_operator::crd::Topic> = Api::namespaced(client.clone(), &ns);
    let ssa = PatchParams::apply(flymq_k8s_e2e::MANAGER).force();

    step(
        TEST,
        "1. FlyMQCluster with 3 brokers, topic events (replication factor 3)",
    );
    let manifest = json!({
        "apiVersion": "flymq.io/v1alpha1", "kind": "FlyMQCluster", "metadata": {"name": CLUSTER},
        "spec": {"replicas": 3, "image": {"name": env_or("FLYMQ_E2E_BROKER_IMAGE", "ghcr.io/flymq/flymq:0.1.0")},
                 "storage": {"size": "1Gi"}}
    });
    clusters
        .patch(CLUSTER, &ssa, &Patch::Apply(&manifest))
        .await
        .map_err(|e| format!("applying the FlyMQCluster: {e}"))?;
    let ready = |want_id: Option<String>| {
        let clusters = clusters.clone();
        async move {
            wait_for("3 voters, Ready, a cluster id", || {
                let (clusters, want_id) = (clusters.clone(), want_id.clone());
                async move {
                    let s = clusters.get(CLUSTER).await?.status.unwrap_or_default();
                    let ready = condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True");
                    let voters: BTreeSet<i64> = s.members.iter().filter(|m| m.role == "voter").map(|m| m.id).collect();
                    let id_ok = match (&want_id, &s.cluster_id) {
                        (Some(want), Some(id)) => want == id,
                        (None, Some(_)) => true,
                        _ => false,
                    };
                    Ok(if ready && voters == BTreeSet::from([0, 1, 2]) && id_ok {
                        Ok(s)
                    } else {
                        Err(brief(&s))
                    })
                }
            })
            .await
        }
    };
    let before = ready(None).await?;
    let cluster_id = before.cluster_id.clone().ok_or("no cluster id")?;
    step(TEST, &format!("cluster id {cluster_id}"));
    let topic = json!({"apiVersion": "flymq.io/v1alpha1", "kind": "Topic", "metadata": {"name": "events"},
                       "spec": {"clusterRef": {"name": CLUSTER}, "partitions": 1, "replicationFactor": 3}});
    topics
        .patch("events", &ssa, &Patch::Apply(&topic))
        .await
        .map_err(|e| format!("applying Topic events: {e}"))?;
    wait_for("Topic events synced", || {
        let topics = topics.clone();
        async move {
            let t = topics.get("events").await?;
            let conditions = t.status.map(|s| s.conditions).unwrap_or_default();
            Ok(match condition(&conditions, "Ready") {
                Some(c) if c.status == "True" => Ok(()),
                other => Err(brief(&other)),
            })
        }
    })
    .await?;
    let mut expected = Vec::new();
    if let Some(sc) = service_client(TEST, &ns, CLUSTER, "produce before the volume loss").await? {
        for i in 0..20 {
            let value = format!("before-{i}");
            sc.client
                .produce("events", value.clone())
                .await
                .map_err(|e| format!("producing {value}: {e}"))?;
            expected.push(value);
        }
    }

    step(TEST, "2. delete broker 1's volume claim and pod");
    let catching_up = record(clusters.clone(), CLUSTER, |c: &FlyMQCluster| {
        c.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "CatchingUp"))
            .map(|c| format!("{} {}", c.status, c.message))
            .unwrap_or_default()
    });
    let old_uid = pods
        .get(&format!("{CLUSTER}-1"))
        .await
        .map_err(|e| format!("reading pod {CLUSTER}-1: {e}"))?
        .uid()
        .unwrap_or_default();
    let claim = format!("data-{CLUSTER}-1");
    claims
        .delete(&claim, &DeleteParams::default())
        .await
        .map_err(|e| format!("deleting PersistentVolumeClaim {claim}: {e}"))?;
    pods.delete(&format!("{CLUSTER}-1"), &DeleteParams::default())
        .await
        .map_err(|e| format!("deleting pod {CLUSTER}-1: {e}"))?;
    // kube-node-emu keeps a claim's data in <root>/pv/<ns>/<claim>: empty it
    // once the old broker is gone and before the new pod is started (it is
    // bound first, a second or more before it runs).
    if let Ok(root) = std::env::var("FLYMQ_E2E_EMU_ROOT")
        && !root.is_empty()
    {
        let dir = PathBuf::from(root).join("pv").join(&ns).join(&claim);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if Instant::now() > deadline {
                return Err(format!("pod {CLUSTER}-1 was not recreated within 120 s"));
            }
            if let Some(p) = pods.get_opt(&format!("{CLUSTER}-1")).await.map_err(|e| e.to_string())?
                && p.uid().unwrap_or_default() != old_uid
            {
                let started = p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some();
                if started {
                    return Err("the new pod started before its volume could be emptied".into());
                }
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).map_err(|e| format!("recreating {}: {e}", dir.display()))?;
                step(TEST, &format!("emptied {}", dir.display()));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    step(TEST, "3. broker 1 rejoins as a new incarnation and catches up");
    let after = ready(Some(cluster_id.clone())).await?;
    let seen = catching_up.values();
    step(
        TEST,
        &format!(
            "CatchingUp as the status showed it (watched): {seen:?} (broker 1 may catch up between the operator's \
             ClusterStatus calls)"
        ),
    );
    if after.cluster_id.as_deref() != Some(cluster_id.as_str()) {
        return Err(format!(
            "cluster id changed: {:?} -> {:?}",
            cluster_id, after.cluster_id
        ));
    }
    if let Some(sc) = service_client(TEST, &ns, CLUSTER, "every message after the volume loss").await? {
        let batch = sc
            .client
            .fetch("events", 0, 0, 1000, "")
            .await
            .map_err(|e| format!("fetching events: {e}"))?;
        let read: Vec<String> = batch
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect();
        if read != expected {
            return Err(format!(
                "messages after the volume loss: {read:?}, expected {expected:?}"
            ));
        }
    }
    clusters
        .delete(CLUSTER, &DeleteParams::default())
        .await
        .map_err(|e| format!("deleting the FlyMQCluster: {e}"))?;
    step(TEST, "done");
    Ok(())
}
