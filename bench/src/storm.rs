//! Connect/disconnect storm: how many joins per second a server takes, each one a full
//! connect until the server confirms the channel (for CanvasChat: presence written and the
//! user list read from Redis), followed by a clean close.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::Error;
use crate::client;
use crate::load::{REDIS_PROCESS, cpu_ms_per_thousand};
use crate::protocol::Target;
use crate::report::{Better, Result};
use crate::stats::{Latencies, Watched, Window};

#[derive(Debug, Clone)]
pub struct StormSpec {
    pub scenario: String,
    pub target: Target,
    pub urls: Vec<String>,
    pub workers: u32,
    pub channels: usize,
    pub max_joins: u64,
    pub duration: Duration,
    pub connect_timeout: Duration,
    pub watch: Vec<Watched>,
    pub clock_ticks: u64,
}

pub async fn run(spec: StormSpec) -> std::result::Result<Result, Error> {
    let latencies = Latencies::new()?;
    let window = Window::start(&spec.watch, spec.clock_ticks);
    let deadline = Instant::now() + spec.duration;
    let per_worker = spec.max_joins.div_ceil(u64::from(spec.workers.max(1)));
    let mut tasks = Vec::new();
    for worker in 0..spec.workers {
        let spec = spec.clone();
        let latencies = latencies.clone();
        tasks.push(tokio::spawn(async move {
            let (mut joins, mut failures) = (0u64, 0u64);
            for k in 0..per_worker {
                if Instant::now() >= deadline {
                    break;
                }
                let url = &spec.urls[(worker as usize + k as usize) % spec.urls.len()];
                let channel = format!(
                    "storm-{}",
                    (worker as usize + k as usize) % spec.channels.max(1)
                );
                let started = Instant::now();
                match client::open(
                    spec.target,
                    url,
                    &format!("s{worker}x{k}"),
                    &channel,
                    spec.connect_timeout,
                )
                .await
                {
                    Ok(mut ws) => {
                        latencies.record(
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                        );
                        joins += 1;
                        // A clean close so the server runs its leave path, as a browser would.
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            let _ = ws.close(None).await;
                            while ws.next().await.is_some() {}
                        })
                        .await;
                    }
                    Err(_) => failures += 1,
                }
            }
            (joins, failures)
        }));
    }
    let (mut joins, mut failures) = (0u64, 0u64);
    for task in tasks {
        let (j, f) = task.await?;
        joins += j;
        failures += f;
    }
    let seconds = window.elapsed().as_secs_f64();
    let usage = window.finish();
    let summary = latencies.summary();
    let system = match spec.target {
        Target::Gateway => "canvaschat",
        Target::Centrifugo => "centrifugo",
    };
    let redis_cpu: f64 = usage
        .iter()
        .filter(|u| u.name == REDIS_PROCESS)
        .map(|u| u.cpu_percent)
        .sum();
    let mut result = Result::new(&spec.scenario, system)
        .metric("joins/s", joins as f64 / seconds.max(1e-3), Better::Higher)
        .metric("join p50 ms", summary.p50_ms, Better::Lower)
        .metric("join p99 ms", summary.p99_ms, Better::Lower)
        .metric(
            "server CPU % of a core",
            usage
                .iter()
                .filter(|u| u.name != REDIS_PROCESS)
                .map(|u| u.cpu_percent)
                .sum(),
            Better::Lower,
        )
        .metric("redis CPU % of a core", redis_cpu, Better::Lower)
        .metric(
            "redis CPU ms per 1,000 joins",
            cpu_ms_per_thousand(redis_cpu, seconds, joins),
            Better::Lower,
        );
    result.details = json!({
        "workers": spec.workers,
        "channels": spec.channels,
        "joins": joins,
        "failures": failures,
        "seconds": seconds,
        "latency": summary,
        "processes": usage,
    });
    Ok(result)
}
