//! Idle connections on one server: what each one costs in resident memory.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::Error;
use crate::client;
use crate::protocol::Target;
use crate::report::{Better, Result};
use crate::stats::{Watched, sample};

#[derive(Debug, Clone)]
pub struct IdleSpec {
    pub scenario: String,
    pub target: Target,
    pub url: String,
    pub connections: u32,
    pub channels: usize,
    pub hold: Duration,
    pub connect_timeout: Duration,
    pub connect_concurrency: usize,
    pub server: Watched,
}

pub async fn run(spec: IdleSpec) -> std::result::Result<Result, Error> {
    let before = sample(spec.server.pid).ok_or(Error::Gone {
        pid: spec.server.pid,
    })?;
    let started = Instant::now();
    let opened: Vec<std::result::Result<client::Ws, Error>> =
        futures::stream::iter(0..spec.connections)
            .map(|index| {
                let channel = format!("idle-{}", index as usize % spec.channels.max(1));
                let url = spec.url.clone();
                async move {
                    client::open(
                        spec.target,
                        &url,
                        &format!("idle{index}"),
                        &channel,
                        spec.connect_timeout,
                    )
                    .await
                }
            })
            .buffer_unordered(spec.connect_concurrency.max(1))
            .collect()
            .await;
    let connect_seconds = started.elapsed().as_secs_f64();
    let failed = opened.iter().filter(|o| o.is_err()).count();
    let first_error = opened
        .iter()
        .find_map(|o| o.as_ref().err().map(ToString::to_string));
    let sockets: Vec<client::Ws> = opened
        .into_iter()
        .filter_map(std::result::Result::ok)
        .collect();
    // Let allocations from the ramp settle before reading memory.
    tokio::time::sleep(spec.hold).await;
    let after = sample(spec.server.pid).ok_or(Error::Gone {
        pid: spec.server.pid,
    })?;
    let open = sockets.len() as f64;
    drop(sockets);

    let grown_kib = after.rss_kib.saturating_sub(before.rss_kib) as f64;
    let system = match spec.target {
        Target::Gateway => "canvaschat",
        Target::Centrifugo => "centrifugo",
    };
    let mut result = Result::new(&spec.scenario, system)
        .metric("connections open", open, Better::Higher)
        .metric(
            "KiB RSS per connection",
            grown_kib / open.max(1.0),
            Better::Lower,
        )
        .metric(
            "server RSS MiB",
            after.rss_kib as f64 / 1024.0,
            Better::Lower,
        )
        .metric(
            "connects/s",
            open / connect_seconds.max(1e-3),
            Better::Higher,
        );
    result.details = json!({
        "requested": spec.connections,
        "failed": failed,
        "first_error": first_error,
        "rss_before_kib": before.rss_kib,
        "rss_after_kib": after.rss_kib,
        "connect_seconds": connect_seconds,
    });
    Ok(result)
}
