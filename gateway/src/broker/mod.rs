//! The broker moves chat frames between gateway replicas and keeps each channel's history:
//! publish (with the rate limit, offsets and idempotency, in one atomic step), subscribe,
//! and a connection's join (presence and recovery in one step). Two implementations follow
//! the rules of `history`, `presence::table` and `rate_limit`: Redis for real deployments
//! and an in-process one for a single local replica.

pub mod embedded;
pub mod redis;

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use uuid::Uuid;

use crate::{
    history::{ChatOutcome, HistoryLimits, Recovery, Since},
    presence::{Listing, Member, Millis},
    protocol::{ConnectionId, Envelope},
};

/// Receives every envelope published to a channel this process is subscribed to.
pub type Deliver = Arc<dyn Fn(&str, Envelope) + Send + Sync>;

/// How long a channel's epoch and last offset outlive its last message or connection.
pub const CHANNEL_META_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("redis {operation} failed: {source}")]
    Redis {
        operation: &'static str,
        #[source]
        source: fred::error::Error,
    },
    #[error(transparent)]
    Url(#[from] crate::redis_url::RedisUrlError),
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

/// The broker's fixed settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerSettings {
    pub history: HistoryLimits,
    pub rate_limit_per_minute: u32,
}

/// What a joining connection is told: who is present and what it missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub listing: Listing,
    pub recovery: Recovery,
}

/// A chat message on its way out.
#[derive(Debug, Clone)]
pub struct ChatSend<'a> {
    pub channel: &'a str,
    pub user: &'a str,
    pub sender: ConnectionId,
    pub client_msg_id: Option<&'a str>,
    pub message_id: Uuid,
    /// The `chat` frame's JSON without `offset` and `epoch` (see `protocol::stamp_chat`).
    pub body: &'a str,
    pub published_at_micros: i64,
}

pub trait Broker: Send + Sync {
    /// Starts receiving a channel's envelopes (the first local connection arrived).
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Stops receiving a channel's envelopes (its last local connection left).
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// In one atomic step: recognises a resent `client_msg_id`, applies the user's rate
    /// limit, assigns the next offset, stores the frame in the history and publishes it to
    /// every replica.
    fn publish_chat<'a>(
        &'a self,
        chat: &'a ChatSend<'a>,
    ) -> BoxFuture<'a, Result<ChatOutcome, BrokerError>>;

    /// Sends a frame that is not stored (cursor positions) to every replica subscribed to
    /// the channel, this one included.
    fn publish_volatile<'a>(
        &'a self,
        channel: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// A new connection's join, in one step (one Redis round trip): records its presence
    /// (announcing `user_joined` when its user was not present), lists who is present for
    /// `user_sync`, and reads the channel's epoch, latest offset and the messages it gets
    /// after `user_sync` (see `history::ChannelLog::recover` for the rules).
    fn join<'a>(
        &'a self,
        channel: &'a str,
        member: &'a Member,
        since: Option<&'a Since>,
    ) -> BoxFuture<'a, Result<Joined, BrokerError>>;

    /// The retained messages of the channel after `since`, each with the connection that
    /// sent it: for a replica that noticed a gap in the offsets it received (its subscriber
    /// reconnected, or fell behind). Nothing when the epoch changed.
    fn missed<'a>(
        &'a self,
        channel: &'a str,
        since: &'a Since,
    ) -> BoxFuture<'a, Result<Vec<Envelope>, BrokerError>>;

    fn health(&self) -> BoxFuture<'_, Health>;
}

pub fn millis(d: Duration) -> Millis {
    d.as_millis().try_into().unwrap_or(Millis::MAX / 4)
}

/// A fresh epoch: random hex, so it needs no escaping in frames.
pub fn new_epoch() -> String {
    Uuid::new_v4().simple().to_string()
}
