//! The operator end to end on a real Kubernetes cluster, in one namespace:
//!
//! 1. install the operator (Helm chart, kustomize or in-process, see
//!    `FLYMQ_E2E_OPERATOR`), apply a 3-broker FlyMQCluster, wait for Ready
//!    with 3 members and a metadata leader; the cluster id the brokers
//!    report is recorded in the status and the identity ConfigMap turns
//!    bootstrapping off;
//! 2. apply Topics `orders` (deletionPolicy Delete) and `audit` (Retain),
//!    wait until both are Synced with the finalizer; grow `orders`;
//! 3. apply a User (generated password) and an ACL: both Synced, and alice
//!    authenticates with the generated Secret (the cluster runs with
//!    authentication on; every client uses the admin Secret);
//! 4. produce and consume through the client Service (port-forward, or
//!    directly from a pod; see `FLYMQ_E2E_CLIENT_ACCESS`);
//! 5. scale 3 -> 5 (through the scale subresource, as `kubectl scale` does);
//!    broker 2 is decommissioned through the admin API while its pod stays,
//!    and the operator restarts that pod so it rejoins (in-cluster access
//!    only); -> 3 (the operator decommissions broker 4, shrinks the
//!    StatefulSet to 4, then broker 3 and 3): 3 members left, never
//!    Degraded, the StatefulSet never below the brokers still members,
//!    every message still readable;
//! 6. roll a configuration change: the StatefulSet is `OnDelete` and the
//!    operator replaces the pods one at a time (never two unavailable as
//!    a kubelet would judge them, see `Unavailable`), the
//!    metadata leader last, and the cluster is Ready and serving afterwards;
//! 7. delete both Topics (the Delete one disappears from the brokers, the
//!    Retain one stays), the User and the ACL, then the cluster.
//!
//! Without `KUBECONFIG` it prints "skipped: KUBECONFIG not set" and passes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flymq_k8s_e2e::{
    ServiceClient, brief, cluster_or_skip, condition, env_or, in_namespace, install_operator, record, service_client,
    step, wait_for,
};
use flymq_operator::builders::statefulset::CONFIG_HASH_ANNOTATION;
use flymq_operator::controller::admin_object::{AdminObject, FINALIZER};
use flymq_operator::crd::{Acl, Condition, FlyMQCluster, FlyMQClusterStatus, Topic, User};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const TEST: &str = "operator_end_to_end";
const CLUSTER: &str = "e2e";

#[tokio::test(flavor = "multi_thread")]
async fn operator_end_to_end() {
    let Some(client) = cluster_or_skip(TEST).await else {
        return;
    };
    let mode = install_operator(&client, TEST)
        .await
        .unwrap_or_else(|e| panic!("{TEST}: installing the operator: {e}"));
    in_namespace(&client, TEST, mode, lifecycle).await;
}

/// Everything one run works with.
struct Env {
    ns: String,
    clusters: Api<FlyMQCluster>,
    topics: Api<Topic>,
    users: Api<User>,
    acls: Api<Acl>,
    statefulsets: Api<StatefulSet>,
    config_maps: Api<ConfigMap>,
    secrets: Api<Secret>,
    pods: Api<Pod>,
    ssa: PatchParams,
    image: String,
    storage: Value,
}

impl Env {
    fn new(client: Client, ns: String) -> Env {
        let mut storage = json!({"size": "1Gi"});
        if let Ok(class) = std::env::var("FLYMQ_E2E_STORAGE_CLASS")
            && !class.is_empty()
        {
            storage["storageClassName"] = json!(class);
        }
        Env {
            clusters: Api::namespaced(client.clone(), &ns),
            topics: Api::namespaced(client.clone(), &ns),
            users: Api::namespaced(client.clone(), &ns),
            acls: Api::namespaced(client.clone(), &ns),
            statefulsets: Api::namespaced(client.clone(), &ns),
            config_maps: Api::namespaced(client.clone(), &ns),
            secrets: Api::namespaced(client.clone(), &ns),
            pods: Api::namespaced(client, &ns),
            ns,
            ssa: PatchParams::apply(flymq_k8s_e2e::MANAGER).force(),
            image: env_or("FLYMQ_E2E_BROKER_IMAGE", "ghcr.io/flymq/flymq:0.1.0"),
            storage,
        }
    }

