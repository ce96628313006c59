//! One WebSocket connection from upgrade to goodbye: subscribe, presence join, `user_sync`
//! and `history`, the reader that validates and publishes chat frames, the writer that
//! drains the connection's outbox, and the leave that announces `user_left`.
//!
//! An open connection is one task (the reader and the writer run joined in it), one timer
//! (the writer's ping interval, which also notices a silent peer) and one outbox; the
//! greeting and the leave run boxed, so their state is not kept for the connection's life.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use serde_json::value::RawValue;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::{
    access::{Access, InvalidFrames, IpSlot},
    auth::{AuthError, Authenticator, CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, Identity},
    broker::{ChatSend, Joined},
    history::{ChatOutcome, Since},
    hub::{Closer, PresenceState, Registration, close_code},
    metrics::{RedisOp, RejectReason},
    node::Node,
    outbox::{Outbox, Refused},
    presence::Member,
    protocol::{
        ClientFrame, ConnectionId, Envelope, ErrorCode, FrameError, Position, ServerFrame,
        parse_client_frame, timestamp,
    },
};

/// Binary frames tolerated (each answered with an error) before the client counts as
/// flooding and is disconnected.
const BINARY_FRAMES_TOLERATED: u32 = 5;
/// Server pings keep idle connections alive through proxies and detect dead peers.
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// A peer silent this long (not even a pong) is gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// A single write that takes longer means the client stopped reading: it is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to write what is queued, then the close frame, when a socket is closed by a drain.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Frames written to a socket with one system call stop at about this many bytes (see
/// `write_batch`).
const WRITE_BATCH_BYTES: usize = 512;
/// Time for the close frame to go out before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// An upgraded connection: authenticates it (JWT mode), applies the join rate, then runs
/// the session. Boxed for the connection's life, and its session works on it in place: a
/// session holding copies of these fields kept both copies in its task (rustc keeps a
/// moved-from local's room in a future until its scope ends).
pub struct Connect {
    pub node: Arc<Node>,
    pub access: Arc<Access>,
    /// Anonymous mode: the `uid` query parameter. JWT mode: empty until the token in the
    /// first frame names the user.
    pub user: String,
    pub channel: String,
    /// Where the client stopped, when it reconnects with `since` and `epoch`.
    pub since: Option<Since>,
    /// JWT mode: when the token expires (unix seconds).
    pub expires_at: Option<u64>,
    pub permit: OwnedSemaphorePermit,
    /// Held for the connection's life: counts it against its client IP.
    pub ip_slot: IpSlot,
}

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

impl Connect {
    /// Splits the socket at once. An async fn keeps its arguments for its whole life, so a
    /// socket passed down through nested async fns is kept once per level (hundreds of
    /// bytes each, for every open connection); its halves are small.
    pub fn run(self: Box<Self>, socket: WebSocket) -> impl Future<Output = ()> + Send + 'static {
        let (sink, stream) = socket.split();
        self.serve(sink, stream)
    }

    async fn serve(mut self: Box<Self>, sink: Sink, mut stream: Stream) {
        if let Some(auth) = &self.access.authenticator {
            // Boxed, like the other steps that run once: an open connection's task keeps
            // only the state of the steps it is still in.
            let verified = Box::pin(handshake(
                auth,
                &mut stream,
                &self.channel,
                self.node.config.auth_timeout(),
            ))
            .await;
            match verified {
                Ok(identity) => {
                    self.user = identity.user;
                    self.expires_at = Some(identity.expires_at);
                }
                Err(Some(refusal)) => {
                    self.node.metrics.reject(refusal.metric());
                    return Box::pin(refuse(sink, refusal)).await;
                }
                Err(None) => return,
            }
        }
        let (node, user) = (&self.node, &self.user);
        if !self.access.allow_join(user) {
            tracing::info!(user, "join rate exceeded");
            node.metrics.reject(RejectReason::JoinRate);
            let refusal = Refusal {
                code: ErrorCode::RateLimited,
                message: format!(
                    "{user} joined more than {} times in the last minute; retry shortly",
                    node.config.joins_per_minute
                ),
                close: close_code::TRY_AGAIN_LATER,
                reason: "join rate exceeded",
            };
            return Box::pin(refuse(sink, refusal)).await;
        }
        self.session(sink, stream).await;
    }
}

/// Why a connection is turned away before it joins: an `error` frame, then a close.
struct Refusal {
    code: ErrorCode,
    message: String,
    close: u16,
    reason: &'static str,
}

