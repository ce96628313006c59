//! Behaviour every broker must show. Each scenario takes the replicas to spread clients over;
//! with the embedded broker that is one gateway named twice.

use std::time::Duration;

use serde_json::json;

use super::{Client, Gateway, history_offsets, join, join_since, raw_get, users};

pub async fn sync_join_chat_ack_and_left(a: &Gateway, b: &Gateway) {
    let (mut alice, sync) = join(a, "alice", "lobby").await;
    assert_eq!(users(&sync), vec!["alice"]);
    assert_eq!(sync["channel_id"], "lobby");
    assert!(sync["timestamp"].as_str().is_some());

    let (mut bob, sync) = join(b, "bob", "lobby").await;
    assert_eq!(
        users(&sync),
        vec!["alice", "bob"],
        "sync lists everyone, itself included"
    );
    let joined = alice.recv().await;
    assert_eq!(joined["type"], "user_joined");
    assert_eq!(joined["user_id"], "bob");
    assert_eq!(joined["channel_id"], "lobby");

    alice.chat("Hello", 120.5, -40.0, "m1").await;
    let ack = alice.recv().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["client_msg_id"], "m1");
    let chat = bob.recv().await;
    assert_eq!(chat["type"], "chat");
    assert_eq!(chat["user_id"], "alice");
    assert_eq!(chat["channel_id"], "lobby");
    assert_eq!(chat["payload"], "Hello");
    assert_eq!(chat["position"], json!({"x":120.5,"y":-40.0}));
    assert_eq!(
        chat["message_id"], ack["message_id"],
        "ack carries the server's id"
    );
    alice.expect_silence(Duration::from_millis(300)).await;

    bob.close().await;
    let left = alice.recv().await;
    assert_eq!(left["type"], "user_left");
    assert_eq!(left["user_id"], "bob");
}

pub async fn two_tabs_are_one_user(a: &Gateway, b: &Gateway) {
    let (mut watcher, _) = join(a, "watcher", "tabs").await;
    let (mut tab1, _) = join(a, "alice", "tabs").await;
    assert_eq!(watcher.recv().await["user_id"], "alice");
    let (mut tab2, sync) = join(b, "alice", "tabs").await;
    assert_eq!(users(&sync), vec!["alice", "watcher"], "one entry per user");
    watcher.expect_silence(Duration::from_millis(300)).await;

    tab1.chat("from tab 1", 1.0, 2.0, "t1").await;
    assert_eq!(tab1.recv().await["type"], "ack");
    assert_eq!(
        tab2.recv().await["payload"],
        "from tab 1",
        "other tabs of the sender get it"
    );
    assert_eq!(watcher.recv().await["payload"], "from tab 1");

    tab1.close().await;
    watcher.expect_silence(Duration::from_millis(300)).await;
    tab2.close().await;
    let left = watcher.recv().await;
    assert_eq!(left["type"], "user_left");
    assert_eq!(left["user_id"], "alice");
}

pub async fn channels_are_isolated(a: &Gateway, b: &Gateway) {
    let (mut red, _) = join(a, "red", "room-red").await;
    let (mut blue, sync) = join(b, "blue", "room-blue").await;
    assert_eq!(users(&sync), vec!["blue"]);
    red.chat("only red", 0.0, 0.0, "r").await;
    assert_eq!(red.recv().await["type"], "ack");
    blue.expect_silence(Duration::from_millis(300)).await;
    let (_red2, sync) = join(b, "red2", "room-red").await;
    assert_eq!(users(&sync), vec!["red", "red2"]);
    assert_eq!(red.recv().await["type"], "user_joined");
    blue.expect_silence(Duration::from_millis(200)).await;
}

