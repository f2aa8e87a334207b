//! `flymq-cli`: command-line client for FlyMQ.
fn main() {}
