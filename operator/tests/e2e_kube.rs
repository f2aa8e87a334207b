//! End-to-end tests against a real Kubernetes cluster. They run only when
//! `KUBECONFIG` is set; otherwise each prints a "skipped" line and passes.
//!
//! They install the CRDs, then drive a FlyMQCluster through its life in a
//! fresh namespace: three brokers ready with a metadata leader, a Topic
//! synced to the brokers, a scale-down to two brokers (decommission first),
//! and deletion. The operator must be running in the cluster (Helm chart or
//! `deploy/kustomize`) with images the cluster can pull, or be started in
//! this process with `FLYMQ_E2E_OPERATOR=in-process` (then it must reach
//! the brokers' admin API: run the tests in a pod, or point
//! `FLYMQ_OPERATOR_ADMIN_URL_TEMPLATE` at a port-forward).
//! See docs/operator.md, "End-to-end tests", for every variable.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use flymq_operator::crd::{self, FlyMQCluster, Topic};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const MANAGER: &str = "flymq-e2e";

/// The cluster to test against, or `None` (after saying so) without one.
async fn cluster_or_skip(test: &str) -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none_or(|v| v.is_empty()) {
        println!("{test}: skipped: KUBECONFIG not set (see docs/operator.md, \"End-to-end tests\")");
        return None;
    }
    match Client::try_default().await {
        Ok(c) => Some(c),
        Err(e) => panic!("{test}: KUBECONFIG is set but no client can be built from it: {e}"),
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// How long one wait may take (`FLYMQ_E2E_TIMEOUT_SECS`, default 600).
fn timeout() -> Duration {
    Duration::from_secs(env_or("FLYMQ_E2E_TIMEOUT_SECS", "600").parse().unwrap_or(600))
}

/// Polls `probe` every two seconds until it answers `Ok(Some(_))`; its
/// `Ok(None)` means "not yet" and the last `describe` is reported on timeout.
async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<T, String>, kube::Error>>,
{
    let deadline = Instant::now() + timeout();
    let mut last: String;
    loop {
        match probe().await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(state)) => last = state,
            Err(e) => last = format!("API error: {e}"),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out after {}s waiting for {what}; last seen: {last}",
                timeout().as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Server-side applies every CRD and waits until the API server serves them.
async fn install_crds(client: &Client) -> Result<(), String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crd::all() {
        let name = crd.name_any();
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
            .await
            .map_err(|e| format!("applying CRD {name}: {e}"))?;
        wait_for(&format!("CRD {name} to be established"), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok(if established {
                    Ok(())
                } else {
                    Err("not established".into())
                })
            }
        })
        .await?;
    }
    Ok(())
}

fn condition<'a>(conditions: &'a [crd::Condition], type_: &str) -> Option<&'a crd::Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn brief<T: Debug>(value: &T) -> String {
    let text = format!("{value:?}");
    text.chars().take(600).collect()
}

