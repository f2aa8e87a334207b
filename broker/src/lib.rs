//! FlyMQ broker library: everything the `flymq` binary runs, usable from
//! tests to start a real broker in-process.
//!
//! Modules, one job each: `config` (configuration), `storage` (RocksDB),
//! `core` (state machine, group-commit writer, broker operations), `server`
//! (client protocol), `messaging` (filters), `observe` (metrics, health, logs),
//! `secrets` (secrets from the environment), `tls` (TLS of every listener).

pub mod alloc;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod core;
pub mod dev;
pub mod messaging;
pub mod observe;
pub mod secrets;
pub mod server;
pub mod shutdown;
pub mod storage;
pub mod testing;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::core::Broker;
use crate::observe::metrics::Metrics;
use crate::server::connection::ConnectionLimits;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::storage::{StorageError, Store};

/// Why the broker could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {addr} (`{key}`): {source}; is another broker running? change `{key}`")]
    Bind {
        key: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Storage(String),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("{0}")]
    Secrets(#[from] secrets::SecretsError),
    #[error("{0}")]
    Tls(#[from] tls::TlsSetupError),
    #[error(
        "cluster mode (seeds are set) needs inter-broker authentication, and neither is configured: \
         set FLYMQ_CLUSTER_SECRET (or cluster_secret_file) to the same random value on every broker, \
         e.g. from `openssl rand -hex 32`, or enable TLS (tls_enabled with tls_cert_file, tls_key_file \
         and tls_ca_file) for mutual TLS between brokers"
    )]
    ClusterUnauthenticated,
    #[error("cannot start a thread: {0}")]
    Thread(String),
    #[error("bootstrap admin user: {0}")]
    Bootstrap(String),
}

impl From<StorageError> for StartError {
    fn from(err: StorageError) -> Self {
        StartError::Storage(err.to_string())
    }
}

/// A started broker: its listeners, background tasks and core.
pub struct RunningBroker {
    broker: Arc<Broker>,
    cluster: Option<Arc<cluster::ClusterNode>>,
    client_addr: SocketAddr,
    plaintext_addr: Option<SocketAddr>,
    /// Kept for the broker's lifetime: dropping it stops the certificate
    /// reload tasks.
    _tls: Option<tls::BrokerTls>,
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
    admin_addr: SocketAddr,
    trigger: ShutdownTrigger,
    shutdown: Shutdown,
    tasks: JoinSet<()>,
}

async fn bind(addr: &str, key: &str) -> Result<TcpListener, StartError> {
    let resolved = config::resolve(addr).map_err(|message| {
        StartError::Config(config::ConfigError::InvalidValue {
            key: key.into(),
            source_desc: "effective configuration".into(),
            message,
        })
    })?;
    TcpListener::bind(resolved).await.map_err(|source| StartError::Bind {
        key: key.to_owned(),
        addr: resolved,
        source,
    })
}