impl Refusal {
    fn unauthorized(message: impl Into<String>) -> Self {
        Refusal {
            code: ErrorCode::Unauthorized,
            message: message.into(),
            close: CLOSE_UNAUTHORIZED,
            reason: "unauthorized",
        }
    }

    fn forbidden(channel: &str) -> Self {
        Refusal {
            code: ErrorCode::ForbiddenChannel,
            message: format!("the token's channels claim does not list the channel {channel}"),
            close: CLOSE_FORBIDDEN,
            reason: "forbidden channel",
        }
    }

    fn from_auth(error: &AuthError) -> Self {
        Refusal::unauthorized(format!("token refused: {error}"))
    }

    fn metric(&self) -> RejectReason {
        match self.code {
            ErrorCode::ForbiddenChannel => RejectReason::ForbiddenChannel,
            ErrorCode::RateLimited => RejectReason::JoinRate,
            _ => RejectReason::Unauthorized,
        }
    }
}

/// Waits for the `auth` frame and verifies it. `Err(None)`: the client went away.
async fn handshake(
    auth: &Authenticator,
    stream: &mut Stream,
    channel: &str,
    timeout: Duration,
) -> Result<Identity, Option<Refusal>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let text = loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                return Err(Some(Refusal::unauthorized(format!(
                    "no auth frame within {} s: send {{\"type\":\"auth\",\"token\":\"<JWT>\"}} first",
                    timeout.as_secs()
                ))));
            }
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Err(None),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Text(text)))) => break text,
            Ok(Some(Ok(Message::Binary(_)))) => {
                return Err(Some(Refusal::unauthorized(
                    "the first frame must be the JSON text {\"type\":\"auth\",\"token\":\"<JWT>\"}",
                )));
            }
        }
    };
    let Ok(ClientFrame::Auth { token }) = parse_client_frame(text.as_str()) else {
        return Err(Some(Refusal::unauthorized(
            "the first frame must be {\"type\":\"auth\",\"token\":\"<JWT>\"}",
        )));
    };
    let identity = auth.verify(&token).await.map_err(|error| {
        tracing::info!(%error, "token refused");
        Some(Refusal::from_auth(&error))
    })?;
    if !identity.may_join(channel) {
        tracing::info!(
            user = identity.user,
            channel,
            "channel not in the token's claim"
        );
        return Err(Some(Refusal::forbidden(channel)));
    }
    Ok(identity)
}

async fn refuse(mut sink: Sink, refusal: Refusal) {
    let frame = ServerFrame::error(refusal.code, refusal.message, None).to_json();
    let goodbye = async {
        sink.send(Message::Text(Utf8Bytes::from(frame))).await?;
        sink.send(Message::Close(Some(CloseFrame {
            code: refusal.close,
            reason: Utf8Bytes::from_static(refusal.reason),
        })))
        .await
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, goodbye).await;
}

/// Seconds from now until a unix time, as a deadline; capped at a year, so an `exp` far in
/// the future cannot overflow the clock.
fn deadline_at(unix_seconds: u64) -> tokio::time::Instant {
    const MAX_AHEAD_SECONDS: u64 = 365 * 86_400;
    let now = jsonwebtoken::get_current_timestamp();
    let ahead = unix_seconds.saturating_sub(now).min(MAX_AHEAD_SECONDS);
    tokio::time::Instant::now() + Duration::from_secs(ahead)
}

