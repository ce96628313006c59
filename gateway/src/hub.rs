//! The hub: this process's WebSocket connections, grouped by channel. It hands each frame
//! the broker delivers to the local connections of its channel, and keeps the broker
//! subscribed to exactly the channels that have local connections.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    broker::{Broker, BrokerError, Member},
    metrics::{Metrics, RejectReason},
    protocol::{ConnectionId, Envelope},
};

/// WebSocket close codes the gateway uses.
pub mod close_code {
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Asks a connection to close with a code; the first reason given wins.
#[derive(Debug, Default)]
pub struct Closer {
    token: CancellationToken,
    reason: OnceLock<(u16, &'static str)>,
}

impl Closer {
    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.reason.set((code, reason));
        self.token.cancel();
    }

    pub async fn closed(&self) -> (u16, &'static str) {
        self.token.cancelled().await;
        self.reason
            .get()
            .copied()
            .unwrap_or((close_code::GOING_AWAY, "closing"))
    }

    pub fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// The hub's handle on one connection.
struct Connection {
    user: String,
    queue: mpsc::Sender<Utf8Bytes>,
    closer: Arc<Closer>,
}

/// What a session gets back when it registers.
pub struct Registration {
    pub id: ConnectionId,
    /// Frames broadcast to the channel, bounded so a slow client is closed, not buffered.
    pub queue: mpsc::Receiver<Utf8Bytes>,
    pub closer: Arc<Closer>,
}

pub struct Hub {
    node: Uuid,
    next_local: AtomicU64,
    queue_frames: usize,
    channels: RwLock<HashMap<String, HashMap<u64, Connection>>>,
    /// Serialises subscribe/unsubscribe so a channel's subscription always ends up matching
    /// whether it has local connections, however joins and leaves interleave.
    subscriptions: tokio::sync::Mutex<HashSet<String>>,
    metrics: Arc<Metrics>,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    pub fn new(node: Uuid, queue_frames: usize, metrics: Arc<Metrics>) -> Self {
        Hub {
            node,
            next_local: AtomicU64::new(1),
            queue_frames,
            channels: RwLock::default(),
            subscriptions: tokio::sync::Mutex::default(),
            metrics,
        }
    }

    pub fn node(&self) -> Uuid {
        self.node
    }

    pub fn register(&self, channel: &str, user: &str) -> Registration {
        let id = ConnectionId {
            node: self.node,
            local: self.next_local.fetch_add(1, Ordering::Relaxed),
        };
        let (tx, rx) = mpsc::channel(self.queue_frames);
        let closer = Arc::new(Closer::default());
        write(&self.channels)
            .entry(channel.to_owned())
            .or_default()
            .insert(
                id.local,
                Connection {
                    user: user.to_owned(),
                    queue: tx,
                    closer: closer.clone(),
                },
            );
        Registration {
            id,
            queue: rx,
            closer,
        }
    }

