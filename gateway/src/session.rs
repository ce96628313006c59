//! One WebSocket connection from upgrade to goodbye: presence join and sync, the reader
//! that validates and publishes chat frames, the writer that drains the bounded send queue,
//! and the leave that announces `user_left`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt, stream::SplitSink};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use uuid::Uuid;

use crate::{
    app::App,
    broker::Member,
    hub::{Closer, close_code},
    metrics::{RedisOp, RejectReason},
    protocol::{
        ClientFrame, ConnectionId, Envelope, ErrorCode, FrameError, ServerFrame,
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
/// Frames for this connection alone (sync, acks, errors) waiting to be written.
const OWN_QUEUE_FRAMES: usize = 64;
/// Time for the close frame to go out before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Session {
    pub app: Arc<App>,
    pub user: String,
    pub channel: String,
    pub permit: OwnedSemaphorePermit,
}

impl Session {
    pub async fn run(self, socket: WebSocket) {
        let app = self.app.clone();
        app.metrics.connections_total.inc();
        app.metrics.connections_active.inc();
        let registration = app.hub.register(&self.channel, &self.user);
        let member = Member {
            user: self.user.clone(),
            connection: registration.id.to_string(),
        };
        let (sink, stream) = socket.split();
        let (own_tx, own_rx) = mpsc::channel(OWN_QUEUE_FRAMES);
        let own = OwnQueue {
            queue: own_tx,
            closer: registration.closer.clone(),
        };
        let greeted = self.greet(&member, registration.id, &own).await;
        // Started after the greeting so `user_sync` is the first frame the client sees, even
        // when broadcasts arrived in the meantime: the writer prefers this connection's own
        // frames.
        let writer = tokio::spawn(write_frames(
            sink,
            own_rx,
            registration.queue,
            registration.closer.clone(),
        ));

        if let Err(reason) = greeted {
            tracing::warn!(
                user = self.user,
                channel = self.channel,
                reason,
                "could not join"
            );
            registration
                .closer
                .close(close_code::TRY_AGAIN_LATER, "presence unavailable");
        } else {
            tracing::debug!(user = self.user, channel = self.channel, conn = %registration.id, "joined");
            let reader = Reader {
                session: &self,
                id: registration.id,
                own: &own,
                binary_frames: 0,
                last_seen: Instant::now(),
            };
            reader.run(stream, &registration.closer).await;
        }

        app.hub.unregister(&self.channel, registration.id);
        match app.broker.leave(&self.channel, &member).await {
            Ok(true) => app.announce_left(&self.channel, &self.user).await,
            Ok(false) => {}
            Err(error) => {
                app.metrics.redis_error(RedisOp::Presence);
                tracing::warn!(user = self.user, %error, "presence leave failed; it will expire");
            }
        }
        if let Err(error) = app.hub.sync_subscription(&*app.broker, &self.channel).await {
            app.metrics.redis_error(RedisOp::Subscribe);
            tracing::warn!(channel = self.channel, %error, "unsubscribe failed");
        }
        registration.closer.close(close_code::GOING_AWAY, "closing");
        drop(own);
        let _ = writer.await;
        app.metrics.connections_active.dec();
        tracing::debug!(user = self.user, channel = self.channel, "left");
        drop(self.permit);
    }

    /// Subscribes, records presence, sends `user_sync` and announces the newcomer.
    async fn greet(
        &self,
        member: &Member,
        id: ConnectionId,
        own: &OwnQueue,
    ) -> Result<(), &'static str> {
        let app = &self.app;
        if let Err(error) = app.hub.sync_subscription(&*app.broker, &self.channel).await {
            app.metrics.redis_error(RedisOp::Subscribe);
            tracing::warn!(channel = self.channel, %error, "subscribe failed");
            return Err("the chat service cannot subscribe to this channel right now");
        }
        let joined = app
            .broker
            .join(&self.channel, member)
            .await
            .map_err(|error| {
                app.metrics.redis_error(RedisOp::Presence);
                tracing::warn!(%error, "presence join failed");
                "the chat service cannot record presence right now"
            })?;
        own.send(&ServerFrame::UserSync {
            channel_id: self.channel.clone(),
            users: joined.users,
            timestamp: timestamp(chrono::Utc::now()),
        });
        if joined.first {
            let announcement = ServerFrame::UserJoined {
                channel_id: self.channel.clone(),
                user_id: self.user.clone(),
                timestamp: timestamp(chrono::Utc::now()),
            };
            if let Err(error) = app.publish(&self.channel, Some(id), &announcement).await {
                tracing::warn!(%error, "could not announce user_joined");
            }
        }
        Ok(())
    }
}

/// Frames for this connection alone, in a bounded queue of their own: a client that stops
/// reading is closed instead of growing memory.
struct OwnQueue {
    queue: mpsc::Sender<Utf8Bytes>,
    closer: Arc<Closer>,
}

