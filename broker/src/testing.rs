//! A real broker for tests: RocksDB in the given directory, every listener on
//! 127.0.0.1 with an OS-assigned port.

use std::net::SocketAddr;
use std::path::Path;

use crate::config::Config;
use crate::{RunningBroker, StartError};

/// Configuration for a test broker in `dir`, listening on loopback port 0.
pub fn test_config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        bind_addr: "127.0.0.1:0".into(),
        cluster_addr: "127.0.0.1:0".into(),
        metrics_addr: "127.0.0.1:0".into(),
        health_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        log_json: false,
        ..Config::default()
    }
}

/// An in-process broker for tests.
pub struct TestBroker {
    running: RunningBroker,
}

impl TestBroker {
    pub async fn start(dir: &Path) -> Result<Self, StartError> {
        Self::start_with(test_config(dir)).await
    }

    pub async fn start_with(config: Config) -> Result<Self, StartError> {
        Ok(Self {
            running: RunningBroker::start(&config).await?,
        })
    }

    /// With the secrets given rather than read from this process's
    /// environment (for example an encryption keyring).
    pub async fn start_with_secrets(config: Config, secrets: crate::secrets::Secrets) -> Result<Self, StartError> {
        Ok(Self {
            running: RunningBroker::start_with(&config, secrets).await?,
        })
    }

    pub fn client_addr(&self) -> SocketAddr {
        self.running.client_addr()
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.running.metrics_addr()
    }

    pub fn health_addr(&self) -> SocketAddr {
        self.running.health_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.running.admin_addr()
    }

    pub fn running(&self) -> &RunningBroker {
        &self.running
    }

    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}
