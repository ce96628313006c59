//! The hub: this process's WebSocket connections, grouped by channel. It hands each frame
//! the broker delivers to the local connections of its channel, and keeps the broker
//! subscribed to exactly the channels that have local connections.
//!
//! A new connection starts with its gate closed: frames that arrive while it is being
//! greeted (it subscribes before reading history, so nothing falls in between) wait in
//! the gate, and when the history is sent the gate opens with the history's last offset
//! as a floor: chat frames at or below it are dropped, so history and live frames have
//! no gap and no duplicate.
//!
//! Chat frames of a channel arrive from pub/sub in offset order. A jump in the offsets means
//! frames were missed (the subscriber reconnected, or fell behind): the hub holds the
//! channel's later frames, asks the node to read the missed ones from the history, and
//! delivers them, then the held ones, in order. Frames at or below the channel's last
//! offset are duplicates and dropped.
//!
//! Presence announcements are coalesced per channel for a short while: of a burst (a
//! reconnect storm), each user's last announcement goes out, so clients end in the same
//! state without receiving every flap.

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::{
    broker::{Broker, BrokerError},
    history::Since,
    metrics::{Metrics, RejectReason},
    outbox::{Outbox, Refused},
    presence::Member,
    protocol::{ConnectionId, Envelope, FrameMeta},
};

/// WebSocket close codes the gateway uses.
pub mod close_code {
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Moved to another replica by rebalancing: reconnect at once with `since`/`epoch`.
    pub const REBALANCE: u16 = 4000;
}

/// Subscription bookkeeping is split over this many locks, so channels do not wait for
/// each other's SUBSCRIBE round trips.
const SUBSCRIPTION_STRIPES: usize = 64;

/// Asks a connection to close with a code; the first reason given wins.
///
/// A `Notify` rather than a `CancellationToken`: a token is a separate allocation of about
/// 110 bytes (its tree node) for every open connection, and a closer has no children.
#[derive(Debug, Default)]
pub struct Closer {
    notify: Notify,
    reason: OnceLock<(u16, &'static str)>,
    flush: AtomicBool,
}

impl Closer {
    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.reason.set((code, reason));
        self.notify.notify_waiters();
    }

    /// Closes after the frames already queued are written (within the writer's deadline).
    pub fn close_after_flush(&self, code: u16, reason: &'static str) {
        self.flush.store(true, Ordering::Release);
        self.close(code, reason);
    }

    pub fn flush_first(&self) -> bool {
        self.flush.load(Ordering::Acquire)
    }

    pub async fn closed(&self) -> (u16, &'static str) {
        // A `Notified` receives `notify_waiters` from its creation on, so a close between
        // the check and the wait is not missed.
        let notified = self.notify.notified();
        if let Some(reason) = self.reason.get() {
            return *reason;
        }
        notified.await;
        self.reason
            .get()
            .copied()
            .unwrap_or((close_code::GOING_AWAY, "closing"))
    }

    pub fn is_closed(&self) -> bool {
        self.reason.get().is_some()
    }
}

/// Where a connection is in its presence life: only joined connections are refreshed, and
/// a connection that left is never re-added. Changes and presence calls for a connection
/// happen under this lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceState {
    Joining,
    Joined,
    Left,
}

pub type PresenceSlot = Arc<tokio::sync::Mutex<PresenceState>>;

/// A frame held in a gate, with the offset and epoch of a chat frame.
type Held = (Option<u64>, Option<String>, Utf8Bytes);

/// Frames held while a connection is being greeted, and the floor applied afterwards.
#[derive(Default)]
struct Gate {
    held: Option<Vec<Held>>,
    floor: Option<(String, u64)>,
}

/// The hub's handle on one connection.
struct Connection {
    user: String,
    outbox: Arc<Outbox>,
    closer: Arc<Closer>,
    gate: Mutex<Gate>,
    presence: PresenceSlot,
    /// Presence announcements that reached the hub before this connection registered were
    /// published before its join, so its `user_sync` covers them: they are not sent to it.
    first_presence_seq: u64,
}

