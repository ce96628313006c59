//! The ceiling: the same fan-out straight through Redis pub/sub, one subscriber connection
//! per receiving client, no WebSocket and no gateway in between.

use std::time::{Duration, Instant};

use fred::prelude::*;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::protocol::Stamp;
use crate::report::{Better, Result};
use crate::stats::{Latencies, Watched, Window, now_us};

#[derive(Debug, Clone)]
pub struct RedisSpec {
    pub scenario: String,
    pub url: String,
    pub channels: usize,
    pub subscribers_per_channel: u32,
    pub rate: f64,
    pub duration: Duration,
    pub payload_size: usize,
    pub watch: Vec<Watched>,
    pub clock_ticks: u64,
}

pub async fn run(spec: RedisSpec) -> std::result::Result<Result, Error> {
    let config = Config::from_url(&spec.url)?;
    let latencies = Latencies::new()?;
    let stop = CancellationToken::new();
    let mut subscribers = Vec::new();
    let mut tasks = Vec::new();
    for channel in 0..spec.channels {
        for _ in 0..spec.subscribers_per_channel {
            let subscriber = Builder::from_config(config.clone()).build_subscriber_client()?;
            subscriber.init().await?;
            let mut messages = subscriber.message_rx();
            subscriber.subscribe(format!("bench-{channel}")).await?;
            let (latencies, stop) = (latencies.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut received = 0u64;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        message = messages.recv() => {
                            let Ok(message) = message else { break };
                            let Some(stamp) = message.value.as_str().and_then(|p| Stamp::decode(&p)) else { continue };
                            latencies.record(now_us().saturating_sub(stamp.sent_us));
                            received += 1;
                        }
                    }
                }
                received
            }));
            subscribers.push(subscriber);
        }
    }
    let publisher = Builder::from_config(config).build()?;
    publisher.init().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let window = Window::start(&spec.watch, spec.clock_ticks);
    let total = (spec.rate * spec.duration.as_secs_f64()).round() as u64;
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / spec.rate.max(1e-3)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + spec.duration + Duration::from_secs(1);
    let mut sent = 0u64;
    for seq in 0..total {
        interval.tick().await;
        if Instant::now() > deadline {
            break;
        }
        let channel = format!("bench-{}", seq as usize % spec.channels.max(1));
        let stamp = Stamp {
            sent_us: now_us(),
            sender: u32::MAX,
            seq,
            replica: 0,
        };
        let _: i64 = publisher
            .publish(channel, stamp.encode(spec.payload_size))
            .await?;
        sent += 1;
    }
    let seconds = window.elapsed().as_secs_f64();
    let usage = window.finish();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let mut received = 0;
    for task in tasks {
        received += task.await?;
    }
    for subscriber in &subscribers {
        let _ = subscriber.quit().await;
    }
    let _ = publisher.quit().await;

    let summary = latencies.summary();
    let expected = sent * u64::from(spec.subscribers_per_channel);
    let mut result = Result::new(&spec.scenario, "redis")
        .metric(
            "delivered msg/s",
            received as f64 / seconds.max(1e-3),
            Better::Higher,
        )
        .metric("p50 ms", summary.p50_ms, Better::Lower)
        .metric("p99 ms", summary.p99_ms, Better::Lower)
        .metric("p999 ms", summary.p999_ms, Better::Lower)
        .metric(
            "delivered / expected %",
            100.0 * received as f64 / expected.max(1) as f64,
            Better::Higher,
        )
        .metric(
            "redis CPU % of a core",
            usage.iter().map(|u| u.cpu_percent).sum(),
            Better::Lower,
        );
    result.details = json!({
        "channels": spec.channels,
        "subscribers_per_channel": spec.subscribers_per_channel,
        "sent": sent,
        "received": received,
        "latency": summary,
        "processes": usage,
    });
    Ok(result)
}
