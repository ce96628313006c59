//! The Redis broker: chat publish, history and recovery in Lua scripts, fan-out over the
//! shared subscriber connection. Per channel `C` (the `{C}` hash tag keeps a channel's keys
//! in one slot):
//! - `canvaschat:{C}:meta` hash: `epoch` and the last `offset`; it lives a day after the last
//!   message or connection, and a missing one starts a new epoch (and an empty history);
//! - `canvaschat:{C}:history` stream: one entry per message (`o` offset, `f` frame, `s` the
//!   sending connection), at most
//!   the history size and age, expiring with the last entry's age;
//! - `canvaschat:{C}:sent:<user>:<client_msg_id>` -> `offset|message_id`, for the history age;
//! - `canvaschat:rate:<user>` hash: the GCRA bucket (`t`, `b`) of `rate_limit`;
//! - pub/sub channel `canvaschat:chan:C` carries envelopes.
//!
//! Writes lost in a Sentinel failover (replication is asynchronous) leave the promoted
//! replica behind the offsets replicas already delivered. Reusing those offsets in the same
//! epoch would make every replica drop the new frames as already seen, and a client resuming
//! from one would be told it recovered. So whenever a replica shows the store an offset of
//! the current epoch that the store no longer has (its last delivered offset, sent with each
//! chat and each catch-up), the script starts a new epoch first.

use std::sync::Arc;

use fred::{interfaces::PubsubInterface, types::scripts::Script};
use futures::{FutureExt, future::BoxFuture};
use uuid::Uuid;

use super::{
    Broker, BrokerError, BrokerSettings, CHANNEL_META_TTL, ChatSend, Health, Joined, millis,
    new_epoch,
};
use crate::{
    history::{ChatOutcome, Recovery, Since},
    presence::{
        Listing, Member,
        redis::{ASSERT_FNS, NOW_MS, RedisPresence},
    },
    protocol::{ConnectionId, Envelope, USER_SYNC_LIMIT},
    rate_limit::MESSAGE_COST,
    redis_conn::{RedisConnection, pubsub_channel, redis_err},
};

// Starts a new epoch when the channel has none. KEYS: meta, history; ARGV[1]: new epoch.
const OPEN_META: &str = "local epoch = redis.call('HGET', KEYS[1], 'epoch') \
    if not epoch then \
      epoch = ARGV[1] \
      redis.call('DEL', KEYS[2]) \
      redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0) \
    end ";

// Starts a new epoch when a replica delivered an offset of this epoch that the store lacks
// (lost writes, see the module comment). Needs OPEN_META's `epoch`. KEYS: meta, history.
const BEHIND: &str = "local function restart_if_behind(new_epoch, seen_epoch, seen) \
      if seen_epoch == epoch and seen ~= '' \
          and tonumber(redis.call('HGET', KEYS[1], 'offset')) < tonumber(seen) then \
        epoch = new_epoch \
        redis.call('DEL', KEYS[2]) \
        redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0) \
      end \
    end ";

