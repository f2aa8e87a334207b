//! One module per area of the protocol. Handlers are thin: decode has
//! happened, they call the broker core and build the response.

pub mod acls;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod dlq;
pub mod groups;
pub mod produce;
pub mod read;
pub mod schemas;
pub mod topics;
pub mod transactions;
pub mod unsupported;
pub mod users;
