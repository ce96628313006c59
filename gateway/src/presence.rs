//! Presence rules: who is online in a channel.
//!
//! A user is present while at least one of their connections is live. A connection is live
//! until its expiry, which the gateway that holds it pushes forward on every heartbeat; a
//! gateway that dies stops refreshing, so its connections expire and a sweep reports their
//! users as gone. Joins and leaves report whether they changed the set of users, so
//! `user_joined` and `user_left` go out once per user, never once per tab.
//!
//! [`PresenceTable`] is the in-memory form used by the embedded broker. The Redis broker
//! keeps the same structure in Redis (see `broker::redis`) and follows the same rules.

use std::collections::{BTreeSet, HashMap};

/// Milliseconds on the presence clock.
pub type Millis = u64;

#[derive(Debug, Default)]
pub struct PresenceTable {
    /// channel -> user -> connection -> expiry
    channels: HashMap<String, HashMap<String, HashMap<String, Millis>>>,
}

impl PresenceTable {
    /// Adds a live connection; true when it made the user present (their first live tab).
    pub fn join(
        &mut self,
        channel: &str,
        user: &str,
        conn: &str,
        now: Millis,
        ttl: Millis,
    ) -> bool {
        let conns = self
            .channels
            .entry(channel.to_owned())
            .or_default()
            .entry(user.to_owned())
            .or_default();
        conns.retain(|_, expiry| *expiry > now);
        let first = conns.is_empty();
        conns.insert(conn.to_owned(), now + ttl);
        first
    }

    /// Removes a connection; true when it was the user's last live one, so the user left.
    pub fn leave(&mut self, channel: &str, user: &str, conn: &str, now: Millis) -> bool {
        let Some(users) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some(conns) = users.get_mut(user) else {
            return false;
        };
        let was_live = conns.remove(conn).is_some_and(|expiry| expiry > now);
        conns.retain(|_, expiry| *expiry > now);
        let left = conns.is_empty();
        if left {
            users.remove(user);
            if users.is_empty() {
                self.channels.remove(channel);
            }
        }
        left && was_live
    }

    /// Pushes the expiry of live connections forward. A connection missing from the table
    /// (its state was lost) is added back, so presence heals on the next heartbeat.
    pub fn refresh<'a>(
        &mut self,
        channel: &str,
        members: impl IntoIterator<Item = (&'a str, &'a str)>,
        now: Millis,
        ttl: Millis,
    ) {
        let users = self.channels.entry(channel.to_owned()).or_default();
        for (user, conn) in members {
            users
                .entry(user.to_owned())
                .or_default()
                .insert(conn.to_owned(), now + ttl);
        }
    }

    /// Drops expired connections and returns the users who have no live connection left.
    pub fn sweep(&mut self, channel: &str, now: Millis) -> Vec<String> {
        let Some(users) = self.channels.get_mut(channel) else {
            return Vec::new();
        };
        let mut gone = Vec::new();
        users.retain(|user, conns| {
            conns.retain(|_, expiry| *expiry > now);
            if conns.is_empty() {
                gone.push(user.clone());
                false
            } else {
                true
            }
        });
        if users.is_empty() {
            self.channels.remove(channel);
        }
        gone.sort();
        gone
    }

    /// The users present in a channel, sorted.
    pub fn users(&self, channel: &str, now: Millis) -> Vec<String> {
        self.channels
            .get(channel)
            .map(|users| {
                users
                    .iter()
                    .filter(|(_, conns)| conns.values().any(|expiry| *expiry > now))
                    .map(|(user, _)| user.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of channels with any state; used to check that nothing is kept for nobody.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Millis = 1_000;

    #[test]
    fn first_tab_joins_and_last_tab_leaves() {
        let mut p = PresenceTable::default();
        assert!(p.join("c", "alice", "a1", 0, TTL));
        assert!(
            !p.join("c", "alice", "a2", 10, TTL),
            "second tab is not a new user"
        );
        assert_eq!(p.users("c", 20), vec!["alice"]);
        assert!(
            !p.leave("c", "alice", "a1", 30),
            "one tab left, still present"
        );
        assert!(
            p.leave("c", "alice", "a2", 40),
            "last tab closes: user left"
        );
        assert!(p.users("c", 50).is_empty());
        assert_eq!(p.channel_count(), 0, "empty channels are forgotten");
    }

    #[test]
    fn users_are_sorted_and_unique_per_channel() {
        let mut p = PresenceTable::default();
        p.join("c", "bob", "b1", 0, TTL);
        p.join("c", "alice", "a1", 0, TTL);
        p.join("c", "alice", "a2", 0, TTL);
        p.join("other", "carol", "c1", 0, TTL);
        assert_eq!(p.users("c", 1), vec!["alice", "bob"]);
        assert_eq!(p.users("other", 1), vec!["carol"]);
        assert!(p.users("nobody", 1).is_empty());
    }

    #[test]
    fn connections_that_stop_refreshing_expire_and_are_swept_once() {
        let mut p = PresenceTable::default();
        p.join("c", "ghost", "g1", 0, TTL);
        p.join("c", "live", "l1", 0, TTL);
        p.refresh("c", [("live", "l1")], 900, TTL);
        assert_eq!(p.users("c", 999), vec!["ghost", "live"]);
        assert_eq!(p.users("c", 1_000), vec!["live"], "expired at its TTL");
        assert_eq!(p.sweep("c", 1_000), vec!["ghost"]);
        assert!(p.sweep("c", 1_001).is_empty(), "reported only once");
        assert_eq!(p.users("c", 1_500), vec!["live"]);
    }

    #[test]
    fn a_user_with_one_live_tab_is_not_swept() {
        let mut p = PresenceTable::default();
        p.join("c", "alice", "dead-replica", 0, TTL);
        p.join("c", "alice", "live-replica", 0, TTL);
        p.refresh("c", [("alice", "live-replica")], 800, TTL);
        assert!(p.sweep("c", 1_200).is_empty());
        assert_eq!(p.users("c", 1_200), vec!["alice"]);
    }

    #[test]
    fn rejoining_after_expiry_is_a_new_join() {
        let mut p = PresenceTable::default();
        assert!(p.join("c", "alice", "a1", 0, TTL));
        assert!(
            p.join("c", "alice", "a2", 2_000, TTL),
            "a1 expired, so this is a fresh join"
        );
    }

    #[test]
    fn leaving_an_already_expired_connection_does_not_announce_twice() {
        let mut p = PresenceTable::default();
        p.join("c", "alice", "a1", 0, TTL);
        assert_eq!(p.sweep("c", 2_000), vec!["alice"]);
        assert!(!p.leave("c", "alice", "a1", 2_100));
    }

    #[test]
    fn refresh_restores_lost_state() {
        let mut p = PresenceTable::default();
        p.refresh("c", [("alice", "a1"), ("bob", "b1")], 0, TTL);
        assert_eq!(p.users("c", 1), vec!["alice", "bob"]);
    }
}
