//! The operator process: waits for its CRDs, runs the controllers, serves
//! `/metrics`, `/healthz` and `/readyz`, and shuts down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use tracing::{error, info, warn};

use crate::admin::credentials::KubeCredentials;
use crate::admin::{AdminSync, GrpcAdmin};
use crate::builders::OsRandomness;
use crate::controller::admin_object::{self, AdminContext, AdminObject};
use crate::controller::backoff::Backoff;
use crate::controller::cluster::{self, Context, FIELD_MANAGER};
use crate::controller::decommission::{self, Decommissions};
use crate::controller::discovery::OptionalApis;
use crate::controller::user::UserSync;
use crate::crd::{Acl, FlyMQCluster, Topic, User};
use crate::metrics::Metrics;

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespaces to watch; empty means all namespaces.
    pub namespaces: Vec<String>,
    /// Address of the metrics and health HTTP server.
    pub http_addr: SocketAddr,
    /// Name of this operator instance in events (usually the pod name).
    pub instance: Option<String>,
    /// URL of each cluster's admin API, with `{name}` and `{namespace}`
    /// placeholders ([`crate::admin::DEFAULT_URL_TEMPLATE`]).
    pub admin_url_template: String,
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("cannot configure the Kubernetes client: {0}; run inside a pod or set KUBECONFIG")]
    Client(#[source] kube::Error),
    /// The HTTP server could not bind.
    #[error("cannot listen on {addr} for /metrics and /healthz: {source}; change --http-addr")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for signals failed.
    #[error("cannot install the SIGTERM handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// Shared state of the HTTP endpoints.
pub struct HttpState {
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// True once the controllers run.
    pub ready: AtomicBool,
}

/// The HTTP routes: `/metrics`, `/healthz` (process alive), `/readyz`
/// (CRDs found and controllers running).
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Arc<HttpState>>| async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.metrics.render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<Arc<HttpState>>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "waiting for the FlyMQ CRDs")
                }
            }),
        )
        .with_state(state)
}

/// Resolves on SIGTERM or Ctrl+C.
async fn termination() -> Result<(), RuntimeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(RuntimeError::Signal)?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => info!("interrupt received, shutting down"),
    }
    Ok(())
}

/// Waits until every FlyMQ CRD is established (logging while it waits).
async fn wait_for_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let names: Vec<String> = [
        FlyMQCluster::crd_name(),
        Topic::crd_name(),
        User::crd_name(),
        Acl::crd_name(),
    ]
    .into_iter()
    .map(String::from)
    .collect();
    loop {
        let mut missing = Vec::new();
        for name in &names {
            let established = match api.get_opt(name).await {
                Ok(Some(crd)) => crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True"),
                Ok(None) => false,
                Err(e) => {
                    warn!(crd = %name, error = %e, "cannot read CRD");
                    false
                }
            };
            if !established {
                missing.push(name.clone());
            }
        }
        if missing.is_empty() {
            return;
        }
        info!(missing = ?missing, "waiting for CRDs; install them with `kubectl apply -f crds/` or the Helm chart");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// An Api over one namespace, or all namespaces when `ns` is `None`.
fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        None => Api::all(client.clone()),
        Some(ns) => Api::namespaced(client.clone(), ns),
    }
}

/// Fires once when `stop` turns true (a Sync future, as kube wants).
fn shutdown_trigger(stop: &tokio::sync::watch::Receiver<bool>) -> impl Future<Output = ()> + Send + Sync + 'static {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let mut stop = stop.clone();
    tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        let _ = tx.send(());
    });
    rx.map(|_| ())
}

