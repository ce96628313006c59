//! Presence in Redis, shared by every replica. Per channel `C` (the `{C}` hash tag keeps a
//! channel's keys in one slot):
//! - `canvaschat:{C}:users` sorted set: user -> latest expiry of any of their connections;
//! - `canvaschat:{C}:conns:<user>` sorted set: connection -> expiry.
//!
//! Each change is one Lua script that also PUBLISHes the announcements it implies, so they
//! are ordered exactly as the changes, whichever replicas make them (a join runs these
//! functions inside the broker's join script, see `broker::redis`). Scripts read Redis'
//! own clock, so replicas with skewed clocks agree on expiry. Keys expire at twice the TTL
//! after the last write, so abandoned channels leave nothing behind.
//! `canvaschat:generation` names the lifetime of Redis' data: set once, it is gone after
//! Redis restarts empty, which is how replicas notice they must re-assert their connections.

use std::{sync::Arc, time::Duration};

use fred::types::scripts::Script;
use futures::{FutureExt, future::BoxFuture};
use uuid::Uuid;

use super::{Member, PresenceManager};
use crate::{
    broker::BrokerError,
    protocol::PresenceFrame,
    redis_conn::{RedisConnection, pubsub_channel, redis_err},
};

/// Heartbeats are sent in batches so one huge channel cannot block Redis.
const ASSERT_BATCH: usize = 500;
/// Sweeps remove at most this many users per call; the next sweep takes the rest.
const SWEEP_BATCH: usize = 1_000;
const GENERATION_KEY: &str = "canvaschat:generation";

pub const NOW_MS: &str = "local t = redis.call('TIME') \
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) ";

// Lua functions shared by the heartbeat below and the broker's join script (one round trip
// per join: presence, the `user_sync` list and the history read together).
// assert_members(users key, args, first): args[first..first + 6] are ttl_ms, conns key
// prefix, pub/sub channel, publish time (µs), user_joined prefix, user_left prefix, frame
// suffix; user, connection pairs follow. A user who was not live is announced: user_left
// first when an expired entry was still there (its departure was never announced), then
// user_joined. list_users(users key, limit): the number of live users, then up to `limit`
// of them, those whose presence reaches furthest first.
pub const ASSERT_FNS: &str = "local function assert_members(users, a, first) \
      local ttl = tonumber(a[first]) \
      local prefix, chan, at = a[first + 1], a[first + 2], a[first + 3] \
      local joined, left, suffix = a[first + 4], a[first + 5], a[first + 6] \
      local exp = now + ttl \
      for i = first + 7, #a, 2 do \
        local user, conn = a[i], a[i + 1] \
        local ck = prefix .. user \
        local score = redis.call('ZSCORE', users, user) \
        local live = score and tonumber(score) > now \
        redis.call('ZREMRANGEBYSCORE', ck, '-inf', now) \
        redis.call('ZADD', ck, exp, conn) \
        redis.call('PEXPIRE', ck, ttl * 2) \
        redis.call('ZADD', users, 'GT', exp, user) \
        if not live then \
          if score then \
            redis.call('PUBLISH', chan, '-|' .. at .. '|' .. left .. user .. suffix) \
          end \
          redis.call('PUBLISH', chan, conn .. '|' .. at .. '|' .. joined .. user .. suffix) \
        end \
      end \
      redis.call('PEXPIRE', users, ttl * 2) \
    end \
    local function list_users(users, limit) \
      local list = redis.call('ZREVRANGEBYSCORE', users, '+inf', '(' .. now, 'LIMIT', 0, limit) \
      table.insert(list, 1, tostring(redis.call('ZCOUNT', users, '(' .. now, '+inf'))) \
      return list \
    end ";

// KEYS: users. ARGV: the arguments of assert_members.
const ASSERT: &str = "assert_members(KEYS[1], ARGV, 1) return 0";

// KEYS: users, conns. ARGV: user, connection, pub/sub channel, user_left envelope.
// Returns 1 when it removed the user (and announced it). A connection that is not there
// (swept already, and announced by the sweep) changes nothing.
const LEAVE: &str = "if redis.call('ZREM', KEYS[2], ARGV[2]) == 0 then return 0 end \
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) \
    if redis.call('ZCARD', KEYS[2]) > 0 then \
      local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES') \
      redis.call('ZADD', KEYS[1], top[2], ARGV[1]) \
      return 0 \
    end \
    redis.call('DEL', KEYS[2]) \
    if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end \
    redis.call('PUBLISH', ARGV[3], ARGV[4]) \
    return 1";

