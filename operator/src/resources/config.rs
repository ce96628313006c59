//! ConfigMap `N-config-<hash>`: the gateway's settings as its environment variables.

use std::collections::BTreeMap;

use canvaschat_crds::{CanvasChat, RedisMode};
use k8s_openapi::api::core::v1::ConfigMap;

use super::{Component, GATEWAY_PORT, Names, REDIS_PORT, child_meta, short_hash};
use super::{access, auth, sentinel};

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
        ("CANVASCHAT_REBALANCE".to_owned(), s.rebalance.to_string()),
        (
            "CANVASCHAT_REBALANCE_TOLERANCE".to_owned(),
            s.rebalance_tolerance.to_string(),
        ),
        (
            "CANVASCHAT_REBALANCE_RATE".to_owned(),
            s.rebalance_rate.to_string(),
        ),
        ("CANVASCHAT_LOG_FORMAT".to_owned(), "json".to_owned()),
        ("RUST_LOG".to_owned(), s.log_level.as_str().to_owned()),
    ]);
    let origins = access::allowed_origins(cc);
    if !origins.is_empty() {
        data.insert("CANVASCHAT_ALLOWED_ORIGINS".to_owned(), origins.join(","));
    }
    if let Some(hops) = access::trusted_proxy_hops(cc) {
        data.insert("CANVASCHAT_TRUSTED_PROXY_HOPS".to_owned(), hops.to_string());
    }
    data.extend(auth::env(&cc.spec.auth));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(gateway_yaml: &str) -> CanvasChat {
        serde_yaml::from_str(&format!(
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {{name: demo, namespace: chat}}\nspec: {{gateway: {gateway_yaml}}}\n"
        ))
        .expect("fixture parses")
    }

    fn env(cc: &CanvasChat) -> BTreeMap<String, String> {
        config_map(cc, &Names::of(cc))
            .expect("builds")
            .data
            .expect("data")
    }

    #[test]
    fn rebalancing_is_on_with_the_gateways_defaults() {
        let data = env(&chat("{}"));
        assert_eq!(data["CANVASCHAT_REBALANCE"], "true");
        assert_eq!(data["CANVASCHAT_REBALANCE_TOLERANCE"], "0.2");
        assert_eq!(data["CANVASCHAT_REBALANCE_RATE"], "5");
    }

    #[test]
    fn rebalance_settings_reach_the_env_and_roll_the_pods() {
        let default = chat("{}");
        let set =
            chat("{settings: {rebalance: false, rebalanceTolerance: 1.5, rebalanceRate: 50}}");
        let data = env(&set);
        assert_eq!(data["CANVASCHAT_REBALANCE"], "false");
        assert_eq!(data["CANVASCHAT_REBALANCE_TOLERANCE"], "1.5");
        assert_eq!(data["CANVASCHAT_REBALANCE_RATE"], "50");
        // The ConfigMap is named after its content and its hash is on the pod template.
        let names = Names::of(&default);
        let before = config_map(&default, &names).expect("builds");
        let after = config_map(&set, &names).expect("builds");
        assert_ne!(before.metadata.name, after.metadata.name);
        assert_ne!(
            config_hash(&before).expect("hash"),
            config_hash(&after).expect("hash")
        );
        // A whole-number tolerance is written so the gateway parses it as the same number.
        assert_eq!(
            env(&chat("{settings: {rebalanceTolerance: 10}}"))["CANVASCHAT_REBALANCE_TOLERANCE"],
            "10"
        );
    }

    #[test]
    fn every_variable_is_one_the_gateway_reads() {
        // The gateway's flags, each with its environment variable (clap's `env = "..."`).
        let gateway = include_str!("../../../gateway/src/config.rs");
        let cc = chat(
            "{settings: {allowedOrigins: [https://a.example], rebalance: false}, autoscaling: {connectionsPerPod: 100}}",
        );
        for key in env(&cc).keys().filter(|k| k.as_str() != "RUST_LOG") {
            assert!(
                gateway.contains(&format!("env = \"{key}\"")),
                "the gateway reads no {key}"
            );
        }
    }
}