// KEYS: meta, history, rate, [sent]. ARGV: new epoch, limit, history size, history ms,
// meta ttl ms, pub/sub channel, envelope head (`sender|µs|`), frame JSON without offset
// and epoch, message id, sender connection, epoch and offset this replica last delivered
// ('' when none). Returns {'dup', 'offset|message_id', epoch}, {'limited'} or
// {'ok', offset, epoch}. The frame gets `,"offset":N,"epoch":"E"}` in place of its closing
// brace, as `protocol::stamp_chat` does.
const CHAT: &str = "restart_if_behind(ARGV[1], ARGV[11], ARGV[12]) \
    if #KEYS > 3 then \
      local prior = redis.call('GET', KEYS[4]) \
      if prior then \
        local o, id, e = string.match(prior, '^(%d+)|([^|]+)|(.+)$') \
        if e then return {'dup', o .. '|' .. id, e} end \
        return {'dup', prior, epoch} \
      end \
    end \
    local limit = tonumber(ARGV[2]) \
    local cost = COST \
    local bucket = redis.call('HMGET', KEYS[3], 't', 'b') \
    local backlog = 0 \
    if bucket[1] and bucket[2] then \
      local idle = math.min(math.max(now - tonumber(bucket[1]), 0), cost) \
      backlog = math.max(tonumber(bucket[2]) - idle * limit, 0) \
    end \
    if backlog + cost > cost * limit then return {'limited'} end \
    redis.call('HSET', KEYS[3], 't', now, 'b', backlog + cost) \
    redis.call('PEXPIRE', KEYS[3], cost) \
    local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1) \
    redis.call('PEXPIRE', KEYS[1], ARGV[5]) \
    local frame = string.sub(ARGV[8], 1, -2) .. ',\"offset\":' .. offset .. ',\"epoch\":\"' .. epoch .. '\"}' \
    redis.call('XADD', KEYS[2], 'MAXLEN', '=', ARGV[3], '*', 'o', offset, 'f', frame, 's', ARGV[10]) \
    redis.call('XTRIM', KEYS[2], 'MINID', now - tonumber(ARGV[4])) \
    redis.call('PEXPIRE', KEYS[2], ARGV[4]) \
    redis.call('PUBLISH', ARGV[6], ARGV[7] .. frame) \
    if #KEYS > 3 then redis.call('SET', KEYS[4], offset .. '|' .. ARGV[9] .. '|' .. epoch, 'PX', ARGV[4]) end \
    return {'ok', tostring(offset), epoch}";

// The body of recover(): KEYS: meta, history. ARGV: new epoch, meta ttl ms, client epoch or
// '', since or '', replay ms, history ms. Returns epoch, latest offset, '1' when recovered,
// then frames.
const RECOVER: &str = "redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
    local top = tonumber(redis.call('HGET', KEYS[1], 'offset')) \
    local oldest = now - tonumber(ARGV[6]) \
    local function at(id) return tonumber(string.match(id, '^(%d+)')) end \
    local after = 0 \
    if ARGV[4] ~= '' and ARGV[3] == epoch then \
      local since = tonumber(ARGV[4]) \
      after = since \
      if since == top then return {epoch, tostring(top), '1'} end \
      if since < top then \
        local want = top - since \
        local missed = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', want) \
        local first = missed[#missed] \
        if #missed == want and tonumber(first[2][2]) == since + 1 and at(first[1]) >= oldest then \
          local reply = {epoch, tostring(top), '1'} \
          for i = #missed, 1, -1 do table.insert(reply, missed[i][2][4]) end \
          return reply \
        end \
      end \
    end \
    local reply = {epoch, tostring(top), '0'} \
    local recent = redis.call('XRANGE', KEYS[2], now - tonumber(ARGV[5]), '+') \
    for _, e in ipairs(recent) do \
      if tonumber(e[2][2]) > after and at(e[1]) >= oldest then table.insert(reply, e[2][4]) end \
    end \
    return reply";

// A connection's join: its presence (announced as `presence::redis` does) and the history
// it gets, in one round trip. KEYS: meta, history, users. ARGV: those of recover(), then the
// user_sync list limit, then those of assert_members. Returns {the live user count and up to
// the limit of them, recover()'s reply}.
const JOIN: &str = "assert_members(KEYS[3], ARGV, 8) \
    return {list_users(KEYS[3], tonumber(ARGV[7])), recover()}";

// KEYS: meta, history. ARGV: epoch, since, new epoch. Returns sender, frame pairs of the
// retained messages after `since`, oldest first; nothing when the epoch is another, or
// when the store lacks `since` (a new epoch then starts).
const MISSED_EPOCH: &str = "local epoch = redis.call('HGET', KEYS[1], 'epoch') ";
const MISSED: &str = "if epoch ~= ARGV[1] then return {} end \
    restart_if_behind(ARGV[3], ARGV[1], ARGV[2]) \
    if epoch ~= ARGV[1] then return {} end \
    local since = tonumber(ARGV[2]) \
    local want = tonumber(redis.call('HGET', KEYS[1], 'offset')) - since \
    if want <= 0 then return {} end \
    local missed = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', want) \
    local reply = {} \
    for i = #missed, 1, -1 do \
      local f = missed[i][2] \
      if tonumber(f[2]) > since then \
        table.insert(reply, f[6] or '-') \
        table.insert(reply, f[4]) \
      end \
    end \
    return reply";