    pub fn unregister(&self, channel: &str, id: ConnectionId) {
        let mut channels = write(&self.channels);
        if let Some(conns) = channels.get_mut(channel) {
            conns.remove(&id.local);
            if conns.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Subscribes or unsubscribes the channel so it matches whether it has local connections.
    pub async fn sync_subscription(
        &self,
        broker: &dyn Broker,
        channel: &str,
    ) -> Result<(), BrokerError> {
        let mut subscribed = self.subscriptions.lock().await;
        let wanted = read(&self.channels).contains_key(channel);
        if wanted && !subscribed.contains(channel) {
            broker.subscribe(channel).await?;
            subscribed.insert(channel.to_owned());
        } else if !wanted && subscribed.contains(channel) {
            subscribed.remove(channel);
            broker.unsubscribe(channel).await?;
        }
        Ok(())
    }

    /// Queues a broker frame on every local connection of the channel except its sender.
    /// A connection whose queue is full is too slow to keep up and is closed.
    pub fn deliver(&self, channel: &str, envelope: Envelope) {
        let now = chrono::Utc::now().timestamp_micros();
        let latency = (now - envelope.published_at_micros).max(0) as f64 / 1e6;
        self.metrics.delivery_latency.observe(latency);
        let skip = envelope
            .sender
            .filter(|sender| sender.node == self.node)
            .map(|sender| sender.local);
        let frame = Utf8Bytes::from(envelope.frame);
        let channels = read(&self.channels);
        let Some(conns) = channels.get(channel) else {
            return;
        };
        let mut delivered = 0;
        for (local, conn) in conns {
            if Some(*local) == skip || conn.closer.is_closed() {
                continue;
            }
            match conn.queue.try_send(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.metrics.reject(RejectReason::SlowConsumer);
                    tracing::info!(
                        user = conn.user,
                        channel,
                        "closing a client that cannot keep up"
                    );
                    conn.closer
                        .close(close_code::POLICY_VIOLATION, "client too slow to keep up");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        self.metrics.messages_delivered.inc_by(delivered);
    }

    /// Channels with local connections, and the presence entries of those connections.
    pub fn members_by_channel(&self) -> Vec<(String, Vec<Member>)> {
        read(&self.channels)
            .iter()
            .map(|(channel, conns)| {
                let members = conns
                    .iter()
                    .map(|(local, conn)| Member {
                        user: conn.user.clone(),
                        connection: ConnectionId {
                            node: self.node,
                            local: *local,
                        }
                        .to_string(),
                    })
                    .collect();
                (channel.clone(), members)
            })
            .collect()
    }

    pub fn channel_names(&self) -> Vec<String> {
        read(&self.channels).keys().cloned().collect()
    }

    pub fn connection_count(&self) -> usize {
        read(&self.channels).values().map(HashMap::len).sum()
    }

    /// Closes every connection with the same code (used by the drain).
    pub fn close_all(&self, code: u16, reason: &'static str) {
        for conns in read(&self.channels).values() {
            for conn in conns.values() {
                conn.closer.close(code, reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(queue: usize) -> Hub {
        Hub::new(Uuid::new_v4(), queue, Arc::new(Metrics::default()))
    }

    fn envelope(sender: Option<ConnectionId>, frame: &str) -> Envelope {
        Envelope {
            sender,
            published_at_micros: chrono::Utc::now().timestamp_micros(),
            frame: frame.into(),
        }
    }

    #[test]
    fn delivers_to_the_channel_but_not_to_the_sender() {
        let hub = hub(8);
        let mut alice = hub.register("c", "alice");
        let mut bob = hub.register("c", "bob");
        let mut carol = hub.register("other", "carol");
        hub.deliver("c", envelope(Some(alice.id), "hello"));
        assert_eq!(bob.queue.try_recv().unwrap().as_str(), "hello");
        assert!(alice.queue.try_recv().is_err(), "no echo to the sender");
        assert!(carol.queue.try_recv().is_err(), "channels are isolated");
    }

    #[test]
    fn a_sender_on_another_node_with_the_same_local_id_still_receives() {
        let hub = hub(8);
        let mut alice = hub.register("c", "alice");
        let foreign = ConnectionId {
            node: Uuid::new_v4(),
            local: alice.id.local,
        };
        hub.deliver("c", envelope(Some(foreign), "x"));
        assert!(alice.queue.try_recv().is_ok());
    }

    #[test]
    fn a_full_queue_closes_the_slow_connection() {
        let hub = hub(2);
        let slow = hub.register("c", "slow");
        for _ in 0..3 {
            hub.deliver("c", envelope(None, "x"));
        }
        assert!(slow.closer.is_closed());
    }

    #[test]
    fn unregistering_the_last_connection_forgets_the_channel() {
        let hub = hub(2);
        let a = hub.register("c", "a");
        let b = hub.register("c", "a");
        assert_eq!(hub.connection_count(), 2);
        hub.unregister("c", a.id);
        assert_eq!(hub.channel_names(), vec!["c".to_owned()]);
        hub.unregister("c", b.id);
        assert!(hub.channel_names().is_empty());
    }

    #[test]
    fn members_carry_globally_unique_connection_ids() {
        let hub = hub(2);
        let a = hub.register("c", "alice");
        let members = hub.members_by_channel();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].1[0].user, "alice");
        assert_eq!(members[0].1[0].connection, a.id.to_string());
    }
}
