//! Gateways sharing a real Redis: fan-out and presence across replicas, the shared rate
//! limit, and the failures a deployment sees (a replica killed, a drain, Redis restarting).

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, GatewayOptions, Redis, join, scenarios, users};

async fn replicas(n: usize, options: GatewayOptions) -> Vec<Gateway> {
    let mut gateways = Vec::with_capacity(n);
    for _ in 0..n {
        gateways.push(Gateway::start(&options).await);
    }
    gateways
}

#[tokio::test]
async fn sync_join_chat_ack_and_left_across_replicas() {
    let redis = Redis::start().await;
    let g = replicas(2, GatewayOptions::redis(&redis)).await;
    scenarios::sync_join_chat_ack_and_left(&g[0], &g[1]).await;
}

#[tokio::test]
async fn a_chat_reaches_every_replica_once() {
    let redis = Redis::start().await;
    let g = replicas(3, GatewayOptions::redis(&redis)).await;
    let (mut a, _) = join(&g[0], "a", "fan").await;
    let (mut b, _) = join(&g[1], "b", "fan").await;
    let (mut c, sync) = join(&g[2], "c", "fan").await;
    assert_eq!(users(&sync), vec!["a", "b", "c"]);
    a.recv_type("user_joined").await;
    a.recv_type("user_joined").await;
    b.recv_type("user_joined").await;
    a.chat("to all", 5.0, 6.0, "x").await;
    assert_eq!(a.recv().await["type"], "ack");
    assert_eq!(b.recv().await["payload"], "to all");
    assert_eq!(c.recv().await["payload"], "to all");
    for client in [&mut a, &mut b, &mut c] {
        client.expect_silence(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn two_tabs_on_two_replicas_are_one_user() {
    let redis = Redis::start().await;
    let g = replicas(2, GatewayOptions::redis(&redis)).await;
    scenarios::two_tabs_are_one_user(&g[0], &g[1]).await;
}

#[tokio::test]
async fn channels_are_isolated() {
    let redis = Redis::start().await;
    let g = replicas(2, GatewayOptions::redis(&redis)).await;
    scenarios::channels_are_isolated(&g[0], &g[1]).await;
}

#[tokio::test]
async fn bad_frames_and_bad_upgrades() {
    let redis = Redis::start().await;
    let g = replicas(1, GatewayOptions::redis(&redis)).await;
    scenarios::bad_frames_get_errors_and_keep_the_connection(&g[0]).await;
    scenarios::bad_upgrade_requests_are_refused(&g[0]).await;
    scenarios::oversize_frames_close_with_1009(&g[0]).await;
    scenarios::binary_floods_close_with_1003(&g[0]).await;
}

#[tokio::test]
async fn rate_limit_is_exact_across_replicas() {
    let redis = Redis::start().await;
    let options = GatewayOptions::redis(&redis).with("CANVASCHAT_RATE_LIMIT_PER_MINUTE", 5);
    let g = replicas(2, options).await;
    scenarios::rate_limit_is_exact_and_shared(&g[0], &g[1], 5).await;
}

#[tokio::test]
async fn probes_and_metrics() {
    let redis = Redis::start().await;
    let g = replicas(1, GatewayOptions::redis(&redis)).await;
    scenarios::probes_and_metrics(&g[0]).await;
}

#[tokio::test]
async fn a_killed_replicas_users_expire_and_leave() {
    let redis = Redis::start().await;
    let g = replicas(2, GatewayOptions::redis(&redis)).await;
    let (mut alice, _) = join(&g[0], "alice", "crash").await;
    let (_bob, _) = join(&g[1], "bob", "crash").await;
    assert_eq!(alice.recv().await["user_id"], "bob");

    let killed_at = Instant::now();
    g[1].signal("KILL");
    let left = alice.recv_type("user_left").await;
    assert_eq!(left["user_id"], "bob");
    let took = killed_at.elapsed();
    // TTL 3 s, heartbeat 1 s, sweep every 0.5 s: gone within TTL plus one sweep.
    assert!(took <= Duration::from_millis(3_700), "ghost lived {took:?}");
    let (_carol, sync) = join(&g[0], "carol", "crash").await;
    assert_eq!(users(&sync), vec!["alice", "carol"], "no ghost in the sync");
}

#[tokio::test]
async fn sigterm_drains_at_once() {
    let redis = Redis::start().await;
    // A long TTL shows that the leave is announced by the drain, not by expiry.
    let options = GatewayOptions::redis(&redis)
        .with("CANVASCHAT_PRESENCE_TTL_SECONDS", 60)
        .with("CANVASCHAT_SHUTDOWN_GRACE_SECONDS", 10);
    let mut g = replicas(2, options).await;
    let (mut alice, _) = join(&g[0], "alice", "drain").await;
    let (mut bob, _) = join(&g[1], "bob", "drain").await;
    assert_eq!(alice.recv().await["user_id"], "bob");

    let signalled = Instant::now();
    g[1].signal("TERM");
    let (status, body) = g[1]
        .get("/ready")
        .await
        .expect("still answering during the drain");
    assert_eq!(status, 503, "{body}");
    assert_eq!(bob.expect_close().await, Some(1001));
    let left = alice.recv_type("user_left").await;
    assert_eq!(left["user_id"], "bob");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "left only after {:?}",
        signalled.elapsed()
    );
    let (code, took) = g[1].wait_exit(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10));

    alice.chat("still works", 0.0, 0.0, "after").await;
    assert_eq!(
        alice.recv().await["type"],
        "ack",
        "the surviving replica is unaffected"
    );
}

#[tokio::test]
async fn redis_restart_turns_not_ready_then_recovers() {
    let mut redis = Redis::start().await;
    let g = replicas(2, GatewayOptions::redis(&redis)).await;
    let (mut alice, _) = join(&g[0], "alice", "outage").await;
    let (mut bob, _) = join(&g[1], "bob", "outage").await;
    assert_eq!(alice.recv().await["user_id"], "bob");

    redis.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = g[0].get("/ready").await.expect("ready");
        if status == 503 {
            assert!(body.contains("failing"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "never turned not-ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    alice.chat("lost?", 0.0, 0.0, "down").await;
    let reply = alice.recv_type("error").await;
    assert_eq!(reply["code"], "unavailable", "{reply}");
    assert_eq!(reply["client_msg_id"], "down");

    redis.restart().await;
    g[0].wait_ready().await;
    g[1].wait_ready().await;
    // Everything Redis held is gone; the next heartbeat puts live connections back. A
    // heartbeat caught in a command that timed out during the outage may take a few seconds.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let (carol, sync) = join(&g[1], "carol", "outage").await;
        carol.close().await;
        if users(&sync) == vec!["alice", "bob", "carol"] {
            break;
        }
        assert!(Instant::now() < deadline, "presence not restored: {sync}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    alice.chat("back", 1.0, 1.0, "up").await;
    assert_eq!(alice.recv_type("ack").await["client_msg_id"], "up");
    assert_eq!(bob.recv_type("chat").await["payload"], "back");
}

#[tokio::test]
async fn offsets_epochs_and_recovery_across_replicas() {
    let redis = Redis::start().await;
    let g = replicas(2, GatewayOptions::redis(&redis)).await;
    scenarios::offsets_epochs_and_recovery_after_a_disconnect(&g[0], &g[1]).await;
}

#[tokio::test]
async fn a_resent_client_msg_id_is_delivered_once_across_replicas() {
    let redis = Redis::start().await;
    let g = replicas(2, GatewayOptions::redis(&redis)).await;
    scenarios::a_resent_client_msg_id_is_delivered_once(&g[0], &g[1]).await;
}

#[tokio::test]
async fn cursors_across_replicas_are_coalesced_never_echoed_and_not_rate_limited() {
    let redis = Redis::start().await;
    let g = replicas(
        2,
        GatewayOptions::redis(&redis).with("CANVASCHAT_RATE_LIMIT_PER_MINUTE", 2),
    )
    .await;
    scenarios::cursors_are_coalesced_never_echoed_and_not_rate_limited(&g[0], &g[1]).await;
}

/// A join is one Redis round trip: the first command the gateway sends about the channel
/// records presence and reads the history together (before, a presence script and then a
/// history read). Watched with MONITOR, which echoes every command Redis runs.
#[tokio::test]
async fn a_join_is_one_redis_round_trip() {
    use tokio::io::AsyncBufReadExt;

    let redis = Redis::start().await;
    let g = Gateway::start(&GatewayOptions::redis(&redis)).await;
    let mut monitor = tokio::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "monitor"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-cli must be installed with redis-server");
    let mut lines =
        tokio::io::BufReader::new(monitor.stdout.take().expect("monitor output")).lines();
    let next_line = async |lines: &mut tokio::io::Lines<_>| {
        tokio::time::timeout(common::WAIT, lines.next_line())
            .await
            .expect("a MONITOR line")
            .expect("MONITOR output")
            .expect("MONITOR still running")
    };
    assert_eq!(next_line(&mut lines).await, "OK");
    let (_client, _sync) = join(&g, "alice", "trip").await;
    let first = loop {
        let line: String = next_line(&mut lines).await;
        if line.contains("{trip}") {
            break line;
        }
    };
    assert!(
        first.contains("canvaschat:{trip}:users") && first.contains("canvaschat:{trip}:meta"),
        "presence and history in one command: {first}"
    );
}
