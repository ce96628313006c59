//! Prometheus metrics served at `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Why a chat frame or a connection was refused.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RejectReason {
    InvalidMessage,
    UnsupportedType,
    TooLarge,
    Binary,
    Unavailable,
    BadRequest,
    Origin,
    ConnectionLimit,
    Draining,
    SlowConsumer,
    /// JWT mode: no, an invalid or an expired token (close 4401).
    Unauthorized,
    /// JWT mode: a channel outside the token's claim (close 4403).
    ForbiddenChannel,
    /// Over `CANVASCHAT_MAX_CONNECTIONS_PER_IP`.
    IpLimit,
    /// Over `CANVASCHAT_INVALID_FRAMES_PER_MINUTE` (close 1008).
    InvalidFlood,
    /// Over `CANVASCHAT_JOINS_PER_MINUTE` (close 1013).
    JoinRate,
}

impl RejectReason {
    const ALL: [RejectReason; 15] = [
        RejectReason::InvalidMessage,
        RejectReason::UnsupportedType,
        RejectReason::TooLarge,
        RejectReason::Binary,
        RejectReason::Unavailable,
        RejectReason::BadRequest,
        RejectReason::Origin,
        RejectReason::ConnectionLimit,
        RejectReason::Draining,
        RejectReason::SlowConsumer,
        RejectReason::Unauthorized,
        RejectReason::ForbiddenChannel,
        RejectReason::IpLimit,
        RejectReason::InvalidFlood,
        RejectReason::JoinRate,
    ];
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: RejectReason,
}

/// The Redis operation that failed.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RedisOp {
    Publish,
    Subscribe,
    Presence,
    Connection,
}

impl RedisOp {
    const ALL: [RedisOp; 4] = [
        RedisOp::Publish,
        RedisOp::Subscribe,
        RedisOp::Presence,
        RedisOp::Connection,
    ];
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: RedisOp,
}

pub struct Metrics {
    registry: Registry,
    pub connections_active: Gauge,
    pub connections_total: Counter,
    pub messages_received: Counter,
    pub messages_published: Counter,
    pub messages_delivered: Counter,
    pub delivery_latency: Histogram,
    pub rate_limited: Counter,
    pub cursors_dropped: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub redis_errors: Family<OpLabel, Counter>,
    pub rebalance_shed: Counter,
    pub rebalance_fleet_mean: Gauge<f64, AtomicU64>,
    pub rebalance_rounds_over: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("canvaschat");
        let connections_active = Gauge::default();
        let connections_total = Counter::default();
        let messages_received = Counter::default();
        let messages_published = Counter::default();
        let messages_delivered = Counter::default();
        // 100 µs .. ~6.5 s: loopback fan-out is sub-millisecond, a struggling Redis is not.
        let delivery_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        let rate_limited = Counter::default();
        let cursors_dropped = Counter::default();
        let rejected = Family::<ReasonLabel, Counter>::default();
        let redis_errors = Family::<OpLabel, Counter>::default();
        let rebalance_shed = Counter::default();
        let rebalance_fleet_mean = Gauge::<f64, AtomicU64>::default();
        let rebalance_rounds_over = Gauge::default();
        registry.register(
            "connections_active",
            "WebSocket connections open on this gateway",
            connections_active.clone(),
        );
        registry.register(
            "connections",
            "WebSocket connections accepted",
            connections_total.clone(),
        );
        registry.register(
            "messages_received",
            "Valid chat messages received from clients",
            messages_received.clone(),
        );
        registry.register(
            "messages_published",
            "Chat messages published to the broker",
            messages_published.clone(),
        );
        registry.register(
            "messages_delivered",
            "Frames from the broker queued to local WebSocket clients",
            messages_delivered.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from publish to queueing on a receiving connection",
            delivery_latency.clone(),
        );
        registry.register(
            "messages_rate_limited",
            "Chat messages refused by the per-user rate limit",
            rate_limited.clone(),
        );
        registry.register(
            "cursor_frames_dropped",
            "Cursor frames not queued to a client whose queue was half full",
            cursors_dropped.clone(),
        );
        registry.register(
            "rejected",
            "Frames and connections refused, by reason",
            rejected.clone(),
        );
        registry.register(
            "redis_errors",
            "Failed Redis operations, by operation",
            redis_errors.clone(),
        );
        registry.register(
            "rebalance_shed",
            "Connections closed with 4000 so they reconnect to a replica below its share",
            rebalance_shed.clone(),
        );
        registry.register(
            "rebalance_fleet_mean",
            "Mean WebSocket connections per gateway replica, as last read from Redis",
            rebalance_fleet_mean.clone(),
        );
        registry.register(
            "rebalance_rounds_over",
            "Rebalancing rounds in a row this gateway has held more than its share of the connections",
            rebalance_rounds_over.clone(),
        );
        // Every label starts at zero so dashboards and alerts see the series before the
        // first failure.
        for reason in RejectReason::ALL {
            let _ = rejected.get_or_create(&ReasonLabel { reason });
        }
        for op in RedisOp::ALL {
            let _ = redis_errors.get_or_create(&OpLabel { op });
        }
        Metrics {
            registry,
            connections_active,
            connections_total,
            messages_received,
            messages_published,
            messages_delivered,
            delivery_latency,
            rate_limited,
            cursors_dropped,
            rejected,
            redis_errors,
            rebalance_shed,
            rebalance_fleet_mean,
            rebalance_rounds_over,
        }
    }
}

impl Metrics {
    pub fn reject(&self, reason: RejectReason) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn redis_error(&self, op: RedisOp) {
        self.redis_errors.get_or_create(&OpLabel { op }).inc();
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_family() {
        let m = Metrics::default();
        m.connections_active.inc();
        m.reject(RejectReason::TooLarge);
        m.redis_error(RedisOp::Publish);
        m.delivery_latency.observe(0.002);
        let text = m.render().unwrap();
        for name in [
            "canvaschat_connections_active 1",
            "canvaschat_connections_total 0",
            "canvaschat_messages_received_total",
            "canvaschat_messages_published_total",
            "canvaschat_messages_delivered_total",
            "canvaschat_delivery_latency_seconds_bucket",
            "canvaschat_messages_rate_limited_total",
            "canvaschat_rejected_total{reason=\"TooLarge\"} 1",
            "canvaschat_redis_errors_total{op=\"Publish\"} 1",
            "canvaschat_rebalance_shed_total 0",
            "canvaschat_rebalance_fleet_mean 0",
            "canvaschat_rebalance_rounds_over 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
