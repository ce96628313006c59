//! The guarantees under real failure timing, with several gateway processes on one real
//! Redis: presence through reload storms, leaves and a Redis that restarts empty, and no
//! acknowledged message lost while a replica drains under load.

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::{
    Client, Event, Gateway, GatewayOptions, Redis, history_offsets, join, join_since, users,
};
use serde_json::Value;

async fn replicas(n: usize, options: GatewayOptions) -> Vec<Gateway> {
    let mut gateways = Vec::with_capacity(n);
    for _ in 0..n {
        gateways.push(Gateway::start(&options).await);
    }
    gateways
}

/// Every presence event the watcher sees until `quiet` passes with none, per user.
async fn presence_events(watcher: &mut Client, quiet: Duration) -> HashMap<String, Vec<String>> {
    let mut events: HashMap<String, Vec<String>> = HashMap::new();
    while let Some(frame) = watcher.try_recv(quiet).await {
        if let (Some(kind), Some(user)) = (frame["type"].as_str(), frame["user_id"].as_str())
            && (kind == "user_joined" || kind == "user_left")
        {
            events
                .entry(user.to_owned())
                .or_default()
                .push(kind.to_owned());
        }
    }
    events
}

#[tokio::test]
async fn simultaneous_cross_replica_reloads_end_with_everyone_present() {
    const USERS: usize = 16;
    const RELOADS: usize = 50;
    let redis = Redis::start().await;
    let g = replicas(2, GatewayOptions::redis(&redis)).await;
    let (mut watcher, _) = join(&g[0], "watcher", "storm").await;
    let mut tasks = Vec::new();
    for u in 0..USERS {
        let urls = [
            g[0].url(&format!("u{u}"), "storm"),
            g[1].url(&format!("u{u}"), "storm"),
        ];
        tasks.push(tokio::spawn(async move {
            let mut tab = Some(Client::connect(&urls[u % 2]).await);
            for r in 1..=RELOADS {
                let old = tab.take().expect("open tab");
                // The reloaded page lands on the other replica while the old one closes.
                let (next, ()) = tokio::join!(
                    async {
                        let mut next = Client::connect(&urls[(u + r) % 2]).await;
                        assert_eq!(next.recv().await["type"], "user_sync");
                        next
                    },
                    old.close()
                );
                tab = Some(next);
            }
            tab
        }));
    }
    let mut tabs = Vec::new();
    for task in tasks {
        tabs.push(task.await.expect("reload task"));
    }
    let events = presence_events(&mut watcher, Duration::from_secs(2)).await;
    for u in 0..USERS {
        let user = format!("u{u}");
        let seen = events.get(&user).expect("the user was announced");
        assert_eq!(
            seen.last().map(String::as_str),
            Some("user_joined"),
            "{user} is online, but the last event was {seen:?}"
        );
    }
    let (_newcomer, sync) = join(&g[1], "newcomer", "storm").await;
    assert_eq!(sync["total"], USERS + 2, "{sync}");
    for u in 0..USERS {
        assert!(
            users(&sync).contains(&format!("u{u}")),
            "u{u} missing: {sync}"
        );
    }
    drop(tabs);
}

#[tokio::test]
async fn a_closed_tab_is_never_resurrected_and_leaves_once() {
    let redis = Redis::start().await;
    // Heartbeats every second race the leaves below.
    let g = replicas(2, GatewayOptions::redis(&redis)).await;
    let (mut watcher, _) = join(&g[0], "watcher", "ghosts").await;
    let announcements = RawAnnouncements::subscribe(&redis, "ghosts").await;
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let mut tabs = Vec::new();
        for u in 0..8 {
            tabs.push(join(&g[round % 2], &format!("r{u}"), "ghosts").await.0);
        }
        for tab in tabs {
            tab.close().await;
        }
        round += 1;
    }
    // Longer than the TTL (3 s) and a sweep: a resurrected entry would expire and be
    // announced as leaving a second time.
    let events = presence_events(&mut watcher, Duration::from_secs(4)).await;
    let published = announcements.take();
    for u in 0..8 {
        let user = format!("r{u}");
        let seen = &events[&user];
        assert_eq!(
            seen.last().map(String::as_str),
            Some("user_left"),
            "{user}: {seen:?}"
        );
        // What went through Redis (clients get bursts coalesced): strictly a join, then
        // exactly one leave, per visit.
        let sequence = &published[&user];
        assert!(sequence.len() >= 2 * round, "{user}: {sequence:?}");
        for (i, kind) in sequence.iter().enumerate() {
            let expected = if i % 2 == 0 {
                "user_joined"
            } else {
                "user_left"
            };
            assert_eq!(kind, expected, "{user} event {i}: {sequence:?}");
        }
        assert_eq!(
            sequence.len() % 2,
            0,
            "{user} ends with its leave: {sequence:?}"
        );
    }
    let (_newcomer, sync) = join(&g[1], "newcomer", "ghosts").await;
    assert_eq!(
        users(&sync),
        vec!["newcomer", "watcher"],
        "no ghost: {sync}"
    );
}