impl Connect {
    /// The joined connection, from presence join to leave.
    async fn session(&self, sink: Sink, stream: Stream) {
        let node = self.node.clone();
        node.metrics.connections_total.inc();
        node.metrics.connections_active.inc();
        let registration = node.hub.register(&self.channel, &self.user);
        let own = OwnQueue {
            outbox: &registration.outbox,
            closer: &registration.closer,
        };
        // `user_sync` and `history` are queued before the gate opens to broadcasts, and the
        // outbox writes a connection's own frames first: they are the first frames out.
        let greeted = Box::pin(self.greet(&registration, &own)).await;
        let last_seen = LastSeen::new();
        // Both futures are written inside `join!`: a future first bound to a local keeps
        // that local's space in this task even after `join!` moves it (rustc keeps a
        // moved-from local's storage until its scope ends), which doubled the task's size.
        tokio::join!(
            async {
                match greeted {
                    Err(reason) => {
                        tracing::warn!(
                            user = self.user,
                            channel = self.channel,
                            reason,
                            "could not join"
                        );
                        registration
                            .closer
                            .close(close_code::TRY_AGAIN_LATER, "presence unavailable");
                    }
                    Ok(()) => {
                        tracing::debug!(user = self.user, channel = self.channel, conn = %registration.id, "joined");
                        Reader {
                            session: self,
                            id: registration.id,
                            own: &own,
                            last_seen: &last_seen,
                            binary_frames: 0,
                            invalid_frames: self.access.invalid_frame_budget(),
                            expires: self.expires_at.map(deadline_at),
                            cursor: None,
                            cursor_next: tokio::time::Instant::now(),
                        }
                        .run(stream, &registration.closer)
                        .await;
                    }
                }
                Box::pin(self.leave(&registration)).await;
                registration.closer.close(close_code::GOING_AWAY, "closing");
            },
            write_frames(sink, &registration.outbox, &registration.closer, &last_seen),
        );
        node.metrics.connections_active.dec();
        tracing::debug!(user = self.user, channel = self.channel, "left");
    }

    /// The connection as presence knows it; built for the join and the leave only, so an
    /// open connection keeps no copy of its names.
    fn member(&self, id: ConnectionId) -> Member {
        Member {
            user: self.user.clone(),
            connection: id.to_string(),
        }
    }

    /// Leaves the hub and the presence (announcing `user_left` when it was the user's last
    /// connection) and unsubscribes when it was the channel's last local connection.
    async fn leave(&self, registration: &Registration) {
        let node = &self.node;
        let member = self.member(registration.id);
        node.hub.unregister(&self.channel, registration.id);
        {
            // Under the presence lock: a heartbeat in flight either finished before (and
            // this leave removes what it refreshed) or sees `Left` and skips the connection.
            let mut state = registration.presence.lock().await;
            *state = PresenceState::Left;
            if let Err(error) = node.presence.leave(&self.channel, &member).await {
                node.metrics.redis_error(RedisOp::Presence);
                tracing::warn!(user = self.user, %error, "presence leave failed; it will expire");
            }
        }
        if let Err(error) = node
            .hub
            .sync_subscription(&*node.broker, &self.channel)
            .await
        {
            node.metrics.redis_error(RedisOp::Subscribe);
            tracing::warn!(channel = self.channel, %error, "unsubscribe failed");
        }
    }

    /// Subscribes (so nothing published from now on is missed), joins (records presence,
    /// which announces the newcomer, and reads the history, in one step), sends `user_sync`
    /// and `history`, then opens the connection's gate to live frames.
    async fn greet(
        &self,
        registration: &Registration,
        own: &OwnQueue<'_>,
    ) -> Result<(), &'static str> {
        let node = &self.node;
        let member = self.member(registration.id);
        if let Err(error) = node
            .hub
            .sync_subscription(&*node.broker, &self.channel)
            .await
        {
            node.metrics.redis_error(RedisOp::Subscribe);
            tracing::warn!(channel = self.channel, %error, "subscribe failed");
            return Err("the chat service cannot subscribe to this channel right now");
        }
        let Joined { listing, recovery } = {
            let mut state = registration.presence.lock().await;
            let joined = node
                .broker
                .join(&self.channel, &member, self.since.as_ref())
                .await
                .map_err(|error| {
                    node.metrics.redis_error(RedisOp::Presence);
                    tracing::warn!(%error, "join failed");
                    "the chat service cannot record presence or read the history right now"
                })?;
            *state = PresenceState::Joined;
            joined
        };
        let now = timestamp(chrono::Utc::now());
        own.send(&ServerFrame::UserSync {
            channel_id: self.channel.clone(),
            users: listing.users,
            total: listing.total,
            epoch: recovery.epoch.clone(),
            offset: recovery.offset,
            timestamp: now,
        });
        let messages = recovery
            .messages
            .into_iter()
            .filter_map(|frame| RawValue::from_string(frame).ok())
            .collect();
        own.send(&ServerFrame::History {
            channel_id: self.channel.clone(),
            epoch: recovery.epoch.clone(),
            recovered: recovery.recovered,
            messages,
        });
        node.hub.open_gate(
            &self.channel,
            registration.id,
            (recovery.epoch, recovery.offset),
        );
        Ok(())
    }
}

/// Frames for this connection alone, bounded on their own: a client that stops reading is
/// closed instead of growing memory.
struct OwnQueue<'a> {
    outbox: &'a Outbox,
    closer: &'a Closer,
}

