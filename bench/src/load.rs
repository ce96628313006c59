//! Chat load across replicas: N clients in C channels, a fixed send rate, latency of every
//! delivery; optionally a SIGTERM to one replica mid-run to measure its drain.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::client::{self, Outcome, Recorders, Role};
use crate::protocol::Target;
use crate::report::{Better, Result};
use crate::stats::{Latencies, LatencySummary, Watched, Window, is_running, now_us};

/// The watched process that is Redis: its CPU is reported apart from the servers'.
pub const REDIS_PROCESS: &str = "redis";

/// How many chat commands may wait for one client before the rate loop skips it.
const COMMAND_QUEUE: usize = 64;

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub scenario: String,
    pub target: Target,
    pub urls: Vec<String>,
    pub clients: u32,
    pub channels: usize,
    /// The first `senders` clients send, in turn.
    pub senders: u32,
    /// Messages sent per second, all senders together.
    pub rate: f64,
    pub duration: Duration,
    pub payload_size: usize,
    pub connect_timeout: Duration,
    pub connect_concurrency: usize,
    pub watch: Vec<Watched>,
    pub clock_ticks: u64,
    pub drain: Option<DrainSpec>,
}

/// Send SIGTERM to `pid` (serving replica `replica`) `after` the load started.
#[derive(Debug, Clone)]
pub struct DrainSpec {
    pub pid: u32,
    pub replica: u32,
    pub after: Duration,
}

pub fn roles(spec: &LoadSpec) -> Vec<Role> {
    let replicas = u32::try_from(spec.urls.len().max(1)).unwrap_or(u32::MAX);
    (0..spec.clients)
        .map(|index| {
            let channels = u32::try_from(spec.channels.max(1)).unwrap_or(u32::MAX);
            let channel = (index % channels) as usize;
            // Members of one channel alternate replicas, whatever the number of channels.
            Role {
                index,
                replica: (index / channels) % replicas,
                channel,
                channel_name: format!("bench-{channel}"),
                payload_size: spec.payload_size,
                track: spec.drain.is_some(),
            }
        })
        .collect()
}

