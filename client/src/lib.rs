//! FlyMQ Rust SDK.
