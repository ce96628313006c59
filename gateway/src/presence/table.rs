//! Presence rules, in memory: who is online in a channel.
//!
//! A user is present while at least one of their connections is live. A connection is live
//! until its expiry, which the gateway holding it pushes forward on every heartbeat; a
//! gateway that dies stops refreshing, so its connections expire and a sweep removes them.
//! Every change reports the announcements it implies, so `user_joined` and `user_left` go
//! out exactly once per change of the set of users, in the order of the changes:
//! - assert (join or heartbeat): `user_joined` when the user was not live; when the user
//!   still had an entry whose connections had all expired unswept, `user_left` first;
//! - leave: `user_left` when it removed the user's last entry;
//! - sweep: `user_left` for each user it removed.
//!
//! [`PresenceTable`] is used by the embedded presence manager; the Redis one keeps the same
//! structure in Redis (see `presence::redis`) and follows the same rules.

use std::collections::HashMap;

/// Milliseconds on the presence clock.
pub type Millis = u64;

/// What an assert implies for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Asserted {
    /// The user had an entry but no live connection: announce `user_left` first.
    pub stale_left: bool,
    /// The user was not live: announce `user_joined`.
    pub joined: bool,
}

#[derive(Debug, Default)]
pub struct PresenceTable {
    /// channel -> user -> connection -> expiry
    channels: HashMap<String, HashMap<String, HashMap<String, Millis>>>,
}

impl PresenceTable {
    /// Records a live connection (a join, a heartbeat, or a re-assertion after state loss).
    pub fn assert(
        &mut self,
        channel: &str,
        user: &str,
        conn: &str,
        now: Millis,
        ttl: Millis,
    ) -> Asserted {
        let conns = self
            .channels
            .entry(channel.to_owned())
            .or_default()
            .entry(user.to_owned())
            .or_default();
        let had_entry = !conns.is_empty();
        let live = conns.values().any(|expiry| *expiry > now);
        conns.retain(|_, expiry| *expiry > now);
        conns.insert(conn.to_owned(), now + ttl);
        Asserted {
            stale_left: had_entry && !live,
            joined: !live,
        }
    }

    /// Removes a connection; true when that removed the user, so `user_left` is due.
    /// Leaving a connection that is not recorded (already swept) changes nothing.
    pub fn leave(&mut self, channel: &str, user: &str, conn: &str, now: Millis) -> bool {
        let Some(users) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some(conns) = users.get_mut(user) else {
            return false;
        };
        if conns.remove(conn).is_none() {
            return false;
        }
        conns.retain(|_, expiry| *expiry > now);
        let left = conns.is_empty();
        if left {
            users.remove(user);
            if users.is_empty() {
                self.channels.remove(channel);
            }
        }
        left
    }

    /// Drops expired connections; returns the users removed (sorted), each due a `user_left`.
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

