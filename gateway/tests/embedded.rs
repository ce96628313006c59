//! The gateway with its embedded in-process broker (no Redis): one replica, same behaviour.

mod common;

use std::time::Duration;

use common::{Gateway, GatewayOptions, join, scenarios};

async fn gateway() -> Gateway {
    Gateway::start(&GatewayOptions::embedded()).await
}

#[tokio::test]
async fn sync_join_chat_ack_and_left() {
    let g = gateway().await;
    scenarios::sync_join_chat_ack_and_left(&g, &g).await;
}

#[tokio::test]
async fn two_tabs_are_one_user() {
    let g = gateway().await;
    scenarios::two_tabs_are_one_user(&g, &g).await;
}

#[tokio::test]
async fn channels_are_isolated() {
    let g = gateway().await;
    scenarios::channels_are_isolated(&g, &g).await;
}

#[tokio::test]
async fn bad_frames_get_errors_and_keep_the_connection() {
    scenarios::bad_frames_get_errors_and_keep_the_connection(&gateway().await).await;
}

#[tokio::test]
async fn bad_upgrade_requests_are_refused() {
    scenarios::bad_upgrade_requests_are_refused(&gateway().await).await;
}

#[tokio::test]
async fn oversize_frames_close_with_1009() {
    scenarios::oversize_frames_close_with_1009(&gateway().await).await;
}

#[tokio::test]
async fn binary_floods_close_with_1003() {
    scenarios::binary_floods_close_with_1003(&gateway().await).await;
}

#[tokio::test]
async fn rate_limit_is_exact() {
    let g = Gateway::start(&GatewayOptions::embedded().with("CANVASCHAT_RATE_LIMIT_PER_MINUTE", 4))
        .await;
    scenarios::rate_limit_is_exact_and_shared(&g, &g, 4).await;
}

#[tokio::test]
async fn probes_and_metrics() {
    scenarios::probes_and_metrics(&gateway().await).await;
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_exits() {
    let mut g = gateway().await;
    let (mut alice, _) = join(&g, "alice", "drain").await;
    g.signal("TERM");
    assert_eq!(alice.expect_close().await, Some(1001));
    let (code, took) = g.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5));
}

#[tokio::test]
async fn the_connection_cap_refuses_extra_upgrades() {
    let g = Gateway::start(&GatewayOptions::embedded().with("CANVASCHAT_MAX_CONNECTIONS", 2)).await;
    let (_a, _) = join(&g, "a", "cap").await;
    let (_b, _) = join(&g, "b", "cap").await;
    let upgrade = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let (status, body) = common::raw_get(g.addr, "/api/chat?uid=c", &upgrade).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "too_many_connections");
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_refused() {
    let g = Gateway::start(
        &GatewayOptions::embedded().with("CANVASCHAT_ALLOWED_ORIGINS", "https://chat.example.com"),
    )
    .await;
    let url = g.url("alice", "origins");
    let refused = common::Client::connect_with_origin(&url, "https://evil.example.com").await;
    assert!(refused.is_err(), "a foreign origin must not upgrade");
    let mut ok = common::Client::connect_with_origin(&url, "https://chat.example.com")
        .await
        .expect("allowed origin");
    assert_eq!(ok.recv().await["type"], "user_sync");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    let g = Gateway::start(
        &GatewayOptions::embedded()
            .with("CANVASCHAT_MAX_MESSAGE_BYTES", 65_536)
            .with("CANVASCHAT_RATE_LIMIT_PER_MINUTE", 10_000)
            .with("CANVASCHAT_SEND_QUEUE_FRAMES", 4),
    )
    .await;
    let (mut stalled, _) = join(&g, "stalled", "slow").await;
    let (mut sender, _) = join(&g, "sender", "slow").await;
    let payload = "y".repeat(60_000);
    // Enough to fill the socket buffers and then the queue: bounded at 400 frames (24 MB).
    let mut stalled_left = false;
    for i in 0..400 {
        sender.chat(&payload, 0.0, 0.0, &format!("{i}")).await;
        loop {
            let frame = sender.recv().await;
            if frame["type"] == "user_left" && frame["user_id"] == "stalled" {
                stalled_left = true;
            }
            if frame["type"] == "ack" {
                break;
            }
        }
        if stalled_left {
            break;
        }
    }
    // Its session ended while it still read nothing: the others saw it leave.
    assert!(stalled_left, "the stalled client was never disconnected");
    let metrics = g.metrics().await;
    assert!(metrics.contains("canvaschat_rejected_total{reason=\"SlowConsumer\"} 1"));
    // Its socket buffers may still be full, so the close frame can be lost: 1008 or a drop.
    let code = stalled.expect_close().await;
    assert!(matches!(code, Some(1008) | None), "closed with {code:?}");
}

#[tokio::test]
async fn serves_the_frontend_with_cache_headers_and_spa_fallback() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>canvas</title>",
    )
    .expect("write");
    std::fs::create_dir(dir.path().join("assets")).expect("mkdir");
    std::fs::write(dir.path().join("assets/app-1234.js"), "console.log(1)").expect("write");
    let g = Gateway::start(
        &GatewayOptions::embedded().with("CANVASCHAT_STATIC_DIR", dir.path().display()),
    )
    .await;
    let get = |path: &'static str| {
        let addr = g.addr;
        async move {
            reqwest::get(format!("http://{addr}{path}"))
                .await
                .expect("get")
        }
    };
    let index = get("/").await;
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["cache-control"], "no-cache");
    assert!(index.text().await.expect("body").contains("<title>canvas"));
    let asset = get("/assets/app-1234.js").await;
    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let deep = get("/some/client/route").await;
    assert_eq!(deep.status(), 200);
    assert!(deep.text().await.expect("body").contains("<title>canvas"));
}

#[tokio::test]
async fn offsets_epochs_and_recovery_after_a_disconnect() {
    let g = gateway().await;
    scenarios::offsets_epochs_and_recovery_after_a_disconnect(&g, &g).await;
}

#[tokio::test]
async fn a_resent_client_msg_id_is_delivered_once() {
    let g = gateway().await;
    scenarios::a_resent_client_msg_id_is_delivered_once(&g, &g).await;
}

#[tokio::test]
async fn a_drain_keeps_serving_while_not_ready_then_closes_with_1001() {
    let mut g =
        Gateway::start(&GatewayOptions::embedded().with("CANVASCHAT_DRAIN_DELAY_SECONDS", 2)).await;
    let (mut alice, _) = join(&g, "alice", "drain-delay").await;
    let (mut bob, _) = join(&g, "bob", "drain-delay").await;
    alice.recv_type("user_joined").await;
    let signalled = std::time::Instant::now();
    g.signal("TERM");
    let deadline = signalled + Duration::from_secs(1);
    loop {
        let (status, _) = g.get("/ready").await.expect("still answering");
        if status == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never turned not-ready"
        );
    }
    alice.chat("still served", 0.0, 0.0, "during").await;
    assert_eq!(alice.recv_type("ack").await["client_msg_id"], "during");
    assert_eq!(bob.recv_type("chat").await["payload"], "still served");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "served within the delay"
    );
    assert_eq!(bob.expect_close().await, Some(1001));
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "closed only after the delay"
    );
    let (code, _) = g.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn cursors_are_coalesced_never_echoed_and_not_rate_limited() {
    let g = Gateway::start(&GatewayOptions::embedded().with("CANVASCHAT_RATE_LIMIT_PER_MINUTE", 2))
        .await;
    scenarios::cursors_are_coalesced_never_echoed_and_not_rate_limited(&g, &g).await;
}