/// What a session gets back when it registers.
pub struct Registration {
    pub id: ConnectionId,
    /// Frames waiting to be written, the channel's broadcasts bounded in frames and bytes
    /// so a slow client is closed, not buffered.
    pub outbox: Arc<Outbox>,
    pub closer: Arc<Closer>,
    pub presence: PresenceSlot,
}

/// One frame on its way to a channel's local connections.
struct Outgoing {
    sender: Option<ConnectionId>,
    /// Set for coalesced presence announcements (see `Connection::first_presence_seq`).
    presence_seq: Option<u64>,
    /// Chat frames' offset and epoch, for the gate's floor.
    offset: Option<u64>,
    epoch: Option<String>,
    /// Cursor positions: dropped first under backpressure, never held, never a reason to
    /// close a client.
    droppable: bool,
    frame: Utf8Bytes,
}

/// Most chat frames held for one channel while its missed frames are read; beyond it the
/// held frames go out with the gap.
const CATCH_UP_HOLD: usize = 4_096;

/// Where a channel's chat stream is on this replica.
struct Flow {
    epoch: String,
    last: u64,
    /// Frames held while the missed ones are read.
    held: Option<Vec<Outgoing>>,
}

/// A request to read what a channel missed after `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUp {
    pub channel: String,
    pub since: Since,
}

/// A channel's pending presence announcements: user -> (arrival, sender, frame).
type PendingPresence = HashMap<String, (u64, Option<ConnectionId>, String)>;

pub struct Hub {
    node: Uuid,
    next_local: AtomicU64,
    queue_frames: usize,
    queue_bytes: usize,
    channels: RwLock<HashMap<String, HashMap<u64, Connection>>>,
    /// Serialise subscribe/unsubscribe per channel so a channel's subscription always ends
    /// up matching whether it has local connections, however joins and leaves interleave.
    subscriptions: Vec<tokio::sync::Mutex<HashSet<String>>>,
    stripe_hasher: RandomState,
    pending_presence: Mutex<HashMap<String, PendingPresence>>,
    presence_seq: AtomicU64,
    flows: Mutex<HashMap<String, Flow>>,
    catch_up: mpsc::UnboundedSender<CatchUp>,
    catch_up_requests: Mutex<Option<mpsc::UnboundedReceiver<CatchUp>>>,
    metrics: Arc<Metrics>,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn is_presence(kind: &str) -> bool {
    kind == "user_joined" || kind == "user_left"
}

impl Hub {
    pub fn new(node: Uuid, queue_frames: usize, queue_bytes: usize, metrics: Arc<Metrics>) -> Self {
        let (catch_up, requests) = mpsc::unbounded_channel();
        Hub {
            node,
            next_local: AtomicU64::new(1),
            queue_frames,
            queue_bytes,
            channels: RwLock::default(),
            subscriptions: (0..SUBSCRIPTION_STRIPES)
                .map(|_| tokio::sync::Mutex::default())
                .collect(),
            stripe_hasher: RandomState::new(),
            pending_presence: Mutex::default(),
            presence_seq: AtomicU64::new(0),
            flows: Mutex::default(),
            catch_up,
            catch_up_requests: Mutex::new(Some(requests)),
            metrics,
        }
    }

    /// The catch-up requests (one per channel at a time, so bounded by the channels); the
    /// node answers each with [`Hub::caught_up`].
    pub fn take_catch_up_requests(&self) -> Option<mpsc::UnboundedReceiver<CatchUp>> {
        lock(&self.catch_up_requests).take()
    }

    pub fn node(&self) -> Uuid {
        self.node
    }