    /// The value of `<cluster>-cluster-secret`, checking that the
    /// FlyMQCluster owns it.
    async fn cluster_secret(&self) -> Result<Vec<u8>, String> {
        let name = format!("{CLUSTER}-cluster-secret");
        let secret = self
            .secrets
            .get(&name)
            .await
            .map_err(|e| format!("reading Secret {name}: {e}"))?;
        if !secret.owner_references().iter().any(|o| o.kind == "FlyMQCluster") {
            return Err(format!("Secret {name} is not owned by the FlyMQCluster"));
        }
        let value = secret
            .data
            .and_then(|d| d.get("secret").map(|v| v.0.clone()))
            .unwrap_or_default();
        if value.len() < 16 {
            return Err(format!("Secret {name} has no usable `secret` ({} bytes)", value.len()));
        }
        Ok(value)
    }

    async fn apply_cluster(&self, replicas: i32, config: &BTreeMap<&str, &str>) -> Result<(), String> {
        let manifest = json!({
            "apiVersion": "flymq.io/v1alpha1", "kind": "FlyMQCluster",
            "metadata": {"name": CLUSTER},
            "spec": {"replicas": replicas, "image": {"name": self.image}, "storage": self.storage,
                     "resources": {"requests": {"cpu": "1"}},
                     "config": config}
        });
        self.clusters
            .patch(CLUSTER, &self.ssa, &Patch::Apply(&manifest))
            .await
            .map(drop)
            .map_err(|e| format!("applying the FlyMQCluster with {replicas} brokers: {e}"))
    }

    /// Waits for `replicas` ready brokers, exactly the members `0..replicas`,
    /// a metadata leader, Ready=True and not Degraded.
    async fn wait_cluster_ready(&self, replicas: i32) -> Result<FlyMQClusterStatus, String> {
        let want: BTreeSet<i64> = (0..i64::from(replicas)).collect();
        let want = &want;
        wait_for(
            &format!("{replicas} ready brokers, members {want:?}, a metadata leader"),
            || async move {
                let c = self.clusters.get(CLUSTER).await?;
                let sts = self.statefulsets.get_opt(CLUSTER).await?;
                let sts_replicas = sts.as_ref().and_then(|s| s.spec.as_ref()?.replicas);
                let Some(s) = c.status else {
                    return Ok(Err("no status yet".into()));
                };
                let ready = condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True");
                let degraded = condition(&s.conditions, "Degraded").is_some_and(|c| c.status == "True");
                let members: BTreeSet<i64> = s.members.iter().map(|m| m.id).collect();
                Ok(
                    if ready
                        && !degraded
                        && sts_replicas == Some(replicas)
                        && s.ready_replicas == replicas
                        && members == *want
                        && s.leader.is_some()
                    {
                        Ok(s)
                    } else {
                        Err(format!("StatefulSet replicas {sts_replicas:?}; {}", brief(&s)))
                    },
                )
            },
        )
        .await
    }

    /// Watches the FlyMQCluster's Progressing reason, every change of it.
    fn progressing_reasons(&self) -> flymq_k8s_e2e::History<String> {
        record(self.clusters.clone(), CLUSTER, |c: &FlyMQCluster| {
            c.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Progressing"))
                .map(|p| p.reason.clone())
                .unwrap_or_default()
        })
    }

    /// The broker pods by name, with their uid, readiness and revision.
    async fn broker_pods(&self) -> Result<BTreeMap<String, (String, bool, String)>, kube::Error> {
        let lp = ListParams::default().labels(&format!(
            "app.kubernetes.io/name=flymq,app.kubernetes.io/instance={CLUSTER}"
        ));
        let pods = self.pods.list(&lp).await?;
        Ok(pods
            .items
            .iter()
            .map(|p| {
                let ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                let revision = p.labels().get("controller-revision-hash").cloned().unwrap_or_default();
                (p.name_any(), (p.uid().unwrap_or_default(), ready, revision))
            })
            .collect())
    }
}

