//! Rebalancing with real gateway processes on one real Redis: a replica added next to a
//! loaded one gets its share, moved clients lose nothing, and nothing moves when
//! rebalancing is off or the loaded replica is draining.

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use canvaschat_gateway::rebalance::SUSTAIN_ROUNDS;
use common::{Client, Event, Gateway, GatewayOptions, Redis, history_offsets, join};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const REBALANCE: u16 = 4000;
const GOING_AWAY: u16 = 1001;

/// The replicas behind a Service: reconnects go to them round-robin.
struct Service {
    replicas: Mutex<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl Service {
    fn new(first: SocketAddr) -> Arc<Self> {
        Arc::new(Service {
            replicas: Mutex::new(vec![first]),
            next: AtomicUsize::new(0),
        })
    }

    fn add(&self, replica: SocketAddr) {
        self.replicas.lock().expect("lock").push(replica);
    }

    fn pick(&self) -> SocketAddr {
        let replicas = self.replicas.lock().expect("lock");
        replicas[self.next.fetch_add(1, Ordering::Relaxed) % replicas.len()]
    }
}

fn url(replica: SocketAddr, uid: &str, channel: &str) -> String {
    format!("ws://{replica}/api/chat?uid={uid}&channel={channel}")
}

/// A reader that reconnects through the Service with `since`/`epoch` whenever it is closed
/// with 4000, until it holds offset `until`; returns the offsets it was given, in order,
/// and how often it was moved.
async fn follow(
    service: Arc<Service>,
    uid: String,
    channel: String,
    mut until: watch::Receiver<u64>,
) -> (Vec<u64>, usize) {
    let mut offsets: Vec<u64> = Vec::new();
    let mut position: Option<(u64, String)> = None;
    let mut moves = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    'reconnect: loop {
        let mut target = url(service.pick(), &uid, &channel);
        if let Some((offset, epoch)) = &position {
            target.push_str(&format!("&since={offset}&epoch={epoch}"));
        }
        let mut client = Client::connect(&target).await;
        loop {
            assert!(Instant::now() < deadline, "{uid}: never caught up");
            if offsets
                .last()
                .is_some_and(|last| last >= &*until.borrow_and_update())
            {
                client.close().await;
                return (offsets, moves);
            }
            let event = tokio::select! {
                event = client.next_event(Duration::from_secs(10)) => event,
                _ = until.changed() => continue,
            };
            match event {
                Event::Frame(frame) => match frame["type"].as_str() {
                    Some("user_sync") => {
                        let epoch = frame["epoch"].as_str().expect("epoch").to_owned();
                        let offset = frame["offset"].as_u64().expect("offset");
                        position.get_or_insert((offset, epoch));
                    }
                    Some("history") => {
                        if moves > 0 {
                            assert_eq!(frame["recovered"], true, "{uid}: {frame}");
                        }
                        offsets.extend(history_offsets(&frame));
                    }
                    Some("chat") => offsets.push(frame["offset"].as_u64().expect("offset")),
                    _ => {}
                },
                Event::Closed(code) => {
                    assert_eq!(code, Some(REBALANCE), "{uid}: closed for another reason");
                    moves += 1;
                    if let (Some(last), Some((offset, _))) = (offsets.last(), &mut position) {
                        *offset = *last;
                    }
                    continue 'reconnect;
                }
                Event::Timeout => panic!("{uid}: no frame for 10 s, holding {offsets:?}"),
            }
        }
    }
}