pub async fn run(spec: LoadSpec) -> std::result::Result<Result, Error> {
    let roles = roles(&spec);
    let members = roles.iter().fold(HashMap::new(), |mut counts, role| {
        *counts.entry(role.channel).or_insert(0u64) += 1;
        counts
    });

    // The gateway de-duplicates a user's client_msg_id within its history window, so every
    // run (e.g. each saturation step) needs user ids of its own.
    let run_id = now_us() % 1_000_000_000;
    let connect_started = Instant::now();
    let opened: Vec<std::result::Result<(Role, client::Ws), Error>> =
        futures::stream::iter(roles.into_iter().map(|role| {
            let url = &spec.urls[role.replica as usize];
            async move {
                let uid = format!("u{}-{run_id}", role.index);
                client::open(
                    spec.target,
                    url,
                    &uid,
                    &role.channel_name,
                    spec.connect_timeout,
                )
                .await
                .map(|ws| (role, ws))
            }
        }))
        .buffer_unordered(spec.connect_concurrency.max(1))
        .collect()
        .await;
    let connect_seconds = connect_started.elapsed().as_secs_f64();

    let recorders = Recorders {
        all: Latencies::new()?,
        cross_replica: Latencies::new()?,
    };
    let stop = CancellationToken::new();
    let mut senders: Vec<(u32, mpsc::Sender<u64>)> = Vec::new();
    let mut tasks = Vec::new();
    for opened in opened {
        let (role, ws) = opened?;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        if role.index < spec.senders {
            senders.push((role.index, tx));
        }
        tasks.push(tokio::spawn(client::run(
            ws,
            spec.target,
            role,
            rx,
            stop.clone(),
            recorders.clone(),
        )));
    }
    senders.sort_by_key(|(index, _)| *index);
    // Let join/presence traffic of the ramp settle before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let window = Window::start(&spec.watch, spec.clock_ticks);
    let drain = spec
        .drain
        .clone()
        .map(|drain| tokio::spawn(drain_replica(drain)));
    let skipped = send_at_rate(&spec, &senders).await;
    let send_seconds = window.elapsed().as_secs_f64();
    let usage = window.finish();
    // Deliveries still in flight when sending stops count too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    drop(senders);
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await?);
    }
    let drained = match drain {
        Some(task) => Some(task.await??),
        None => None,
    };

    let sent: u64 = outcomes.iter().map(|o| o.sent).sum();
    let expected: u64 = outcomes
        .iter()
        .map(|o| o.sent * members[&o.channel].saturating_sub(1))
        .sum();
    let received: u64 = outcomes.iter().map(|o| o.received).sum();
    let acks: u64 = outcomes.iter().map(|o| o.acks).sum();
    let mut errors: HashMap<String, u64> = HashMap::new();
    for (code, count) in outcomes.iter().flat_map(|o| o.errors.iter()) {
        *errors.entry(code.clone()).or_default() += count;
    }
    let latency = recorders.all.summary();
    let cross = recorders.cross_replica.summary();
    let delivered_per_second = received as f64 / send_seconds.max(1e-3);
    let (redis, servers): (Vec<_>, Vec<_>) = usage.iter().partition(|u| u.name == REDIS_PROCESS);
    let server_cpu: f64 = servers.iter().map(|u| u.cpu_percent).sum();
    let server_rss: f64 = servers.iter().map(|u| u.rss_end_mib).sum();
    let redis_cpu: f64 = redis.iter().map(|u| u.cpu_percent).sum();

    let system = match spec.target {
        Target::Gateway => "canvaschat",
        Target::Centrifugo => "centrifugo",
    };
    // Across replicas is the figure the issue asks for; one replica has no such deliveries.
    let headline: LatencySummary = if cross.count > 0 { cross } else { latency };
    let mut details = json!({
        "clients": spec.clients,
        "channels": spec.channels,
        "senders": spec.senders,
        "replicas": spec.urls.len(),
        "rate_per_second": spec.rate,
        "payload_bytes": spec.payload_size,
        "connect_seconds": connect_seconds,
        "send_seconds": send_seconds,
        "sent": sent,
        "skipped_busy_sender": skipped,
        "acks": acks,
        "expected_deliveries": expected,
        "received": received,
        "errors": errors,
        "latency_all": latency,
        "latency_cross_replica": cross,
        "processes": usage,
    });
    let mut result = Result::new(&spec.scenario, system);
    if let Some(drained) = &drained {
        let lost = count_lost(&outcomes, drained, &spec);
        result = result
            .metric("drain time s", drained.drain_seconds, Better::Lower)
            .metric("acked messages lost", lost.total() as f64, Better::Lower)
            .metric("delivered msg/s", delivered_per_second, Better::Higher);
        details["lost"] = lost.as_json();
        details["drain"] = drained.as_json();
    } else {
        result = result
            .metric("delivered msg/s", delivered_per_second, Better::Higher)
            .metric("p50 ms", headline.p50_ms, Better::Lower)
            .metric("p99 ms", headline.p99_ms, Better::Lower)
            .metric("p999 ms", headline.p999_ms, Better::Lower)
            .metric(
                "delivered / expected %",
                100.0 * received as f64 / (expected.max(1)) as f64,
                Better::Higher,
            )
            .metric("server CPU % of a core", server_cpu, Better::Lower)
            .metric("server RSS MiB", server_rss, Better::Lower)
            .metric("redis CPU % of a core", redis_cpu, Better::Lower)
            .metric(
                "redis CPU ms per 1,000 delivered",
                cpu_ms_per_thousand(redis_cpu, send_seconds, received),
                Better::Lower,
            );
    }
    result.details = details;
    Ok(result)
}

/// CPU time of a process per 1,000 events, from its CPU share over a window.
pub fn cpu_ms_per_thousand(cpu_percent: f64, seconds: f64, events: u64) -> f64 {
    cpu_percent / 100.0 * seconds * 1_000.0 * 1_000.0 / (events.max(1)) as f64
}

/// Hands out `rate × duration` send commands round-robin over the senders, on schedule.
/// Returns how many were skipped because a sender still had a full queue.
async fn send_at_rate(spec: &LoadSpec, senders: &[(u32, mpsc::Sender<u64>)]) -> u64 {
    if senders.is_empty() || spec.rate <= 0.0 {
        tokio::time::sleep(spec.duration).await;
        return 0;
    }
    let total = (spec.rate * spec.duration.as_secs_f64()).round() as u64;
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / spec.rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + spec.duration + Duration::from_secs(1);
    let mut seqs = vec![0u64; senders.len()];
    let mut skipped = 0;
    for n in 0..total {
        interval.tick().await;
        if Instant::now() > deadline {
            break;
        }
        let slot = (n % senders.len() as u64) as usize;
        let (_, tx) = &senders[slot];
        match tx.try_send(seqs[slot]) {
            Ok(()) => seqs[slot] += 1,
            // A sender closed by a draining replica stays closed; others may be busy.
            Err(_) => skipped += 1,
        }
    }
    skipped
}

/// What the drained replica did.
#[derive(Debug)]
pub struct Drained {
    pub sigterm_us: u64,
    pub drain_seconds: f64,
}

impl Drained {
    fn as_json(&self) -> serde_json::Value {
        json!({"sigterm_us": self.sigterm_us, "drain_seconds": self.drain_seconds})
    }
}

