//! Messaging features on top of the log: server-side filters (and later
//! transactions, delayed and TTL messages, DLQ, schemas, wildcards).

pub mod filter;
