//! The broker moves frames between gateway replicas and keeps presence and rate-limit state
//! that all replicas share. Two implementations sit behind one interface: Redis for real
//! deployments and an in-process one for a single local replica.

pub mod embedded;
pub mod redis;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::protocol::Envelope;

/// Receives every envelope published to a channel this process is subscribed to.
pub type Deliver = Arc<dyn Fn(&str, Envelope) + Send + Sync>;

/// One presence entry: a user's connection in a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user: String,
    pub connection: String,
}

/// The outcome of a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The connection made its user present (their first live one), so others are told.
    pub first: bool,
    /// Users present in the channel after the join, sorted.
    pub users: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("redis {operation} failed: {source}")]
    Redis {
        operation: &'static str,
        #[source]
        source: fred::error::Error,
    },
    #[error("redis {operation} returned an unexpected reply: {detail}")]
    UnexpectedReply {
        operation: &'static str,
        detail: String,
    },
}

/// What `/ready` reports about the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// The broker answers commands (Redis PING).
    pub store: bool,
    /// The pub/sub subscription is live, so published frames arrive.
    pub pubsub: bool,
}

pub trait Broker: Send + Sync {
    /// Starts receiving a channel's envelopes (the first local connection arrived).
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Stops receiving a channel's envelopes (its last local connection left).
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Sends an envelope to every replica subscribed to the channel, this one included.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Records a live connection and lists who is present, in one step so the list
    /// includes the newcomer.
    fn join<'a>(
        &'a self,
        channel: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<Joined, BrokerError>>;

    /// Removes a connection; true when it was its user's last, so the user left.
    fn leave<'a>(
        &'a self,
        channel: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<bool, BrokerError>>;

    /// Keeps this process's connections in a channel alive, restoring lost entries.
    fn refresh<'a>(
        &'a self,
        channel: &'a str,
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Removes expired connections; returns the users who are gone as a result.
    fn sweep<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>>;

    /// Counts one chat message for the user and publishes it when the user is within the
    /// per-minute limit, atomically; false when over the limit (nothing is published).
    fn publish_chat<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<bool, BrokerError>>;

    fn health(&self) -> BoxFuture<'_, Health>;
}