async fn drain_replica(spec: DrainSpec) -> std::result::Result<Drained, Error> {
    tokio::time::sleep(spec.after).await;
    let sigterm_us = now_us();
    let started = Instant::now();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &spec.pid.to_string()])
        .status()
        .await?;
    if !status.success() {
        return Err(Error::Signal { pid: spec.pid });
    }
    // Bounded: the gateway's grace period is 25 s by default; give up after 60 s.
    while is_running(spec.pid) && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Drained {
        sigterm_us,
        drain_seconds: started.elapsed().as_secs_f64(),
    })
}

#[derive(Debug, Default)]
pub struct Lost {
    /// Acked messages missing at receivers on replicas that kept running.
    pub on_surviving: u64,
    /// Messages acked before the SIGTERM missing at receivers on the drained replica.
    pub on_drained: u64,
    pub checked: u64,
}

impl Lost {
    pub fn total(&self) -> u64 {
        self.on_surviving + self.on_drained
    }

    fn as_json(&self) -> serde_json::Value {
        json!({"on_surviving": self.on_surviving, "on_drained": self.on_drained, "checked_pairs": self.checked})
    }
}

/// Every acked message must reach every other client of its channel; those on the drained
/// replica only need the ones acked before the SIGTERM (later ones race the close).
pub fn count_lost(outcomes: &[Outcome], drained: &Drained, spec: &LoadSpec) -> Lost {
    let drained_replica = spec.drain.as_ref().map(|d| d.replica);
    let mut lost = Lost::default();
    for receiver in outcomes {
        let on_drained = Some(receiver.replica) == drained_replica;
        for sender in outcomes {
            if sender.index == receiver.index || sender.channel != receiver.channel {
                continue;
            }
            for &(seq, acked_us) in &sender.acked {
                if on_drained && acked_us >= drained.sigterm_us {
                    continue;
                }
                lost.checked += 1;
                if !receiver.seen.contains(&(sender.index, seq)) {
                    if on_drained {
                        lost.on_drained += 1;
                    } else {
                        lost.on_surviving += 1;
                    }
                }
            }
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(clients: u32, channels: usize, replicas: usize) -> LoadSpec {
        LoadSpec {
            scenario: "t".to_owned(),
            target: Target::Gateway,
            urls: (0..replicas)
                .map(|r| format!("ws://127.0.0.1:{}", 9000 + r))
                .collect(),
            clients,
            channels,
            senders: 1,
            rate: 10.0,
            duration: Duration::from_secs(1),
            payload_size: 64,
            connect_timeout: Duration::from_secs(1),
            connect_concurrency: 1,
            watch: Vec::new(),
            clock_ticks: 100,
            drain: Some(DrainSpec {
                pid: 1,
                replica: 1,
                after: Duration::from_secs(1),
            }),
        }
    }

    #[test]
    fn cpu_per_thousand_events() {
        // Half a core for 4 s is 2,000 ms of CPU; over 10,000 events that is 200 ms per 1,000.
        assert!((cpu_ms_per_thousand(50.0, 4.0, 10_000) - 200.0).abs() < 1e-9);
        // No events: divided by one, not by zero.
        assert!(cpu_ms_per_thousand(50.0, 4.0, 0).is_finite());
    }

    #[test]
    fn clients_alternate_replicas_and_spread_over_channels() {
        let two_channels = roles(&spec(8, 2, 2));
        let placed: Vec<(u32, usize)> = two_channels
            .iter()
            .map(|r| (r.replica, r.channel))
            .collect();
        assert_eq!(
            placed,
            vec![
                (0, 0),
                (0, 1),
                (1, 0),
                (1, 1),
                (0, 0),
                (0, 1),
                (1, 0),
                (1, 1)
            ]
        );
        let one_channel: Vec<u32> = roles(&spec(4, 1, 2)).iter().map(|r| r.replica).collect();
        assert_eq!(one_channel, vec![0, 1, 0, 1]);
        assert!(two_channels.iter().all(|r| r.track));
    }

    #[test]
    fn loss_counts_only_what_was_acked_in_time() {
        let spec = spec(3, 1, 2);
        let sender = Outcome {
            index: 0,
            replica: 0,
            acked: vec![(0, 100), (1, 200), (2, 300)],
            ..Outcome::default()
        };
        // On the drained replica: got seq 0, missed 1 (acked before SIGTERM at 250), not 2.
        let drained_receiver = Outcome {
            index: 1,
            replica: 1,
            seen: [(0, 0)].into_iter().collect(),
            ..Outcome::default()
        };
        // On the surviving replica: missed seq 2.
        let surviving_receiver = Outcome {
            index: 2,
            replica: 0,
            seen: [(0, 0), (0, 1)].into_iter().collect(),
            ..Outcome::default()
        };
        let lost = count_lost(
            &[sender, drained_receiver, surviving_receiver],
            &Drained {
                sigterm_us: 250,
                drain_seconds: 0.1,
            },
            &spec,
        );
        assert_eq!(
            (lost.on_drained, lost.on_surviving, lost.checked),
            (1, 1, 5)
        );
    }
}
