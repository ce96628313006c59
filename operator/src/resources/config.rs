//! ConfigMap `N-config-<hash>`: the gateway's settings as its environment variables.

use std::collections::BTreeMap;

use canvaschat_crds::{CanvasChat, RedisMode};
use k8s_openapi::api::core::v1::ConfigMap;

use super::sentinel;
use super::{Component, GATEWAY_PORT, Names, REDIS_PORT, child_meta, short_hash};

/// Redis URL without credentials: the password reaches the gateway as its own variable.
/// In sentinel mode the gateways find the master through the Sentinels.
pub fn redis_url(cc: &CanvasChat, names: &Names) -> String {
    match cc.spec.redis.mode {
        RedisMode::Standalone => format!("redis://{}:{REDIS_PORT}/0", names.redis()),
        RedisMode::Sentinel => sentinel::redis_url(cc, names),
    }
}

/// The gateway settings as an immutable ConfigMap named after its content, so a pod of an old
/// ReplicaSet (a restart mid-rollout, `rollout undo`) still reads the config it was made for.
pub fn config_map(cc: &CanvasChat, names: &Names) -> Result<ConfigMap, serde_json::Error> {
    let s = &cc.spec.gateway.settings;
    let mut data = BTreeMap::from([
        (
            "CANVASCHAT_LISTEN".to_owned(),
            format!("0.0.0.0:{GATEWAY_PORT}"),
        ),
        (
            "CANVASCHAT_MAX_MESSAGE_BYTES".to_owned(),
            s.max_message_bytes.to_string(),
        ),
        (
            "CANVASCHAT_RATE_LIMIT_PER_MINUTE".to_owned(),
            s.rate_limit_per_minute.to_string(),
        ),
        (
            "CANVASCHAT_PRESENCE_HEARTBEAT_SECONDS".to_owned(),
            s.presence_heartbeat_seconds.to_string(),
        ),
        (
            "CANVASCHAT_PRESENCE_TTL_SECONDS".to_owned(),
            s.presence_ttl_seconds.to_string(),
        ),
        (
            "CANVASCHAT_SHUTDOWN_GRACE_SECONDS".to_owned(),
            s.shutdown_grace_seconds.to_string(),
        ),
        (
            "CANVASCHAT_MAX_CONNECTIONS".to_owned(),
            s.max_connections.to_string(),
        ),
        ("CANVASCHAT_LOG_FORMAT".to_owned(), "json".to_owned()),
        ("RUST_LOG".to_owned(), s.log_level.as_str().to_owned()),
    ]);
    if !s.allowed_origins.is_empty() {
        data.insert(
            "CANVASCHAT_ALLOWED_ORIGINS".to_owned(),
            s.allowed_origins.join(","),
        );
    }
    data.insert("CANVASCHAT_REDIS_URL".to_owned(), redis_url(cc, names));
    let name = format!(
        "{}{}",
        names.config_prefix(),
        short_hash(&serde_json::to_vec(&data)?)
    );
    Ok(ConfigMap {
        metadata: child_meta(cc, names, name, Component::Gateway),
        data: Some(data),
        immutable: Some(true),
        ..Default::default()
    })
}

/// Hash of the configuration that reaches the gateway process, for the pod template.
pub fn config_hash(config_map: &ConfigMap) -> Result<String, serde_json::Error> {
    Ok(short_hash(&serde_json::to_vec(&config_map.data)?))
}