    /// Adds a connection with its gate closed (see the module docs).
    pub fn register(&self, channel: &str, user: &str) -> Registration {
        let id = ConnectionId {
            node: self.node,
            local: self.next_local.fetch_add(1, Ordering::Relaxed),
        };
        let outbox = Arc::new(Outbox::new(self.queue_frames, self.queue_bytes));
        let closer = Arc::new(Closer::default());
        let presence = Arc::new(tokio::sync::Mutex::new(PresenceState::Joining));
        write(&self.channels)
            .entry(channel.to_owned())
            .or_default()
            .insert(
                id.local,
                Connection {
                    user: user.to_owned(),
                    outbox: outbox.clone(),
                    closer: closer.clone(),
                    gate: Mutex::new(Gate {
                        held: Some(Vec::new()),
                        floor: None,
                    }),
                    presence: presence.clone(),
                    first_presence_seq: self.presence_seq.load(Ordering::Acquire),
                },
            );
        Registration {
            id,
            outbox,
            closer,
            presence,
        }
    }

    pub fn unregister(&self, channel: &str, id: ConnectionId) {
        let mut channels = write(&self.channels);
        if let Some(conns) = channels.get_mut(channel) {
            conns.remove(&id.local);
            if conns.is_empty() {
                channels.remove(channel);
                lock(&self.flows).remove(channel);
            }
        }
    }

    /// Releases the frames held while the connection was greeted, dropping chat frames at
    /// or below `floor` (the epoch and last offset of the history it was sent), and applies
    /// that floor to every later frame too: a frame published before the history was read
    /// may still be on its way.
    pub fn open_gate(&self, channel: &str, id: ConnectionId, floor: (String, u64)) {
        let channels = read(&self.channels);
        let Some(conn) = channels.get(channel).and_then(|c| c.get(&id.local)) else {
            return;
        };
        let mut gate = lock(&conn.gate);
        gate.floor = Some(floor);
        for (offset, epoch, frame) in gate.held.take().unwrap_or_default() {
            if !below_floor(&gate.floor, offset, epoch.as_deref()) {
                self.enqueue(channel, conn, frame);
            }
        }
    }

