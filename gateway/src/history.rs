//! Channel history rules: consecutive offsets within an epoch, a history bounded by size and
//! age, recovery of what a reconnecting client missed, and idempotent sends.
//!
//! [`ChannelLog`] is the in-memory form used by the embedded broker; the Redis broker keeps
//! the same structure (a hash with the epoch and last offset, a stream of frames, one key per
//! sent `client_msg_id`) and follows the same rules in its Lua scripts. The conformance suite
//! in `tests/` holds the two together.

use std::collections::{HashMap, VecDeque};

type SentKey = (String, String);

use uuid::Uuid;

use crate::{presence::Millis, protocol::stamp_chat};

/// How much history a channel keeps and replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most messages kept per channel.
    pub size: usize,
    /// Messages older than this are dropped.
    pub retain: Millis,
    /// A client that cannot recover gets the messages of this last stretch.
    pub replay: Millis,
}

/// Where a reconnecting client stopped: the last offset it holds and the epoch it is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub offset: u64,
    pub epoch: String,
}

/// What a new connection gets: the channel's epoch and latest offset, and the messages to
/// show, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub epoch: String,
    pub offset: u64,
    /// Every message after `since` is in `messages` (same epoch, nothing trimmed).
    pub recovered: bool,
    pub messages: Vec<String>,
}

/// The result of sending a chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatOutcome {
    /// Stored and published at this offset.
    Published { offset: u64, epoch: String },
    /// The same user already sent this `client_msg_id` within the history window: nothing
    /// was published again; these are the first send's id and offset.
    Duplicate {
        message_id: Uuid,
        offset: u64,
        epoch: String,
    },
    /// Over the rate limit; nothing was stored or published.
    RateLimited,
}

struct Entry {
    at: Millis,
    offset: u64,
    frame: String,
    /// The connection that sent it, so a replica catching up never echoes it back.
    origin: Option<String>,
}

struct Sent {
    at: Millis,
    offset: u64,
    message_id: Uuid,
}

/// One channel's history in memory.
pub struct ChannelLog {
    epoch: String,
    offset: u64,
    entries: VecDeque<Entry>,
    sent: HashMap<SentKey, Sent>,
    /// The same keys in the order they were sent, so expired ones are found in O(1).
    sent_order: VecDeque<(Millis, SentKey)>,
    /// Last write or read, so idle logs can be forgotten.
    pub touched: Millis,
}

