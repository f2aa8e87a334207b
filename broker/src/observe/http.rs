//! The HTTP endpoints: `/metrics` on the metrics port and `/health/live`,
//! `/health/ready`, `/health` on the health port.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::core::Broker;
use crate::shutdown::Shutdown;

async fn metrics(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    broker.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        broker.metrics().encode(),
    )
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    if broker.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn health(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    let mut body = serde_json::json!({
        "status": if broker.is_ready() { "ready" } else { "starting" },
        "node_id": broker.node_id(),
        "cluster_id": broker.cluster_id(),
        "mode": "standalone",
        "role": "leader",
        "topics": broker.catalog().topics().len(),
    });
    broker.replicator().describe_health(&mut body);
    ([(header::CONTENT_TYPE, "application/json")], body.to_string())
}

pub fn metrics_router(broker: Arc<Broker>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(broker)
}

pub fn health_router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health", get(health))
        .with_state(broker)
}

/// Serves `router` on an already bound listener until shutdown.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: Shutdown) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.recv().await })
        .await
}

/// Binds an HTTP listener, naming the config key on failure.
pub async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, crate::StartError> {
    TcpListener::bind(addr).await.map_err(|source| crate::StartError::Bind {
        key: key.to_owned(),
        addr,
        source,
    })
}
