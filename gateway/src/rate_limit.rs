//! The per-user chat rate limit: GCRA (a leaky bucket) with a burst of `limit` messages and
//! a steady rate of `limit` per minute, so no wall-clock boundary lets 2x through.
//!
//! State per user is a backlog in "message-minutes": each message adds 60,000 (ms x 1),
//! the backlog drains by `limit` per millisecond, and a message is refused when it would
//! push the backlog above `60,000 x limit`. Integer arithmetic only, so the Redis script
//! (Lua doubles, exact below 2^53) computes the very same answers.
//!
//! [`RateLimiter`] is the in-memory form used by the embedded broker; the Redis broker keeps
//! one hash per user with the same two numbers, shared by replicas.

use std::collections::HashMap;

use crate::presence::Millis;

/// What one message costs in the backlog.
pub const MESSAGE_COST: u64 = 60_000;

/// A user's backlog at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub at: Millis,
    pub backlog: u64,
}

/// Counts one message: the new bucket when it is allowed, `None` when it is refused.
pub fn admit(bucket: Option<Bucket>, now: Millis, limit: u32) -> Option<Bucket> {
    let limit = u64::from(limit);
    let backlog = bucket.map_or(0, |b| {
        let drained = now
            .saturating_sub(b.at)
            .min(MESSAGE_COST)
            .saturating_mul(limit);
        b.backlog.saturating_sub(drained)
    });
    let next = backlog + MESSAGE_COST;
    (next <= MESSAGE_COST * limit).then_some(Bucket {
        at: now,
        backlog: next,
    })
}

/// The map is pruned when it grows past this many buckets (or twice what survived the
/// previous pruning), so pruning costs O(1) per message on average.
const PRUNE_AT_LEAST: usize = 1_024;

#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<String, Bucket>,
    prune_at: usize,
}

impl RateLimiter {
    /// Counts one message for `user`; true when it is within the limit.
    pub fn allow(&mut self, user: &str, now: Millis, limit: u32) -> bool {
        if self.buckets.len() >= self.prune_at.max(PRUNE_AT_LEAST) {
            // A bucket is empty again one minute after its last message at the latest, so
            // only users active in the last minute need to be kept.
            self.buckets
                .retain(|_, b| now.saturating_sub(b.at) < MESSAGE_COST);
            self.prune_at = self.buckets.len() * 2;
        }
        match admit(self.buckets.get(user).copied(), now, limit) {
            Some(bucket) => {
                self.buckets.insert(user.to_owned(), bucket);
                true
            }
            None => false,
        }
    }

    pub fn tracked_users(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_exactly_limit_then_the_steady_rate() {
        let mut r = RateLimiter::default();
        let accepted = (0..10).filter(|i| r.allow("alice", 1_000 + i, 3)).count();
        assert_eq!(accepted, 3);
        assert!(r.allow("bob", 1_020, 3), "users are counted separately");
        assert!(
            !r.allow("alice", 1_000 + 19_999, 3),
            "one slot frees every 20 s"
        );
        assert!(r.allow("alice", 1_000 + 20_009, 3));
        assert!(!r.allow("alice", 1_000 + 20_010, 3));
    }

    #[test]
    fn no_minute_boundary_lets_twice_the_limit_through() {
        let mut r = RateLimiter::default();
        let before = (0..5).filter(|i| r.allow("a", 59_990 + i, 5)).count();
        let after = (0..5).filter(|i| r.allow("a", 60_010 + i, 5)).count();
        assert_eq!(before + after, 5);
    }

    #[test]
    fn idle_users_are_forgotten() {
        let mut r = RateLimiter::default();
        // 20,000 users, one message each, 10 ms apart: about 6,000 are active in any minute.
        for i in 0..20_000u64 {
            assert!(r.allow(&format!("u{i}"), i * 10, 1));
        }
        assert!(r.tracked_users() <= 2 * 6_001, "{}", r.tracked_users());
        assert!(
            !r.allow("u19999", 200_000, 1),
            "recent users are still limited"
        );
    }

    #[test]
    fn a_huge_limit_stays_exact() {
        let limit = 1_000_000;
        let mut bucket = None;
        for _ in 0..limit {
            bucket = admit(bucket, 5, limit);
            assert!(bucket.is_some());
        }
        assert!(admit(bucket, 5, limit).is_none());
    }
}
