//! Operator metrics (Prometheus text format on `/metrics`).

use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-kind metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Custom resource kind.
    pub kind: String,
}

/// Labels of failure counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// Custom resource kind.
    pub kind: String,
    /// Stable error category (see `controller::error::Error::category`).
    pub category: String,
}

/// The operator's metrics and their registry.
pub struct Metrics {
    registry: Mutex<Registry>,
    reconciles: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("flymq_operator");
        let reconciles = Family::<KindLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 12))
        });
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Failed reconciles by error category",
            failures.clone(),
        );
        registry.register("reconcile_duration_seconds", "Reconcile duration", duration.clone());
        Self {
            registry: Mutex::new(registry),
            reconciles,
            failures,
            duration,
        }
    }

    /// Counts a reconcile and returns a guard that records its duration when dropped.
    pub fn start_reconcile(&self, kind: &str) -> ReconcileTimer<'_> {
        let labels = KindLabels { kind: kind.to_string() };
        self.reconciles.get_or_create(&labels).inc();
        ReconcileTimer {
            metrics: self,
            labels,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn failed(&self, kind: &str, category: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                kind: kind.into(),
                category: category.into(),
            })
            .inc();
    }

    /// Renders the registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Records a reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    labels: KindLabels,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_failures_and_durations() {
        let m = Metrics::new();
        drop(m.start_reconcile("FlyMQCluster"));
        m.failed("FlyMQCluster", "kube_api");
        let text = m.render();
        assert!(
            text.contains("flymq_operator_reconciles_total{kind=\"FlyMQCluster\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flymq_operator_reconcile_failures_total{kind=\"FlyMQCluster\",category=\"kube_api\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flymq_operator_reconcile_duration_seconds_count{kind=\"FlyMQCluster\"} 1"),
            "{text}"
        );
    }
}