impl OwnQueue {
    fn send(&self, frame: &ServerFrame) {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.queue.try_send(Utf8Bytes::from(frame.to_json()))
        {
            self.closer
                .close(close_code::POLICY_VIOLATION, "client too slow to keep up");
        }
    }
}

struct Reader<'a> {
    session: &'a Session,
    id: ConnectionId,
    own: &'a OwnQueue,
    binary_frames: u32,
    last_seen: Instant,
}

impl Reader<'_> {
    async fn run(mut self, mut stream: futures::stream::SplitStream<WebSocket>, closer: &Closer) {
        let app = self.session.app.clone();
        let mut idle_check = tokio::time::interval(PING_INTERVAL);
        loop {
            let next = tokio::select! {
                _ = closer.closed() => return,
                _ = app.draining.cancelled() => {
                    closer.close(close_code::GOING_AWAY, "server shutting down");
                    return;
                }
                _ = idle_check.tick() => {
                    if self.last_seen.elapsed() > IDLE_TIMEOUT {
                        closer.close(close_code::GOING_AWAY, "no response to pings");
                        return;
                    }
                    continue;
                }
                next = stream.next() => next,
            };
            self.last_seen = Instant::now();
            match next {
                None | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
                Some(Ok(Message::Binary(_))) => {
                    app.metrics.reject(RejectReason::Binary);
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
                        app.metrics.reject(RejectReason::TooLarge);
                        closer.close(close_code::MESSAGE_TOO_BIG, "frame larger than the limit");
                    }
                    return;
                }
            }
        }
    }

    async fn on_text(&mut self, text: &str) {
        let app = &self.session.app;
        let (payload, position, client_msg_id) = match parse_client_frame(text) {
            Ok(ClientFrame::Chat {
                payload,
                position,
                client_msg_id,
            }) => (payload, position, client_msg_id),
            Err((error, client_msg_id)) => {
                app.metrics.reject(match error {
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
        app.metrics.messages_received.inc();
        let now = chrono::Utc::now();
        let message_id = Uuid::new_v4();
        let frame = ServerFrame::Chat {
            message_id,
            channel_id: self.session.channel.clone(),
            user_id: self.session.user.clone(),
            payload,
            position,
            timestamp: timestamp(now),
        };
        let envelope = Envelope {
            sender: Some(self.id),
            published_at_micros: now.timestamp_micros(),
            frame: frame.to_json(),
        };
        match app
            .broker
            .publish_chat(&self.session.channel, &self.session.user, &envelope)
            .await
        {
            Ok(true) => {
                app.metrics.messages_published.inc();
                self.own.send(&ServerFrame::Ack {
                    client_msg_id,
                    message_id,
                    timestamp: timestamp(now),
                });
            }
            Ok(false) => {
                app.metrics.rate_limited.inc();
                self.own.send(&ServerFrame::error(
                    ErrorCode::RateLimited,
                    format!(
                        "rate limit of {} messages per minute reached; wait and retry",
                        app.config.rate_limit_per_minute
                    ),
                    client_msg_id,
                ));
            }
            Err(error) => {
                app.metrics.redis_error(RedisOp::Publish);
                tracing::warn!(%error, "chat publish failed");
                self.unavailable(client_msg_id);
            }
        }
    }

    fn unavailable(&self, client_msg_id: Option<String>) {
        self.session.app.metrics.reject(RejectReason::Unavailable);
        self.own.send(&ServerFrame::error(
            ErrorCode::Unavailable,
            "the chat service is temporarily unavailable; the message was not sent",
            client_msg_id,
        ));
    }
}

/// The WebSocket layer refuses frames over `max_message_size` with a capacity error.
fn is_capacity_error(error: axum::Error) -> bool {
    error
        .into_inner()
        .downcast::<tungstenite::Error>()
        .is_ok_and(|e| matches!(*e, tungstenite::Error::Capacity(_)))
}

async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut own: mpsc::Receiver<Utf8Bytes>,
    mut broadcast: mpsc::Receiver<Utf8Bytes>,
    closer: Arc<Closer>,
) {
    let mut pings = tokio::time::interval(PING_INTERVAL);
    pings.tick().await;
    loop {
        let message = tokio::select! {
            biased;
            _ = closer.closed() => break,
            Some(frame) = own.recv() => Message::Text(frame),
            Some(frame) = broadcast.recv() => Message::Text(frame),
            _ = pings.tick() => Message::Ping(Default::default()),
        };
        // A client that stops reading blocks the send once the socket buffers are full;
        // racing it with the closer lets such a client be closed instead of pinning the task.
        tokio::select! {
            biased;
            _ = closer.closed() => break,
            sent = sink.send(message) => if sent.is_err() {
                closer.close(close_code::GOING_AWAY, "send failed");
                return;
            },
        }
    }
    let (code, reason) = closer.closed().await;
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}
