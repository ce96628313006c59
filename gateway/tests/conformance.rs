//! One conformance suite for the two engines: the Redis scripts (against a real
//! `redis-server`) and the embedded in-process twin must give the same answers and publish
//! the same announcements for the same calls.

mod common;

use std::{sync::Arc, time::Duration};

use canvaschat_gateway::{
    broker::{
        Broker, BrokerSettings, ChatSend, Deliver, embedded::EmbeddedBroker, redis::RedisBroker,
    },
    history::{ChatOutcome, HistoryLimits, Since},
    metrics::Metrics,
    presence::{Member, PresenceManager, embedded::EmbeddedPresence, redis::RedisPresence},
    protocol::{ConnectionId, Envelope},
    redis_conn::RedisConnection,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Clone, Copy)]
enum Kind {
    Embedded,
    Redis,
}

const TTL: Duration = Duration::from_millis(600);

fn settings() -> BrokerSettings {
    BrokerSettings {
        history: HistoryLimits {
            size: 5,
            retain: 60_000,
            replay: 5_000,
        },
        rate_limit_per_minute: 4,
    }
}

struct Engine {
    broker: Arc<dyn Broker>,
    presence: Arc<dyn PresenceManager>,
    frames: mpsc::UnboundedReceiver<(String, Envelope)>,
    node: Uuid,
    next: u64,
    /// The connection `recover` joins with; its first join's announcement is consumed.
    reader: Option<Member>,
    stop: CancellationToken,
    _redis: Option<common::Redis>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn engine(kind: Kind, settings: BrokerSettings) -> Engine {
    let (tx, frames) = mpsc::unbounded_channel();
    let deliver: Deliver = Arc::new(move |channel: &str, envelope| {
        let _ = tx.send((channel.to_owned(), envelope));
    });
    let stop = CancellationToken::new();
    let (broker, presence, redis): (Arc<dyn Broker>, Arc<dyn PresenceManager>, _) = match kind {
        Kind::Embedded => {
            let presence = Arc::new(EmbeddedPresence::new(deliver.clone(), TTL));
            (
                Arc::new(EmbeddedBroker::new(deliver, settings, presence.clone())),
                presence,
                None,
            )
        }
        Kind::Redis => {
            let redis = common::Redis::start().await;
            let conn = Arc::new(
                RedisConnection::connect(
                    &redis.url(),
                    None,
                    deliver,
                    Arc::new(|| {}),
                    Arc::new(Metrics::default()),
                    stop.clone(),
                )
                .expect("redis client"),
            );
            let presence = Arc::new(RedisPresence::new(conn.clone(), TTL));
            (
                Arc::new(RedisBroker::new(conn, settings, presence.clone())),
                presence,
                Some(redis),
            )
        }
    };
    broker.subscribe("c").await.expect("subscribe");
    Engine {
        broker,
        presence,
        frames,
        node: Uuid::new_v4(),
        next: 0,
        reader: None,
        stop,
        _redis: redis,
    }
}

impl Engine {
    fn member(&mut self, user: &str) -> Member {
        self.next += 1;
        Member {
            user: user.to_owned(),
            connection: ConnectionId {
                node: self.node,
                local: self.next,
            }
            .to_string(),
        }
    }

    /// The next frame published on channel "c": its type, user and sender.
    async fn frame(&mut self) -> (Value, Option<String>) {
        let (channel, envelope) = tokio::time::timeout(common::WAIT, self.frames.recv())
            .await
            .expect("a frame")
            .expect("open");
        assert_eq!(channel, "c");
        let frame: Value = serde_json::from_str(&envelope.frame).expect("json frame");
        (frame, envelope.sender.map(|s| s.to_string()))
    }

    async fn announcement(&mut self) -> (String, String) {
        let (frame, _) = self.frame().await;
        (
            frame["type"].as_str().expect("type").to_owned(),
            frame["user_id"].as_str().expect("user").to_owned(),
        )
    }

    async fn no_frame(&mut self) {
        if let Ok(Some((_, envelope))) =
            tokio::time::timeout(Duration::from_millis(300), self.frames.recv()).await
        {
            panic!("unexpected frame {}", envelope.frame);
        }
    }