impl OwnQueue<'_> {
    fn send(&self, frame: &ServerFrame) {
        if let Err(Refused::Full) = self.outbox.push_own(Utf8Bytes::from(frame.to_json())) {
            self.closer
                .close(close_code::POLICY_VIOLATION, "client too slow to keep up");
        }
    }
}

/// When the peer last sent anything (a frame or a pong): the reader notes it, the writer's
/// ping timer checks it.
struct LastSeen {
    start: Instant,
    millis: AtomicU64,
}

impl LastSeen {
    fn new() -> Self {
        LastSeen {
            start: Instant::now(),
            millis: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let millis = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.store(millis, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let seen = Duration::from_millis(self.millis.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(seen)
    }
}

struct Reader<'a> {
    session: &'a Connect,
    id: ConnectionId,
    own: &'a OwnQueue<'a>,
    last_seen: &'a LastSeen,
    binary_frames: u32,
    invalid_frames: InvalidFrames,
    /// JWT mode: the connection closes with 4401 then, unless a fresh token moves it.
    expires: Option<tokio::time::Instant>,
    /// The latest cursor position not yet forwarded, and when the next may go: positions
    /// are forwarded at most `CANVASCHAT_CURSOR_HZ` times a second, the latest always last.
    cursor: Option<Position>,
    cursor_next: tokio::time::Instant,
}

impl Reader<'_> {
    async fn run(mut self, mut stream: Stream, closer: &Closer) {
        let node = self.session.node.clone();
        loop {
            // One timer for the token's expiry and the pending cursor position, whichever
            // comes first: an idle reader keeps one `Sleep`, not one per deadline.
            let cursor_due = self.cursor.is_some().then_some(self.cursor_next);
            let timer = self.expires.into_iter().chain(cursor_due).min();
            let next = tokio::select! {
                _ = closer.closed() => return,
                _ = tokio::time::sleep_until(timer.unwrap_or_else(far_future)), if timer.is_some() => {
                    if self.expires.is_some_and(|expiry| expiry <= tokio::time::Instant::now()) {
                        self.session.node.metrics.reject(RejectReason::Unauthorized);
                        self.own.send(&ServerFrame::error(
                            ErrorCode::Unauthorized,
                            "the token expired; send a fresh {\"type\":\"auth\",\"token\":...} before exp",
                            None,
                        ));
                        closer.close_after_flush(CLOSE_UNAUTHORIZED, "token expired");
                        return;
                    }
                    // Boxed like `on_text`: publishing is not idle state.
                    Box::pin(self.forward_cursor()).await;
                    continue;
                }
                next = stream.next() => next,
            };
            self.last_seen.touch();
            match next {
                None | Some(Ok(Message::Close(_))) => return,
                // Boxed: an idle reader keeps no room for a message's publish.
                Some(Ok(Message::Text(text))) => {
                    Box::pin(self.on_text(text.as_str(), closer)).await;
                }
                Some(Ok(Message::Binary(_))) => {
                    node.metrics.reject(RejectReason::Binary);
                    self.binary_frames += 1;
                    if self.binary_frames > BINARY_FRAMES_TOLERATED {
                        closer.close(
                            close_code::UNSUPPORTED_DATA,
                            "binary frames are not supported",
                        );
                        return;
                    }
                    self.own.send(&ServerFrame::error(
                        ErrorCode::BinaryNotSupported,
                        "binary frames are not supported; send JSON text frames",
                        None,
                    ));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(error)) => {
                    if is_capacity_error(error) {
                        node.metrics.reject(RejectReason::TooLarge);
                        closer.close(close_code::MESSAGE_TOO_BIG, "frame larger than the limit");
                    }
                    return;
                }
            }
        }
    }

    /// A fresh token for the same user moves the expiry; anything else closes the connection.
    async fn refresh(&mut self, token: &str, closer: &Closer) {
        let session = self.session;
        let Some(auth) = &session.access.authenticator else {
            if !self.invalid_frames.allow(session.access.now()) {
                session.node.metrics.reject(RejectReason::InvalidFlood);
                closer.close_after_flush(close_code::POLICY_VIOLATION, "too many invalid frames");
                return;
            }
            self.own.send(&ServerFrame::error(
                ErrorCode::InvalidMessage,
                "auth frames are only used when the gateway runs with CANVASCHAT_AUTH=jwt",
                None,
            ));
            return;
        };
        let refusal = match auth.verify(token).await {
            Ok(identity) if identity.user != session.user => Refusal::unauthorized(format!(
                "a fresh token must name the same sub ({}) as the connection",
                session.user
            )),
            Ok(identity) if !identity.may_join(&session.channel) => {
                Refusal::forbidden(&session.channel)
            }
            Ok(identity) => {
                self.expires = Some(deadline_at(identity.expires_at));
                return;
            }
            Err(error) => {
                tracing::info!(user = session.user, %error, "fresh token refused");
                Refusal::from_auth(&error)
            }
        };
        session.node.metrics.reject(refusal.metric());
        self.own
            .send(&ServerFrame::error(refusal.code, refusal.message, None));
        closer.close_after_flush(refusal.close, refusal.reason);
    }

    /// Publishes the pending cursor position (not stored, not acked, not rate limited).
    async fn forward_cursor(&mut self) {
        let Some(position) = self.cursor.take() else {
            return;
        };
        let node = &self.session.node;
        self.cursor_next = tokio::time::Instant::now() + node.config.cursor_interval();
        let envelope = Envelope {
            sender: Some(self.id),
            published_at_micros: chrono::Utc::now().timestamp_micros(),
            frame: ServerFrame::Cursor {
                channel_id: self.session.channel.clone(),
                user_id: self.session.user.clone(),
                position,
            }
            .to_json(),
        };
        if let Err(error) = node
            .broker
            .publish_volatile(&self.session.channel, &envelope)
            .await
        {
            node.metrics.redis_error(RedisOp::Publish);
            tracing::debug!(%error, "cursor publish failed; the next position replaces it");
        }
    }

    async fn on_text(&mut self, text: &str, closer: &Closer) {
        let node = &self.session.node;
        let (payload, position, client_msg_id) = match parse_client_frame(text) {
            Ok(ClientFrame::Auth { token }) => {
                // Boxed: verifying a token may fetch keys, state an idle reader need not keep.
                return Box::pin(self.refresh(&token, closer)).await;
            }
            Ok(ClientFrame::Chat {
                payload,
                position,
                client_msg_id,
            }) => (payload, position, client_msg_id),
            Ok(ClientFrame::Cursor { position }) => {
                self.cursor = Some(position);
                if tokio::time::Instant::now() >= self.cursor_next {
                    self.forward_cursor().await;
                }
                return;
            }
            Err((error, client_msg_id)) => {
                if !self.invalid_frames.allow(self.session.access.now()) {
                    node.metrics.reject(RejectReason::InvalidFlood);
                    closer
                        .close_after_flush(close_code::POLICY_VIOLATION, "too many invalid frames");
                    return;
                }
                node.metrics.reject(match error {
                    FrameError::UnknownType(_) => RejectReason::UnsupportedType,
                    _ => RejectReason::InvalidMessage,
                });
                self.own.send(&ServerFrame::error(
                    error.code(),
                    error.to_string(),
                    client_msg_id,
                ));
                return;
            }
        };
        node.metrics.messages_received.inc();
        let now = chrono::Utc::now();
        let message_id = Uuid::new_v4();
        let body = ServerFrame::Chat {
            message_id,
            channel_id: self.session.channel.clone(),
            user_id: self.session.user.clone(),
            payload,
            position,
            timestamp: timestamp(now),
            offset: None,
            epoch: None,
        }
        .to_json();
        let send = ChatSend {
            channel: &self.session.channel,
            user: &self.session.user,
            sender: self.id,
            client_msg_id: client_msg_id.as_deref(),
            message_id,
            body: &body,
            published_at_micros: now.timestamp_micros(),
        };
        let ack = |message_id, offset, epoch| ServerFrame::Ack {
            client_msg_id: client_msg_id.clone(),
            message_id,
            offset,
            epoch,
            timestamp: timestamp(now),
        };
        match node.broker.publish_chat(&send).await {
            Ok(ChatOutcome::Published { offset, epoch }) => {
                node.metrics.messages_published.inc();
                self.own.send(&ack(message_id, offset, epoch));
            }
            Ok(ChatOutcome::Duplicate {
                message_id,
                offset,
                epoch,
            }) => self.own.send(&ack(message_id, offset, epoch)),
            Ok(ChatOutcome::RateLimited) => {
                node.metrics.rate_limited.inc();
                self.own.send(&ServerFrame::error(
                    ErrorCode::RateLimited,
                    format!(
                        "rate limit of {} messages per minute reached; wait and retry",
                        node.config.rate_limit_per_minute
                    ),
                    client_msg_id,
                ));
            }
            Err(error) => {
                node.metrics.redis_error(RedisOp::Publish);
                tracing::warn!(%error, "chat publish failed");
                node.metrics.reject(RejectReason::Unavailable);
                // A timeout does not say whether Redis ran the script: the message may
                // have gone out. A resend with the same client_msg_id is never delivered
                // twice, so that is the safe advice either way.
                self.own.send(&ServerFrame::error(
                    ErrorCode::Unavailable,
                    "the chat service did not confirm the message, so it may not have been sent; resend it with the same client_msg_id (it is never delivered twice)",
                    client_msg_id,
                ));
            }
        }
    }
}

/// A deadline that never comes, for a `select!` branch that is disabled.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// The WebSocket layer refuses frames over `max_message_size` with a capacity error.
fn is_capacity_error(error: axum::Error) -> bool {
    error
        .into_inner()
        .downcast::<tungstenite::Error>()
        .is_ok_and(|e| matches!(*e, tungstenite::Error::Capacity(_)))
}

/// Writes what the outbox holds, the connection's own frames first, and pings every
/// `PING_INTERVAL`; the same timer closes a peer silent for `IDLE_TIMEOUT`.
async fn write_frames(mut sink: Sink, outbox: &Outbox, closer: &Closer, last_seen: &LastSeen) {
    let mut pings = tokio::time::interval(PING_INTERVAL);
    pings.tick().await;
    let goodbye = loop {
        if closer.is_closed() {
            break true;
        }
        let first = match outbox.pop() {
            Some(frame) => Message::Text(frame),
            None => tokio::select! {
                biased;
                _ = closer.closed() => break true,
                () = outbox.ready() => continue,
                _ = pings.tick() => {
                    if last_seen.silent_for() > IDLE_TIMEOUT {
                        closer.close(close_code::GOING_AWAY, "no response to pings");
                        break true;
                    }
                    Message::Ping(Default::default())
                }
            },
        };
        // A client that stops reading blocks the write once the socket buffers are full;
        // racing it with the closer and a deadline closes such a client instead of pinning
        // the task.
        tokio::select! {
            biased;
            _ = closer.closed() => break true,
            sent = tokio::time::timeout(WRITE_TIMEOUT, write_batch(&mut sink, first, outbox)) => match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    closer.close(close_code::GOING_AWAY, "send failed");
                    break false;
                }
                Err(_) => {
                    closer.close(close_code::POLICY_VIOLATION, "client too slow to keep up");
                    break true;
                }
            },
        }
    };
    if !goodbye {
        outbox.close();
        return;
    }
    // Boxed: the goodbye's timers and writes run once, and an idle writer need not keep
    // room for them.
    Box::pin(say_goodbye(sink, outbox, closer)).await;
}