    /// Subscribes or unsubscribes the channel so it matches whether it has local connections.
    pub async fn sync_subscription(
        &self,
        broker: &dyn Broker,
        channel: &str,
    ) -> Result<(), BrokerError> {
        let stripe = self.stripe_hasher.hash_one(channel) as usize % SUBSCRIPTION_STRIPES;
        let mut subscribed = self.subscriptions[stripe].lock().await;
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

    /// Takes a broker frame: presence announcements wait for the next coalescing flush,
    /// everything else goes to the channel's local connections at once.
    pub fn deliver(&self, channel: &str, envelope: Envelope) {
        let now = chrono::Utc::now().timestamp_micros();
        let latency = (now - envelope.published_at_micros).max(0) as f64 / 1e6;
        self.metrics.delivery_latency.observe(latency);
        if !read(&self.channels).contains_key(channel) {
            return;
        }
        let meta = FrameMeta::of(&envelope.frame);
        if is_presence(&meta.kind)
            && let Some(user) = meta.user_id
        {
            let seq = self.presence_seq.fetch_add(1, Ordering::AcqRel);
            lock(&self.pending_presence)
                .entry(channel.to_owned())
                .or_default()
                .insert(user, (seq, envelope.sender, envelope.frame));
            return;
        }
        let out = Outgoing {
            sender: envelope.sender,
            presence_seq: None,
            droppable: meta.kind == "cursor",
            offset: meta.offset,
            epoch: meta.epoch,
            frame: Utf8Bytes::from(envelope.frame),
        };
        let (Some(offset), Some(epoch)) = (out.offset, out.epoch.clone()) else {
            self.fan_out(channel, out);
            return;
        };
        // Held while fanning out, so a catch-up finishing meanwhile cannot reorder frames.
        let mut flows = lock(&self.flows);
        let flow = flows.entry(channel.to_owned()).or_insert_with(|| Flow {
            epoch: epoch.clone(),
            last: offset.saturating_sub(1),
            held: None,
        });
        if flow.epoch != epoch {
            *flow = Flow {
                epoch,
                last: offset.saturating_sub(1),
                held: None,
            };
        }
        if let Some(held) = &mut flow.held {
            if held.len() < CATCH_UP_HOLD {
                held.push(out);
                return;
            }
            tracing::warn!(channel, "catch-up too slow; delivering with a gap");
            for out in flow.held.take().unwrap_or_default() {
                self.advance(channel, flow, out);
            }
        }
        if offset > flow.last + 1 && flow.held.is_none() {
            tracing::info!(
                channel,
                from = flow.last + 1,
                to = offset - 1,
                "missed frames; reading them from the history"
            );
            let request = CatchUp {
                channel: channel.to_owned(),
                since: Since {
                    offset: flow.last,
                    epoch: flow.epoch.clone(),
                },
            };
            if self.catch_up.send(request).is_ok() {
                flow.held = Some(vec![out]);
                return;
            }
        }
        self.advance(channel, flow, out);
    }

    /// Asks for what every channel may have missed after its last offset (the subscriber
    /// was away: even the last frames before a quiet spell may be lost, which no later jump
    /// would reveal), holding their frames until it is read.
    pub fn catch_up_all(&self) {
        let mut flows = lock(&self.flows);
        for (channel, flow) in flows.iter_mut() {
            if flow.held.is_some() {
                continue;
            }
            let request = CatchUp {
                channel: channel.clone(),
                since: Since {
                    offset: flow.last,
                    epoch: flow.epoch.clone(),
                },
            };
            if self.catch_up.send(request).is_ok() {
                flow.held = Some(Vec::new());
            }
        }
    }

    /// The epoch and offset of the last chat frame this replica delivered on `channel`.
    pub fn delivered(&self, channel: &str) -> Option<Since> {
        lock(&self.flows).get(channel).map(|flow| Since {
            epoch: flow.epoch.clone(),
            offset: flow.last,
        })
    }

    /// Delivers a chat frame unless the channel already had its offset.
    fn advance(&self, channel: &str, flow: &mut Flow, out: Outgoing) {
        let Some(offset) = out.offset else {
            return;
        };
        if offset <= flow.last {
            return;
        }
        flow.last = offset;
        self.fan_out(channel, out);
    }

    /// Delivers the frames a channel missed (from the history, oldest first), then the
    /// frames held meanwhile. An empty list (the read failed, or the epoch changed) just
    /// releases the held frames.
    pub fn caught_up(&self, channel: &str, missed: Vec<Envelope>) {
        let mut flows = lock(&self.flows);
        let Some(flow) = flows.get_mut(channel) else {
            return;
        };
        let held = flow.held.take().unwrap_or_default();
        for envelope in missed {
            let meta = FrameMeta::of(&envelope.frame);
            if meta.epoch.as_deref() != Some(flow.epoch.as_str()) {
                continue;
            }
            let out = Outgoing {
                sender: envelope.sender,
                presence_seq: None,
                droppable: false,
                offset: meta.offset,
                epoch: meta.epoch,
                frame: Utf8Bytes::from(envelope.frame),
            };
            self.advance(channel, flow, out);
        }
        for out in held {
            self.advance(channel, flow, out);
        }
    }

    /// Sends each channel's coalesced presence announcements: per user the last one, in
    /// arrival order.
    pub fn flush_presence(&self) {
        let pending = std::mem::take(&mut *lock(&self.pending_presence));
        for (channel, users) in pending {
            let mut frames: Vec<_> = users.into_values().collect();
            frames.sort_unstable_by_key(|(seq, _, _)| *seq);
            for (seq, sender, frame) in frames {
                self.fan_out(
                    &channel,
                    Outgoing {
                        sender,
                        presence_seq: Some(seq),
                        offset: None,
                        epoch: None,
                        droppable: false,
                        frame: Utf8Bytes::from(frame),
                    },
                );
            }
        }
    }

    /// Queues a frame on every local connection of the channel except its sender.
    fn fan_out(&self, channel: &str, out: Outgoing) {
        let skip = out
            .sender
            .filter(|sender| sender.node == self.node)
            .map(|sender| sender.local);
        let channels = read(&self.channels);
        let Some(conns) = channels.get(channel) else {
            return;
        };
        let mut delivered = 0;
        for (local, conn) in conns {
            if Some(*local) == skip
                || conn.closer.is_closed()
                || out
                    .presence_seq
                    .is_some_and(|seq| seq < conn.first_presence_seq)
            {
                continue;
            }
            let mut gate = lock(&conn.gate);
            if let Some(held) = &mut gate.held {
                if out.droppable {
                    // A cursor position is stale by the time the greeting ends.
                } else if held.len() >= self.queue_frames {
                    self.too_slow(channel, conn);
                } else {
                    held.push((out.offset, out.epoch.clone(), out.frame.clone()));
                }
                continue;
            }
            if below_floor(&gate.floor, out.offset, out.epoch.as_deref()) {
                continue;
            }
            drop(gate);
            let queued = if out.droppable {
                self.enqueue_droppable(conn, out.frame.clone())
            } else {
                self.enqueue(channel, conn, out.frame.clone())
            };
            if queued {
                delivered += 1;
            }
        }
        self.metrics.messages_delivered.inc_by(delivered);
    }

    /// Queues a frame that may be lost (a cursor position): see [`Outbox::push_droppable`].
    fn enqueue_droppable(&self, conn: &Connection, frame: Utf8Bytes) -> bool {
        let queued = conn.outbox.push_droppable(frame);
        if !queued {
            self.metrics.cursors_dropped.inc();
        }
        queued
    }

    /// Queues one frame within the connection's frame and byte bounds; a connection over
    /// either is too slow to keep up and is closed.
    fn enqueue(&self, channel: &str, conn: &Connection, frame: Utf8Bytes) -> bool {
        match conn.outbox.push_broadcast(frame) {
            Ok(()) => true,
            Err(Refused::Full) => {
                self.too_slow(channel, conn);
                false
            }
            Err(Refused::Closed) => false,
        }
    }

    fn too_slow(&self, channel: &str, conn: &Connection) {
        if conn.closer.is_closed() {
            return;
        }
        self.metrics.reject(RejectReason::SlowConsumer);
        tracing::info!(
            user = conn.user,
            channel,
            "closing a client that cannot keep up"
        );
        conn.closer
            .close(close_code::POLICY_VIOLATION, "client too slow to keep up");
    }

    /// Channels with local connections, and the presence entries of those connections with
    /// their presence locks.
    pub fn members_by_channel(&self) -> Vec<(String, Vec<(Member, PresenceSlot)>)> {
        read(&self.channels)
            .iter()
            .map(|(channel, conns)| {
                let members = conns
                    .iter()
                    .map(|(local, conn)| {
                        let member = Member {
                            user: conn.user.clone(),
                            connection: ConnectionId {
                                node: self.node,
                                local: *local,
                            }
                            .to_string(),
                        };
                        (member, conn.presence.clone())
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

    /// Every open connection's closer with its age rank (lower is older), per channel: what
    /// rebalancing chooses from.
    pub fn closers_by_channel(&self) -> Vec<Vec<(u64, Arc<Closer>)>> {
        read(&self.channels)
            .values()
            .map(|conns| {
                conns
                    .iter()
                    .filter(|(_, c)| !c.closer.is_closed())
                    .map(|(local, c)| (*local, c.closer.clone()))
                    .collect()
            })
            .collect()
    }

    /// Every connection's closer (used by the drain).
    pub fn closers(&self) -> Vec<Arc<Closer>> {
        read(&self.channels)
            .values()
            .flat_map(|conns| conns.values().map(|c| c.closer.clone()))
            .collect()
    }
}

fn below_floor(floor: &Option<(String, u64)>, offset: Option<u64>, epoch: Option<&str>) -> bool {
    match (floor, offset, epoch) {
        (Some((floor_epoch, floor)), Some(offset), Some(epoch)) => {
            epoch == floor_epoch && offset <= *floor
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closer_wakes_every_waiter_with_the_first_reason() {
        let closer = Closer::default();
        let mut reader = std::pin::pin!(closer.closed());
        let mut writer = std::pin::pin!(closer.closed());
        assert!(futures::poll!(reader.as_mut()).is_pending());
        assert!(futures::poll!(writer.as_mut()).is_pending());
        closer.close(close_code::POLICY_VIOLATION, "first");
        let wait = std::time::Duration::from_secs(5);
        for waiter in [reader, writer] {
            let reason = tokio::time::timeout(wait, waiter).await;
            assert_eq!(reason.ok(), Some((close_code::POLICY_VIOLATION, "first")));
        }
        // A later close keeps the first reason, and a wait that starts after the close ends
        // at once.
        closer.close(close_code::GOING_AWAY, "second");
        let reason = tokio::time::timeout(wait, closer.closed()).await;
        assert_eq!(reason.ok(), Some((close_code::POLICY_VIOLATION, "first")));
        assert!(closer.is_closed());
    }

    fn hub(queue: usize) -> Hub {
        Hub::new(Uuid::new_v4(), queue, 1 << 20, Arc::new(Metrics::default()))
    }

    fn envelope(sender: Option<ConnectionId>, frame: &str) -> Envelope {
        Envelope {
            sender,
            published_at_micros: chrono::Utc::now().timestamp_micros(),
            frame: frame.into(),
        }
    }

    fn open(hub: &Hub, channel: &str, reg: &Registration) {
        hub.open_gate(channel, reg.id, ("e".into(), 0));
    }

    fn chat(offset: u64) -> String {
        format!(r#"{{"type":"chat","offset":{offset},"epoch":"e"}}"#)
    }

    #[test]
    fn delivers_to_the_channel_but_not_to_the_sender() {
        let hub = hub(8);
        let alice = hub.register("c", "alice");
        let bob = hub.register("c", "bob");
        let carol = hub.register("other", "carol");
        for (channel, reg) in [("c", &alice), ("c", &bob), ("other", &carol)] {
            open(&hub, channel, reg);
        }
        hub.deliver("c", envelope(Some(alice.id), "hello"));
        assert_eq!(bob.outbox.pop().unwrap().as_str(), "hello");
        assert!(alice.outbox.pop().is_none(), "no echo to the sender");
        assert!(carol.outbox.pop().is_none(), "channels are isolated");
    }

    #[test]
    fn a_sender_on_another_node_with_the_same_local_id_still_receives() {
        let hub = hub(8);
        let alice = hub.register("c", "alice");
        open(&hub, "c", &alice);
        let foreign = ConnectionId {
            node: Uuid::new_v4(),
            local: alice.id.local,
        };
        hub.deliver("c", envelope(Some(foreign), "x"));
        assert!(alice.outbox.pop().is_some());
    }

    #[test]
    fn the_gate_holds_frames_then_drops_what_the_history_covered() {
        let hub = hub(8);
        let alice = hub.register("c", "alice");
        for offset in 1..=4 {
            hub.deliver("c", envelope(None, &chat(offset)));
        }
        assert!(alice.outbox.pop().is_none(), "held while greeting");
        hub.open_gate("c", alice.id, ("e".into(), 2));
        let got: Vec<u64> = std::iter::from_fn(|| alice.outbox.pop())
            .map(|f| FrameMeta::of(f.as_str()).offset.unwrap())
            .collect();
        assert_eq!(got, vec![3, 4]);
        hub.deliver("c", envelope(None, &chat(2)));
        assert!(alice.outbox.pop().is_none(), "a late duplicate is dropped");
        hub.deliver(
            "c",
            envelope(None, r#"{"type":"chat","offset":1,"epoch":"new"}"#),
        );
        assert!(alice.outbox.pop().is_some(), "a new epoch starts afresh");
    }

    #[test]
    fn a_full_queue_closes_the_slow_connection() {
        let hub = hub(2);
        let slow = hub.register("c", "slow");
        open(&hub, "c", &slow);
        for _ in 0..3 {
            hub.deliver("c", envelope(None, "x"));
        }
        assert!(slow.closer.is_closed());
    }

    #[test]
    fn the_byte_budget_closes_a_client_before_the_frame_count_does() {
        let hub = Hub::new(Uuid::new_v4(), 100, 1_000, Arc::new(Metrics::default()));
        let slow = hub.register("c", "slow");
        open(&hub, "c", &slow);
        let big = "x".repeat(400);
        hub.deliver("c", envelope(None, &big));
        hub.deliver("c", envelope(None, &big));
        assert!(!slow.closer.is_closed());
        hub.deliver("c", envelope(None, &big));
        assert!(slow.closer.is_closed());
    }

    #[test]
    fn a_gap_is_filled_from_the_history_before_later_frames() {
        let hub = hub(16);
        let mut requests = hub.take_catch_up_requests().unwrap();
        let bob = hub.register("c", "bob");
        open(&hub, "c", &bob);
        hub.deliver("c", envelope(None, &chat(1)));
        hub.deliver("c", envelope(None, &chat(4)));
        hub.deliver("c", envelope(None, &chat(5)));
        assert_eq!(
            requests.try_recv().unwrap(),
            CatchUp {
                channel: "c".into(),
                since: Since {
                    offset: 1,
                    epoch: "e".into()
                }
            }
        );
        assert!(requests.try_recv().is_err(), "one request per gap");
        let missed = (2..=4).map(|o| envelope(None, &chat(o))).collect();
        hub.caught_up("c", missed);
        hub.deliver("c", envelope(None, &chat(5)));
        let got: Vec<u64> = std::iter::from_fn(|| bob.outbox.pop())
            .map(|f| FrameMeta::of(f.as_str()).offset.unwrap())
            .collect();
        assert_eq!(got, vec![1, 2, 3, 4, 5], "in order, no duplicate");
    }

    #[test]
    fn cursor_frames_are_dropped_first_and_never_close_a_client() {
        let hub = hub(4);
        let slow = hub.register("c", "slow");
        let cursor = r#"{"type":"cursor","user_id":"bob"}"#;
        hub.deliver("c", envelope(None, cursor));
        open(&hub, "c", &slow);
        assert!(slow.outbox.pop().is_none(), "not held while greeting");
        hub.deliver("c", envelope(None, cursor));
        hub.deliver("c", envelope(None, cursor));
        hub.deliver("c", envelope(None, cursor));
        assert!(!slow.closer.is_closed());
        hub.deliver("c", envelope(None, &chat(1)));
        hub.deliver("c", envelope(None, &chat(2)));
        assert!(!slow.closer.is_closed(), "cursors left room for chat");
        let got: Vec<String> = std::iter::from_fn(|| slow.outbox.pop())
            .map(|f| FrameMeta::of(f.as_str()).kind)
            .collect();
        assert_eq!(got, vec!["cursor", "cursor", "chat", "chat"]);
    }

    #[test]
    fn presence_bursts_are_coalesced_to_each_users_last_announcement() {
        let hub = hub(16);
        let watcher = hub.register("c", "watcher");
        open(&hub, "c", &watcher);
        for kind in ["user_joined", "user_left", "user_joined"] {
            hub.deliver(
                "c",
                envelope(None, &format!(r#"{{"type":"{kind}","user_id":"bob"}}"#)),
            );
        }
        hub.deliver(
            "c",
            envelope(None, r#"{"type":"user_left","user_id":"carol"}"#),
        );
        assert!(watcher.outbox.pop().is_none(), "waits for the flush");
        hub.flush_presence();
        let got: Vec<String> = std::iter::from_fn(|| watcher.outbox.pop())
            .map(|f| f.as_str().to_owned())
            .collect();
        assert_eq!(
            got,
            vec![
                r#"{"type":"user_joined","user_id":"bob"}"#,
                r#"{"type":"user_left","user_id":"carol"}"#
            ]
        );
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
        assert_eq!(members[0].1[0].0.user, "alice");
        assert_eq!(members[0].1[0].0.connection, a.id.to_string());
    }
}