    async fn chat(&mut self, user: &str, client_msg_id: Option<&str>) -> ChatOutcome {
        self.next += 1;
        let body = format!(
            r#"{{"type":"chat","user_id":"{user}","payload":"p{}"}}"#,
            self.next
        );
        let send = ChatSend {
            channel: "c",
            user,
            sender: ConnectionId {
                node: self.node,
                local: self.next,
            },
            client_msg_id,
            message_id: Uuid::new_v4(),
            body: &body,
            published_at_micros: 0,
        };
        self.broker.publish_chat(&send).await.expect("publish")
    }

    /// Joins with the same reader connection every time: the history part of a join (only
    /// the first join announces it).
    async fn recover(&mut self, since: Option<(u64, &str)>) -> (String, u64, bool, Vec<u64>) {
        let since = since.map(|(offset, epoch)| Since {
            offset,
            epoch: epoch.to_owned(),
        });
        let first = self.reader.is_none();
        let reader = match &self.reader {
            Some(reader) => reader.clone(),
            None => self.member("reader"),
        };
        let reply = self
            .broker
            .join("c", &reader, since.as_ref())
            .await
            .expect("join");
        assert!(reply.listing.users.contains(&"reader".to_owned()));
        if first {
            // After the chat frames the test published before this first join.
            loop {
                let (frame, _) = self.frame().await;
                if frame["type"] == "chat" {
                    continue;
                }
                assert_eq!(
                    (&frame["type"], &frame["user_id"]),
                    (&Value::from("user_joined"), &Value::from("reader"))
                );
                break;
            }
            self.reader = Some(reader);
        }
        let r = reply.recovery;
        let offsets = r
            .messages
            .iter()
            .map(|m| {
                let v: Value = serde_json::from_str(m).expect("stored frame");
                assert_eq!(v["epoch"], r.epoch.as_str());
                v["offset"].as_u64().expect("offset")
            })
            .collect();
        (r.epoch, r.offset, r.recovered, offsets)
    }
}

fn joined(user: &str) -> (String, String) {
    ("user_joined".into(), user.into())
}

fn left(user: &str) -> (String, String) {
    ("user_left".into(), user.into())
}

async fn join_and_leave_announce_once_per_user(kind: Kind) {
    let mut e = engine(kind, settings()).await;
    let (a1, a2, b1) = (e.member("alice"), e.member("alice"), e.member("bob"));
    let listing = e.broker.join("c", &a1, None).await.expect("join").listing;
    assert_eq!(
        (listing.users, listing.total),
        (vec!["alice".to_owned()], 1)
    );
    let (frame, sender) = e.frame().await;
    assert_eq!(frame["type"], "user_joined");
    assert_eq!(
        sender.as_deref(),
        Some(a1.connection.as_str()),
        "the joiner is the sender"
    );
    e.broker.join("c", &a2, None).await.expect("join");
    e.no_frame().await;
    let listing = e.broker.join("c", &b1, None).await.expect("join").listing;
    assert_eq!(listing.users, vec!["alice", "bob"]);
    assert_eq!(e.announcement().await, joined("bob"));
    assert!(
        !e.presence.leave("c", &a1).await.expect("leave"),
        "a tab is left"
    );
    e.no_frame().await;
    assert!(e.presence.leave("c", &a2).await.expect("leave"));
    assert_eq!(e.announcement().await, left("alice"));
    assert!(
        !e.presence.leave("c", &a2).await.expect("leave"),
        "only once"
    );
    e.no_frame().await;
}

async fn heartbeats_keep_and_sweeps_remove_once(kind: Kind) {
    let mut e = engine(kind, settings()).await;
    let (ghost, live) = (e.member("ghost"), e.member("live"));
    e.broker.join("c", &ghost, None).await.expect("join");
    e.broker.join("c", &live, None).await.expect("join");
    e.announcement().await;
    e.announcement().await;
    for _ in 0..5 {
        tokio::time::sleep(TTL / 4).await;
        e.presence
            .assert("c", std::slice::from_ref(&live))
            .await
            .expect("assert");
    }
    e.no_frame().await;
    assert_eq!(e.presence.sweep("c").await.expect("sweep"), vec!["ghost"]);
    assert_eq!(e.announcement().await, left("ghost"));
    assert!(e.presence.sweep("c").await.expect("sweep").is_empty());
    assert!(
        !e.presence.leave("c", &ghost).await.expect("leave"),
        "announced by the sweep"
    );
    e.no_frame().await;
    // A connection the store lost (swept while its replica stalled) comes back, announced.
    e.presence
        .assert("c", std::slice::from_ref(&ghost))
        .await
        .expect("assert");
    assert_eq!(e.announcement().await, joined("ghost"));
}

async fn an_unswept_expiry_is_announced_before_the_rejoin(kind: Kind) {
    let mut e = engine(kind, settings()).await;
    let (a1, a2) = (e.member("alice"), e.member("alice"));
    e.broker.join("c", &a1, None).await.expect("join");
    e.announcement().await;
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    e.broker.join("c", &a2, None).await.expect("join");
    assert_eq!(e.announcement().await, left("alice"));
    assert_eq!(e.announcement().await, joined("alice"));
    assert!(e.presence.sweep("c").await.expect("sweep").is_empty());
}

async fn user_sync_is_bounded_with_a_total(kind: Kind) {
    let mut e = engine(kind, settings()).await;
    let many: Vec<Member> = (0..1_003).map(|i| e.member(&format!("u{i:04}"))).collect();
    e.presence.assert("c", &many).await.expect("assert");
    let me = e.member("zz");
    let listing = e.broker.join("c", &me, None).await.expect("join").listing;
    assert_eq!(listing.total, 1_004);
    assert_eq!(listing.users.len(), 1_000);
    assert!(listing.users.is_sorted());
    assert!(
        listing.users.contains(&"zz".to_owned()),
        "the newest presence is listed"
    );
}

async fn the_generation_is_stable(kind: Kind) {
    let e = engine(kind, settings()).await;
    let first = e.presence.generation().await.expect("generation");
    assert!(!first.is_empty());
    assert_eq!(e.presence.generation().await.expect("generation"), first);
}

async fn offsets_history_and_recovery(kind: Kind) {
    let mut e = engine(kind, settings()).await;
    let (epoch0, offset0, _, none) = e.recover(None).await;
    assert_eq!((offset0, none.len()), (0, 0), "a new channel");
    for (i, user) in ["a", "b", "c"].into_iter().enumerate() {
        let outcome = e.chat(user, None).await;
        assert_eq!(
            outcome,
            ChatOutcome::Published {
                offset: i as u64 + 1,
                epoch: epoch0.clone()
            }
        );
        let (frame, _) = e.frame().await;
        assert_eq!(
            frame["offset"],
            i as u64 + 1,
            "live frames carry the offset"
        );
        assert_eq!(frame["epoch"], epoch0.as_str());
        assert_eq!(frame["user_id"], user);
    }
    let (epoch, offset, recovered, offsets) = e.recover(None).await;
    assert_eq!(
        (epoch.as_str(), offset, recovered),
        (epoch0.as_str(), 3, false)
    );
    assert_eq!(offsets, vec![1, 2, 3], "the replay window");
    assert!(
        e.recover(Some((1, &epoch0))).await.2,
        "all after 1 retained"
    );
    assert_eq!(e.recover(Some((1, &epoch0))).await.3, vec![2, 3]);
    assert_eq!(e.recover(Some((3, &epoch0))).await.3, Vec::<u64>::new());
    assert!(e.recover(Some((3, &epoch0))).await.2);
    let other = e.recover(Some((1, "another"))).await;
    assert_eq!((other.2, other.3), (false, vec![1, 2, 3]), "another epoch");
    let future = e.recover(Some((9, &epoch0))).await;
    assert_eq!(
        (future.2, future.3),
        (false, vec![]),
        "an offset never issued"
    );
}

async fn history_is_bounded_by_size(kind: Kind) {
    let mut e = engine(kind, settings()).await;
    let users = ["a", "b", "c", "d"];
    for i in 0..7 {
        e.chat(users[i % 4], None).await;
    }
    let epoch = e.recover(None).await.0;
    let (_, offset, recovered, offsets) = e.recover(Some((1, &epoch))).await;
    assert_eq!((offset, recovered), (7, false), "2 was trimmed");
    assert_eq!(offsets, vec![3, 4, 5, 6, 7]);
    let (_, _, recovered, offsets) = e.recover(Some((2, &epoch))).await;
    assert!(recovered, "everything after 2 is retained");
    assert_eq!(offsets, vec![3, 4, 5, 6, 7]);
}

async fn history_is_bounded_by_age(kind: Kind) {
    let mut limits = settings();
    limits.history.retain = 1_000;
    limits.history.replay = 1_000;
    let mut e = engine(kind, limits).await;
    e.chat("a", None).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    e.chat("a", None).await;
    let epoch = e.recover(None).await.0;
    let (_, offset, recovered, offsets) = e.recover(Some((0, &epoch))).await;
    assert_eq!((offset, recovered, offsets), (2, false, vec![2]));
}

async fn a_resent_client_msg_id_is_published_once(kind: Kind) {
    let mut e = engine(kind, settings()).await;
    let first = e.chat("alice", Some("m1")).await;
    let ChatOutcome::Published { offset, epoch } = first else {
        panic!("{first:?}");
    };
    e.frame().await;
    let again = e.chat("alice", Some("m1")).await;
    let ChatOutcome::Duplicate {
        offset: dup_offset,
        epoch: dup_epoch,
        ..
    } = again
    else {
        panic!("{again:?}");
    };
    assert_eq!((dup_offset, dup_epoch), (offset, epoch));
    e.no_frame().await;
    assert!(
        matches!(
            e.chat("bob", Some("m1")).await,
            ChatOutcome::Published { offset: 2, .. }
        ),
        "ids are per user"
    );
}

async fn the_rate_limit_is_a_burst_then_a_steady_rate(kind: Kind) {
    let mut e = engine(kind, settings()).await;
    let mut published = 0;
    for _ in 0..6 {
        match e.chat("chatty", None).await {
            ChatOutcome::Published { .. } => published += 1,
            ChatOutcome::RateLimited => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(published, 4, "a burst of exactly the limit");
    assert!(matches!(
        e.chat("calm", None).await,
        ChatOutcome::Published { .. }
    ));
}

async fn missed_frames_are_read_back_with_their_sender(kind: Kind) {
    let mut e = engine(kind, settings()).await;
    for user in ["a", "b", "c"] {
        e.chat(user, None).await;
    }
    let epoch = e.recover(None).await.0;
    let missed = e
        .broker
        .missed(
            "c",
            &Since {
                offset: 1,
                epoch: epoch.clone(),
            },
        )
        .await
        .expect("missed");
    let got: Vec<(u64, String)> = missed
        .iter()
        .map(|m| {
            let frame: Value = serde_json::from_str(&m.frame).expect("frame");
            let sender = m.sender.expect("sender").to_string();
            (frame["offset"].as_u64().expect("offset"), sender)
        })
        .collect();
    let conn = |local: u64| {
        ConnectionId {
            node: e.node,
            local,
        }
        .to_string()
    };
    assert_eq!(got, vec![(2, conn(2)), (3, conn(3))]);
    let other = Since {
        offset: 1,
        epoch: "another".into(),
    };
    assert!(
        e.broker
            .missed("c", &other)
            .await
            .expect("missed")
            .is_empty()
    );
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded_engine {
            $(#[tokio::test] async fn $name() { super::$name(super::Kind::Embedded).await })*
        }
        mod redis_engine {
            $(#[tokio::test] async fn $name() { super::$name(super::Kind::Redis).await })*
        }
    };
}

conformance!(
    join_and_leave_announce_once_per_user,
    heartbeats_keep_and_sweeps_remove_once,
    an_unswept_expiry_is_announced_before_the_rejoin,
    user_sync_is_bounded_with_a_total,
    the_generation_is_stable,
    offsets_history_and_recovery,
    history_is_bounded_by_size,
    history_is_bounded_by_age,
    a_resent_client_msg_id_is_published_once,
    the_rate_limit_is_a_burst_then_a_steady_rate,
    missed_frames_are_read_back_with_their_sender,
);