/// Creates the bootstrap admin (`admin_username` with the password of
/// `FLYMQ_ADMIN_PASSWORD` / `admin_password_file`) when it does not exist.
/// Standalone this happens before the broker reports ready; in a cluster a
/// task retries until the metadata group has a leader.
async fn bootstrap_admin(
    config: &Config,
    secrets: &secrets::Secrets,
    broker: &Arc<Broker>,
    clustered: bool,
    tasks: &mut JoinSet<()>,
    shutdown: &Shutdown,
) -> Result<(), StartError> {
    let Some(password) = secrets.admin_password.clone() else {
        let has_users = !broker.store().load_security_state()?.users.is_empty();
        if config.auth_enabled && !has_users {
            tracing::warn!(
                "authentication is on but no user exists: nobody can administer this broker. Set \
                 FLYMQ_ADMIN_PASSWORD (or admin_password_file) to create the bootstrap admin '{}'",
                config.admin_username
            );
        }
        return Ok(());
    };
    let hash = server::handlers::users::hash_password(broker, password.to_string())
        .await
        .map_err(|e| StartError::Bootstrap(e.to_string()))?;
    let change = auth::SecurityChange::EnsureUser {
        name: config.admin_username.clone(),
        roles: vec!["admin".into()],
        password_hash: hash,
        now_secs: core::now_ms() / 1000,
    };
    if !clustered {
        broker
            .change_security(change, "", "")
            .await
            .map_err(|e| StartError::Bootstrap(e.to_string()))?;
        return Ok(());
    }
    let (broker, mut shutdown) = (broker.clone(), shutdown.clone());
    tasks.spawn(async move {
        loop {
            match broker.change_security(change.clone(), "", "").await {
                Ok(_) => return,
                Err(err) => tracing::debug!(error = %err, "bootstrap admin not created yet; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.recv() => return,
            }
        }
    });
    Ok(())
}

impl RunningBroker {
    /// Opens the data directory, binds every listener and starts serving,
    /// with the secrets of this process's environment (`crate::secrets`).
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        config.validate()?;
        let secrets = secrets::Secrets::load(config, std::env::vars())?;
        Self::start_with(config, secrets).await
    }

    /// Like [`RunningBroker::start`], with the secrets given (tests start
    /// several brokers in one process).
    pub async fn start_with(config: &Config, mut secrets: secrets::Secrets) -> Result<Self, StartError> {
        config.validate()?;
        if config.is_cluster() && !config.tls_enabled && secrets.cluster_secret.is_none() {
            return Err(StartError::ClusterUnauthenticated);
        }
        let tls_settings = tls::BrokerTls::from_config(config)?;
        let keyring = secrets.keyring.take().map(Arc::new);
        let client = bind(&config.bind_addr, "bind_addr").await?;
        let plaintext = match &config.plaintext_bind_addr {
            Some(addr) => Some(bind(addr, "plaintext_bind_addr").await?),
            None => None,
        };
        let plaintext_addr = plaintext
            .as_ref()
            .map(|l| l.local_addr().map_err(|e| StartError::Storage(e.to_string())))
            .transpose()?;
        let metrics_listener = bind(&config.metrics_addr, "metrics_addr").await?;
        let health_listener = bind(&config.health_addr, "health_addr").await?;
        let client_addr = client.local_addr().map_err(|e| StartError::Storage(e.to_string()))?;
        let metrics_addr = metrics_listener
            .local_addr()
            .map_err(|e| StartError::Storage(e.to_string()))?;
        let health_addr = health_listener
            .local_addr()
            .map_err(|e| StartError::Storage(e.to_string()))?;

        let admin_listener = bind(&config.admin_addr, "admin_addr").await?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|e| StartError::Storage(e.to_string()))?;
        let cluster_listener = match config.is_cluster() {
            true => Some(bind(&config.cluster_addr, "cluster_addr").await?),
            false => None,
        };

        let data_dir = config.data_dir.clone();
        let store_options = storage::StoreOptions {
            recycle_wal: !config.is_cluster(),
            ..storage::StoreOptions::for_budget(config.memory_budget_mb << 20)
        };
        if let Some(keyring) = &keyring {
            tracing::info!(
                active_key_id = %keyring.active_key_id(),
                key_ids = ?keyring.key_ids(),
                "encryption at rest is on"
            );
        }
        let store = tokio::task::spawn_blocking(move || Store::open_with_keys(&data_dir, store_options, keyring))
            .await
            .map_err(|e| StartError::Thread(e.to_string()))??;
        let metrics = Arc::new(Metrics::new());
        let settings = config.broker_settings(client_addr);
        let (broker, cluster) = match &cluster_listener {
            None => (Broker::open(store, settings, metrics)?, None),
            Some(listener) => {
                let cluster_addr = listener.local_addr().map_err(|e| StartError::Storage(e.to_string()))?;
                let mut cluster = config.cluster_settings(&settings.advertised_addr, cluster_addr, admin_addr);
                cluster.auth = cluster::auth::PeerAuth {
                    tls: tls_settings
                        .as_ref()
                        .and_then(|t| t.cluster.as_ref())
                        .map(|c| c.client.clone()),
                    secret: secrets.cluster_secret.clone(),
                };
                let (broker, node) = cluster::open_broker(store, settings, metrics, cluster).await?;
                (broker, Some(node))
            }
        };
        let broker = Arc::new(broker);

        let (trigger, shutdown) = shutdown::channel();
        let mut tasks = JoinSet::new();
        let admin_tls = tls_settings.as_ref().map(tls::BrokerTls::admin_acceptor).transpose()?;
        tasks.spawn(cluster::serve_admin(
            admin_listener,
            admin_tls,
            broker.clone(),
            cluster.clone(),
            shutdown.clone(),
        ));
        if let (Some(listener), Some(node)) = (cluster_listener, cluster.clone()) {
            let cluster_tls = match tls_settings.as_ref().and_then(|t| t.cluster.as_ref()) {
                Some(c) => Some(tls::grpc_acceptor(&c.server, "cluster port")?),
                None => None,
            };
            tasks.spawn(cluster::serve_cluster(
                listener,
                cluster_tls,
                node.clone(),
                shutdown.clone(),
            ));
            tasks.spawn(node.clone().run_reconciler(shutdown.clone()));
            tasks.spawn(node.run_join(shutdown.clone()));
        }
        bootstrap_admin(config, &secrets, &broker, cluster.is_some(), &mut tasks, &shutdown).await?;
        let limits = ConnectionLimits {
            max_in_flight: config.max_in_flight_per_connection,
            idle_timeout: (config.idle_timeout_secs > 0).then(|| Duration::from_secs(config.idle_timeout_secs)),
        };
        let permits = server::listener::connection_permits(config.max_connections);
        let client = server::listener::ClientListener {
            listener: client,
            tls: tls_settings.as_ref().map(tls::BrokerTls::client_acceptor),
        };
        tasks.spawn(server::serve(
            client,
            broker.clone(),
            limits.clone(),
            permits.clone(),
            shutdown.clone(),
        ));
        if let Some(listener) = plaintext {
            let plain = server::listener::ClientListener { listener, tls: None };
            tasks.spawn(server::serve(plain, broker.clone(), limits, permits, shutdown.clone()));
        }
        let metrics_router = observe::http::metrics_router(broker.clone());
        let health_router = observe::http::health_router(broker.clone());
        let (s1, s2) = (shutdown.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(err) = observe::http::serve(metrics_listener, metrics_router, s1).await {
                tracing::error!(error = %err, "metrics endpoint stopped");
            }
        });
        tasks.spawn(async move {
            if let Err(err) = observe::http::serve(health_listener, health_router, s2).await {
                tracing::error!(error = %err, "health endpoint stopped");
            }
        });
        tasks.spawn(core::delayed::run(broker.clone(), shutdown.clone()));
        tasks.spawn(core::transactions::run(broker.clone(), shutdown.clone()));
        tasks.spawn(core::retention::run(
            broker.clone(),
            Duration::from_millis(config.retention_check_interval_ms),
            shutdown.clone(),
        ));
        broker.set_ready(true);
        let cluster_auth = match (
            config.is_cluster(),
            config.tls_enabled,
            secrets.cluster_secret.is_some(),
        ) {
            (false, _, _) => "none (standalone)",
            (true, true, true) => "mutual TLS + cluster secret",
            (true, true, false) => "mutual TLS",
            (true, false, _) => "cluster secret",
        };
        tracing::info!(
            client = %client_addr, metrics = %metrics_addr, health = %health_addr, admin = %admin_addr,
            tls = config.tls_enabled,
            plaintext = %plaintext_addr.map_or_else(String::new, |a| a.to_string()),
            cluster_auth,
            mode = if cluster.is_some() { "cluster" } else { "standalone" },
            data_dir = %config.data_dir.display(), node_id = config.node_id, acks = ?config.acks,
            cluster_id = broker.cluster_id(), "FlyMQ broker ready"
        );
        Ok(Self {
            broker,
            cluster,
            client_addr,
            plaintext_addr,
            _tls: tls_settings,
            metrics_addr,
            health_addr,
            admin_addr,
            trigger,
            shutdown,
            tasks,
        })
    }

    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The plaintext migration listener (`plaintext_bind_addr`), if any.
    pub fn plaintext_addr(&self) -> Option<SocketAddr> {
        self.plaintext_addr
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn health_addr(&self) -> SocketAddr {
        self.health_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The cluster node, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<cluster::ClusterNode>> {
        self.cluster.as_ref()
    }

    /// A receiver of this broker's shutdown signal.
    pub fn shutdown_signal(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Stops accepting, answers what connections already read, syncs and closes storage.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down");
        self.broker.set_ready(false);
        if let Some(node) = &self.cluster {
            // While still serving, so clients follow the new leaders at once.
            node.hand_over_leadership(std::time::Duration::from_secs(10)).await;
        }
        self.trigger.trigger();
        // Client connections drain within 5 s; gRPC servers wait for their
        // peers' streams, which a busy peer can hold open: bound the wait.
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(15), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if stopped.is_err() {
            tracing::warn!(
                still_running = self.tasks.len(),
                "listeners did not stop within 15 s; aborting them"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        if let Some(node) = &self.cluster {
            node.shutdown().await;
        }
        let broker = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || broker.close()).await;
        tracing::info!("shutdown complete");
    }
}
