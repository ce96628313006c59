//! The gateway's two Redis connections, shared by the Redis broker and presence manager:
//! one for commands and scripts, one subscriber that receives pub/sub envelopes. Behind
//! Sentinels both ask them for the master on every (re)connect, so both follow a failover.
//!
//! Commands are sent at most once: a command in flight when the connection drops fails
//! instead of being replayed (`max_command_attempts = 1`), because a replayed chat script
//! would publish twice. The client learns of the failure as `unavailable` and resends with
//! the same `client_msg_id`, which the chat script recognises, so a retry never duplicates.
//! The command queue is bounded: beyond it, commands fail at once (backpressure) instead of
//! piling up in memory while Redis is slow.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use fred::{clients::SubscriberClient, prelude::*, types::Message};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::{
    broker::{BrokerError, Deliver, Health},
    metrics::{Metrics, RedisOp},
    protocol::Envelope,
    redis_url,
};

pub const PUBSUB_PREFIX: &str = "canvaschat:chan:";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Commands waiting for the connection; more fail with a backpressure error.
const COMMAND_BUFFER: usize = 16_384;
/// Longest pause between two reconnect attempts (they start at 100 ms and double).
const MAX_BACKOFF_MS: u32 = 5_000;
const SENTINEL_MAX_BACKOFF_MS: u32 = 1_000;

pub fn redis_err(operation: &'static str) -> impl FnOnce(fred::error::Error) -> BrokerError {
    move |source| BrokerError::Redis { operation, source }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn pubsub_channel(channel: &str) -> String {
    format!("{PUBSUB_PREFIX}{channel}")
}

pub struct RedisConnection {
    pub client: Client,
    subscriber: SubscriberClient,
    /// Channels this process wants to receive, re-subscribed after every reconnect even if
    /// a subscribe call failed while Redis was away.
    wanted: Arc<Mutex<HashSet<String>>>,
}

impl RedisConnection {
    /// Connects (in the background: an unreachable Redis makes the gateway not-ready rather
    /// than crash it) and starts the tasks that deliver messages and track reconnects.
    /// `resubscribed` runs after every (re)subscription of the subscriber connection: frames
    /// published while it was away were not received, and the node catches up on them.
    pub fn connect(
        url: &str,
        password: Option<&str>,
        deliver: Deliver,
        resubscribed: Arc<dyn Fn() + Send + Sync>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, BrokerError> {
        let mut config = redis_url::client_config(url, password)?;
        config.fail_fast = false;
        // Behind Sentinels a reconnect asks them for the master again, so retrying at least
        // every second finds a promoted replica soon after the failover; one Redis that is
        // down for long is retried less often.
        let max_backoff_ms = if redis_url::is_sentinel(url) {
            SENTINEL_MAX_BACKOFF_MS
        } else {
            MAX_BACKOFF_MS
        };
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = COMMAND_TIMEOUT;
                c.internal_command_timeout = COMMAND_TIMEOUT;
                c.max_command_attempts = 1;
                c.max_command_buffer_len = COMMAND_BUFFER;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = COMMAND_TIMEOUT;
                // Pub/sub messages wait here until the delivery task takes them; a burst
                // beyond this is counted as lost rather than held without bound.
                p.broadcast_channel_capacity = 16_384;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, max_backoff_ms, 2));
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
            resubscribed,
            metrics.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(log_connection_errors(
            client.clone(),
            subscriber.clone(),
            metrics,
            shutdown,
        ));
        Ok(RedisConnection {
            client,
            subscriber,
            wanted,
        })
    }

    pub async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        lock(&self.wanted).insert(channel.to_owned());
        self.subscriber
            .subscribe(pubsub_channel(channel))
            .await
            .map_err(redis_err("SUBSCRIBE"))
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        lock(&self.wanted).remove(channel);
        self.subscriber
            .unsubscribe(pubsub_channel(channel))
            .await
            .map_err(redis_err("UNSUBSCRIBE"))
    }

    pub async fn health(&self) -> Health {
        let store = tokio::time::timeout(HEALTH_TIMEOUT, self.client.ping::<String>(None))
            .await
            .is_ok_and(|reply| reply.is_ok());
        let pubsub = self.subscriber.is_connected()
            && tokio::time::timeout(HEALTH_TIMEOUT, self.subscriber.ping::<Value>(None))
                .await
                .is_ok_and(|reply| reply.is_ok());
        Health { store, pubsub }
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
                    "delivery fell behind Redis pub/sub; messages were lost (clients recover them from history on reconnect)"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn resubscribe_on_reconnect(
    subscriber: SubscriberClient,
    wanted: Arc<Mutex<HashSet<String>>>,
    resubscribed: Arc<dyn Fn() + Send + Sync>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut reconnects = subscriber.reconnect_rx();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            event = reconnects.recv() => match event {
                Ok(server) => {
                    let channels: Vec<String> =
                        lock(&wanted).iter().map(|c| pubsub_channel(c)).collect();
                    tracing::info!(%server, channels = channels.len(), "redis subscriber connected; subscribing");
                    if !channels.is_empty()
                        && let Err(error) = subscriber.subscribe(channels).await
                    {
                        metrics.redis_error(RedisOp::Subscribe);
                        tracing::error!(%error, "resubscribe after reconnect failed");
                    }
                    resubscribed();
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
