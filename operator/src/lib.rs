//! FlyMQ Kubernetes operator: CRD types, pure resource builders, controllers.

pub mod admin;
pub mod builders;
pub mod controller;
pub mod crd;
pub mod metrics;
pub mod pki;
pub mod runtime;