/// How long a kubelet takes to mark a ready broker unready: the third
/// failed readiness probe (`failureThreshold` 3, `periodSeconds` 5, as the
/// operator's StatefulSet sets them) comes 10 s after the first.
const KUBELET_UNREADY_AFTER: Duration = Duration::from_secs(10);

/// Counts the brokers Kubernetes would take as unavailable, from successive
/// looks at the pods. kube-node-emu marks a pod unready at its first failed
/// probe, so a broker that is unready for a second (a group electing a
/// leader while another broker stops) shows up there but not on a real
/// kubelet. A pod that has been ready under its uid counts once it has been
/// unready for `KUBELET_UNREADY_AFTER`; a new pod counts until it is first
/// ready; a missing one always counts.
#[derive(Default)]
struct Unavailable {
    unready_since: HashMap<String, Instant>,
    seen_ready: HashSet<String>,
}

impl Unavailable {
    fn count(&mut self, pods: &BTreeMap<String, (String, bool, String)>, expected: usize) -> usize {
        let mut down = expected.saturating_sub(pods.len());
        for (uid, ready, _) in pods.values() {
            if *ready {
                self.seen_ready.insert(uid.clone());
                self.unready_since.remove(uid);
                continue;
            }
            let since = *self.unready_since.entry(uid.clone()).or_insert_with(Instant::now);
            if !self.seen_ready.contains(uid) || since.elapsed() >= KUBELET_UNREADY_AFTER {
                down += 1;
            }
        }
        down
    }
}

/// Waits until the `Ready` condition of `name` has `status` and `reason`,
/// and the finalizer is on the object; returns the condition.
async fn wait_condition<K: AdminObject>(
    api: &Api<K>,
    name: &str,
    status: &str,
    reason: &str,
) -> Result<Condition, String> {
    wait_for(
        &format!("{} {name}: Ready={status} ({reason})", K::kind(&())),
        || async move {
            let obj = api.get(name).await?;
            let conditions: Vec<Condition> = obj.admin_status().map(|s| s.conditions.clone()).unwrap_or_default();
            let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);
            Ok(match condition(&conditions, "Ready") {
                Some(c) if c.status == status && c.reason == reason && has_finalizer => Ok(c.clone()),
                other => Err(format!("finalizer {has_finalizer}, Ready {}", brief(&other))),
            })
        },
    )
    .await
}

/// Deletes `name` and waits until it is gone (its finalizer released).
async fn delete_and_wait<K: AdminObject>(api: &Api<K>, name: &str) -> Result<(), String> {
    let kind = K::kind(&());
    api.delete(name, &DeleteParams::default())
        .await
        .map_err(|e| format!("deleting {kind} {name}: {e}"))?;
    wait_for(&format!("{kind} {name} to be gone"), || async move {
        Ok(match api.get_opt(name).await? {
            None => Ok(()),
            Some(obj) => Err(format!(
                "still there, finalizers {:?}, status {}",
                obj.finalizers(),
                brief(&obj.admin_status())
            )),
        })
    })
    .await
}

/// Every value in every partition of `topic`, read from offset 0.
async fn read_all(sc: &ServiceClient, topic: &str, partitions: i32) -> Result<Vec<String>, String> {
    let mut values = Vec::new();
    for p in 0..partitions {
        let mut offset = 0;
        loop {
            let batch = sc
                .client
                .fetch(topic, p, offset, 1000, "")
                .await
                .map_err(|e| format!("fetching {topic}/{p} at {offset} through {}: {e}", sc.bootstrap))?;
            if batch.records.is_empty() {
                break;
            }
            values.extend(
                batch
                    .records
                    .iter()
                    .map(|r| String::from_utf8_lossy(&r.value).into_owned()),
            );
            offset = batch.next_offset;
        }
    }
    Ok(values)
}