impl ChannelLog {
    pub fn new(epoch: String, now: Millis) -> Self {
        ChannelLog {
            epoch,
            offset: 0,
            entries: VecDeque::new(),
            sent: HashMap::new(),
            sent_order: VecDeque::new(),
            touched: now,
        }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The first send of this `client_msg_id` by this user, if still within the window.
    pub fn already_sent(
        &mut self,
        user: &str,
        client_msg_id: &str,
        now: Millis,
        limits: HistoryLimits,
    ) -> Option<ChatOutcome> {
        self.trim(now, limits);
        self.sent
            .get(&(user.to_owned(), client_msg_id.to_owned()))
            .map(|sent| ChatOutcome::Duplicate {
                message_id: sent.message_id,
                offset: sent.offset,
                epoch: self.epoch.clone(),
            })
    }

    /// Stores a chat frame (its JSON without offset and epoch) at the next offset; returns
    /// the offset and the frame as published.
    pub fn append(
        &mut self,
        body: &str,
        message_id: Uuid,
        origin: Option<&str>,
        idempotency: Option<(&str, &str)>,
        now: Millis,
        limits: HistoryLimits,
    ) -> (u64, String) {
        self.offset += 1;
        self.touched = now;
        let frame = stamp_chat(body, self.offset, &self.epoch);
        self.entries.push_back(Entry {
            at: now,
            offset: self.offset,
            frame: frame.clone(),
            origin: origin.map(str::to_owned),
        });
        if let Some((user, client_msg_id)) = idempotency {
            let key = (user.to_owned(), client_msg_id.to_owned());
            self.sent_order.push_back((now, key.clone()));
            self.sent.insert(
                key,
                Sent {
                    at: now,
                    offset: self.offset,
                    message_id,
                },
            );
        }
        self.trim(now, limits);
        (self.offset, frame)
    }

    fn trim(&mut self, now: Millis, limits: HistoryLimits) {
        let cutoff = now.saturating_sub(limits.retain);
        while self
            .entries
            .front()
            .is_some_and(|e| e.at < cutoff || self.entries.len() > limits.size)
        {
            self.entries.pop_front();
        }
        while let Some((at, _)) = self.sent_order.front()
            && *at < cutoff
        {
            if let Some((at, key)) = self.sent_order.pop_front()
                && self.sent.get(&key).is_some_and(|sent| sent.at == at)
            {
                self.sent.remove(&key);
            }
        }
    }

    /// The retained messages after `since` with the connection that sent each, for a replica
    /// that missed them live; nothing when the epoch changed.
    pub fn missed(&self, since: &Since) -> Vec<(Option<String>, String)> {
        if since.epoch != self.epoch {
            return Vec::new();
        }
        self.entries
            .iter()
            .filter(|e| e.offset > since.offset)
            .map(|e| (e.origin.clone(), e.frame.clone()))
            .collect()
    }

    /// What a connection gets after `user_sync`.
    pub fn recover(
        &mut self,
        since: Option<&Since>,
        now: Millis,
        limits: HistoryLimits,
    ) -> Recovery {
        self.trim(now, limits);
        self.touched = now;
        let same_epoch = since.filter(|s| s.epoch == self.epoch);
        if let Some(since) = same_epoch
            && since.offset <= self.offset
        {
            let missed: Vec<&Entry> = self
                .entries
                .iter()
                .filter(|e| e.offset > since.offset)
                .collect();
            let complete = missed.len() as u64 == self.offset - since.offset;
            if complete {
                return self.recovery(true, missed);
            }
        }
        let replay_from = now.saturating_sub(limits.replay);
        let after = same_epoch.map_or(0, |s| s.offset);
        let recent = self
            .entries
            .iter()
            .filter(|e| e.at >= replay_from && e.offset > after)
            .collect();
        self.recovery(false, recent)
    }

    fn recovery(&self, recovered: bool, entries: Vec<&Entry>) -> Recovery {
        Recovery {
            epoch: self.epoch.clone(),
            offset: self.offset,
            recovered,
            messages: entries.into_iter().map(|e| e.frame.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HistoryLimits = HistoryLimits {
        size: 3,
        retain: 60_000,
        replay: 5_000,
    };

    fn log_with(n: u64, at: Millis) -> ChannelLog {
        let mut log = ChannelLog::new("e1".into(), 0);
        for i in 0..n {
            log.append(
                &format!("{{\"n\":{i}}}"),
                Uuid::new_v4(),
                None,
                None,
                at,
                LIMITS,
            );
        }
        log
    }

    fn since(offset: u64, epoch: &str) -> Since {
        Since {
            offset,
            epoch: epoch.into(),
        }
    }

    #[test]
    fn offsets_are_consecutive_and_stamped_into_the_frame() {
        let mut log = ChannelLog::new("e1".into(), 0);
        let (o1, f1) = log.append("{\"a\":1}", Uuid::nil(), Some("n.1"), None, 0, LIMITS);
        let (o2, _) = log.append("{\"a\":2}", Uuid::nil(), None, None, 0, LIMITS);
        assert_eq!((o1, o2), (1, 2));
        assert_eq!(f1, r#"{"a":1,"offset":1,"epoch":"e1"}"#);
        assert_eq!(
            log.missed(&since(0, "e1")),
            vec![
                (Some("n.1".to_owned()), f1),
                (None, r#"{"a":2,"offset":2,"epoch":"e1"}"#.to_owned())
            ]
        );
        assert!(log.missed(&since(0, "other")).is_empty());
    }

    #[test]
    fn recovery_from_a_retained_offset_is_complete() {
        let mut log = log_with(3, 1_000);
        let r = log.recover(Some(&since(1, "e1")), 2_000, LIMITS);
        assert!(r.recovered);
        assert_eq!(r.offset, 3);
        assert_eq!(r.messages.len(), 2);
        assert!(r.messages[0].contains("\"offset\":2"));
        let r = log.recover(Some(&since(3, "e1")), 2_000, LIMITS);
        assert!(r.recovered && r.messages.is_empty(), "nothing missed");
    }

    #[test]
    fn trimmed_history_or_another_epoch_is_not_recovered() {
        let mut log = log_with(5, 1_000);
        let r = log.recover(Some(&since(1, "e1")), 2_000, LIMITS);
        assert!(!r.recovered, "offsets 2 was trimmed by size");
        assert_eq!(
            r.messages.len(),
            3,
            "what is retained within the replay window"
        );
        let r = log.recover(Some(&since(4, "old")), 2_000, LIMITS);
        assert!(!r.recovered);
        assert_eq!(r.messages.len(), 3);
        let r = log.recover(Some(&since(9, "e1")), 2_000, LIMITS);
        assert!(!r.recovered, "an offset from the future is not trusted");
    }

    #[test]
    fn without_since_only_the_replay_window_is_sent() {
        let mut log = ChannelLog::new("e1".into(), 0);
        log.append("{}", Uuid::nil(), None, None, 1_000, LIMITS);
        log.append("{}", Uuid::nil(), None, None, 9_000, LIMITS);
        let r = log.recover(None, 10_000, LIMITS);
        assert!(!r.recovered);
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.offset, 2);
    }

    #[test]
    fn old_messages_are_dropped_by_age() {
        let mut log = log_with(2, 0);
        let r = log.recover(Some(&since(0, "e1")), 61_000, LIMITS);
        assert!(!r.recovered);
        assert!(r.messages.is_empty());
    }

    #[test]
    fn a_resent_client_msg_id_is_found_within_the_window_only() {
        let mut log = ChannelLog::new("e1".into(), 0);
        let id = Uuid::new_v4();
        log.append("{}", id, None, Some(("alice", "m1")), 0, LIMITS);
        assert_eq!(
            log.already_sent("alice", "m1", 10, LIMITS),
            Some(ChatOutcome::Duplicate {
                message_id: id,
                offset: 1,
                epoch: "e1".into()
            })
        );
        assert_eq!(log.already_sent("bob", "m1", 10, LIMITS), None);
        assert_eq!(log.already_sent("alice", "m1", 60_001, LIMITS), None);
    }
}
