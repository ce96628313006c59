//! The node: one gateway process. It wires the hub (local connections) to the broker
//! (chat fan-out and history) and the presence manager, and runs the background work:
//! presence heartbeats, sweeping expired presence, noticing a Redis that lost its data,
//! flushing coalesced presence announcements, rebalancing, and the drain on shutdown.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    broker::{
        Broker, BrokerError, BrokerSettings, Deliver, embedded::EmbeddedBroker, redis::RedisBroker,
    },
    config::Config,
    hub::{Hub, PresenceState, close_code},
    metrics::{Metrics, RedisOp},
    presence::{Member, PresenceManager, embedded::EmbeddedPresence, redis::RedisPresence},
    rebalance::{self, FleetLoad, Policy},
    redis_conn::RedisConnection,
};

/// How long HTTP keeps answering after the last socket closed in a drain.
const DRAIN_LINGER: Duration = Duration::from_secs(1);
/// The drain closes sockets in this many batches, so their clients do not all reconnect
/// to the other replicas in the same instant.
const DRAIN_BATCHES: usize = 20;
/// Mean pause between two drain batches; each pause is jittered by ±50 %.
const DRAIN_BATCH_PAUSE: Duration = Duration::from_millis(50);
/// How often the node checks whether Redis lost its data.
const GENERATION_CHECK: Duration = Duration::from_secs(1);
/// Presence announcements are coalesced over this long.
const PRESENCE_COALESCE: Duration = Duration::from_millis(50);
/// Connections asserted under one set of presence locks.
const ASSERT_LOCK_BATCH: usize = 500;

pub struct Node {
    pub config: Config,
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    pub presence: Arc<dyn PresenceManager>,
    pub metrics: Arc<Metrics>,
    /// One permit per WebSocket connection: the per-process connection cap.
    pub connection_slots: Arc<Semaphore>,
    /// Cancelled on SIGTERM: readiness fails and upgrades are refused.
    pub draining: CancellationToken,
    /// Cancelled when the process is about to exit: background tasks stop.
    stopped: CancellationToken,
    redis: Option<Arc<RedisConnection>>,
}