fn meta_key(channel: &str) -> String {
    format!("canvaschat:{{{channel}}}:meta")
}

fn history_key(channel: &str) -> String {
    format!("canvaschat:{{{channel}}}:history")
}

fn sent_key(channel: &str, user: &str, client_msg_id: &str) -> String {
    format!("canvaschat:{{{channel}}}:sent:{user}:{client_msg_id}")
}

fn rate_key(user: &str) -> String {
    format!("canvaschat:rate:{user}")
}

fn unexpected(operation: &'static str, detail: impl Into<String>) -> BrokerError {
    BrokerError::UnexpectedReply {
        operation,
        detail: detail.into(),
    }
}

/// The epoch and offset this replica last delivered for a channel.
pub type Delivered = Arc<dyn Fn(&str) -> Option<Since> + Send + Sync>;

pub struct RedisBroker {
    conn: Arc<RedisConnection>,
    settings: BrokerSettings,
    presence: Arc<RedisPresence>,
    delivered: Option<Delivered>,
    chat: Script,
    join: Script,
    missed: Script,
}

impl RedisBroker {
    /// Joins record presence as `presence` does, on the same Redis.
    pub fn new(
        conn: Arc<RedisConnection>,
        settings: BrokerSettings,
        presence: Arc<RedisPresence>,
    ) -> Self {
        let script = |body: &str| {
            Script::from_lua(format!(
                "{NOW_MS}{OPEN_META}{BEHIND}{}",
                body.replace("COST", &MESSAGE_COST.to_string())
            ))
        };
        RedisBroker {
            conn,
            settings,
            presence,
            delivered: None,
            chat: script(CHAT),
            join: Script::from_lua(format!(
                "{NOW_MS}{OPEN_META}local function recover() {RECOVER} end {ASSERT_FNS}{JOIN}"
            )),
            missed: Script::from_lua(format!("{MISSED_EPOCH}{BEHIND}{MISSED}")),
        }
    }

    /// Lets every chat tell the store what this replica last delivered on its channel, so
    /// writes lost in a failover start a new epoch instead of reusing offsets.
    pub fn with_delivered(mut self, delivered: Delivered) -> Self {
        self.delivered = Some(delivered);
        self
    }
}

