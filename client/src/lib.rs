//! FlyMQ Rust SDK.
//!
//! - [`Client`]: one pipelined connection to a broker with bootstrap
//!   failover, and a typed async method per protocol operation.
//! - [`Producer`]: batches records per (topic, partition) into PRODUCE_BATCH
//!   requests, with linger, retries and per-record results.
//! - [`Consumer`]: reads every partition of a topic as a member of a
//!   consumer group, with automatic or manual offset commits.
//! - [`admin::AdminClient`]: the broker's admin gRPC API (cluster status,
//!   decommission, leadership transfer, topics with replication factors,
//!   users and ACLs), over TLS with credentials when configured.
//!
//! - [`Transaction`]: records that become readable together at commit
//!   ([`Client::begin_transaction`]).
//! - Schema registry: [`Client::register_schema`] and
//!   [`Client::produce_with_schema`] (records the broker validates), with
//!   [`SchemaType`].
//!
//! Security: [`ClientConfig::tls`] turns on implicit TLS and
//! [`ClientConfig::credentials`] sends AUTH on every new connection;
//! [`Client`] also has the user, role, ACL and audit operations.
//!
//! All wire types come from [`flymq_proto`]; the most used ones are
//! re-exported here.

mod accumulator;
pub mod admin;
mod client;
mod config;
mod connection;
mod consumer;
mod error;
#[cfg(test)]
mod fake_broker;
mod group;
pub mod partitioner;
mod pattern;
mod producer;
mod schema;
#[cfg(test)]
mod sdk_tests;
mod security;
#[cfg(test)]
mod security_tests;
mod transaction;

pub use admin::{AdminClient, AdminOptions};
pub use client::{Client, ClientMetrics, ResetTo, StartFrom};
pub use config::{ClientConfig, Credentials, DEFAULT_BOOTSTRAP, parse_bootstrap};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, SeekTo};
pub use error::{Error, Result, parse_leader_addr};
pub use group::{GroupConsumer, GroupConsumerConfig, Rebalance};
pub use pattern::PatternConsumer;
pub use producer::{Callback, Delivery, Producer, ProducerConfig, ProducerMetrics, ProducerRecord};
pub use schema::{SchemaType, UnknownSchemaType};
pub use security::UserUpdate;
pub use transaction::Transaction;

/// TLS settings of [`ClientConfig::tls`] and [`AdminOptions::tls`].
pub use flymq_security::tls::ClientTlsOptions;

pub use flymq_proto::{
    ClusterMetadata, ClusterNode, ClusterStatus, ConsumeResponse, FetchResponse, FetchedRecord, GroupRecord, LagInfo,
    PartitionMetadata, PartitionOffset, ProduceBatchResponse, RecordMetadata, Request, Response, SchemaEntry,
    TopicMetadata, ValidateSchemaResponse,
};