// KEYS: users. ARGV: conns key prefix, batch size, pub/sub channel, publish time (µs),
// user_left prefix, frame suffix. Returns the users removed, each announced.
const SWEEP: &str = "local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2])) \
    local gone = {} \
    for _, user in ipairs(expired) do \
      local ck = ARGV[1] .. user \
      redis.call('ZREMRANGEBYSCORE', ck, '-inf', now) \
      if redis.call('ZCARD', ck) == 0 then \
        redis.call('DEL', ck) \
        redis.call('ZREM', KEYS[1], user) \
        redis.call('PUBLISH', ARGV[3], '-|' .. ARGV[4] .. '|' .. ARGV[5] .. user .. ARGV[6]) \
        table.insert(gone, user) \
      else \
        local top = redis.call('ZRANGE', ck, -1, -1, 'WITHSCORES') \
        redis.call('ZADD', KEYS[1], top[2], user) \
      end \
    end \
    return gone";

// KEYS: generation. ARGV: a fresh value, stored when there is none.
const GENERATION: &str = "local g = redis.call('GET', KEYS[1]) \
    if g then return g end \
    redis.call('SET', KEYS[1], ARGV[1]) \
    return ARGV[1]";

struct Scripts {
    assert: Script,
    leave: Script,
    sweep: Script,
    generation: Script,
}

fn users_key(channel: &str) -> String {
    format!("canvaschat:{{{channel}}}:users")
}

fn conns_prefix(channel: &str) -> String {
    format!("canvaschat:{{{channel}}}:conns:")
}

pub struct RedisPresence {
    conn: Arc<RedisConnection>,
    scripts: Scripts,
    ttl_ms: u64,
}

impl RedisPresence {
    pub fn new(conn: Arc<RedisConnection>, ttl: Duration) -> Self {
        let script = |body: &str| Script::from_lua(format!("{NOW_MS}{body}"));
        RedisPresence {
            conn,
            scripts: Scripts {
                assert: Script::from_lua(format!("{NOW_MS}{ASSERT_FNS}{ASSERT}")),
                leave: script(LEAVE),
                sweep: script(SWEEP),
                generation: Script::from_lua(GENERATION),
            },
            ttl_ms: ttl.as_millis().try_into().unwrap_or(u64::MAX / 4),
        }
    }

    /// The keys and arguments of `assert_members` for these connections of a channel.
    pub(crate) fn assert_call(&self, channel: &str, members: &[Member]) -> (String, Vec<String>) {
        let at = chrono::Utc::now();
        let joined = PresenceFrame::joined(channel, at);
        let left = PresenceFrame::left(channel, at);
        let mut args = Vec::with_capacity(7 + members.len() * 2);
        args.extend([
            self.ttl_ms.to_string(),
            conns_prefix(channel),
            pubsub_channel(channel),
            at.timestamp_micros().to_string(),
            joined.prefix,
            left.prefix,
            joined.suffix,
        ]);
        for m in members {
            args.push(m.user.clone());
            args.push(m.connection.clone());
        }
        (users_key(channel), args)
    }
}

impl PresenceManager for RedisPresence {
    fn assert<'a>(
        &'a self,
        channel: &'a str,
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            for batch in members.chunks(ASSERT_BATCH) {
                let (key, args) = self.assert_call(channel, batch);
                let _: i64 = self
                    .scripts
                    .assert
                    .evalsha_with_reload(&self.conn.client, key, args)
                    .await
                    .map_err(redis_err("presence assert"))?;
            }
            Ok(())
        }
        .boxed()
    }

    fn leave<'a>(
        &'a self,
        channel: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<bool, BrokerError>> {
        async move {
            let frame = PresenceFrame::left(channel, chrono::Utc::now()).for_user(&member.user);
            let envelope = format!("-|{}|{frame}", chrono::Utc::now().timestamp_micros());
            let keys = vec![
                users_key(channel),
                format!("{}{}", conns_prefix(channel), member.user),
            ];
            let args = vec![
                member.user.clone(),
                member.connection.clone(),
                pubsub_channel(channel),
                envelope,
            ];
            let left: i64 = self
                .scripts
                .leave
                .evalsha_with_reload(&self.conn.client, keys, args)
                .await
                .map_err(redis_err("presence leave"))?;
            Ok(left == 1)
        }
        .boxed()
    }

    fn sweep<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        async move {
            let at = chrono::Utc::now();
            let left = PresenceFrame::left(channel, at);
            let args = vec![
                conns_prefix(channel),
                SWEEP_BATCH.to_string(),
                pubsub_channel(channel),
                at.timestamp_micros().to_string(),
                left.prefix,
                left.suffix,
            ];
            self.scripts
                .sweep
                .evalsha_with_reload(&self.conn.client, users_key(channel), args)
                .await
                .map_err(redis_err("presence sweep"))
        }
        .boxed()
    }

    fn generation(&self) -> BoxFuture<'_, Result<String, BrokerError>> {
        async move {
            self.scripts
                .generation
                .evalsha_with_reload(
                    &self.conn.client,
                    GENERATION_KEY,
                    Uuid::new_v4().simple().to_string(),
                )
                .await
                .map_err(redis_err("presence generation"))
        }
        .boxed()
    }
}