/// The controller of one broker-side kind.
fn admin_controller<K: AdminObject>(
    client: &Client,
    ns: Option<&str>,
    admin: Arc<dyn AdminSync<K>>,
    metrics: &Arc<Metrics>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let mut controller = Controller::new(scoped::<DeserializeGuard<K>>(client, ns), watcher::Config::default());
    // A changed Secret reconciles the resources that read it (a User's
    // password: changing the Secret rotates it).
    let store = controller.store();
    if K::READS_SECRETS {
        controller = controller.watches(
            scoped::<Secret>(client, ns),
            watcher::Config::default(),
            move |secret: Secret| {
                let (secret_ns, secret_name) = (secret.namespace(), secret.name_any());
                store
                    .state()
                    .iter()
                    .filter_map(|g| g.0.as_ref().ok())
                    .filter(|o| o.namespace() == secret_ns && o.secret_names().contains(&secret_name))
                    .map(|o| {
                        ObjectRef::<DeserializeGuard<K>>::new(&o.name_any())
                            .within(secret_ns.as_deref().unwrap_or_default())
                    })
                    .collect::<Vec<_>>()
            },
        );
    }
    let ctx = Arc::new(AdminContext::<K> {
        client: client.clone(),
        admin,
        clock: cluster::system_clock(),
        metrics: metrics.clone(),
        peers: Some(controller.store()),
    });
    controller
        .graceful_shutdown_on(shutdown_trigger(stop))
        .run(
            admin_object::reconcile_guarded::<K>,
            admin_object::error_policy_guarded::<K>,
            ctx,
        )
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile error");
            }
        })
}

