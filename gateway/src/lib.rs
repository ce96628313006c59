//! CanvasChat gateway: a WebSocket server that fans canvas chat messages out across replicas
//! through Redis pub/sub (or an in-process broker) and tracks who is online.

pub mod access;
pub mod auth;
pub mod broker;
pub mod config;
pub mod history;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod node;
pub mod outbox;
pub mod presence;
pub mod protocol;
pub mod rate_limit;
pub mod rebalance;
pub mod redis_conn;
pub mod redis_url;
pub mod session;
