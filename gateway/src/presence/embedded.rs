//! In-process presence for a single replica: [`PresenceTable`] behind a lock, announcing
//! through the same delivery path the Redis subscriber uses, while the lock is held so
//! announcements keep the order of the changes.

use std::{
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use futures::{FutureExt, future::BoxFuture};
use uuid::Uuid;

use super::{Listing, Member, Millis, PresenceManager, table::PresenceTable};
use crate::{
    broker::{BrokerError, Deliver},
    protocol::{ConnectionId, Envelope, PresenceFrame, USER_SYNC_LIMIT},
};

pub struct EmbeddedPresence {
    deliver: Deliver,
    ttl: Millis,
    started: Instant,
    generation: String,
    table: Mutex<PresenceTable>,
}

/// A poisoned lock only means another task panicked mid-update; the table stays usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EmbeddedPresence {
    pub fn new(deliver: Deliver, ttl: Duration) -> Self {
        EmbeddedPresence {
            deliver,
            ttl: ttl.as_millis().try_into().unwrap_or(Millis::MAX / 4),
            started: Instant::now(),
            generation: Uuid::new_v4().simple().to_string(),
            table: Mutex::default(),
        }
    }

    fn now(&self) -> Millis {
        self.started
            .elapsed()
            .as_millis()
            .try_into()
            .unwrap_or(Millis::MAX / 4)
    }

    fn announce(&self, channel: &str, sender: Option<&str>, frame: String) {
        let sender = sender.and_then(|s| ConnectionId::parse(s).ok());
        let envelope = Envelope {
            sender,
            published_at_micros: chrono::Utc::now().timestamp_micros(),
            frame,
        };
        (self.deliver)(channel, envelope);
    }

    /// Records a new connection, announcing `user_joined` when its user was not present,
    /// and lists who is present (the newcomer included), in one step: the embedded
    /// broker's part of a join.
    pub fn join(&self, channel: &str, member: &Member) -> Listing {
        let mut table = lock(&self.table);
        self.assert_locked(&mut table, channel, std::slice::from_ref(member));
        let (users, total) = table.users(channel, self.now(), USER_SYNC_LIMIT);
        Listing { users, total }
    }

    /// Asserts members under the table lock, announcing as the rules say.
    fn assert_locked(&self, table: &mut PresenceTable, channel: &str, members: &[Member]) {
        let at = chrono::Utc::now();
        let (joined, left) = (
            PresenceFrame::joined(channel, at),
            PresenceFrame::left(channel, at),
        );
        let now = self.now();
        for m in members {
            let outcome = table.assert(channel, &m.user, &m.connection, now, self.ttl);
            if outcome.stale_left {
                self.announce(channel, None, left.for_user(&m.user));
            }
            if outcome.joined {
                self.announce(channel, Some(&m.connection), joined.for_user(&m.user));
            }
        }
    }
}

impl PresenceManager for EmbeddedPresence {
    fn assert<'a>(
        &'a self,
        channel: &'a str,
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.assert_locked(&mut lock(&self.table), channel, members);
        futures::future::ready(Ok(())).boxed()
    }

    fn leave<'a>(
        &'a self,
        channel: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<bool, BrokerError>> {
        let mut table = lock(&self.table);
        let left = table.leave(channel, &member.user, &member.connection, self.now());
        if left {
            let frame = PresenceFrame::left(channel, chrono::Utc::now()).for_user(&member.user);
            self.announce(channel, None, frame);
        }
        futures::future::ready(Ok(left)).boxed()
    }

    fn sweep<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        let mut table = lock(&self.table);
        let gone = table.sweep(channel, self.now());
        let left = PresenceFrame::left(channel, chrono::Utc::now());
        for user in &gone {
            self.announce(channel, None, left.for_user(user));
        }
        futures::future::ready(Ok(gone)).boxed()
    }

    fn generation(&self) -> BoxFuture<'_, Result<String, BrokerError>> {
        futures::future::ready(Ok(self.generation.clone())).boxed()
    }
}
