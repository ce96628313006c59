//! The per-user chat rate limit: a fixed window per wall-clock minute, so exactly `limit`
//! messages are accepted in each minute and the rest are refused.
//!
//! [`MinuteWindows`] is the in-memory form used by the embedded broker; the Redis broker
//! keeps one counter key per user and minute with the same semantics, shared by replicas.

use std::collections::HashMap;

/// The minute a unix timestamp in milliseconds falls into.
pub fn minute_of(unix_millis: u64) -> u64 {
    unix_millis / 60_000
}

#[derive(Debug, Default)]
pub struct MinuteWindows {
    minute: u64,
    counts: HashMap<String, u32>,
}

impl MinuteWindows {
    /// Counts one message for `user`; true when it is within the limit.
    pub fn allow(&mut self, user: &str, unix_millis: u64, limit: u32) -> bool {
        let minute = minute_of(unix_millis);
        if minute != self.minute {
            // Only the current minute matters, so the map never holds more than the users
            // active in one minute.
            self.minute = minute;
            self.counts.clear();
        }
        let count = self.counts.entry(user.to_owned()).or_insert(0);
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    pub fn tracked_users(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_limit_messages_per_minute() {
        let mut w = MinuteWindows::default();
        let start = 120_000;
        let accepted = (0..10).filter(|i| w.allow("alice", start + i, 3)).count();
        assert_eq!(accepted, 3);
        assert!(
            w.allow("bob", start + 20, 3),
            "users are counted separately"
        );
        assert!(
            w.allow("alice", start + 60_000, 3),
            "a new minute starts afresh"
        );
    }

    #[test]
    fn old_minutes_are_forgotten() {
        let mut w = MinuteWindows::default();
        for i in 0..100 {
            w.allow(&format!("u{i}"), 0, 1);
        }
        assert_eq!(w.tracked_users(), 100);
        w.allow("x", 60_000, 1);
        assert_eq!(w.tracked_users(), 1);
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let mut w = MinuteWindows::default();
        assert!(!w.allow("alice", 0, 0));
    }
}
