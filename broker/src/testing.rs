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

/// An in-process broker for tests. End every test with [`TestBroker::shutdown`]:
/// a broker only dropped leaves threads holding RocksDB, and RocksDB aborts the
/// whole test process ("pthread lock: Invalid argument") when its static state
/// is torn down under them at exit, after every test passed. Dropping one
/// without `shutdown` therefore fails the test that did it, at once.
pub struct TestBroker {
    running: Option<RunningBroker>,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        // A test already failing says why; do not hide it behind this.
        if self.running.is_some() && !std::thread::panicking() {
            panic!("TestBroker dropped without shutdown(): call `broker.shutdown().await` at the end of the test");
        }
    }
}

impl TestBroker {
    pub async fn start(dir: &Path) -> Result<Self, StartError> {
        Self::start_with(test_config(dir)).await
    }

    pub async fn start_with(config: Config) -> Result<Self, StartError> {
        Ok(Self {
            running: Some(RunningBroker::start(&config).await?),
        })
    }

    /// With the secrets given rather than read from this process's
    /// environment (for example an encryption keyring).
    pub async fn start_with_secrets(config: Config, secrets: crate::secrets::Secrets) -> Result<Self, StartError> {
        Ok(Self {
            running: Some(RunningBroker::start_with(&config, secrets).await?),
        })
    }

    pub fn client_addr(&self) -> SocketAddr {
        self.running().client_addr()
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.running().metrics_addr()
    }

    pub fn health_addr(&self) -> SocketAddr {
        self.running().health_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.running().admin_addr()
    }

    pub fn running(&self) -> &RunningBroker {
        self.running.as_ref().expect("a TestBroker runs until shutdown")
    }

    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}
