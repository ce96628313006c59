//! In-process broker for a single replica: the same rules as the Redis scripts, in memory.
//! Publishing delivers while the lock is held, so frames arrive in offset order.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use futures::{FutureExt, future::BoxFuture};

use super::{
    Broker, BrokerError, BrokerSettings, CHANNEL_META_TTL, ChatSend, Deliver, Health, Joined,
    millis, new_epoch,
};
use crate::{
    history::{ChannelLog, ChatOutcome, Since},
    presence::{Member, Millis, embedded::EmbeddedPresence},
    protocol::{ConnectionId, Envelope},
    rate_limit::RateLimiter,
};

#[derive(Default)]
struct State {
    logs: HashMap<String, ChannelLog>,
    rates: RateLimiter,
}

impl State {
    /// The channel's log, started with a new epoch when there is none; logs idle longer
    /// than the channel metadata lives in Redis are forgotten, as Redis would.
    fn log(&mut self, channel: &str, now: Millis) -> &mut ChannelLog {
        if !self.logs.contains_key(channel) {
            let ttl = millis(CHANNEL_META_TTL);
            self.logs
                .retain(|_, log| now.saturating_sub(log.touched) < ttl);
        }
        self.logs
            .entry(channel.to_owned())
            .or_insert_with(|| ChannelLog::new(new_epoch(), now))
    }
}

pub struct EmbeddedBroker {
    deliver: Deliver,
    settings: BrokerSettings,
    presence: Arc<EmbeddedPresence>,
    state: Mutex<State>,
}

/// A poisoned lock only means another task panicked mid-update; the maps stay usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wall_millis() -> Millis {
    chrono::Utc::now().timestamp_millis().max(0).unsigned_abs()
}

impl EmbeddedBroker {
    /// Joins go to `presence`, the same one the node uses for heartbeats and leaves.
    pub fn new(
        deliver: Deliver,
        settings: BrokerSettings,
        presence: Arc<EmbeddedPresence>,
    ) -> Self {
        EmbeddedBroker {
            deliver,
            settings,
            presence,
            state: Mutex::default(),
        }
    }
}

impl Broker for EmbeddedBroker {
    fn subscribe<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        // The hub hands frames only to channels with local connections.
        futures::future::ready(Ok(())).boxed()
    }

    fn unsubscribe<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        futures::future::ready(Ok(())).boxed()
    }

    fn publish_chat<'a>(
        &'a self,
        chat: &'a ChatSend<'a>,
    ) -> BoxFuture<'a, Result<ChatOutcome, BrokerError>> {
        let now = wall_millis();
        let limits = self.settings.history;
        let mut state = lock(&self.state);
        let state = &mut *state;
        let log = state.log(chat.channel, now);
        if let Some(id) = chat.client_msg_id
            && let Some(first) = log.already_sent(chat.user, id, now, limits)
        {
            return futures::future::ready(Ok(first)).boxed();
        }
        if !state
            .rates
            .allow(chat.user, now, self.settings.rate_limit_per_minute)
        {
            return futures::future::ready(Ok(ChatOutcome::RateLimited)).boxed();
        }
        let log = state.log(chat.channel, now);
        let idempotency = chat.client_msg_id.map(|id| (chat.user, id));
        let origin = chat.sender.to_string();
        let (offset, frame) = log.append(
            chat.body,
            chat.message_id,
            Some(&origin),
            idempotency,
            now,
            limits,
        );
        let epoch = log.epoch().to_owned();
        (self.deliver)(
            chat.channel,
            Envelope {
                sender: Some(chat.sender),
                published_at_micros: chat.published_at_micros,
                frame,
            },
        );
        futures::future::ready(Ok(ChatOutcome::Published { offset, epoch })).boxed()
    }

    fn publish_volatile<'a>(
        &'a self,
        channel: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        (self.deliver)(channel, envelope.clone());
        futures::future::ready(Ok(())).boxed()
    }

    fn join<'a>(
        &'a self,
        channel: &'a str,
        member: &'a Member,
        since: Option<&'a Since>,
    ) -> BoxFuture<'a, Result<Joined, BrokerError>> {
        let listing = self.presence.join(channel, member);
        let now = wall_millis();
        let recovery =
            lock(&self.state)
                .log(channel, now)
                .recover(since, now, self.settings.history);
        futures::future::ready(Ok(Joined { listing, recovery })).boxed()
    }

    fn missed<'a>(
        &'a self,
        channel: &'a str,
        since: &'a Since,
    ) -> BoxFuture<'a, Result<Vec<Envelope>, BrokerError>> {
        let missed = lock(&self.state)
            .logs
            .get(channel)
            .map(|log| log.missed(since))
            .unwrap_or_default();
        futures::future::ready(Ok(missed
            .into_iter()
            .map(|(origin, frame)| Envelope {
                sender: origin.and_then(|o| ConnectionId::parse(&o).ok()),
                published_at_micros: chrono::Utc::now().timestamp_micros(),
                frame,
            })
            .collect()))
        .boxed()
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        futures::future::ready(Health {
            store: true,
            pubsub: true,
        })
        .boxed()
    }
}