/// Produces `count` keyed messages `<tag>-<i>` to `topic` through the
/// client Service and checks that every message of `expected` plus these is
/// read back exactly once. Returns the new expected set; unchanged (with a
/// printed reason) when the Service cannot be reached from here.
async fn produce_and_consume(
    env: &Env,
    what: &str,
    topic: &str,
    partitions: i32,
    tag: &str,
    expected: &BTreeSet<String>,
) -> Result<BTreeSet<String>, String> {
    let Some(sc) = service_client(TEST, &env.ns, CLUSTER, what).await? else {
        return Ok(expected.clone());
    };
    let mut expected = expected.clone();
    for i in 0..20 {
        let value = format!("{tag}-{i}");
        // Leaders may still be settling right after a change: a few tries.
        let mut tries = 0;
        loop {
            tries += 1;
            match sc
                .client
                .produce_with_key(topic, format!("key-{i}"), value.clone())
                .await
            {
                Ok(_) => break,
                Err(e) if tries < 10 => {
                    step(TEST, &format!("produce of {value} failed ({e}); retrying"));
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
                Err(e) => return Err(format!("producing {value} through {}: {e}", sc.bootstrap)),
            }
        }
        expected.insert(value);
    }
    // Reads may be served by a follower a moment behind the leader: give
    // missing messages a little time, but never accept extra or doubled ones.
    let mut tries = 0;
    let read = loop {
        tries += 1;
        let values = read_all(&sc, topic, partitions).await?;
        let read: BTreeSet<String> = values.iter().cloned().collect();
        if values.len() != read.len() {
            return Err(format!("{what}: some messages were read twice: {values:?}"));
        }
        let extra: Vec<_> = read.difference(&expected).collect();
        if !extra.is_empty() {
            return Err(format!("{what}: unexpected messages {extra:?}"));
        }
        if read == expected {
            break read;
        }
        let missing: Vec<_> = expected.difference(&read).collect();
        if tries >= 15 {
            return Err(format!("{what}: messages missing after {tries} reads: {missing:?}"));
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    };
    step(TEST, &format!("{what}: {} messages read back exactly once", read.len()));
    Ok(expected)
}

fn topic_manifest(name: &str, partitions: i32, deletion_policy: &str) -> Value {
    json!({
        "apiVersion": "flymq.io/v1alpha1", "kind": "Topic",
        "metadata": {"name": name},
        "spec": {"clusterRef": {"name": CLUSTER}, "partitions": partitions, "replicationFactor": 3,
                 "config": {"retention": {"time": "1d"}}, "deletionPolicy": deletion_policy}
    })
}

/// Step 5, in the middle: broker 2 is decommissioned through the admin API
/// while the StatefulSet keeps its pod (what a scale-down reverted before it
/// finished leaves). It is not a member and not ready; the operator restarts
/// its pod, and it joins again on its volume. Needs the pods' addresses
/// (`FLYMQ_E2E_CLIENT_ACCESS=in-cluster`); skipped otherwise.
async fn removed_broker_rejoins(env: &Env) -> Result<(), String> {
    let what = "5. broker 2 removed through the admin API while its pod stays: the operator restarts it, it rejoins";
    if flymq_k8s_e2e::client_access()? != flymq_k8s_e2e::ClientAccess::InCluster {
        step(
            TEST,
            &format!("SKIPPED step '{what}': the admin API of a pod is reached in-cluster only"),
        );
        return Ok(());
    }
    step(TEST, what);
    let pod =
        |name: &'static str| async move { env.pods.get(name).await.map_err(|e| format!("reading pod {name}: {e}")) };
    let old_uid = pod("e2e-2").await?.uid().unwrap_or_default();
    let ip = pod("e2e-0")
        .await?
        .status
        .and_then(|s| s.pod_ip)
        .ok_or("pod e2e-0 has no IP")?;
    let options = flymq_client::AdminOptions {
        credentials: Some(flymq_k8s_e2e::secret_credentials(&env.ns, &format!("{CLUSTER}-admin")).await?),
        ..flymq_client::AdminOptions::default()
    };
    let admin = flymq_client::AdminClient::connect_with(&format!("{ip}:9096"), options)
        .await
        .map_err(|e| format!("connecting to the admin API of e2e-0 at {ip}:9096: {e}"))?;
    let reasons = env.progressing_reasons();
    wait_for("the watch to start", || {
        let seen = reasons.values();
        async move {
            Ok::<_, kube::Error>(if seen.is_empty() {
                Err("no status seen yet".to_owned())
            } else {
                Ok(())
            })
        }
    })
    .await?;
    let moved = admin
        .decommission(2)
        .await
        .map_err(|e| format!("decommissioning broker 2: {e}"))?;
    step(
        TEST,
        &format!("broker 2 decommissioned ({moved} partitions moved); its pod stays"),
    );
    let old_uid = &old_uid;
    wait_for("the operator to restart pod e2e-2", || async move {
        let now = env.pods.get_opt("e2e-2").await?;
        let uid = now.as_ref().and_then(|p| p.uid()).unwrap_or_default();
        Ok(if !uid.is_empty() && uid != *old_uid {
            Ok(())
        } else {
            Err(format!("pod e2e-2 uid {uid:?}"))
        })
    })
    .await?;
    env.wait_cluster_ready(5).await?;
    let reasons = reasons.values();
    if !reasons.iter().any(|r| r == "RestartingRemovedBroker") {
        return Err(format!("Progressing never said RestartingRemovedBroker: {reasons:?}"));
    }
    step(TEST, "broker 2 is a member again, and the cluster Ready with 5 brokers");
    Ok(())
}

async fn lifecycle(client: Client, ns: String) -> Result<(), String> {
    let env = &Env::new(client, ns);
    let no_config = BTreeMap::new();

    // 1. Three brokers.
    step(TEST, "1. FlyMQCluster with 3 brokers");
    env.apply_cluster(3, &no_config).await?;
    let ready = env.wait_cluster_ready(3).await?;
    let cluster_id = wait_for(
        "the cluster id in the status and the identity ConfigMap",
        || async move {
            let s = env.clusters.get(CLUSTER).await?.status.unwrap_or_default();
            let identity = env.config_maps.get(&format!("{CLUSTER}-identity")).await?;
            let data = identity.data.unwrap_or_default();
            Ok(match &s.cluster_id {
                Some(id)
                    if data.get("bootstrap").map(String::as_str) == Some("never")
                        && data.get("cluster-id") == Some(id) =>
                {
                    Ok(id.clone())
                }
                other => Err(format!("status clusterId {other:?}, identity {data:?}")),
            })
        },
    )
    .await?;
    step(
        TEST,
        &format!(
            "cluster id {cluster_id} recorded; brokers now start with bootstrapping off (leader {:?})",
            ready.leader
        ),
    );

    // The brokers run with as many async threads as the pod requests CPUs
    // (they would start one per CPU of the node without a CPU limit).
    let rendered = env
        .config_maps
        .get(&format!("{CLUSTER}-config"))
        .await
        .map_err(|e| format!("reading the broker configuration: {e}"))?
        .data
        .unwrap_or_default()
        .remove("flymq.yaml")
        .unwrap_or_default();
    if !rendered.lines().any(|l| l.trim() == "worker_threads: 1") {
        return Err(format!(
            "the broker configuration does not size its threads to the CPU request:\n{rendered}"
        ));
    }
    step(TEST, "the brokers' worker_threads follow the CPU request (1)");

    // The brokers authenticate each other with the generated cluster secret.
    let cluster_secret = env.cluster_secret().await?;
    step(
        TEST,
        "the cluster secret was generated and is owned by the FlyMQCluster",
    );

    // 2. Topics, synced through the admin API, guarded by the finalizer.
    step(TEST, "2. Topics orders (Delete) and audit (Retain)");
    for (name, policy) in [("orders", "Delete"), ("audit", "Retain")] {
        env.topics
            .patch(name, &env.ssa, &Patch::Apply(&topic_manifest(name, 3, policy)))
            .await
            .map_err(|e| format!("applying Topic {name}: {e}"))?;
    }
    for name in ["orders", "audit"] {
        let ready = wait_condition(&env.topics, name, "True", "Synced").await?;
        if !ready
            .message
            .contains("3 partitions, replication factor 3, retention 1d")
        {
            return Err(format!("unexpected Topic {name} status message: {}", ready.message));
        }
    }
    env.topics
        .patch(
            "orders",
            &env.ssa,
            &Patch::Apply(&topic_manifest("orders", 4, "Delete")),
        )
        .await
        .map_err(|e| format!("growing Topic orders: {e}"))?;
    wait_for("Topic orders to have 4 partitions", || async move {
        let t = env.topics.get("orders").await?;
        let conditions = t.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
        Ok(match condition(&conditions, "Ready") {
            Some(c) if c.status == "True" && c.message.contains("4 partitions") => Ok(()),
            other => Err(brief(&other)),
        })
    })
    .await?;

    // 3. Users and ACLs, applied through the authenticated admin API.
    step(
        TEST,
        "3. User alice (generated password) and ACL orders-read: Synced, alice authenticates",
    );
    let user = json!({"apiVersion": "flymq.io/v1alpha1", "kind": "User", "metadata": {"name": "alice"},
                      "spec": {"clusterRef": {"name": CLUSTER}, "roles": ["producer"]}});
    env.users
        .patch("alice", &env.ssa, &Patch::Apply(&user))
        .await
        .map_err(|e| format!("applying User alice: {e}"))?;
    let acl = json!({"apiVersion": "flymq.io/v1alpha1", "kind": "ACL", "metadata": {"name": "orders-read"},
                     "spec": {"clusterRef": {"name": CLUSTER}, "topic": {"name": "orders"}, "users": ["alice"]}});
    env.acls
        .patch("orders-read", &env.ssa, &Patch::Apply(&acl))
        .await
        .map_err(|e| format!("applying ACL orders-read: {e}"))?;
    wait_condition(&env.users, "alice", "True", "Synced").await?;
    wait_condition(&env.acls, "orders-read", "True", "Synced").await?;
    let alice = flymq_k8s_e2e::secret_credentials(&env.ns, "alice-flymq-user").await?;
    if let Some(sc) = flymq_k8s_e2e::service_client_as(TEST, &env.ns, CLUSTER, "alice authenticates", alice).await? {
        step(TEST, &format!("alice authenticated through {}", sc.bootstrap));
    }

    // 4. Produce and consume through the client Service.
    step(TEST, "4. produce and consume through the client Service");
    let expected = produce_and_consume(
        env,
        "produce/consume on 3 brokers",
        "orders",
        4,
        "first",
        &BTreeSet::new(),
    )
    .await?;

    // 5. Scale 3 -> 5 -> 3; the scale-down decommissions brokers first.
    step(
        TEST,
        "5. scale to 5 brokers through the scale subresource (kubectl scale)",
    );
    let scale = env
        .clusters
        .patch_scale(
            CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .map_err(|e| format!("scaling through the scale subresource: {e}"))?;
    let selector = scale.status.and_then(|s| s.selector).unwrap_or_default();
    if !selector.contains("app.kubernetes.io/instance=e2e") {
        return Err(format!("the scale subresource reports the selector {selector:?}"));
    }
    env.wait_cluster_ready(5).await?;
    // Own spec.replicas again for the applies below.
    env.apply_cluster(5, &no_config).await?;
    removed_broker_rejoins(env).await?;
    step(
        TEST,
        "5. scale back to 3 brokers (decommission 4, then 3, one per step)",
    );
    // Watches, not polls: every StatefulSet size and Progressing reason.
    let sizes = record(env.statefulsets.clone(), CLUSTER, |s: &StatefulSet| {
        s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
    });
    let reasons = env.progressing_reasons();
    // Both watches must have delivered their first state (5 brokers) before
    // the change, or a fast first decommission is missed.
    wait_for("the watches to start", || {
        let (s, r) = (sizes.values(), reasons.values());
        async move {
            Ok::<_, kube::Error>(if s == vec![5] && !r.is_empty() {
                Ok(())
            } else {
                Err(format!("sizes {s:?}, reasons {r:?}"))
            })
        }
    })
    .await?;
    env.apply_cluster(3, &no_config).await?;
    wait_for("the StatefulSet at 3 with members 0, 1, 2", || async move {
        let c = env.clusters.get(CLUSTER).await?;
        let s = c.status.unwrap_or_default();
        let sts = env.statefulsets.get(CLUSTER).await?;
        let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let members: BTreeSet<i64> = s.members.iter().map(|m| m.id).collect();
        if let Some(d) = condition(&s.conditions, "Degraded").filter(|d| d.status == "True") {
            return Ok(Err(format!(
                "Degraded during the scale-down: {} {}",
                d.reason, d.message
            )));
        }
        Ok(if replicas == 3 && members == BTreeSet::from([0, 1, 2]) {
            Ok(())
        } else {
            Err(format!("StatefulSet replicas {replicas}, members {members:?}"))
        })
    })
    .await?;
    env.wait_cluster_ready(3).await?;
    let (sizes, reasons) = (sizes.values(), reasons.values());
    step(
        TEST,
        &format!("StatefulSet sizes during the scale-down: {sizes:?}; Progressing reasons: {reasons:?}"),
    );
    if sizes != vec![5, 4, 3] {
        return Err(format!(
            "the StatefulSet should shrink one broker at a time, each after its decommission: {sizes:?}"
        ));
    }
    if !reasons.iter().any(|r| r == "Decommissioning") {
        return Err(format!("Progressing never said Decommissioning: {reasons:?}"));
    }
    wait_for("only broker pods e2e-0, e2e-1 and e2e-2 left", || async move {
        let pods = env.broker_pods().await?;
        let names: BTreeSet<&str> = pods.keys().map(String::as_str).collect();
        Ok(if names == BTreeSet::from(["e2e-0", "e2e-1", "e2e-2"]) {
            Ok(())
        } else {
            Err(format!("broker pods {names:?}"))
        })
    })
    .await?;
    let expected = produce_and_consume(
        env,
        "no message lost by the scale-down",
        "orders",
        4,
        "scaled",
        &expected,
    )
    .await?;

    // 6. A configuration change rolls the brokers one at a time.
    step(TEST, "6. roll a configuration change");
    let hash = |sts: &StatefulSet| {
        sts.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(CONFIG_HASH_ANNOTATION))
            .cloned()
    };
    let before = env
        .statefulsets
        .get(CLUSTER)
        .await
        .map_err(|e| format!("reading the StatefulSet: {e}"))?;
    let old_hash = hash(&before).ok_or("the pod template has no config hash")?;
    let old_uids: BTreeSet<String> = env
        .broker_pods()
        .await
        .map_err(|e| format!("listing pods: {e}"))?
        .values()
        .map(|(uid, _, _)| uid.clone())
        .collect();
    let strategy = before
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.clone());
    if strategy.as_deref() != Some("OnDelete") {
        return Err(format!(
            "the StatefulSet's update strategy is {strategy:?}, not OnDelete"
        ));
    }
    let leader = env
        .clusters
        .get(CLUSTER)
        .await
        .map_err(|e| format!("reading the FlyMQCluster: {e}"))?
        .status
        .and_then(|s| s.leader)
        .ok_or("no metadata leader before the roll")?;
    env.apply_cluster(3, &BTreeMap::from([("log_level", "debug")])).await?;
    let most_unready = AtomicUsize::new(0);
    let unavailable = std::sync::Mutex::new(Unavailable::default());
    let replaced_order = std::sync::Mutex::new(Vec::<String>::new());
    wait_for("every broker replaced with the new configuration", || {
        let (env, old_hash, old_uids, most_unready, unavailable, replaced_order) =
            (env, &old_hash, &old_uids, &most_unready, &unavailable, &replaced_order);
        async move {
            let sts = env.statefulsets.get(CLUSTER).await?;
            let pods = env.broker_pods().await?;
            if let Ok(mut order) = replaced_order.lock() {
                for (name, (uid, _, _)) in &pods {
                    if !old_uids.contains(uid) && !order.contains(name) {
                        order.push(name.clone());
                    }
                }
            }
            // A pod being replaced counts whether it is unready or missing.
            if let Ok(mut unavailable) = unavailable.lock() {
                most_unready.fetch_max(unavailable.count(&pods, 3), Ordering::Relaxed);
            }
            let new_hash = hash(&sts);
            let status = sts.status.clone().unwrap_or_default();
            let revision = status.update_revision.clone().unwrap_or_default();
            let replaced = pods.len() == 3
                && pods
                    .values()
                    .all(|(uid, ready, rev)| *ready && !old_uids.contains(uid) && *rev == revision);
            Ok(
                if new_hash.as_ref() != Some(old_hash) && replaced && status.updated_replicas == Some(3) {
                    Ok(())
                } else {
                    Err(format!(
                        "hash {new_hash:?} (was {old_hash}), pods {pods:?}, StatefulSet {}",
                        brief(&status)
                    ))
                },
            )
        }
    })
    .await?;
    let most_unready = most_unready.into_inner();
    if most_unready > 1 {
        return Err(format!(
            "{most_unready} brokers were unavailable at once during the roll; expected one at a time"
        ));
    }
    let order = replaced_order.into_inner().unwrap_or_default();
    step(
        TEST,
        &format!("pods replaced in this order: {order:?} (metadata leader {leader})"),
    );
    if order.last() != Some(&leader) {
        return Err(format!("the metadata leader {leader} was not replaced last: {order:?}"));
    }
    env.wait_cluster_ready(3).await?;
    produce_and_consume(env, "serving after the roll", "orders", 4, "rolled", &expected).await?;
    if env.cluster_secret().await? != cluster_secret {
        return Err("the cluster secret changed across resyncs and the roll".into());
    }

    // 7. Deletion: Topics by deletionPolicy, User, ACL, then the cluster.
    step(TEST, "7. delete Topic orders (Delete) and audit (Retain)");
    delete_and_wait(&env.topics, "orders").await?;
    delete_and_wait(&env.topics, "audit").await?;
    if let Some(sc) = service_client(TEST, &env.ns, CLUSTER, "topics left on the brokers").await? {
        // The broker behind the Service may apply the deletion a moment later.
        let mut tries = 0;
        loop {
            tries += 1;
            let topics = sc
                .client
                .list_topics()
                .await
                .map_err(|e| format!("listing topics through {}: {e}", sc.bootstrap))?;
            let orders = topics.iter().any(|t| t == "orders");
            let audit = topics.iter().any(|t| t == "audit");
            if !audit {
                return Err(format!(
                    "Topic audit (deletionPolicy Retain) was deleted on the brokers: {topics:?}"
                ));
            }
            if !orders {
                step(
                    TEST,
                    "the brokers keep audit (Retain) and no longer have orders (Delete)",
                );
                break;
            }
            if tries >= 15 {
                return Err(format!(
                    "Topic orders (deletionPolicy Delete) is still on the brokers: {topics:?}"
                ));
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    }
    step(TEST, "7. delete User, ACL and the FlyMQCluster");
    delete_and_wait(&env.users, "alice").await?;
    delete_and_wait(&env.acls, "orders-read").await?;
    env.clusters
        .delete(CLUSTER, &DeleteParams::default())
        .await
        .map_err(|e| format!("deleting the FlyMQCluster: {e}"))?;
    wait_for("the FlyMQCluster and its StatefulSet to be gone", || async move {
        let c = env.clusters.get_opt(CLUSTER).await?;
        let s = env.statefulsets.get_opt(CLUSTER).await?;
        Ok(if c.is_none() && s.is_none() {
            Ok(())
        } else {
            Err(format!(
                "cluster present: {}, StatefulSet present: {}",
                c.is_some(),
                s.is_some()
            ))
        })
    })
    .await?;
    step(TEST, "done");
    Ok(())
}
