//! The gateway's shared state and its background work: presence heartbeats, sweeping
//! expired presence, and the drain on shutdown.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    broker::{Broker, BrokerError, Deliver, embedded::EmbeddedBroker, redis::RedisBroker},
    config::Config,
    hub::{Hub, close_code},
    metrics::{Metrics, RedisOp},
    protocol::{ConnectionId, Envelope, ServerFrame, timestamp},
};

/// How long HTTP keeps answering after the last socket closed in a drain.
const DRAIN_LINGER: Duration = Duration::from_secs(1);

pub struct App {
    pub config: Config,
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    pub metrics: Arc<Metrics>,
    /// One permit per WebSocket connection: the per-process connection cap.
    pub connection_slots: Arc<Semaphore>,
    /// Cancelled on SIGTERM: readiness fails, upgrades are refused, sockets close.
    pub draining: CancellationToken,
    /// Cancelled when the process is about to exit: background tasks stop.
    stopped: CancellationToken,
    redis: Option<Arc<RedisBroker>>,
}

impl App {
    pub fn new(config: Config) -> Result<Arc<Self>, BrokerError> {
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(
            Uuid::new_v4(),
            config.send_queue_frames as usize,
            metrics.clone(),
        ));
        let deliver: Deliver = {
            let hub = hub.clone();
            Arc::new(move |channel, envelope| hub.deliver(channel, envelope))
        };
        let stopped = CancellationToken::new();
        let (broker, redis): (Arc<dyn Broker>, _) = match &config.redis_url {
            Some(url) => {
                let redis = Arc::new(RedisBroker::connect(
                    url,
                    config.redis_password.as_ref().map(|p| p.expose().as_str()),
                    config.presence_ttl(),
                    config.rate_limit_per_minute,
                    deliver,
                    metrics.clone(),
                    stopped.clone(),
                )?);
                (redis.clone(), Some(redis))
            }
            None => (
                Arc::new(EmbeddedBroker::new(
                    deliver,
                    config.presence_ttl(),
                    config.rate_limit_per_minute,
                )),
                None,
            ),
        };
        Ok(Arc::new(App {
            connection_slots: Arc::new(Semaphore::new(config.max_connections as usize)),
            config,
            hub,
            broker,
            metrics,
            draining: CancellationToken::new(),
            stopped,
            redis,
        }))
    }

    pub fn broker_name(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "embedded"
        }
    }

    /// Publishes a frame to every connection in the channel except `sender`'s.
    pub async fn publish(
        &self,
        channel: &str,
        sender: Option<ConnectionId>,
        frame: &ServerFrame,
    ) -> Result<(), BrokerError> {
        let envelope = Envelope {
            sender,
            published_at_micros: chrono::Utc::now().timestamp_micros(),
            frame: frame.to_json(),
        };
        let result = self.broker.publish(channel, &envelope).await;
        if result.is_err() {
            self.metrics.redis_error(RedisOp::Publish);
        }
        result
    }

    pub async fn announce_left(&self, channel: &str, user: &str) {
        let frame = ServerFrame::UserLeft {
            channel_id: channel.to_owned(),
            user_id: user.to_owned(),
            timestamp: timestamp(chrono::Utc::now()),
        };
        if let Err(error) = self.publish(channel, None, &frame).await {
            tracing::warn!(channel, user, %error, "could not announce user_left");
        }
    }

    /// Starts the presence heartbeat and the sweep of expired presence.
    pub fn spawn_presence_tasks(self: &Arc<Self>) {
        self.spawn_every(self.config.heartbeat(), |app| async move {
            app.refresh_presence().await
        });
        self.spawn_every(self.config.sweep_interval(), |app| async move {
            app.sweep_presence().await
        });
    }

    /// Runs `work` every `period` until the process stops; a slow round delays the next
    /// instead of piling up.
    fn spawn_every<F, Fut>(self: &Arc<Self>, period: Duration, work: F)
    where
        F: Fn(Arc<App>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let app = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = app.stopped.cancelled() => return,
                    _ = tick.tick() => work(app.clone()).await,
                }
            }
        });
    }

    async fn refresh_presence(&self) {
        for (channel, members) in self.hub.members_by_channel() {
            if let Err(error) = self.broker.refresh(&channel, &members).await {
                self.metrics.redis_error(RedisOp::Presence);
                tracing::warn!(channel, %error, "presence heartbeat failed");
            }
        }
    }

    async fn sweep_presence(&self) {
        for channel in self.hub.channel_names() {
            match self.broker.sweep(&channel).await {
                Ok(gone) => {
                    for user in gone {
                        tracing::info!(channel, user, "presence expired");
                        self.announce_left(&channel, &user).await;
                    }
                }
                Err(error) => {
                    self.metrics.redis_error(RedisOp::Presence);
                    tracing::warn!(channel, %error, "presence sweep failed");
                }
            }
        }
    }

    /// The drain after SIGTERM: turn not-ready, close every socket with 1001 so sessions
    /// remove their presence (others see `user_left` at once), and wait for them to finish
    /// within the grace period.
    pub async fn drain(&self) {
        let grace = self.config.shutdown_grace();
        let deadline = Instant::now() + grace;
        self.draining.cancel();
        let open = self.hub.connection_count();
        tracing::info!(open, grace_seconds = grace.as_secs(), "draining");
        self.hub
            .close_all(close_code::GOING_AWAY, "server shutting down");
        while self.active_sessions() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.active_sessions();
        if left > 0 {
            tracing::warn!(left, "grace period over with sessions still open");
        } else {
            tracing::info!("drained");
            // Keep answering probes for a moment: load balancers and the kubelet then see
            // "not ready" instead of a refused connection while endpoints update.
            let linger = deadline
                .saturating_duration_since(Instant::now())
                .min(DRAIN_LINGER);
            tokio::time::sleep(linger).await;
        }
        self.stopped.cancel();
        if let Some(redis) = &self.redis {
            redis.quit().await;
        }
    }

    /// Sessions still running, including those finishing their goodbye after the socket
    /// left the hub.
    pub fn active_sessions(&self) -> usize {
        self.config.max_connections as usize - self.connection_slots.available_permits()
    }
}
