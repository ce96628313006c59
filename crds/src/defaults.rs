//! Documented defaults of every CanvasChat field. Serde fills them when reading an object;
//! the CRD schema carries none (see `crd()`), and image, resources and security contexts are
//! filled in by the operator when it builds the children.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, ResourceRequirements, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::spec::ScalingBehavior;

/// Repository of the default gateway image; the tag is the release of this crate.
pub const GATEWAY_IMAGE_REPOSITORY: &str = "ghcr.io/canvaschat/canvaschat-gateway";
/// Default Redis image.
pub const REDIS_IMAGE: &str = "redis:7.4-alpine";
/// uid/gid the gateway image runs as.
const GATEWAY_UID: i64 = 10001;
/// uid and gid of the `redis` user in the official image.
const REDIS_UID: i64 = 999;
const REDIS_GID: i64 = 1000;

/// Redis pods in sentinel mode when spec.redis.replicas is unset.
pub const SENTINEL_REDIS_REPLICAS: i32 = 3;

pub fn enabled() -> bool {
    true
}
/// The gateway release matching this operator build.
pub fn gateway_image() -> String {
    format!("{GATEWAY_IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}
pub fn redis_image() -> String {
    REDIS_IMAGE.to_owned()
}
pub fn gateway_replicas() -> i32 {
    2
}
pub fn max_message_bytes() -> i32 {
    4096
}
pub fn rate_limit_per_minute() -> i32 {
    100
}
pub fn presence_heartbeat_seconds() -> i32 {
    60
}
pub fn presence_ttl_seconds() -> i32 {
    300
}
pub fn shutdown_grace_seconds() -> i32 {
    25
}
pub fn max_connections() -> i32 {
    10_000
}
pub fn rebalance_tolerance() -> f64 {
    0.2
}
pub fn rebalance_rate() -> i32 {
    5
}
pub fn min_replicas() -> i32 {
    2
}
pub fn max_replicas() -> i32 {
    10
}
pub fn target_cpu() -> i32 {
    70
}
pub fn target_memory() -> i32 {
    80
}
pub fn pdb_max_unavailable() -> i32 {
    1
}
pub fn storage_size() -> String {
    "1Gi".to_owned()
}
pub fn password_key() -> String {
    "password".to_owned()
}

pub fn scale_up() -> ScalingBehavior {
    ScalingBehavior {
        stabilization_window_seconds: 0,
        period_seconds: 15,
        percent: 100,
        pods: 4,
    }
}

pub fn scale_down() -> ScalingBehavior {
    ScalingBehavior {
        stabilization_window_seconds: 300,
        period_seconds: 60,
        percent: 50,
        pods: 2,
    }
}

fn quantities(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect(),
    )
}

pub fn gateway_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: quantities(&[("cpu", "100m"), ("memory", "128Mi")]),
        limits: quantities(&[("memory", "256Mi")]),
        ..Default::default()
    }
}

pub fn redis_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: quantities(&[("cpu", "50m"), ("memory", "64Mi")]),
        limits: quantities(&[("memory", "256Mi")]),
        ..Default::default()
    }
}

fn runtime_default_seccomp() -> Option<SeccompProfile> {
    Some(SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..Default::default()
    })
}

pub fn gateway_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(GATEWAY_UID),
        run_as_group: Some(GATEWAY_UID),
        fs_group: Some(GATEWAY_UID),
        seccomp_profile: runtime_default_seccomp(),
        ..Default::default()
    }
}

pub fn redis_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(REDIS_UID),
        run_as_group: Some(REDIS_GID),
        fs_group: Some(REDIS_GID),
        seccomp_profile: runtime_default_seccomp(),
        ..Default::default()
    }
}

pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Default::default()
        }),
        seccomp_profile: runtime_default_seccomp(),
        ..Default::default()
    }
}
