//! The standalone `Replicator`: every command goes through the local
//! group-commit writer, and this broker holds and leads every partition.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::catalog::{Catalog, TopicView};
use super::command::{Applied, Command};
use super::error::{BrokerError, BrokerResult};
use super::replicator::{ClusterMember, Placement, Replicator};
use super::state_machine::StateMachine;
use super::writer::{Durability, Writer, WriterThread};
use crate::observe::metrics::Metrics;
use crate::storage::Store;

pub struct LocalReplicator {
    writer: Writer,
    thread: parking_lot::Mutex<Option<WriterThread>>,
    node_id: String,
    advertised_addr: String,
    cluster_id: String,
}

impl LocalReplicator {
    pub fn start(
        store: Store,
        catalog: Arc<Catalog>,
        durability: Durability,
        metrics: Arc<Metrics>,
        node_id: u32,
        advertised_addr: String,
    ) -> Result<Self, crate::StartError> {
        let machine = StateMachine::load(store.clone())?;
        let cluster_id = load_or_stamp_cluster_id(&store)?;
        let (writer, thread) = Writer::start(machine, store, catalog, durability, metrics)
            .map_err(|e| crate::StartError::Thread(e.to_string()))?;
        Ok(Self {
            writer,
            thread: parking_lot::Mutex::new(Some(thread)),
            node_id: node_id.to_string(),
            advertised_addr,
            cluster_id,
        })
    }
}

/// A standalone broker's id is stamped on disk on first start and never changes.
fn load_or_stamp_cluster_id(store: &Store) -> Result<String, crate::StartError> {
    if let Some(id) = store.get_cluster_value("cluster_id")? {
        return String::from_utf8(id).map_err(|_| crate::StartError::Storage("cluster id is not UTF-8".into()));
    }
    let id = format!("flymq-{:016x}", rand::random::<u64>());
    let mut batch = rocksdb::WriteBatch::default();
    store.put_cluster_value(&mut batch, "cluster_id", id.as_bytes())?;
    store.write(batch, true)?;
    Ok(id)
}

impl Replicator for LocalReplicator {
    fn submit(&self, command: Command) -> oneshot::Receiver<BrokerResult<Applied>> {
        self.writer.submit(command)
    }

    fn cluster_id(&self) -> String {
        self.cluster_id.clone()
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn assign(&self, name: &str, partitions: u32, replication_factor: u32) -> BrokerResult<Vec<Vec<u64>>> {
        if replication_factor > 1 {
            return Err(BrokerError::InvalidArgument(format!(
                "replication factor {replication_factor} for topic '{name}' needs a cluster; a standalone broker keeps one copy"
            )));
        }
        let _ = partitions;
        Ok(Vec::new())
    }

    fn check_readable(&self, _view: &TopicView, _partition: u32) -> BrokerResult<()> {
        Ok(())
    }

    fn leads(&self, _topic_id: u32, _partition: u32) -> bool {
        true
    }

    fn placement(&self, _view: &TopicView, _partition: u32) -> Placement {
        Placement {
            leader_id: self.node_id.clone(),
            leader_addr: self.advertised_addr.clone(),
            epoch: 1,
            online: true,
            replicas: vec![self.node_id.clone()],
            isr: vec![self.node_id.clone()],
        }
    }

    fn members(&self) -> Vec<ClusterMember> {
        vec![ClusterMember {
            node_id: self.node_id.clone(),
            address: self.advertised_addr.clone(),
            role: "leader",
            state: "online",
        }]
    }

    fn wait_writable(&self, _topic: Arc<TopicView>, _timeout: Duration) -> BoxFuture<'static, BrokerResult<()>> {
        futures::future::ready(Ok(())).boxed()
    }

    fn close(&self) {
        self.writer.stop();
        if let Some(thread) = self.thread.lock().take() {
            thread.join();
        }
    }
}
