//! In-process broker for a single replica: the same semantics as Redis, in memory.

use std::{
    collections::HashSet,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use futures::{FutureExt, future::BoxFuture};

use super::{Broker, BrokerError, Deliver, Health, Joined, Member};
use crate::{
    presence::{Millis, PresenceTable},
    protocol::Envelope,
    rate_limit::MinuteWindows,
};

pub struct EmbeddedBroker {
    deliver: Deliver,
    ttl: Millis,
    rate_limit: u32,
    started: Instant,
    subscribed: Mutex<HashSet<String>>,
    presence: Mutex<PresenceTable>,
    rates: Mutex<MinuteWindows>,
}

/// A poisoned lock only means another task panicked mid-update; the maps stay usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EmbeddedBroker {
    pub fn new(deliver: Deliver, ttl: Duration, rate_limit_per_minute: u32) -> Self {
        EmbeddedBroker {
            deliver,
            ttl: ttl.as_millis().try_into().unwrap_or(Millis::MAX),
            rate_limit: rate_limit_per_minute,
            started: Instant::now(),
            subscribed: Mutex::default(),
            presence: Mutex::default(),
            rates: Mutex::default(),
        }
    }

    fn now(&self) -> Millis {
        self.started
            .elapsed()
            .as_millis()
            .try_into()
            .unwrap_or(Millis::MAX)
    }
}

impl Broker for EmbeddedBroker {
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        lock(&self.subscribed).insert(channel.to_owned());
        futures::future::ready(Ok(())).boxed()
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        lock(&self.subscribed).remove(channel);
        futures::future::ready(Ok(())).boxed()
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        if lock(&self.subscribed).contains(channel) {
            (self.deliver)(channel, envelope.clone());
        }
        futures::future::ready(Ok(())).boxed()
    }

    fn join<'a>(
        &'a self,
        channel: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<Joined, BrokerError>> {
        let now = self.now();
        let mut presence = lock(&self.presence);
        let first = presence.join(channel, &member.user, &member.connection, now, self.ttl);
        let users = presence.users(channel, now);
        futures::future::ready(Ok(Joined { first, users })).boxed()
    }

    fn leave<'a>(
        &'a self,
        channel: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<bool, BrokerError>> {
        let last =
            lock(&self.presence).leave(channel, &member.user, &member.connection, self.now());
        futures::future::ready(Ok(last)).boxed()
    }

    fn refresh<'a>(
        &'a self,
        channel: &'a str,
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        lock(&self.presence).refresh(
            channel,
            members
                .iter()
                .map(|m| (m.user.as_str(), m.connection.as_str())),
            self.now(),
            self.ttl,
        );
        futures::future::ready(Ok(())).boxed()
    }

    fn sweep<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        let gone = lock(&self.presence).sweep(channel, self.now());
        futures::future::ready(Ok(gone)).boxed()
    }

    fn publish_chat<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<bool, BrokerError>> {
        let now = chrono::Utc::now().timestamp_millis().max(0).unsigned_abs();
        let allowed = lock(&self.rates).allow(user, now, self.rate_limit);
        if allowed && lock(&self.subscribed).contains(channel) {
            (self.deliver)(channel, envelope.clone());
        }
        futures::future::ready(Ok(allowed)).boxed()
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        futures::future::ready(Health {
            store: true,
            pubsub: true,
        })
        .boxed()
    }
}