/// Writes what is queued when a drain asked for it, then the close frame.
async fn say_goodbye(mut sink: Sink, outbox: &Outbox, closer: &Closer) {
    let (code, reason) = closer.closed().await;
    let deadline = tokio::time::Instant::now() + FLUSH_TIMEOUT;
    if closer.flush_first() {
        // A drain: write what is already queued so nothing acknowledged or broadcast is
        // lost on the way out.
        let _ = tokio::time::timeout_at(deadline, async {
            while let Some(frame) = outbox.pop() {
                if write_batch(&mut sink, Message::Text(frame), outbox)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
        .await;
    }
    outbox.close();
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}

/// Writes `first` and then, in the same write, the frames already waiting, up to about
/// `WRITE_BATCH_BYTES`: one system call for a burst (a channel's coalesced presence
/// announcements, a fan-out backlog) instead of one per frame. tungstenite keeps its write
/// buffer's capacity for the connection's life, so the batch is bounded by bytes.
async fn write_batch(sink: &mut Sink, first: Message, outbox: &Outbox) -> Result<(), axum::Error> {
    let mut bytes = match &first {
        Message::Text(text) => text.len(),
        _ => 0,
    };
    sink.feed(first).await?;
    while bytes < WRITE_BATCH_BYTES
        && let Some(frame) = outbox.pop()
    {
        bytes += frame.len();
        sink.feed(Message::Text(frame)).await?;
    }
    sink.flush().await
}
