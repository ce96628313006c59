//! Redis broker: pub/sub fan-out across replicas, presence and the shared rate limit.
//!
//! Layout, per channel `C` (the `{C}` hash tag keeps a channel's keys in one slot):
//! - `canvaschat:{C}:users` sorted set: user -> latest expiry of any of their connections.
//! - `canvaschat:{C}:conns:<user>` sorted set: connection -> expiry.
//! - pub/sub channel `canvaschat:chan:C` carries envelopes.
//! - `canvaschat:rate:<user>:<minute>` counts a user's messages in a minute.
//!
//! Every presence change is one Lua script, so concurrent replicas cannot interleave, and
//! all scripts read Redis' own clock so replicas with skewed clocks agree on expiry. Keys
//! expire at twice the TTL after the last write, so abandoned channels leave nothing behind.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use fred::{
    clients::SubscriberClient,
    prelude::*,
    types::{Message, scripts::Script},
};
use futures::{FutureExt, future::BoxFuture};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{Broker, BrokerError, Deliver, Health, Joined, Member};
use crate::{
    metrics::{Metrics, RedisOp},
    protocol::Envelope,
};

const PUBSUB_PREFIX: &str = "canvaschat:chan:";
const RATE_PREFIX: &str = "canvaschat:rate:";
/// Presence refreshes are sent in batches so one huge channel cannot block Redis.
const REFRESH_BATCH: usize = 500;
/// Sweeps remove at most this many users per call; the next sweep takes the rest.
const SWEEP_BATCH: usize = 1_000;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

const NOW_MS: &str = "local t = redis.call('TIME') \
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) ";

// KEYS: users, conns; ARGV: user, conn, ttl_ms. Returns "1" when the user was not present
// ("0" otherwise), followed by the users present now.
const JOIN: &str = "local ttl = tonumber(ARGV[3]) \
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) \
    local first = redis.call('ZCARD', KEYS[2]) == 0 \
    redis.call('ZADD', KEYS[2], now + ttl, ARGV[2]) \
    redis.call('ZADD', KEYS[1], 'GT', now + ttl, ARGV[1]) \
    redis.call('PEXPIRE', KEYS[2], ttl * 2) \
    redis.call('PEXPIRE', KEYS[1], ttl * 2) \
    local users = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf') \
    table.insert(users, 1, first and '1' or '0') \
    return users";

// KEYS: users, conns; ARGV: user, conn. Returns 1 when that was the user's last connection.
// A connection already swept was announced by the sweeper, so it is not announced again.
const LEAVE: &str = "local found = redis.call('ZREM', KEYS[2], ARGV[2]) \
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) \
    if redis.call('ZCARD', KEYS[2]) > 0 then \
      local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES') \
      redis.call('ZADD', KEYS[1], top[2], ARGV[1]) \
      return 0 \
    end \
    redis.call('DEL', KEYS[2]) \
    redis.call('ZREM', KEYS[1], ARGV[1]) \
    return found";

// KEYS: users; ARGV: ttl_ms, conns key prefix, then user, conn pairs.
const REFRESH: &str = "local ttl = tonumber(ARGV[1]) \
    local exp = now + ttl \
    for i = 3, #ARGV, 2 do \
      local ck = ARGV[2] .. ARGV[i] \
      redis.call('ZADD', ck, exp, ARGV[i + 1]) \
      redis.call('PEXPIRE', ck, ttl * 2) \
      redis.call('ZADD', KEYS[1], 'GT', exp, ARGV[i]) \
    end \
    redis.call('PEXPIRE', KEYS[1], ttl * 2) \
    return 1";

// KEYS: users; ARGV: conns key prefix, batch size. Returns the users who are gone.
const SWEEP: &str = "local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2])) \
    local gone = {} \
    for _, user in ipairs(expired) do \
      local ck = ARGV[1] .. user \
      redis.call('ZREMRANGEBYSCORE', ck, '-inf', now) \
      if redis.call('ZCARD', ck) == 0 then \
        redis.call('DEL', ck) \
        redis.call('ZREM', KEYS[1], user) \
        table.insert(gone, user) \
      else \
        local top = redis.call('ZRANGE', ck, -1, -1, 'WITHSCORES') \
        redis.call('ZADD', KEYS[1], top[2], user) \
      end \
    end \
    return gone";

// ARGV: rate key prefix, user, limit, pub/sub channel, envelope. Counts the message in the
// user's minute and publishes it when within the limit: one round trip, returns 1 if sent.
const CHAT: &str = "local key = ARGV[1] .. ARGV[2] .. ':' .. math.floor(now / 60000) \
    local n = redis.call('INCR', key) \
    if n == 1 then redis.call('PEXPIRE', key, 120000) end \
    if n > tonumber(ARGV[3]) then return 0 end \
    redis.call('PUBLISH', ARGV[4], ARGV[5]) \
    return 1";

struct Scripts {
    join: Script,
    leave: Script,
    refresh: Script,
    sweep: Script,
    chat: Script,
}