impl Broker for RedisBroker {
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.conn.subscribe(channel).boxed()
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.conn.unsubscribe(channel).boxed()
    }

    fn publish_chat<'a>(
        &'a self,
        chat: &'a ChatSend<'a>,
    ) -> BoxFuture<'a, Result<ChatOutcome, BrokerError>> {
        async move {
            let mut keys = vec![
                meta_key(chat.channel),
                history_key(chat.channel),
                rate_key(chat.user),
            ];
            if let Some(id) = chat.client_msg_id {
                keys.push(sent_key(chat.channel, chat.user, id));
            }
            let history = self.settings.history;
            let seen = self.delivered.as_ref().and_then(|d| d(chat.channel));
            let args = vec![
                new_epoch(),
                self.settings.rate_limit_per_minute.to_string(),
                history.size.to_string(),
                history.retain.to_string(),
                millis(CHANNEL_META_TTL).to_string(),
                pubsub_channel(chat.channel),
                format!("{}|{}|", chat.sender, chat.published_at_micros),
                chat.body.to_owned(),
                chat.message_id.to_string(),
                chat.sender.to_string(),
                seen.as_ref().map(|s| s.epoch.clone()).unwrap_or_default(),
                seen.map(|s| s.offset.to_string()).unwrap_or_default(),
            ];
            let reply: Vec<String> = self
                .chat
                .evalsha_with_reload(&self.conn.client, keys, args)
                .await
                .map_err(redis_err("chat publish"))?;
            parse_chat_reply(&reply)
        }
        .boxed()
    }

    fn publish_volatile<'a>(
        &'a self,
        channel: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            let _receivers: i64 = self
                .conn
                .client
                .publish(pubsub_channel(channel), envelope.encode())
                .await
                .map_err(redis_err("PUBLISH"))?;
            Ok(())
        }
        .boxed()
    }

    fn join<'a>(
        &'a self,
        channel: &'a str,
        member: &'a Member,
        since: Option<&'a Since>,
    ) -> BoxFuture<'a, Result<Joined, BrokerError>> {
        async move {
            let history = self.settings.history;
            let (users_key, presence_args) = self
                .presence
                .assert_call(channel, std::slice::from_ref(member));
            let mut args = vec![
                new_epoch(),
                millis(CHANNEL_META_TTL).to_string(),
                since.map(|s| s.epoch.clone()).unwrap_or_default(),
                since.map(|s| s.offset.to_string()).unwrap_or_default(),
                history.replay.to_string(),
                history.retain.to_string(),
                USER_SYNC_LIMIT.to_string(),
            ];
            args.extend(presence_args);
            let (mut users, mut recovery): (Vec<String>, Vec<String>) = self
                .join
                .evalsha_with_reload(
                    &self.conn.client,
                    vec![meta_key(channel), history_key(channel), users_key],
                    args,
                )
                .await
                .map_err(redis_err("join"))?;
            let total = (!users.is_empty())
                .then(|| users.remove(0).parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| unexpected("join", "no user count"))?;
            users.sort();
            if recovery.len() < 3 {
                return Err(unexpected("join", format!("{recovery:?}")));
            }
            let messages = recovery.split_off(3);
            let offset = recovery[1]
                .parse()
                .map_err(|_| unexpected("join", "offset is not a number"))?;
            Ok(Joined {
                listing: Listing { users, total },
                recovery: Recovery {
                    epoch: std::mem::take(&mut recovery[0]),
                    offset,
                    recovered: recovery[2] == "1",
                    messages,
                },
            })
        }
        .boxed()
    }

    fn missed<'a>(
        &'a self,
        channel: &'a str,
        since: &'a Since,
    ) -> BoxFuture<'a, Result<Vec<Envelope>, BrokerError>> {
        async move {
            let reply: Vec<String> = self
                .missed
                .evalsha_with_reload(
                    &self.conn.client,
                    vec![meta_key(channel), history_key(channel)],
                    vec![since.epoch.clone(), since.offset.to_string(), new_epoch()],
                )
                .await
                .map_err(redis_err("history catch-up"))?;
            let at = chrono::Utc::now().timestamp_micros();
            Ok(reply
                .chunks_exact(2)
                .map(|pair| Envelope {
                    sender: ConnectionId::parse(&pair[0]).ok(),
                    published_at_micros: at,
                    frame: pair[1].clone(),
                })
                .collect())
        }
        .boxed()
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        self.conn.health().boxed()
    }
}

fn parse_chat_reply(reply: &[String]) -> Result<ChatOutcome, BrokerError> {
    let bad = || unexpected("chat publish", format!("{reply:?}"));
    match reply {
        [kind] if kind == "limited" => Ok(ChatOutcome::RateLimited),
        [kind, offset, epoch] if kind == "ok" => Ok(ChatOutcome::Published {
            offset: offset.parse().map_err(|_| bad())?,
            epoch: epoch.clone(),
        }),
        [kind, prior, epoch] if kind == "dup" => {
            let (offset, id) = prior.split_once('|').ok_or_else(bad)?;
            Ok(ChatOutcome::Duplicate {
                message_id: Uuid::parse_str(id).map_err(|_| bad())?,
                offset: offset.parse().map_err(|_| bad())?,
                epoch: epoch.clone(),
            })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_replies_are_read() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_chat_reply(&s(&["limited"])).unwrap(),
            ChatOutcome::RateLimited
        );
        assert_eq!(
            parse_chat_reply(&s(&["ok", "4", "e"])).unwrap(),
            ChatOutcome::Published {
                offset: 4,
                epoch: "e".into()
            }
        );
        let id = Uuid::new_v4();
        assert_eq!(
            parse_chat_reply(&s(&["dup", &format!("3|{id}"), "e"])).unwrap(),
            ChatOutcome::Duplicate {
                message_id: id,
                offset: 3,
                epoch: "e".into()
            }
        );
        assert!(parse_chat_reply(&s(&["dup", "x", "e"])).is_err());
        assert!(parse_chat_reply(&s(&[])).is_err());
    }
}
