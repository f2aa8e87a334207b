//! The client protocol server: TCP listener, connection loop, dispatch.

pub mod access;
pub mod connection;
pub mod dispatch;
pub mod handlers;
pub mod listener;
pub mod sequencer;

pub use listener::serve;