impl Scripts {
    fn new() -> Self {
        let script = |body: &str| Script::from_lua(format!("{NOW_MS}{body}"));
        Scripts {
            join: script(JOIN),
            leave: script(LEAVE),
            refresh: script(REFRESH),
            sweep: script(SWEEP),
            chat: script(CHAT),
        }
    }
}

fn users_key(channel: &str) -> String {
    format!("canvaschat:{{{channel}}}:users")
}

fn conns_prefix(channel: &str) -> String {
    format!("canvaschat:{{{channel}}}:conns:")
}

/// The keys a join or leave touches: the channel's users and the member's connections.
fn member_keys(channel: &str, member: &Member) -> Vec<String> {
    vec![
        users_key(channel),
        format!("{}{}", conns_prefix(channel), member.user),
    ]
}

/// The client settings from the URL; a separate password (any character, no URL escaping)
/// replaces the URL's.
fn client_config(url: &str, password: Option<&str>) -> Result<Config, BrokerError> {
    let mut config = Config::from_url(url).map_err(redis_err("configuration"))?;
    if let Some(password) = password {
        config.password = Some(password.to_owned());
    }
    Ok(config)
}

fn redis_err(operation: &'static str) -> impl FnOnce(fred::error::Error) -> BrokerError {
    move |source| BrokerError::Redis { operation, source }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct RedisBroker {
    client: Client,
    subscriber: SubscriberClient,
    scripts: Scripts,
    ttl_ms: u64,
    rate_limit: u32,
    /// Channels this process wants to receive, re-subscribed after every reconnect even if
    /// a subscribe call failed while Redis was away.
    wanted: Arc<Mutex<HashSet<String>>>,
}

impl RedisBroker {
    /// Connects (in the background: an unreachable Redis makes the gateway not-ready rather
    /// than crash it) and starts the tasks that deliver messages and track reconnects.
    pub fn connect(
        url: &str,
        password: Option<&str>,
        ttl: Duration,
        rate_limit_per_minute: u32,
        deliver: Deliver,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, BrokerError> {
        let mut config = client_config(url, password)?;
        config.fail_fast = false;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = COMMAND_TIMEOUT;
                c.internal_command_timeout = COMMAND_TIMEOUT;
                c.max_command_attempts = 2;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = COMMAND_TIMEOUT;
                // Pub/sub messages wait here until the delivery task takes them; a burst
                // beyond this is counted as lost rather than held without bound.
                p.broadcast_channel_capacity = 16_384;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
        let client = builder.build().map_err(redis_err("client setup"))?;
        let subscriber = builder
            .build_subscriber_client()
            .map_err(redis_err("subscriber setup"))?;
        client.connect();
        subscriber.connect();

        let wanted: Arc<Mutex<HashSet<String>>> = Arc::default();
        tokio::spawn(deliver_messages(
            subscriber.message_rx(),
            deliver,
            metrics.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(resubscribe_on_reconnect(
            subscriber.clone(),
            wanted.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(log_connection_errors(
            client.clone(),
            subscriber.clone(),
            metrics,
            shutdown,
        ));
        Ok(RedisBroker {
            client,
            subscriber,
            scripts: Scripts::new(),
            ttl_ms: ttl.as_millis().try_into().unwrap_or(u64::MAX / 4),
            rate_limit: rate_limit_per_minute,
            wanted,
        })
    }

    /// Closes both connections; used at the end of a graceful drain.
    pub async fn quit(&self) {
        let _ = self.subscriber.quit().await;
        let _ = self.client.quit().await;
    }
}

async fn deliver_messages(
    mut rx: tokio::sync::broadcast::Receiver<Message>,
    deliver: Deliver,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return,
            message = rx.recv() => message,
        };
        match message {
            Ok(message) => {
                let Some(channel) = message.channel.strip_prefix(PUBSUB_PREFIX) else {
                    continue;
                };
                let Some(raw) = message.value.as_str() else {
                    tracing::warn!(channel, "ignoring non-text pub/sub message");
                    continue;
                };
                match Envelope::decode(&raw) {
                    Ok(envelope) => deliver(channel, envelope),
                    Err(error) => tracing::warn!(channel, %error, "ignoring pub/sub message"),
                }
            }
            Err(RecvError::Lagged(lost)) => {
                metrics.redis_error(RedisOp::Subscribe);
                tracing::error!(
                    lost,
                    "delivery fell behind Redis pub/sub; messages were lost"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn resubscribe_on_reconnect(
    subscriber: SubscriberClient,
    wanted: Arc<Mutex<HashSet<String>>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut reconnects = subscriber.reconnect_rx();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            event = reconnects.recv() => match event {
                Ok(server) => {
                    let channels: Vec<String> = lock(&wanted)
                        .iter()
                        .map(|c| format!("{PUBSUB_PREFIX}{c}"))
                        .collect();
                    tracing::info!(%server, channels = channels.len(), "redis subscriber connected; subscribing");
                    if !channels.is_empty()
                        && let Err(error) = subscriber.subscribe(channels).await
                    {
                        metrics.redis_error(RedisOp::Subscribe);
                        tracing::error!(%error, "resubscribe after reconnect failed");
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
        }
    }
}

async fn log_connection_errors(
    client: Client,
    subscriber: SubscriberClient,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut client_errors = client.error_rx();
    let mut subscriber_errors = subscriber.error_rx();
    loop {
        let (role, event) = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = client_errors.recv() => ("commands", e),
            e = subscriber_errors.recv() => ("pubsub", e),
        };
        match event {
            Ok((error, server)) => {
                metrics.redis_error(RedisOp::Connection);
                let server = server.map(|s| s.to_string()).unwrap_or_default();
                tracing::warn!(role, %server, %error, "redis connection error; reconnecting");
            }
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        }
    }
}

impl Broker for RedisBroker {
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            lock(&self.wanted).insert(channel.to_owned());
            self.subscriber
                .subscribe(format!("{PUBSUB_PREFIX}{channel}"))
                .await
                .map_err(redis_err("SUBSCRIBE"))
        }
        .boxed()
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            lock(&self.wanted).remove(channel);
            self.subscriber
                .unsubscribe(format!("{PUBSUB_PREFIX}{channel}"))
                .await
                .map_err(redis_err("UNSUBSCRIBE"))
        }
        .boxed()
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            let _receivers: i64 = self
                .client
                .publish(format!("{PUBSUB_PREFIX}{channel}"), envelope.encode())
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
    ) -> BoxFuture<'a, Result<Joined, BrokerError>> {
        async move {
            let args = vec![
                member.user.clone(),
                member.connection.clone(),
                self.ttl_ms.to_string(),
            ];
            let mut reply: Vec<String> = self
                .scripts
                .join
                .evalsha_with_reload(&self.client, member_keys(channel, member), args)
                .await
                .map_err(redis_err("presence join"))?;
            if reply.is_empty() {
                return Err(BrokerError::UnexpectedReply {
                    operation: "presence join",
                    detail: "empty reply".to_owned(),
                });
            }
            let first = reply.remove(0) == "1";
            reply.sort();
            Ok(Joined {
                first,
                users: reply,
            })
        }
        .boxed()
    }

    fn leave<'a>(
        &'a self,
        channel: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<bool, BrokerError>> {
        async move {
            let args = vec![member.user.clone(), member.connection.clone()];
            let last: i64 = self
                .scripts
                .leave
                .evalsha_with_reload(&self.client, member_keys(channel, member), args)
                .await
                .map_err(redis_err("presence leave"))?;
            Ok(last == 1)
        }
        .boxed()
    }

    fn refresh<'a>(
        &'a self,
        channel: &'a str,
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            for batch in members.chunks(REFRESH_BATCH) {
                let mut args = Vec::with_capacity(2 + batch.len() * 2);
                args.push(self.ttl_ms.to_string());
                args.push(conns_prefix(channel));
                for member in batch {
                    args.push(member.user.clone());
                    args.push(member.connection.clone());
                }
                let _: i64 = self
                    .scripts
                    .refresh
                    .evalsha_with_reload(&self.client, users_key(channel), args)
                    .await
                    .map_err(redis_err("presence refresh"))?;
            }
            Ok(())
        }
        .boxed()
    }

    fn sweep<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        async move {
            let args = vec![conns_prefix(channel), SWEEP_BATCH.to_string()];
            self.scripts
                .sweep
                .evalsha_with_reload(&self.client, users_key(channel), args)
                .await
                .map_err(redis_err("presence sweep"))
        }
        .boxed()
    }

    fn publish_chat<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<bool, BrokerError>> {
        async move {
            let args = vec![
                RATE_PREFIX.to_owned(),
                user.to_owned(),
                self.rate_limit.to_string(),
                format!("{PUBSUB_PREFIX}{channel}"),
                envelope.encode(),
            ];
            let sent: i64 = self
                .scripts
                .chat
                .evalsha_with_reload(&self.client, Vec::<String>::new(), args)
                .await
                .map_err(redis_err("chat publish"))?;
            Ok(sent == 1)
        }
        .boxed()
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        async move {
            let store = tokio::time::timeout(HEALTH_TIMEOUT, self.client.ping::<String>(None))
                .await
                .is_ok_and(|reply| reply.is_ok());
            let pubsub = self.subscriber.is_connected()
                && tokio::time::timeout(HEALTH_TIMEOUT, self.subscriber.ping::<Value>(None))
                    .await
                    .is_ok_and(|reply| reply.is_ok());
            Health { store, pubsub }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separate_password_replaces_the_url_password_verbatim() {
        let config = client_config("redis://:inurl@redis:6379/0", Some("p/@:#?%w")).unwrap();
        assert_eq!(config.password.as_deref(), Some("p/@:#?%w"));
        let from_url = client_config("redis://:inurl@redis:6379/0", None).unwrap();
        assert_eq!(from_url.password.as_deref(), Some("inurl"));
    }
}
