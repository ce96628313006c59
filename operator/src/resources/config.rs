//! ConfigMap `N-config`: the gateway's settings as its environment variables.

use std::collections::BTreeMap;

use canvaschat_crds::CanvasChat;
use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::{Component, GATEWAY_PORT, Names, REDIS_PORT, child_meta};

/// Redis URL without credentials (used when no password Secret is configured).
pub fn redis_url(names: &Names) -> String {
    format!("redis://{}:{REDIS_PORT}/0", names.redis())
}

/// Redis URL that expands the `REDIS_PASSWORD` env var (Kubernetes dependent env expansion).
pub fn redis_url_with_password(names: &Names) -> String {
    format!(
        "redis://:$(REDIS_PASSWORD)@{}:{REDIS_PORT}/0",
        names.redis()
    )
}

pub fn config_map(cc: &CanvasChat, names: &Names) -> ConfigMap {
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
    // With a password the URL is built in the pod's env from the Secret instead.
    if cc.spec.redis.password_secret_ref.is_none() {
        data.insert("CANVASCHAT_REDIS_URL".to_owned(), redis_url(names));
    }
    ConfigMap {
        metadata: child_meta(cc, names, names.config(), Component::Gateway),
        data: Some(data),
        ..Default::default()
    }
}

/// Hash of everything that reaches the gateway process as configuration: the ConfigMap data
/// and the password Secret reference. Put on the pod template so a change rolls the pods.
pub fn config_hash(cc: &CanvasChat, config_map: &ConfigMap) -> Result<String, serde_json::Error> {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&config_map.data)?);
    hasher.update(serde_json::to_vec(&cc.spec.redis.password_secret_ref)?);
    let digest = hasher.finalize();
    Ok(digest.iter().take(16).map(|b| format!("{b:02x}")).collect())
}
