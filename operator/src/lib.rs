//! FlyMQ Kubernetes operator.
