//! FlyMQ broker library.
