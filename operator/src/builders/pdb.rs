//! The PodDisruptionBudget.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{BuildError, ns_name, owned_meta, selector_labels};
use crate::crd::FlyMQCluster;

/// `<cluster>`: at most one broker voluntarily disrupted at a time, so a
/// Raft majority survives node drains.
pub fn pdb(cluster: &FlyMQCluster) -> Result<PodDisruptionBudget, BuildError> {
    let (_, name) = ns_name(cluster)?;
    Ok(PodDisruptionBudget {
        metadata: owned_meta(cluster, name.clone())?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}
