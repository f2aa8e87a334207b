//! Asking another broker to run an operation on a group it holds (the
//! `Manage` RPC: leader queries, leadership transfers, read indexes).

use std::time::Duration;

use super::node::ClusterNode;
use super::service::GroupOp;
use super::types::{NodeId, encode};
use flymq_proto::grpc::cluster::ManageRequest;

impl ClusterNode {
    /// Sends `op` for `group` to member `target` at `addr` and returns its
    /// encoded result, or the status it answered. A request that cannot be
    /// built or sent answers `INTERNAL` (encoding) or `UNAVAILABLE`
    /// (connecting), with the address in the message.
    pub(super) async fn manage(
        &self,
        target: NodeId,
        addr: &str,
        group: u64,
        op: &GroupOp,
        timeout: Duration,
    ) -> Result<Vec<u8>, tonic::Status> {
        let op = encode(op).map_err(|e| tonic::Status::internal(format!("encoding a group operation: {e}")))?;
        let mut client = self
            .peers
            .client(addr)
            .map_err(|e| tonic::Status::unavailable(format!("cannot connect to {addr}: {e}")))?;
        let mut request = tonic::Request::new(ManageRequest {
            envelope: Some(self.peers.envelope(target, group)),
            op,
        });
        request.set_timeout(timeout);
        Ok(client.manage(request).await?.into_inner().result)
    }
}