    /// The live users of a channel: at most `limit` of them (those whose presence reaches
    /// furthest, as Redis orders them), sorted by name, and how many there are in all.
    pub fn users(&self, channel: &str, now: Millis, limit: usize) -> (Vec<String>, u64) {
        let Some(users) = self.channels.get(channel) else {
            return (Vec::new(), 0);
        };
        let mut live: Vec<(Millis, &String)> = users
            .iter()
            .filter_map(|(user, conns)| {
                let latest = conns.values().copied().max()?;
                (latest > now).then_some((latest, user))
            })
            .collect();
        let total = live.len() as u64;
        live.sort_unstable_by(|a, b| b.cmp(a));
        let mut names: Vec<String> = live
            .into_iter()
            .take(limit)
            .map(|(_, u)| u.clone())
            .collect();
        names.sort();
        (names, total)
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
    const JOINED: Asserted = Asserted {
        stale_left: false,
        joined: true,
    };
    const KEPT: Asserted = Asserted {
        stale_left: false,
        joined: false,
    };

    fn names(p: &PresenceTable, channel: &str, now: Millis) -> Vec<String> {
        p.users(channel, now, 1_000).0
    }

    #[test]
    fn first_tab_joins_and_last_tab_leaves() {
        let mut p = PresenceTable::default();
        assert_eq!(p.assert("c", "alice", "a1", 0, TTL), JOINED);
        assert_eq!(p.assert("c", "alice", "a2", 10, TTL), KEPT, "a second tab");
        assert_eq!(names(&p, "c", 20), vec!["alice"]);
        assert!(
            !p.leave("c", "alice", "a1", 30),
            "one tab left, still present"
        );
        assert!(
            p.leave("c", "alice", "a2", 40),
            "last tab closes: user left"
        );
        assert!(names(&p, "c", 50).is_empty());
        assert_eq!(p.channel_count(), 0, "empty channels are forgotten");
    }

    #[test]
    fn a_heartbeat_is_no_announcement() {
        let mut p = PresenceTable::default();
        p.assert("c", "alice", "a1", 0, TTL);
        assert_eq!(p.assert("c", "alice", "a1", 500, TTL), KEPT);
    }

    #[test]
    fn users_are_sorted_unique_and_bounded_with_a_total() {
        let mut p = PresenceTable::default();
        p.assert("c", "bob", "b1", 0, TTL);
        p.assert("c", "alice", "a1", 0, TTL);
        p.assert("c", "alice", "a2", 0, TTL);
        p.assert("other", "carol", "c1", 0, TTL);
        assert_eq!(names(&p, "c", 1), vec!["alice", "bob"]);
        assert_eq!(p.users("c", 1, 1), (vec!["bob".to_owned()], 2));
        assert!(names(&p, "nobody", 1).is_empty());
    }

    #[test]
    fn expired_connections_are_swept_once() {
        let mut p = PresenceTable::default();
        p.assert("c", "ghost", "g1", 0, TTL);
        p.assert("c", "live", "l1", 0, TTL);
        p.assert("c", "live", "l1", 900, TTL);
        assert_eq!(names(&p, "c", 999), vec!["ghost", "live"]);
        assert_eq!(names(&p, "c", 1_000), vec!["live"], "expired at its TTL");
        assert_eq!(p.sweep("c", 1_000), vec!["ghost"]);
        assert!(p.sweep("c", 1_001).is_empty(), "reported only once");
    }

    #[test]
    fn a_user_with_one_live_tab_is_not_swept() {
        let mut p = PresenceTable::default();
        p.assert("c", "alice", "dead-replica", 0, TTL);
        p.assert("c", "alice", "live-replica", 0, TTL);
        p.assert("c", "alice", "live-replica", 800, TTL);
        assert!(p.sweep("c", 1_200).is_empty());
        assert_eq!(names(&p, "c", 1_200), vec!["alice"]);
    }

    #[test]
    fn rejoining_after_unswept_expiry_announces_the_departure_first() {
        let mut p = PresenceTable::default();
        p.assert("c", "alice", "a1", 0, TTL);
        assert_eq!(
            p.assert("c", "alice", "a2", 2_000, TTL),
            Asserted {
                stale_left: true,
                joined: true
            }
        );
        assert!(p.sweep("c", 2_500).is_empty());
    }

    #[test]
    fn leaving_a_swept_connection_does_not_announce_twice() {
        let mut p = PresenceTable::default();
        p.assert("c", "alice", "a1", 0, TTL);
        assert_eq!(p.sweep("c", 2_000), vec!["alice"]);
        assert!(!p.leave("c", "alice", "a1", 2_100));
    }

    #[test]
    fn leaving_an_expired_unswept_connection_announces_once() {
        let mut p = PresenceTable::default();
        p.assert("c", "alice", "a1", 0, TTL);
        assert!(p.leave("c", "alice", "a1", 2_000));
        assert!(p.sweep("c", 2_100).is_empty());
    }
}