/// Every presence announcement published through Redis for a channel, per user, in order.
struct RawAnnouncements {
    seen: std::sync::Arc<std::sync::Mutex<HashMap<String, Vec<String>>>>,
    _subscriber: fred::clients::SubscriberClient,
}

impl RawAnnouncements {
    async fn subscribe(redis: &Redis, channel: &str) -> Self {
        use fred::prelude::*;
        let config = Config::from_url(&redis.url()).expect("redis url");
        let subscriber = Builder::from_config(config)
            .build_subscriber_client()
            .expect("subscriber");
        subscriber.init().await.expect("connect");
        let mut rx = subscriber.message_rx();
        subscriber
            .subscribe(format!("canvaschat:chan:{channel}"))
            .await
            .expect("subscribe");
        let seen: std::sync::Arc<std::sync::Mutex<HashMap<String, Vec<String>>>> =
            Default::default();
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Ok(message) = rx.recv().await {
                let Some(raw) = message.value.as_str() else {
                    continue;
                };
                let Some(frame) = raw.splitn(3, '|').nth(2) else {
                    continue;
                };
                let frame: serde_json::Value = serde_json::from_str(frame).expect("frame");
                if let (Some(kind), Some(user)) =
                    (frame["type"].as_str(), frame["user_id"].as_str())
                    && kind != "chat"
                {
                    sink.lock()
                        .expect("lock")
                        .entry(user.to_owned())
                        .or_default()
                        .push(kind.to_owned());
                }
            }
        });
        RawAnnouncements {
            seen,
            _subscriber: subscriber,
        }
    }

    fn take(&self) -> HashMap<String, Vec<String>> {
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

#[tokio::test]
async fn presence_is_back_within_seconds_after_redis_restarts_empty() {
    let mut redis = Redis::start().await;
    // The default heartbeat (60 s): only the restart detection can bring presence back soon.
    let options = GatewayOptions::redis(&redis)
        .with("CANVASCHAT_PRESENCE_HEARTBEAT_SECONDS", 60)
        .with("CANVASCHAT_PRESENCE_TTL_SECONDS", 300);
    let g = replicas(2, options).await;
    let (mut alice, sync) = join(&g[0], "alice", "restart").await;
    let epoch_before = sync["epoch"].as_str().expect("epoch").to_owned();
    let (_bob, _) = join(&g[1], "bob", "restart").await;
    alice.recv_type("user_joined").await;
    scenarios_send(&mut alice, "before").await;

    redis.restart().await;
    g[0].wait_ready().await;
    g[1].wait_ready().await;
    let restarted = Instant::now();
    loop {
        let (carol, sync, history) =
            join_since(&g[1], "carol", "restart", Some((1, &epoch_before))).await;
        carol.close().await;
        if users(&sync) == vec!["alice", "bob", "carol"] {
            assert_ne!(
                sync["epoch"],
                epoch_before.as_str(),
                "the history was lost: new epoch"
            );
            assert_eq!(history["recovered"], false, "{history}");
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(6),
            "presence not back: {sync}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn scenarios_send(client: &mut Client, id: &str) -> Value {
    client.chat(id, 0.0, 0.0, id).await;
    client.recv_type("ack").await
}

/// A reader that follows the chat across reconnects: on close it resumes on another
/// replica with `since`/`epoch`, and records every offset it was given, in order.
async fn follow(urls: Vec<String>, until: u64) -> Vec<u64> {
    let mut offsets: Vec<u64> = Vec::new();
    let mut epoch: Option<String> = None;
    let mut attempt = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    'reconnect: loop {
        assert!(Instant::now() < deadline, "never caught up: {offsets:?}");
        let mut url = urls[attempt % urls.len()].clone();
        attempt += 1;
        if let (Some(last), Some(epoch)) = (offsets.last(), &epoch) {
            url.push_str(&format!("&since={last}&epoch={epoch}"));
        }
        let Ok(mut client) = Client::try_connect(&url).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        loop {
            match client.next_event(Duration::from_secs(10)).await {
                Event::Frame(frame) => match frame["type"].as_str() {
                    Some("user_sync") => epoch = frame["epoch"].as_str().map(str::to_owned),
                    Some("history") => {
                        if !offsets.is_empty() {
                            assert_eq!(frame["recovered"], true, "{frame}");
                        }
                        offsets.extend(history_offsets(&frame));
                    }
                    Some("chat") => offsets.push(frame["offset"].as_u64().expect("offset")),
                    _ => {}
                },
                Event::Closed(_) => continue 'reconnect,
                Event::Timeout => panic!("no frame for 10 s; holding {offsets:?}"),
            }
            if offsets.last().is_some_and(|last| *last >= until) {
                return offsets;
            }
        }
    }
}

#[tokio::test]
async fn a_replica_drained_under_load_loses_no_acknowledged_message() {
    const MESSAGES: u64 = 150;
    let redis = Redis::start().await;
    let options = GatewayOptions::redis(&redis)
        .with("CANVASCHAT_RATE_LIMIT_PER_MINUTE", 100_000)
        .with("CANVASCHAT_DRAIN_DELAY_SECONDS", 1)
        .with("CANVASCHAT_SHUTDOWN_GRACE_SECONDS", 10);
    let mut g = replicas(3, options).await;
    let (mut sender, _) = join(&g[0], "sender", "load").await;
    // Readers start on the replica that will be drained, and fall back to the others.
    let mut readers = Vec::new();
    for r in 0..6 {
        let mut urls = vec![g[2].url(&format!("reader{r}"), "load")];
        urls.push(g[r % 2].url(&format!("reader{r}"), "load"));
        urls.push(g[(r + 1) % 2].url(&format!("reader{r}"), "load"));
        readers.push(tokio::spawn(follow(urls, MESSAGES)));
    }
    // Wait until every reader is connected (the sender sees them join).
    let mut joined = 0;
    while joined < 6 {
        if sender.recv().await["type"] == "user_joined" {
            joined += 1;
        }
    }
    let mut acked = Vec::new();
    for i in 1..=MESSAGES {
        if i == 30 {
            g[2].signal("TERM");
        }
        let id = format!("m{i}");
        sender.chat(&id, 0.0, 0.0, &id).await;
        let ack = sender.recv_type("ack").await;
        acked.push(ack["offset"].as_u64().expect("offset"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        acked,
        (1..=MESSAGES).collect::<Vec<_>>(),
        "consecutive offsets"
    );
    let (code, _) = g[2].wait_exit(Duration::from_secs(15)).await;
    assert_eq!(code, Some(0));
    for reader in readers {
        let offsets = reader.await.expect("reader");
        assert_eq!(
            offsets,
            (1..=MESSAGES).collect::<Vec<_>>(),
            "every acknowledged offset, in order, once"
        );
    }
}

#[tokio::test]
async fn frames_published_while_a_subscriber_reconnects_still_arrive_in_order() {
    const MESSAGES: u64 = 60;
    let redis = Redis::start().await;
    let options = GatewayOptions::redis(&redis).with("CANVASCHAT_RATE_LIMIT_PER_MINUTE", 100_000);
    let g = replicas(2, options).await;
    let (mut alice, _) = join(&g[0], "alice", "blip").await;
    let (mut bob, _) = join(&g[1], "bob", "blip").await;
    alice.recv_type("user_joined").await;
    for i in 1..=MESSAGES {
        if i == 10 {
            // Every subscriber connection drops; frames published until the gateways have
            // reconnected and re-subscribed reach nobody through pub/sub.
            redis.kill_pubsub_clients();
        }
        scenarios_send(&mut alice, &format!("m{i}")).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let mut offsets = Vec::new();
    while offsets.last() != Some(&MESSAGES) {
        let frame = bob.recv_type("chat").await;
        offsets.push(frame["offset"].as_u64().expect("offset"));
    }
    assert_eq!(offsets, (1..=MESSAGES).collect::<Vec<_>>());
    alice.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn the_last_frames_before_a_quiet_spell_arrive_after_a_subscriber_reconnect() {
    let redis = Redis::start().await;
    let g = replicas(2, GatewayOptions::redis(&redis)).await;
    let (mut alice, _) = join(&g[0], "alice", "quiet").await;
    let (mut bob, _) = join(&g[1], "bob", "quiet").await;
    alice.recv_type("user_joined").await;
    scenarios_send(&mut alice, "before").await;
    assert_eq!(bob.recv_type("chat").await["offset"], 1);
    redis.kill_pubsub_clients();
    // Sent while the subscribers are away, and nothing after them.
    scenarios_send(&mut alice, "during-1").await;
    scenarios_send(&mut alice, "during-2").await;
    assert_eq!(bob.recv_type("chat").await["offset"], 2);
    assert_eq!(bob.recv_type("chat").await["offset"], 3);
    bob.expect_silence(Duration::from_millis(300)).await;
    alice.expect_silence(Duration::from_millis(300)).await;
}
