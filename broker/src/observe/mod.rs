//! Observability: Prometheus metrics, health endpoints, logging.

pub mod http;
pub mod logging;
pub mod metrics;