/// Runs `body` in a fresh namespace, then deletes the namespace (unless
/// `FLYMQ_E2E_KEEP=1`) whether or not `body` succeeded.
async fn in_namespace<F, Fut>(client: &Client, test: &str, body: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or_default();
    let ns = format!("flymq-e2e-{stamp}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": "flymq-e2e"}}
    }))
    .expect("namespace object");
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot create namespace {ns}: {e}"));

    if env_or("FLYMQ_E2E_OPERATOR", "deployed") == "in-process" {
        let config = flymq_operator::runtime::Config {
            namespaces: vec![ns.clone()],
            http_addr: "127.0.0.1:0".parse().expect("address"),
            instance: Some(MANAGER.into()),
            admin_url_template: env_or(
                "FLYMQ_OPERATOR_ADMIN_URL_TEMPLATE",
                flymq_operator::admin::DEFAULT_URL_TEMPLATE,
            ),
        };
        tokio::spawn(async move {
            if let Err(e) = flymq_operator::runtime::run(config).await {
                eprintln!("in-process operator stopped: {e}");
            }
        });
    }

    let outcome = body(client.clone(), ns.clone()).await;
    if env_or("FLYMQ_E2E_KEEP", "0") != "1" {
        let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    }
    if let Err(e) = outcome {
        panic!("{test} (namespace {ns}): {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crds_install_and_are_served() {
    let Some(client) = cluster_or_skip("crds_install_and_are_served").await else {
        return;
    };
    install_crds(&client).await.expect("CRDs install");
    // Every kind can be listed once established.
    let ns = env_or("FLYMQ_E2E_LIST_NAMESPACE", "default");
    Api::<FlyMQCluster>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .expect("FlyMQClusters are served");
    Api::<Topic>::namespaced(client, &ns)
        .list(&Default::default())
        .await
        .expect("Topics are served");
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_topic_scale_down_and_delete() {
    let Some(client) = cluster_or_skip("cluster_topic_scale_down_and_delete").await else {
        return;
    };
    install_crds(&client).await.expect("CRDs install");
    in_namespace(&client, "cluster_topic_scale_down_and_delete", lifecycle).await;
}

async fn lifecycle(client: Client, ns: String) -> Result<(), String> {
    let clusters: Api<FlyMQCluster> = Api::namespaced(client.clone(), &ns);
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let ssa = PatchParams::apply(MANAGER).force();
    let image = env_or("FLYMQ_E2E_BROKER_IMAGE", "ghcr.io/flymq/flymq:0.1.0");
    let storage_class = std::env::var("FLYMQ_E2E_STORAGE_CLASS").ok().filter(|s| !s.is_empty());

    // 1. Three brokers.
    let mut storage = json!({"size": "1Gi"});
    if let Some(class) = &storage_class {
        storage["storageClassName"] = json!(class);
    }
    let cluster = |replicas: i32| {
        json!({
            "apiVersion": "flymq.io/v1alpha1", "kind": "FlyMQCluster",
            "metadata": {"name": "e2e"},
            "spec": {"replicas": replicas, "image": {"name": image}, "storage": storage}
        })
    };
    clusters
        .patch("e2e", &ssa, &Patch::Apply(&cluster(3)))
        .await
        .map_err(|e| format!("applying the FlyMQCluster: {e}"))?;
    wait_for("3 ready brokers with a metadata leader", || {
        let clusters = clusters.clone();
        async move {
            let c = clusters.get("e2e").await?;
            let Some(s) = c.status.as_ref() else {
                return Ok(Err("no status yet".into()));
            };
            let ready = condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True");
            if ready && s.ready_replicas == 3 && s.members.len() == 3 && s.leader.is_some() {
                Ok(Ok(()))
            } else {
                Ok(Err(brief(s)))
            }
        }
    })
    .await?;

    // 2. A topic, synced through the admin API, guarded by the finalizer.
    let topic = json!({
        "apiVersion": "flymq.io/v1alpha1", "kind": "Topic",
        "metadata": {"name": "orders"},
        "spec": {"clusterRef": {"name": "e2e"}, "partitions": 3, "replicationFactor": 2,
                 "config": {"retention": {"time": "1d"}}, "deletionPolicy": "Delete"}
    });
    topics
        .patch("orders", &ssa, &Patch::Apply(&topic))
        .await
        .map_err(|e| format!("applying the Topic: {e}"))?;
    let synced = wait_for("Topic orders to be synced", || {
        let topics = topics.clone();
        async move {
            let t = topics.get("orders").await?;
            let conditions = t.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
            match condition(&conditions, "Ready") {
                Some(c) if c.status == "True" => Ok(Ok((c.message.clone(), t.finalizers().to_vec()))),
                other => Ok(Err(brief(&other))),
            }
        }
    })
    .await?;
    if !synced.0.contains("3 partitions, replication factor 2, retention 1d") {
        return Err(format!("unexpected Topic status message: {}", synced.0));
    }
    if !synced.1.iter().any(|f| f == "flymq.io/finalizer") {
        return Err(format!("the Topic has no flymq.io/finalizer: {:?}", synced.1));
    }
    // Growing the topic adds partitions on the brokers.
    let mut grown = topic.clone();
    grown["spec"]["partitions"] = json!(4);
    topics
        .patch("orders", &ssa, &Patch::Apply(&grown))
        .await
        .map_err(|e| format!("growing the Topic: {e}"))?;
    wait_for("Topic orders to have 4 partitions", || {
        let topics = topics.clone();
        async move {
            let t = topics.get("orders").await?;
            let conditions = t.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
            match condition(&conditions, "Ready") {
                Some(c) if c.status == "True" && c.message.contains("4 partitions") => Ok(Ok(())),
                other => Ok(Err(brief(&other))),
            }
        }
    })
    .await?;

    // 3. Scale down to two brokers: decommission, then a smaller StatefulSet.
    clusters
        .patch("e2e", &ssa, &Patch::Apply(&cluster(2)))
        .await
        .map_err(|e| format!("scaling the FlyMQCluster to 2: {e}"))?;
    wait_for("2 brokers, 2 members, not degraded", || {
        let (clusters, statefulsets) = (clusters.clone(), statefulsets.clone());
        async move {
            let c = clusters.get("e2e").await?;
            let sts = statefulsets.get("e2e").await?;
            let sts_replicas = sts.spec.as_ref().and_then(|s| s.replicas);
            let Some(s) = c.status.as_ref() else {
                return Ok(Err("no status".into()));
            };
            let degraded = condition(&s.conditions, "Degraded").is_some_and(|c| c.status == "True");
            if sts_replicas == Some(2) && s.ready_replicas == 2 && s.members.len() == 2 && !degraded {
                Ok(Ok(()))
            } else {
                Ok(Err(format!("StatefulSet replicas {sts_replicas:?}; {}", brief(s))))
            }
        }
    })
    .await?;

    // 4. Delete the topic (deletionPolicy Delete runs DeleteTopic first), then the cluster.
    topics
        .delete("orders", &DeleteParams::default())
        .await
        .map_err(|e| format!("deleting the Topic: {e}"))?;
    wait_for("Topic orders to be gone", || {
        let topics = topics.clone();
        async move {
            Ok(match topics.get_opt("orders").await? {
                None => Ok(()),
                Some(t) => Err(format!(
                    "still there, finalizers {:?}, status {}",
                    t.finalizers(),
                    brief(&t.status)
                )),
            })
        }
    })
    .await?;
    clusters
        .delete("e2e", &DeleteParams::default())
        .await
        .map_err(|e| format!("deleting the FlyMQCluster: {e}"))?;
    wait_for("the FlyMQCluster and its StatefulSet to be gone", || {
        let (clusters, statefulsets) = (clusters.clone(), statefulsets.clone());
        async move {
            let c = clusters.get_opt("e2e").await?;
            let s = statefulsets.get_opt("e2e").await?;
            Ok(if c.is_none() && s.is_none() {
                Ok(())
            } else {
                Err(format!(
                    "cluster present: {}, StatefulSet present: {}",
                    c.is_some(),
                    s.is_some()
                ))
            })
        }
    })
    .await?;
    Ok(())
}
