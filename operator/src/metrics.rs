//! Prometheus metrics and the small HTTP server for /metrics, /healthz and /readyz.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Labels = Vec<(String, String)>;

/// Reconcile metrics, shared by the controller and the HTTP server.
pub struct Metrics {
    registry: Registry,
    reconciliations: Counter,
    failures: Family<Labels, Counter>,
    duration: Histogram,
    phases: Family<Labels, Histogram>,
    leader: Gauge,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("canvaschat_operator");
        let reconciliations = Counter::default();
        let failures = Family::<Labels, Counter>::default();
        // 5 ms .. ~20 s
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        // 1 ms .. ~16 s
        let phases = Family::<Labels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 15))) as fn() -> Histogram,
        );
        let leader = Gauge::default();
        registry.register(
            "reconciliations",
            "CanvasChat reconciles started",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "CanvasChat reconciles that failed, by error kind",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time taken by one CanvasChat reconcile",
            duration.clone(),
        );
        registry.register(
            "reconcile_phase_duration_seconds",
            "Time taken by one phase of a CanvasChat reconcile (delete, apply, optional, gc, status)",
            phases.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease and reconciles",
            leader.clone(),
        );
        Self {
            registry,
            reconciliations,
            failures,
            duration,
            phases,
            leader,
            ready: AtomicBool::new(false),
        }
    }

    /// Count a reconcile; its duration is recorded when the returned guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciliations.inc();
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    /// Run `work`, recording how long it took as reconcile phase `phase`.
    pub async fn phase<F: Future>(&self, phase: &'static str, work: F) -> F::Output {
        let start = Instant::now();
        let output = work.await;
        self.phases
            .get_or_create(&vec![("phase".to_owned(), phase.to_owned())])
            .observe(start.elapsed().as_secs_f64());
        output
    }

    pub fn reconcile_failed(&self, kind: &str) {
        self.failures
            .get_or_create(&vec![("kind".to_owned(), kind.to_owned())])
            .inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .observe(self.start.elapsed().as_secs_f64());
    }
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready once the API server answered and the CRD is installed. A standby replica waiting
/// for the lease is ready too: it is healthy and takes over when the leader goes.
async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

/// Bind `addr` and serve until `stop` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok(tokio::spawn(async move {
        axum::serve(listener, router(metrics))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_encoded() {
        let m = Metrics::new();
        drop(m.reconcile_started());
        m.reconcile_failed("apply");
        m.set_leader(true);
        assert_eq!(
            futures::executor::block_on(m.phase("apply", async { 7 })),
            7
        );
        let text = m.encode().expect("encodes");
        assert!(
            text.contains("canvaschat_operator_reconciliations_total 1"),
            "{text}"
        );
        assert!(
            text.contains("canvaschat_operator_reconcile_errors_total{kind=\"apply\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("canvaschat_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("canvaschat_operator_leader 1"), "{text}");
        assert!(
            text.contains(
                "canvaschat_operator_reconcile_phase_duration_seconds_count{phase=\"apply\"} 1"
            ),
            "{text}"
        );
    }
}