impl Node {
    pub fn new(config: Config) -> Result<Arc<Self>, BrokerError> {
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(
            Uuid::new_v4(),
            config.send_queue_frames as usize,
            config.send_queue_bytes as usize,
            metrics.clone(),
        ));
        let deliver: Deliver = {
            let hub = hub.clone();
            Arc::new(move |channel, envelope| hub.deliver(channel, envelope))
        };
        let settings = BrokerSettings {
            history: config.history_limits(),
            rate_limit_per_minute: config.rate_limit_per_minute,
        };
        let stopped = CancellationToken::new();
        let (broker, presence, redis): (Arc<dyn Broker>, Arc<dyn PresenceManager>, _) =
            match &config.redis_url {
                Some(url) => {
                    let resubscribed: Arc<dyn Fn() + Send + Sync> = {
                        let hub = hub.clone();
                        Arc::new(move || hub.catch_up_all())
                    };
                    let conn = Arc::new(RedisConnection::connect(
                        url,
                        config.redis_password.as_ref().map(|p| p.expose().as_str()),
                        deliver,
                        resubscribed,
                        metrics.clone(),
                        stopped.clone(),
                    )?);
                    let presence =
                        Arc::new(RedisPresence::new(conn.clone(), config.presence_ttl()));
                    (
                        Arc::new(
                            RedisBroker::new(conn.clone(), settings, presence.clone())
                                .with_delivered({
                                    let hub = hub.clone();
                                    Arc::new(move |channel| hub.delivered(channel))
                                }),
                        ),
                        presence,
                        Some(conn),
                    )
                }
                None => {
                    let presence = Arc::new(EmbeddedPresence::new(
                        deliver.clone(),
                        config.presence_ttl(),
                    ));
                    (
                        Arc::new(EmbeddedBroker::new(deliver, settings, presence.clone())),
                        presence,
                        None,
                    )
                }
            };
        Ok(Arc::new(Node {
            connection_slots: Arc::new(Semaphore::new(config.max_connections as usize)),
            config,
            hub,
            broker,
            presence,
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

    /// Starts the presence heartbeat, the sweep, the data-loss check, the flushing of
    /// coalesced presence announcements and, with Redis, rebalancing rounds.
    pub fn spawn_background_tasks(self: &Arc<Self>) {
        self.spawn_every(self.config.heartbeat(), |node| async move {
            node.assert_presence().await
        });
        self.spawn_every(self.config.sweep_interval(), |node| async move {
            node.sweep_presence().await
        });
        self.spawn_generation_watch();
        self.spawn_catch_up();
        self.spawn_every(PRESENCE_COALESCE, |node| async move {
            node.hub.flush_presence()
        });
        if let Some(redis) = &self.redis {
            let fleet = Arc::new(FleetLoad::new(redis.clone(), self.hub.node().to_string()));
            let policy = Policy::from_config(&self.config);
            self.spawn_every(rebalance::ROUND, move |node| {
                let fleet = fleet.clone();
                async move { rebalance::round(&node, &fleet, policy).await }
            });
        }
    }

    /// Runs `work` every `period` until the process stops; a slow round delays the next
    /// instead of piling up.
    fn spawn_every<F, Fut>(self: &Arc<Self>, period: Duration, work: F)
    where
        F: Fn(Arc<Node>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let node = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = node.stopped.cancelled() => return,
                    _ = tick.tick() => work(node.clone()).await,
                }
            }
        });
    }

    /// Answers the hub's catch-up requests: reads what a channel missed from the history.
    fn spawn_catch_up(self: &Arc<Self>) {
        let Some(mut requests) = self.hub.take_catch_up_requests() else {
            return;
        };
        let node = self.clone();
        tokio::spawn(async move {
            loop {
                let request = tokio::select! {
                    _ = node.stopped.cancelled() => return,
                    request = requests.recv() => match request {
                        Some(request) => request,
                        None => return,
                    },
                };
                let node = node.clone();
                tokio::spawn(async move {
                    let missed = match node.broker.missed(&request.channel, &request.since).await {
                        Ok(missed) => missed,
                        Err(error) => {
                            node.metrics.redis_error(RedisOp::Publish);
                            tracing::warn!(channel = request.channel, %error, "catch-up read failed; frames were missed");
                            Vec::new()
                        }
                    };
                    node.hub.caught_up(&request.channel, missed);
                });
            }
        });
    }

    /// Notices a presence store that lost its data (Redis restarted empty): its generation
    /// changes, and this node re-asserts every connection at once instead of waiting for
    /// the next heartbeat, announcing them to the other replicas.
    fn spawn_generation_watch(self: &Arc<Self>) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut known: Option<String> = None;
            let mut tick = tokio::time::interval(GENERATION_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = node.stopped.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match node.presence.generation().await {
                    Ok(current) => {
                        if known.as_ref().is_some_and(|k| *k != current) {
                            tracing::warn!(
                                "redis lost its data (restarted empty?); re-asserting the presence of every connection"
                            );
                            node.assert_presence().await;
                        }
                        known = Some(current);
                    }
                    Err(error) => tracing::debug!(%error, "presence generation check failed"),
                }
            }
        });
    }

    /// Refreshes this node's joined connections, re-adding (and announcing) any the store
    /// lost. Each batch holds its connections' presence locks, so a connection that is
    /// leaving either finishes first (and is skipped) or waits (and is removed after).
    pub async fn assert_presence(&self) {
        for (channel, members) in self.hub.members_by_channel() {
            for batch in members.chunks(ASSERT_LOCK_BATCH) {
                let mut guards = Vec::with_capacity(batch.len());
                let mut live: Vec<Member> = Vec::with_capacity(batch.len());
                for (member, slot) in batch {
                    let guard = slot.clone().lock_owned().await;
                    if *guard == PresenceState::Joined {
                        live.push(member.clone());
                        guards.push(guard);
                    }
                }
                if live.is_empty() {
                    continue;
                }
                if let Err(error) = self.presence.assert(&channel, &live).await {
                    self.metrics.redis_error(RedisOp::Presence);
                    tracing::warn!(channel, %error, "presence heartbeat failed");
                }
                drop(guards);
            }
        }
    }

    async fn sweep_presence(&self) {
        for channel in self.hub.channel_names() {
            match self.presence.sweep(&channel).await {
                Ok(gone) => {
                    for user in gone {
                        tracing::info!(channel, user, "presence expired");
                    }
                }
                Err(error) => {
                    self.metrics.redis_error(RedisOp::Presence);
                    tracing::warn!(channel, %error, "presence sweep failed");
                }
            }
        }
    }

    /// The drain after SIGTERM: turn not-ready at once and keep serving for the drain
    /// delay (load balancers stop sending new connections meanwhile), then close sockets
    /// with 1001 in jittered batches, each after writing what is queued for it, and wait
    /// for their sessions to end (leaving presence) within the grace period.
    pub async fn drain(&self) {
        let grace = self.config.shutdown_grace();
        let deadline = Instant::now() + grace;
        self.draining.cancel();
        let delay = self.config.drain_delay().min(grace);
        tracing::info!(
            open = self.hub.connection_count(),
            delay_seconds = delay.as_secs(),
            grace_seconds = grace.as_secs(),
            "draining: not ready; serving until the delay is over"
        );
        tokio::time::sleep(delay).await;
        let mut closers = self.hub.closers();
        fastrand::shuffle(&mut closers);
        let batch = closers.len().div_ceil(DRAIN_BATCHES).max(1);
        tracing::info!(open = closers.len(), batch, "closing sockets");
        for (i, chunk) in closers.chunks(batch).enumerate() {
            if i > 0 {
                let pause = DRAIN_BATCH_PAUSE.mul_f64(0.5 + fastrand::f64());
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
            }
            for closer in chunk {
                closer.close_after_flush(close_code::GOING_AWAY, "server shutting down");
            }
        }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn embedded_node() -> Arc<Node> {
        let config = Config::try_parse_from(["canvaschat-gateway"])
            .unwrap()
            .validate()
            .unwrap();
        Node::new(config).unwrap()
    }

    async fn present(node: &Node, channel: &str) -> Vec<String> {
        let probe = Member {
            user: "probe".into(),
            connection: "probe".into(),
        };
        let joined = node.broker.join(channel, &probe, None).await.unwrap();
        node.presence.leave(channel, &probe).await.unwrap();
        joined
            .listing
            .users
            .into_iter()
            .filter(|u| u != "probe")
            .collect()
    }

    #[tokio::test]
    async fn a_heartbeat_never_re_adds_a_connection_that_left_or_has_not_joined() {
        let node = embedded_node();
        let left = node.hub.register("c", "gone");
        let joining = node.hub.register("c", "early");
        let gone = Member {
            user: "gone".into(),
            connection: left.id.to_string(),
        };
        {
            let mut state = left.presence.lock().await;
            node.broker.join("c", &gone, None).await.unwrap();
            *state = PresenceState::Joined;
        }
        // The session left while the hub still lists it, as a heartbeat's snapshot may.
        {
            let mut state = left.presence.lock().await;
            *state = PresenceState::Left;
            node.presence.leave("c", &gone).await.unwrap();
        }
        node.assert_presence().await;
        assert!(present(&node, "c").await.is_empty());
        assert_eq!(*joining.presence.lock().await, PresenceState::Joining);
    }

    #[tokio::test]
    async fn a_heartbeat_restores_a_joined_connection_the_store_lost() {
        let node = embedded_node();
        let reg = node.hub.register("c", "alice");
        let alice = Member {
            user: "alice".into(),
            connection: reg.id.to_string(),
        };
        node.broker.join("c", &alice, None).await.unwrap();
        *reg.presence.lock().await = PresenceState::Joined;
        // Removed behind its back (a sweep while this replica stalled).
        node.presence.leave("c", &alice).await.unwrap();
        node.assert_presence().await;
        assert_eq!(present(&node, "c").await, vec!["alice"]);
    }
}
