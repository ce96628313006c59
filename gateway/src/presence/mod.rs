//! The presence manager: who is online in each channel, across replicas. Every change is
//! one atomic step that also publishes the announcements it implies (`user_joined`,
//! `user_left`), so announcements reach every replica in exactly the order of the changes.
//!
//! Two implementations follow the rules of [`table`]: Redis (Lua scripts) and an embedded
//! in-process one for a single replica. A connection's join is the broker's
//! (`Broker::join`): it records presence, lists who is present and reads the history in
//! one step, one Redis round trip.

pub mod embedded;
pub mod redis;
pub mod table;

use futures::future::BoxFuture;

use crate::broker::BrokerError;
pub use table::Millis;

/// One presence entry: a user's connection in a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user: String,
    pub connection: String,
}

/// Who is present, for `user_sync`: at most `USER_SYNC_LIMIT` users, sorted, and the total.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    pub users: Vec<String>,
    pub total: u64,
}

pub trait PresenceManager: Send + Sync {
    /// Keeps live connections present (the heartbeat), re-adding any the store lost and
    /// announcing their users. Only ever called for connections whose join completed and
    /// that have not left, so nothing that left comes back.
    fn assert<'a>(
        &'a self,
        channel: &'a str,
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Removes a connection, announcing `user_left` when that removed its user; true then.
    fn leave<'a>(
        &'a self,
        channel: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<bool, BrokerError>>;

    /// Removes expired connections, announcing `user_left` for users left with none;
    /// returns those users.
    fn sweep<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>>;

    /// Names the lifetime of the presence store: it changes when the store lost its data
    /// (Redis restarted empty), and then every replica re-asserts its connections at once.
    fn generation(&self) -> BoxFuture<'_, Result<String, BrokerError>>;
}