/// Sends a chat message every 100 ms until `stop`, resending one whose ack a 4000 close
/// cut off (same `client_msg_id`) after reconnecting through the Service; returns the
/// acknowledged offsets and how often it was moved.
async fn send_steadily(
    service: Arc<Service>,
    uid: String,
    channel: String,
    stop: CancellationToken,
) -> (Vec<u64>, usize) {
    let mut acked = Vec::new();
    let mut moves = 0;
    let mut client = Client::connect(&url(service.pick(), &uid, &channel)).await;
    let mut i = 0;
    while !stop.is_cancelled() {
        i += 1;
        let id = format!("m{i}");
        'resend: loop {
            client.chat(&id, 0.0, 0.0, &id).await;
            loop {
                match client.next_event(Duration::from_secs(10)).await {
                    Event::Frame(frame) if frame["type"] == "ack" => {
                        assert_eq!(frame["client_msg_id"], id.as_str(), "{frame}");
                        acked.push(frame["offset"].as_u64().expect("offset"));
                        break 'resend;
                    }
                    Event::Frame(_) => {}
                    Event::Closed(code) => {
                        assert_eq!(code, Some(REBALANCE), "{uid}: closed for another reason");
                        moves += 1;
                        client = Client::connect(&url(service.pick(), &uid, &channel)).await;
                        continue 'resend;
                    }
                    Event::Timeout => panic!("{uid}: no ack for {id}"),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.close().await;
    (acked, moves)
}

/// A gauge or counter of the gateway's `/metrics`.
async fn metric(gateway: &Gateway, name: &str) -> f64 {
    let text = gateway.metrics().await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

async fn connections(gateway: &Gateway) -> usize {
    metric(gateway, "canvaschat_connections_active").await as usize
}

/// Polls `condition` every 100 ms until it holds, failing after `limit`.
async fn wait_for<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn options(redis: &Redis) -> GatewayOptions {
    GatewayOptions::redis(redis)
        .with("CANVASCHAT_RATE_LIMIT_PER_MINUTE", 100_000)
        .with("CANVASCHAT_REBALANCE", "true")
}

#[tokio::test]
async fn a_new_replica_gets_its_share_and_moved_clients_lose_nothing() {
    const CHANNELS: usize = 4;
    const READERS: usize = 20;
    const TOTAL: usize = CHANNELS * (READERS + 1);
    let redis = Redis::start().await;
    let g0 = Gateway::start(&options(&redis)).await;
    let service = Service::new(g0.addr);
    let stop = CancellationToken::new();
    let mut readers = Vec::new();
    let mut targets = Vec::new();
    for c in 0..CHANNELS {
        let (target, until) = watch::channel(u64::MAX);
        targets.push(target);
        for r in 0..READERS {
            readers.push((
                c,
                tokio::spawn(follow(
                    service.clone(),
                    format!("r{c}x{r}"),
                    format!("room{c}"),
                    until.clone(),
                )),
            ));
        }
    }
    wait_for(Duration::from_secs(20), "the readers", || async {
        connections(&g0).await == CHANNELS * READERS
    })
    .await;
    let senders: Vec<_> = (0..CHANNELS)
        .map(|c| {
            tokio::spawn(send_steadily(
                service.clone(),
                format!("sender{c}"),
                format!("room{c}"),
                stop.clone(),
            ))
        })
        .collect();
    wait_for(Duration::from_secs(10), "the senders", || async {
        connections(&g0).await == TOTAL
    })
    .await;

    let g1 = Gateway::start(&options(&redis)).await;
    service.add(g1.addr);
    let started = Instant::now();
    // Fair: within the tolerance (0.2) of the mean, so each holds at least 40 %.
    let fair = (TOTAL * 2).div_ceil(5);
    wait_for(Duration::from_secs(60), "a fair share on both", || async {
        let (a, b) = (connections(&g0).await, connections(&g1).await);
        a + b == TOTAL && a >= fair && b >= fair
    })
    .await;
    let took = started.elapsed();
    // Some more traffic on the balanced fleet, then the final offsets.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let mut moved = 0;
    let mut finals = Vec::new();
    for (c, sender) in senders.into_iter().enumerate() {
        let (acked, moves) = sender.await.expect("sender");
        moved += moves;
        assert_eq!(
            acked,
            (1..=acked.len() as u64).collect::<Vec<_>>(),
            "room{c}: one offset per message, consecutive"
        );
        targets[c].send_replace(acked.len() as u64);
        finals.push(acked.len() as u64);
    }
    for (c, reader) in readers {
        let (offsets, moves) = reader.await.expect("reader");
        moved += moves;
        assert_eq!(
            offsets,
            (1..=finals[c]).collect::<Vec<_>>(),
            "room{c}: every acknowledged offset, in order, once"
        );
    }
    let shed = [
        metric(&g0, "canvaschat_rebalance_shed_total").await as usize,
        metric(&g1, "canvaschat_rebalance_shed_total").await as usize,
    ];
    assert_eq!(shed[0] + shed[1], moved, "every 4000 close is counted");
    assert!(moved >= TOTAL / 2 - TOTAL / 10, "moved only {moved}");
    println!(
        "rebalance: the new replica held its share ({fair}+ of {TOTAL}) after {:.1} s; {moved} connections moved ({} by the loaded replica, {} by the new one), {:.1}/s",
        took.as_secs_f64(),
        shed[0],
        shed[1],
        moved as f64 / took.as_secs_f64()
    );
}

/// Connects `n` clients to `gateway` over three channels.
async fn load(gateway: &Gateway, n: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        clients.push(
            join(gateway, &format!("u{i}"), &format!("room{}", i % 3))
                .await
                .0,
        );
    }
    clients
}

/// Waits until `gateway` has been above its share (so it has read the second replica's
/// count) for a round more than it takes to shed: a replica that rebalanced would have
/// finished its first shedding round, and counted it, by then.
async fn wait_past_sustain(gateway: &Gateway) {
    wait_for(
        Duration::from_secs(15),
        "rounds above the share",
        || async {
            metric(gateway, "canvaschat_rebalance_rounds_over").await > SUSTAIN_ROUNDS as f64
        },
    )
    .await;
}

#[tokio::test]
async fn with_rebalancing_off_nothing_moves() {
    const CLIENTS: usize = 30;
    let redis = Redis::start().await;
    let g0 = Gateway::start(&options(&redis).with("CANVASCHAT_REBALANCE", "false")).await;
    let clients = load(&g0, CLIENTS).await;
    let g1 = Gateway::start(&options(&redis)).await;
    wait_past_sustain(&g0).await;
    assert_eq!(metric(&g0, "canvaschat_rebalance_shed_total").await, 0.0);
    assert_eq!(connections(&g0).await, CLIENTS);
    assert_eq!(connections(&g1).await, 0);
    drop(clients);
}

#[tokio::test]
async fn a_draining_replica_does_not_shed_by_rebalance() {
    const CLIENTS: usize = 30;
    let redis = Redis::start().await;
    let g0 = Gateway::start(
        &options(&redis)
            // Long enough for the new replica to start and the streak to pass SUSTAIN_ROUNDS.
            .with("CANVASCHAT_DRAIN_DELAY_SECONDS", 12)
            .with("CANVASCHAT_SHUTDOWN_GRACE_SECONDS", 18),
    )
    .await;
    let mut clients = load(&g0, CLIENTS).await;
    g0.signal("TERM");
    let _g1 = Gateway::start(&options(&redis)).await;
    wait_past_sustain(&g0).await;
    assert_eq!(metric(&g0, "canvaschat_rebalance_shed_total").await, 0.0);
    assert_eq!(connections(&g0).await, CLIENTS);
    // Each one leaves with the drain, not with a rebalance.
    for client in &mut clients {
        assert_eq!(client.expect_close().await, Some(GOING_AWAY));
    }
}
