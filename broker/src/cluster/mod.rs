//! Cluster mode: Raft replication with openraft on the broker's RocksDB.
//!
//! - `types`: the openraft type configuration and group ids.
//! - `identity`: member ids (broker id + incarnation), cluster id, bootstrap.
//! - `log_store`: the Raft log of every group (`raft_log`, `raft_meta`).
//! - `state_machine`: a group's state machine (metadata or one partition).
//! - `network` / `service`: Raft RPCs over one gRPC service (port 9093).
//! - `node`: the groups of this broker; `proposer`, `forwarding`, `join`,
//!   `reconcile`, `assignment`, `leadership`, `observe`, `read_barrier`:
//!   what it does with them.
//! - `replicator`: the broker core's `Replicator` in cluster mode.
//! - `admin`: the admin gRPC API (port 9096).
//! - `auth`: inter-broker authentication (cluster secret; mutual TLS is in
//!   `crate::tls`).

pub mod admin;
pub mod append_stream;
pub mod assignment;
pub mod auth;
pub mod forwarding;
pub mod identity;
pub mod join;
pub mod leadership;
pub mod log_store;
pub mod manage;
pub mod network;
pub mod node;
pub mod observe;
pub mod proposer;
pub mod read_barrier;
pub mod reconcile;
pub mod replicator;
pub mod service;
pub mod snapshot;
pub mod snapshot_file;
pub mod stages;
pub mod state_machine;
pub mod status;
pub mod types;

pub use identity::Bootstrap;
pub use node::{ClusterNode, ClusterSettings};
pub use replicator::ClusterReplicator;
pub use state_machine::SharedState;

use std::sync::Arc;

use flymq_proto::grpc::admin::admin_server::AdminServer;
use flymq_proto::grpc::cluster::cluster_server::ClusterServer;
use flymq_security::tls::grpc::TlsIncoming;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::{Router, TcpIncoming};

use crate::core::catalog::Catalog;
use crate::core::state_machine::MetaMachine;
use crate::core::{Broker, BrokerSettings};
use crate::observe::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::storage::Store;

/// Opens a broker in cluster mode: its cluster node (Raft groups on
/// `store`) and the core on top of it.
pub async fn open_broker(
    store: Store,
    settings: BrokerSettings,
    metrics: Arc<Metrics>,
    cluster: ClusterSettings,
) -> Result<(Broker, Arc<ClusterNode>), crate::StartError> {
    let catalog = Arc::new(Catalog::load(store.load_topics()?));
    catalog.init_security(settings.security, &store.load_security_state()?);
    let shared = Arc::new(SharedState {
        store: store.clone(),
        meta: parking_lot::Mutex::new(MetaMachine::load(store.clone())?),
        catalog: catalog.clone(),
    });
    let node = ClusterNode::start(cluster, shared, metrics.clone())
        .await
        .map_err(|e| crate::StartError::Cluster(e.to_string()))?;
    let replicator = Arc::new(ClusterReplicator::new(node.clone()));
    let broker = Broker::with_replicator(store, catalog, replicator, settings, metrics);
    Ok((broker, node))
}

/// Largest gRPC message between brokers (snapshot chunks, big append batches).
const MAX_GRPC_MESSAGE: usize = 64 << 20;

/// Serves the admin gRPC API until shutdown, over TLS when `tls` is given.
pub async fn serve_admin(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    broker: Arc<Broker>,
    cluster: Option<Arc<ClusterNode>>,
    shutdown: Shutdown,
) {
    let service = AdminServer::new(admin::AdminService { broker, cluster });
    let router = tonic::transport::Server::builder().add_service(service);
    if let Err(err) = serve_router(router, listener, tls, shutdown).await {
        tracing::error!(error = %err, "admin API stopped");
    }
}

/// Serves the inter-broker service until shutdown: over mutual TLS when
/// `tls` is given, and checking the cluster secret when one is set.
pub async fn serve_cluster(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    node: Arc<ClusterNode>,
    shutdown: Shutdown,
) {
    let check = node.peers.auth().check();
    let service = ClusterServer::new(service::ClusterService { node })
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let router = tonic::transport::Server::builder().add_service(InterceptedService::new(service, check));
    if let Err(err) = serve_router(router, listener, tls, shutdown).await {
        tracing::error!(error = %err, "cluster listener stopped");
    }
}

/// Runs a gRPC router on `listener`, plain or TLS (each handshake in its
/// own task, bounded by `crate::tls::HANDSHAKE_TIMEOUT`).
async fn serve_router(
    router: Router,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut shutdown: Shutdown,
) -> Result<(), tonic::transport::Error> {
    let signal = async move { shutdown.recv().await };
    match tls {
        None => {
            // Tonic applies its own `tcp_nodelay` only to listeners it binds:
            // set it here, or Nagle holds back small Raft replies behind
            // unacknowledged ones.
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router.serve_with_incoming_shutdown(incoming, signal).await
        }
        Some(acceptor) => {
            let incoming = TlsIncoming::new(listener, acceptor, crate::tls::HANDSHAKE_TIMEOUT);
            router.serve_with_incoming_shutdown(incoming, signal).await
        }
    }
}