/// Runs the operator until SIGTERM.
pub async fn run(config: Config) -> Result<(), RuntimeError> {
    let client = Client::try_default().await.map_err(RuntimeError::Client)?;
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(HttpState {
        metrics: metrics.clone(),
        ready: AtomicBool::new(false),
    });

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| RuntimeError::Bind {
            addr: config.http_addr,
            source,
        })?;
    info!(addr = %config.http_addr, "serving /metrics, /healthz and /readyz");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let http = tokio::spawn(
        axum::serve(listener, router(state.clone()))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );

    let signal = tokio::spawn(async move {
        if let Err(e) = termination().await {
            error!(error = %e, "signal handling failed; stopping");
        }
        let _ = stop_tx.send(true);
    });

    tokio::select! {
        _ = wait_for_crds(&client) => {}
        _ = stopped(stop_rx.clone()) => { let _ = http.await; return Ok(()); }
    }

    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: config.instance.clone(),
    };
    // Optional APIs (ServiceMonitor, Certificate) are discovered now and
    // every minute, never assumed.
    let apis = Arc::new(OptionalApis::default());
    if let Err(e) = apis.refresh(&client).await {
        warn!(error = %e, "cannot discover the optional APIs yet; retrying every minute");
    }
    let discovery = tokio::spawn({
        let (apis, client) = (apis.clone(), client.clone());
        async move { apis.refresh_forever(client).await }
    });

    // One admin client (one HTTP/2 connection per cluster) for every controller.
    // Every call carries the cluster's credentials when it has
    // authentication on: the operator's own user, or the bootstrap admin
    // until that user exists (controller/admin_users.rs).
    let admin = Arc::new(
        GrpcAdmin::new(config.admin_url_template.clone())
            .with_credentials(Arc::new(KubeCredentials::new(client.clone()))),
    );
    let users: Arc<dyn AdminSync<User>> = Arc::new(UserSync {
        client: client.clone(),
        admin: admin.clone(),
        random: Arc::new(OsRandomness),
    });
    info!(template = %config.admin_url_template, "reaching the brokers' admin API");
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        admin: admin.clone(),
        random: Arc::new(OsRandomness),
        clock: cluster::system_clock(),
        metrics,
        apis,
        decommissions: Decommissions::default(),
        decommission_wait: decommission::PASS_WAIT,
        backoff: Backoff::default(),
        admin_users: Some(admin.clone()),
    });

    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let mut controllers = Vec::new();
    for scope in scopes {
        let ns = scope.as_deref();
        let (clusters, sts, cms, svcs, secrets) = (
            scoped::<DeserializeGuard<FlyMQCluster>>(&client, ns),
            scoped::<StatefulSet>(&client, ns),
            scoped::<ConfigMap>(&client, ns),
            scoped::<Service>(&client, ns),
            scoped::<Secret>(&client, ns),
        );
        // Only the operator's own children matter; a label selector keeps
        // the watch caches (Secrets in particular) small.
        let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=flymq-operator");
        let cluster_ctx = ctx.clone();
        let controller = Controller::new(clusters, watcher::Config::default());
        // The Secrets a spec names (TLS source, encryption keys) are not the
        // operator's: a change to one reconciles the clusters naming it.
        let store = controller.store();
        let referenced = move |secret: Secret| {
            let (secret_ns, secret_name) = (secret.namespace(), secret.name_any());
            store
                .state()
                .iter()
                .filter_map(|g| g.0.as_ref().ok())
                .filter(|c| c.namespace() == secret_ns && c.referenced_secrets().contains(&secret_name))
                .map(|c| {
                    ObjectRef::<DeserializeGuard<FlyMQCluster>>::new(&c.name_any())
                        .within(secret_ns.as_deref().unwrap_or_default())
                })
                .collect::<Vec<_>>()
        };
        controllers.push(
            controller
                .owns(sts, owned.clone())
                .owns(cms, owned.clone())
                .owns(svcs, owned.clone())
                .owns(secrets.clone(), owned)
                .watches(secrets, watcher::Config::default(), referenced)
                .graceful_shutdown_on(shutdown_trigger(&stop_rx))
                .run(cluster::reconcile_guarded, cluster::error_policy_guarded, cluster_ctx)
                .for_each(|res| async move {
                    match res {
                        Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                        Err(e) => tracing::debug!(error = %e, "reconcile error"),
                    }
                })
                .boxed(),
        );
        controllers.push(admin_controller::<Topic>(&client, ns, admin.clone(), &ctx.metrics, &stop_rx).boxed());
        controllers.push(admin_controller::<User>(&client, ns, users.clone(), &ctx.metrics, &stop_rx).boxed());
        controllers.push(admin_controller::<Acl>(&client, ns, admin.clone(), &ctx.metrics, &stop_rx).boxed());
        info!(
            namespace = scope.as_deref().unwrap_or("<all>"),
            "watching FlyMQClusters, Topics, Users and ACLs"
        );
    }
    state.ready.store(true, Ordering::Relaxed);
    futures::future::join_all(controllers).await;
    info!("controllers stopped");
    discovery.abort();
    signal.abort();
    let _ = http.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::mock::{Reply, client, serve, step};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let res = router
            .oneshot(Request::builder().uri(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&bytes).to_string())
    }

    #[tokio::test]
    async fn health_ready_and_metrics_endpoints() {
        let state = Arc::new(HttpState {
            metrics: Arc::new(Metrics::new()),
            ready: AtomicBool::new(false),
        });
        state.metrics.failed("FlyMQCluster", "kube_api");
        assert_eq!(get(router(state.clone()), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(router(state.clone()), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.ready.store(true, Ordering::Relaxed);
        assert_eq!(get(router(state.clone()), "/readyz").await.0, StatusCode::OK);
        let (status, body) = get(router(state), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("flymq_operator_reconcile_failures_total"), "{body}");
    }

    #[tokio::test]
    async fn waits_for_every_crd_to_be_established() {
        let (client, handle) = client();
        let established = |name: &str| {
            Reply::Json(serde_json::json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": name},
                "spec": {"group": "flymq.io", "names": {"kind": "X", "plural": "x"}, "scope": "Namespaced", "versions": []},
                "status": {"conditions": [{"type": "Established", "status": "True"}]}
            }))
        };

        let steps = vec![
            step(
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/flymqclusters.flymq.io",
                established("flymqclusters.flymq.io"),
            ),
            step(
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/topics.flymq.io",
                established("topics.flymq.io"),
            ),
            step(
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/users.flymq.io",
                established("users.flymq.io"),
            ),
            step(
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/acls.flymq.io",
                established("acls.flymq.io"),
            ),
        ];

        let server = tokio::spawn(serve(handle, steps));
        tokio::time::timeout(Duration::from_secs(10), wait_for_crds(&client))
            .await
            .expect("returns once all four CRDs are established");
        assert_eq!(server.await.expect("fake API server").len(), 4);
    }
}