pub async fn bad_frames_get_errors_and_keep_the_connection(g: &Gateway) {
    let (mut c, _) = join(g, "picky", "errors").await;
    let cases = [
        ("{not json", "invalid_message"),
        ("[]", "invalid_message"),
        (r#"{"type":"dance"}"#, "unsupported_type"),
        (
            r#"{"type":"chat","payload":"","position":{"x":1,"y":1}}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"chat","payload":"   ","position":{"x":1,"y":1}}"#,
            "invalid_message",
        ),
        (r#"{"type":"chat","payload":"x"}"#, "invalid_message"),
        (
            r#"{"type":"chat","payload":"x","position":{"x":"a","y":1}}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"chat","payload":"x","position":{"x":1e400,"y":1}}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"chat","payload":["x"],"position":{"x":1,"y":1}}"#,
            "invalid_message",
        ),
    ];
    for (frame, code) in cases {
        c.send_text(frame).await;
        let reply = c.recv().await;
        assert_eq!(reply["type"], "error", "{frame} -> {reply}");
        assert_eq!(reply["code"], code, "{frame} -> {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    c.send_text(r#"{"type":"chat","payload":"","position":{"x":1,"y":1},"client_msg_id":"bad-1"}"#)
        .await;
    assert_eq!(
        c.recv().await["client_msg_id"],
        "bad-1",
        "errors name the failed message"
    );
    c.chat("still here", 0.0, 0.0, "ok").await;
    assert_eq!(
        c.recv().await["type"],
        "ack",
        "the connection stayed usable"
    );
}

pub async fn bad_upgrade_requests_are_refused(g: &Gateway) {
    let upgrade = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let long = "a".repeat(65);
    for path in [
        "/api/chat".to_owned(),
        "/api/chat?uid=".to_owned(),
        "/api/chat?uid=al%20ice".to_owned(),
        "/api/chat?uid=a/b".to_owned(),
        format!("/api/chat?uid={long}"),
        "/api/chat?uid=alice&channel=bad%20channel".to_owned(),
        "/api/chat?uid=alice&channel=".to_owned(),
    ] {
        let (status, body) = raw_get(g.addr, &path, &upgrade).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
        assert!(body["error"]["message"].as_str().is_some());
    }
    let (status, body) = raw_get(g.addr, "/api/chat?uid=alice", &[]).await;
    assert_eq!(status, 400, "a plain GET is not an upgrade: {body}");
    assert_eq!(body["error"]["code"], "not_websocket");
}

pub async fn oversize_frames_close_with_1009(g: &Gateway) {
    let (mut c, _) = join(g, "big", "size-limits").await;
    let payload = "x".repeat(5_000);
    c.chat(&payload, 0.0, 0.0, "huge").await;
    assert_eq!(c.expect_close().await, Some(1009));
}

pub async fn binary_floods_close_with_1003(g: &Gateway) {
    let (mut c, _) = join(g, "binary", "binary-limits").await;
    assert!(c.send_binary(vec![1, 2, 3]).await.is_ok());
    let reply = c.recv_type("error").await;
    assert_eq!(
        reply["code"], "binary_not_supported",
        "one binary frame is only an error"
    );
    for _ in 0..10 {
        if c.send_binary(vec![0; 16]).await.is_err() {
            break;
        }
    }
    assert_eq!(c.expect_close().await, Some(1003), "a flood is closed");
}

pub async fn rate_limit_is_exact_and_shared(a: &Gateway, b: &Gateway, limit: usize) {
    let (mut tab_a, _) = join(a, "chatty", "rate").await;
    let (mut tab_b, _) = join(b, "chatty", "rate").await;
    let mut acks = 0;
    let mut limited = 0;
    for i in 0..limit * 2 {
        let tab: &mut Client = if i % 2 == 0 { &mut tab_a } else { &mut tab_b };
        tab.chat("hi", 0.0, 0.0, &format!("m{i}")).await;
        let reply = loop {
            let frame = tab.recv().await;
            if frame["type"] == "ack" || frame["type"] == "error" {
                break frame;
            }
        };
        match reply["type"].as_str() {
            Some("ack") => acks += 1,
            _ => {
                assert_eq!(reply["code"], "rate_limited", "{reply}");
                assert_eq!(reply["client_msg_id"], format!("m{i}"));
                limited += 1;
            }
        }
    }
    assert_eq!(acks, limit, "exactly the limit is accepted");
    assert_eq!(limited, limit);
}

pub async fn probes_and_metrics(g: &Gateway) {
    let (status, body) = g.get("/health").await.expect("health");
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(health["status"], "ok");
    assert!(
        chrono::DateTime::parse_from_rfc3339(health["timestamp"].as_str().expect("ts")).is_ok()
    );

    let (status, body) = g.get("/ready").await.expect("ready");
    assert_eq!(status, 200);
    let ready: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"], json!({"redis":"ok","pubsub":"ok"}));

    let (mut c, _) = join(g, "metered", "metrics").await;
    c.chat("count me", 0.0, 0.0, "1").await;
    assert_eq!(c.recv().await["type"], "ack");
    let text = g.metrics().await;
    let (status, _) = g.get("/metrics").await.expect("public /metrics");
    assert_ne!(status, 200, "metrics are not served on the public listener");
    for needle in [
        "canvaschat_connections_active 1",
        "canvaschat_messages_received_total 1",
        "canvaschat_messages_published_total 1",
        "canvaschat_delivery_latency_seconds_count",
        "canvaschat_messages_rate_limited_total",
        "canvaschat_redis_errors_total",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
}

/// Sends a chat and returns its ack.
pub async fn send(client: &mut Client, payload: &str, client_msg_id: &str) -> serde_json::Value {
    client.chat(payload, 1.0, 2.0, client_msg_id).await;
    let ack = client.recv_type("ack").await;
    assert_eq!(ack["client_msg_id"], client_msg_id, "{ack}");
    ack
}

pub async fn offsets_epochs_and_recovery_after_a_disconnect(a: &Gateway, b: &Gateway) {
    let (mut alice, sync, history) = join_since(a, "alice", "recover", None).await;
    assert_eq!(sync["offset"], 0, "a new channel: {sync}");
    assert_eq!(history["recovered"], false);
    assert_eq!(history_offsets(&history), Vec::<u64>::new());
    let epoch = sync["epoch"].as_str().expect("epoch").to_owned();
    let (mut bob, _) = join(b, "bob", "recover").await;
    alice.recv_type("user_joined").await;

    let first = send(&mut alice, "one", "r1").await;
    assert_eq!(first["offset"], 1, "{first}");
    assert_eq!(first["epoch"], epoch.as_str());
    let seen = bob.recv_type("chat").await;
    assert_eq!(
        (seen["offset"].as_u64(), seen["epoch"].as_str()),
        (Some(1), Some(epoch.as_str()))
    );
    bob.close().await;
    for (i, id) in ["r2", "r3", "r4"].into_iter().enumerate() {
        let ack = send(&mut alice, id, id).await;
        assert_eq!(ack["offset"], i as u64 + 2, "consecutive: {ack}");
    }
    // Bob comes back on the other replica from where he stopped.
    let (mut bob, sync, history) = join_since(a, "bob", "recover", Some((1, &epoch))).await;
    assert_eq!(sync["offset"], 4, "{sync}");
    assert_eq!(history["recovered"], true, "{history}");
    assert_eq!(history_offsets(&history), vec![2, 3, 4]);
    assert_eq!(history["messages"][0]["payload"], "r2");
    let live = send(&mut alice, "five", "r5").await;
    let next = bob.recv_type("chat").await;
    assert_eq!(
        next["offset"], live["offset"],
        "live resumes right after the history"
    );
    bob.expect_silence(Duration::from_millis(300)).await;

    // A newcomer gets the last few seconds, not recovered; a stale epoch is not recovered.
    let (_carol, _, history) = join_since(b, "carol", "recover", None).await;
    assert_eq!(history["recovered"], false);
    assert_eq!(history_offsets(&history), vec![1, 2, 3, 4, 5]);
    let (_dave, sync, history) = join_since(b, "dave", "recover", Some((2, "0123abcd"))).await;
    assert_eq!(history["recovered"], false, "{history}");
    assert_eq!(sync["epoch"], epoch.as_str());
    assert_eq!(
        history_offsets(&history),
        vec![1, 2, 3, 4, 5],
        "the replay window"
    );
}

pub async fn a_resent_client_msg_id_is_delivered_once(a: &Gateway, b: &Gateway) {
    let (mut alice, _) = join(a, "alice", "resend").await;
    let (mut bob, _) = join(b, "bob", "resend").await;
    alice.recv_type("user_joined").await;
    let first = send(&mut alice, "once", "same-id").await;
    let again = send(&mut alice, "once", "same-id").await;
    assert_eq!(
        again["message_id"], first["message_id"],
        "the first send's id"
    );
    assert_eq!(again["offset"], first["offset"]);
    assert_eq!(
        bob.recv_type("chat").await["message_id"],
        first["message_id"]
    );
    bob.expect_silence(Duration::from_millis(400)).await;
    // A reconnecting tab of the same user resending it is recognised too.
    let (mut tab, _) = join(b, "alice", "resend").await;
    let third = send(&mut tab, "once", "same-id").await;
    assert_eq!(third["offset"], first["offset"]);
    bob.expect_silence(Duration::from_millis(300)).await;
}

/// Cursor positions: coalesced per connection (the gateways run with the default 20 Hz),
/// the latest delivered last, never echoed or acked, not counted in the chat rate limit
/// (the gateways run with a limit of 2 per minute).
pub async fn cursors_are_coalesced_never_echoed_and_not_rate_limited(a: &Gateway, b: &Gateway) {
    let (mut alice, _) = join(a, "alice", "cursors").await;
    let (mut bob, _) = join(b, "bob", "cursors").await;
    alice.recv_type("user_joined").await;
    let started = std::time::Instant::now();
    for x in 0..40 {
        alice
            .send_text(json!({"type":"cursor","position":{"x":x,"y":-1.5}}).to_string())
            .await;
    }
    alice.chat("first", 0.0, 0.0, "c1").await;
    alice.chat("second", 0.0, 0.0, "c2").await;
    for id in ["c1", "c2"] {
        let reply = alice.recv().await;
        assert_eq!(reply["type"], "ack", "acked, not limited, no echo: {reply}");
        assert_eq!(reply["client_msg_id"], id);
    }
    let mut cursors = Vec::new();
    let mut chats = 0;
    while chats < 2 || cursors.last() != Some(&39.0) {
        let frame = bob.recv().await;
        match frame["type"].as_str() {
            Some("cursor") => {
                assert_eq!(frame["user_id"], "alice", "{frame}");
                assert_eq!(frame["channel_id"], "cursors", "{frame}");
                assert_eq!(frame["position"]["y"], -1.5, "{frame}");
                cursors.push(frame["position"]["x"].as_f64().expect("x"));
            }
            Some("chat") => chats += 1,
            _ => {}
        }
    }
    let allowed = 2 + (started.elapsed().as_secs_f64() * 20.0).ceil() as usize;
    assert!(
        cursors.len() <= allowed,
        "{} positions forwarded, at most {allowed} allowed: {cursors:?}",
        cursors.len()
    );
    assert!(cursors.is_sorted(), "positions in order: {cursors:?}");
    bob.expect_silence(Duration::from_millis(300)).await;
    alice.expect_silence(Duration::from_millis(300)).await;
}
