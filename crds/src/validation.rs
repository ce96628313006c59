//! Validation of a CanvasChat in Rust. It mirrors the CRD's schema bounds and CEL rules (the
//! bounds are the same constants) so `render` and the reconciler refuse what the API server
//! would refuse, e.g. an object stored before a stricter CRD was installed.

use std::fmt;

use k8s_openapi::api::core::v1::{
    PodSecurityContext, SecurityContext, WindowsSecurityContextOptions,
};

use crate::spec::{AuthMode, AuthSpec, CanvasChat, CanvasChatSpec, RedisMode};

/// Bounds shared by the CRD schema and [`CanvasChat::validate`].
pub mod limits {
    pub const MIN_REPLICAS: i32 = 1;
    pub const MAX_REPLICAS: i32 = 1000;
    pub const MIN_MESSAGE_BYTES: i32 = 64;
    pub const MAX_MESSAGE_BYTES: i32 = 1_048_576;
    pub const MAX_RATE_LIMIT_PER_MINUTE: i32 = 100_000;
    pub const MAX_PRESENCE_SECONDS: i32 = 86_400;
    pub const MAX_SHUTDOWN_GRACE_SECONDS: i32 = 3_600;
    pub const MAX_CONNECTIONS: i32 = 1_000_000;
    /// The gateway's ranges for CANVASCHAT_REBALANCE_TOLERANCE and CANVASCHAT_REBALANCE_RATE.
    pub const MIN_REBALANCE_TOLERANCE: f64 = 0.05;
    pub const MAX_REBALANCE_TOLERANCE: f64 = 10.0;
    pub const MAX_REBALANCE_RATE: i32 = 10_000;
    pub const MAX_UTILIZATION_PERCENT: i32 = 500;
    pub const MAX_ALLOWED_ORIGINS: usize = 64;
    /// Redis pods in sentinel mode at most (each also runs a Sentinel).
    pub const MAX_REDIS_REPLICAS: i32 = 9;
    /// Longest CanvasChat name whose children all work: the Redis StatefulSet's pods carry
    /// the label `controller-revision-hash: NAME-redis-<hash of up to 10 characters>`, which
    /// must fit in 63 characters (46 + 6 + 1 + 10 = 63).
    pub const MAX_NAME_LEN: usize = 46;
}

/// Every problem found in one CanvasChat, each prefixed with its field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub problems: Vec<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid CanvasChat: {}", self.problems.join("; "))
    }
}

impl std::error::Error for SpecError {}

struct Problems(Vec<String>);

impl Problems {
    fn range(&mut self, path: &str, value: i32, min: i32, max: i32) {
        if value < min || value > max {
            self.0.push(format!(
                "{path}: {value} is outside the allowed range {min}..={max}"
            ));
        }
    }
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(message());
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_quantity(s: &str) -> bool {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(digits_end);
    !digits.is_empty()
        && !digits.starts_with('0')
        && ["", "Ki", "Mi", "Gi", "Ti", "Pi", "k", "M", "G", "T", "P"].contains(&suffix)
}

fn is_redis_memory(s: &str) -> bool {
    let Some(digits) = ["kb", "mb", "gb"].iter().find_map(|u| s.strip_suffix(u)) else {
        return false;
    };
    (1..=9).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
}

impl CanvasChat {
    /// Check the name and spec against the same rules the CRD declares.
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut p = Problems(Vec::new());
        match self.metadata.name.as_deref() {
            Some(name) => p.check(
                is_dns_label(name)
                    && name.starts_with(|c: char| c.is_ascii_lowercase())
                    && name.len() <= limits::MAX_NAME_LEN,
                || {
                    format!(
                        "metadata.name: {name:?} must start with a letter, contain only lowercase letters, digits and '-', and be at most {} characters (the Redis pods' controller-revision-hash label must fit in 63)",
                        limits::MAX_NAME_LEN
                    )
                },
            ),
            None => p.0.push("metadata.name: required".to_owned()),
        }
        validate_spec(&self.spec, &mut p);
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(SpecError { problems: p.0 })
        }
    }
}

fn validate_spec(spec: &CanvasChatSpec, p: &mut Problems) {
    use limits::*;
    let g = &spec.gateway;
    p.check(g.image.as_ref().is_none_or(|i| !i.is_empty()), || {
        "spec.gateway.image: must not be empty".to_owned()
    });
    security_contexts(
        "spec.gateway",
        g.pod_security_context.as_ref(),
        g.security_context.as_ref(),
        p,
    );
    p.range(
        "spec.gateway.replicas",
        g.replicas,
        MIN_REPLICAS,
        MAX_REPLICAS,
    );

    let s = &g.settings;
    p.range(
        "spec.gateway.settings.maxMessageBytes",
        s.max_message_bytes,
        MIN_MESSAGE_BYTES,
        MAX_MESSAGE_BYTES,
    );
    p.range(
        "spec.gateway.settings.rateLimitPerMinute",
        s.rate_limit_per_minute,
        1,
        MAX_RATE_LIMIT_PER_MINUTE,
    );
    p.range(
        "spec.gateway.settings.presenceHeartbeatSeconds",
        s.presence_heartbeat_seconds,
        1,
        MAX_PRESENCE_SECONDS,
    );
    p.range(
        "spec.gateway.settings.presenceTtlSeconds",
        s.presence_ttl_seconds,
        2,
        MAX_PRESENCE_SECONDS,
    );
    p.check(s.presence_ttl_seconds > s.presence_heartbeat_seconds, || {
        "spec.gateway.settings: presenceTtlSeconds must be greater than presenceHeartbeatSeconds"
            .to_owned()
    });
    p.range(
        "spec.gateway.settings.shutdownGraceSeconds",
        s.shutdown_grace_seconds,
        0,
        MAX_SHUTDOWN_GRACE_SECONDS,
    );
    p.range(
        "spec.gateway.settings.maxConnections",
        s.max_connections,
        1,
        MAX_CONNECTIONS,
    );
    p.check(
        (MIN_REBALANCE_TOLERANCE..=MAX_REBALANCE_TOLERANCE).contains(&s.rebalance_tolerance),
        || {
            format!(
                "spec.gateway.settings.rebalanceTolerance: {} is outside the allowed range {MIN_REBALANCE_TOLERANCE}..={MAX_REBALANCE_TOLERANCE}",
                s.rebalance_tolerance
            )
        },
    );
    p.range(
        "spec.gateway.settings.rebalanceRate",
        s.rebalance_rate,
        1,
        MAX_REBALANCE_RATE,
    );
    p.check(s.allowed_origins.len() <= MAX_ALLOWED_ORIGINS, || {
        format!("spec.gateway.settings.allowedOrigins: at most {MAX_ALLOWED_ORIGINS} entries")
    });
    for origin in &s.allowed_origins {
        let ok = origin == "*"
            || ((origin.starts_with("http://") || origin.starts_with("https://"))
                && origin.len() <= 256
                && !origin.contains(',')
                && !origin.contains(char::is_whitespace));
        p.check(ok, || {
            format!(
                "spec.gateway.settings.allowedOrigins: {origin:?} is not an http(s) origin or \"*\""
            )
        });
    }
    p.check(
        !s.allowed_origins.iter().any(|o| o == "*") || s.allowed_origins.len() == 1,
        || {
            "spec.gateway.settings.allowedOrigins: \"*\" (any origin) must be the only entry"
                .to_owned()
        },
    );

    let a = &g.autoscaling;
    p.range(
        "spec.gateway.autoscaling.minReplicas",
        a.min_replicas,
        MIN_REPLICAS,
        MAX_REPLICAS,
    );
    p.range(
        "spec.gateway.autoscaling.maxReplicas",
        a.max_replicas,
        MIN_REPLICAS,
        MAX_REPLICAS,
    );
    p.check(a.min_replicas <= a.max_replicas, || {
        "spec.gateway.autoscaling: minReplicas must be less than or equal to maxReplicas".to_owned()
    });
    p.range(
        "spec.gateway.autoscaling.targetCPUUtilizationPercentage",
        a.target_cpu_utilization_percentage,
        1,
        MAX_UTILIZATION_PERCENT,
    );
    p.range(
        "spec.gateway.autoscaling.targetMemoryUtilizationPercentage",
        a.target_memory_utilization_percentage,
        1,
        MAX_UTILIZATION_PERCENT,
    );
    if let Some(target) = a.connections_per_pod {
        p.range(
            "spec.gateway.autoscaling.connectionsPerPod",
            target,
            1,
            MAX_CONNECTIONS,
        );
    }
    for (path, b) in [
        ("spec.gateway.autoscaling.scaleUp", &a.scale_up),
        ("spec.gateway.autoscaling.scaleDown", &a.scale_down),
    ] {
        p.range(
            &format!("{path}.stabilizationWindowSeconds"),
            b.stabilization_window_seconds,
            0,
            3600,
        );
        p.range(&format!("{path}.periodSeconds"), b.period_seconds, 1, 1800);
        p.range(&format!("{path}.percent"), b.percent, 1, 1000);
        p.range(&format!("{path}.pods"), b.pods, 1, 1000);
    }
    p.range(
        "spec.gateway.podDisruptionBudget.maxUnavailable",
        g.pod_disruption_budget.max_unavailable,
        1,
        MAX_REPLICAS,
    );

    let r = &spec.redis;
    p.check(r.image.as_ref().is_none_or(|i| !i.is_empty()), || {
        "spec.redis.image: must not be empty".to_owned()
    });
    security_contexts(
        "spec.redis",
        r.pod_security_context.as_ref(),
        r.security_context.as_ref(),
        p,
    );
    if let Some(n) = r.replicas {
        let fits = match r.mode {
            RedisMode::Standalone => n == 1,
            RedisMode::Sentinel => n >= 3 && n % 2 == 1 && n <= MAX_REDIS_REPLICAS,
        };
        p.check(fits, || {
            format!(
                "spec.redis.replicas: {n} must be 1 in standalone mode, and odd, at least 3 and at most {MAX_REDIS_REPLICAS} in sentinel mode"
            )
        });
    }
    if let Some(m) = &r.max_memory {
        p.check(is_redis_memory(m), || {
            format!("spec.redis.maxMemory: {m:?} is not a size such as 200mb (kb, mb or gb)")
        });
    }
    p.check(is_quantity(&r.storage.size), || {
        format!(
            "spec.redis.storage.size: {:?} is not a positive whole quantity such as 1Gi",
            r.storage.size
        )
    });
    if let Some(secret) = &r.password_secret_ref {
        p.check(!secret.name.is_empty() && !secret.key.is_empty(), || {
            "spec.redis.passwordSecretRef: name and key must not be empty".to_owned()
        });
    }

    let i = &spec.ingress;
    p.check(i.class_name.as_ref().is_none_or(|c| !c.is_empty()), || {
        "spec.ingress.className: must not be empty (leave it out for the cluster default)"
            .to_owned()
    });
    if let Some(host) = &i.host {
        p.check(is_dns_name(host), || {
            format!("spec.ingress.host: {host:?} is not a lowercase DNS name")
        });
    }
    p.check(i.tls_secret_name.is_none() || i.host.is_some(), || {
        "spec.ingress: host is required when tlsSecretName is set".to_owned()
    });

    validate_auth(&spec.auth, p);

    if let Some(route) = &spec.http_route {
        p.check(!route.parent_refs.is_empty(), || {
            "spec.httpRoute.parentRefs: needs at least one Gateway".to_owned()
        });
        for (n, parent) in route.parent_refs.iter().enumerate() {
            p.check(!parent.name.is_empty(), || {
                format!("spec.httpRoute.parentRefs[{n}].name: must not be empty")
            });
        }
        for host in &route.hostnames {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            p.check(is_dns_name(bare), || {
                format!("spec.httpRoute.hostnames: {host:?} is not a lowercase DNS name")
            });
        }
    }
}

/// Mirrors the CRD's rules on spec.auth.
fn validate_auth(a: &AuthSpec, p: &mut Problems) {
    let keys = [
        a.hmac_secret_ref.is_some(),
        a.public_key_secret_ref.is_some(),
        a.jwks_url.is_some(),
    ]
    .into_iter()
    .filter(|set| *set)
    .count();
    match a.mode {
        AuthMode::Jwt => p.check(keys == 1, || {
            format!(
                "spec.auth: mode jwt needs exactly one key source (hmacSecretRef, publicKeySecretRef or jwksUrl), found {keys}"
            )
        }),
        AuthMode::Anonymous => p.check(
            keys == 0 && a.audience.is_none() && a.issuer.is_none() && a.token_url.is_none(),
            || {
                "spec.auth: hmacSecretRef, publicKeySecretRef, jwksUrl, audience, issuer and tokenUrl apply only with mode: jwt".to_owned()
            },
        ),
    }
    for (path, secret) in [
        ("hmacSecretRef", &a.hmac_secret_ref),
        ("publicKeySecretRef", &a.public_key_secret_ref),
    ] {
        if let Some(secret) = secret {
            let key_ok = !secret.key.is_empty()
                && secret.key.len() <= 253
                && secret
                    .key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            p.check(!secret.name.is_empty() && key_ok, || {
                format!(
                    "spec.auth.{path}: name must not be empty and key must be letters, digits, '-', '.' or '_'"
                )
            });
        }
    }
    if let Some(url) = &a.jwks_url {
        p.check(
            url.starts_with("https://") && url.len() > 8 && !url.contains(char::is_whitespace),
            || format!("spec.auth.jwksUrl: {url:?} is not an https URL"),
        );
    }
    if let Some(url) = &a.token_url {
        p.check(
            (url.starts_with('/') || url.starts_with("https://"))
                && !url.contains(char::is_whitespace),
            || {
                format!(
                    "spec.auth.tokenUrl: {url:?} is neither a path (/auth/token) nor an https URL"
                )
            },
        );
    }
    for (path, value) in [("audience", &a.audience), ("issuer", &a.issuer)] {
        p.check(value.as_ref().is_none_or(|v| !v.is_empty()), || {
            format!("spec.auth.{path}: must not be empty (leave it out to skip the check)")
        });
    }
}

/// Mirrors the CRD's CEL rules on user-supplied security contexts.
fn security_contexts(
    path: &str,
    pod: Option<&PodSecurityContext>,
    container: Option<&SecurityContext>,
    p: &mut Problems,
) {
    let host_process =
        |w: Option<&WindowsSecurityContextOptions>| w.and_then(|w| w.host_process).unwrap_or(false);
    if let Some(pod) = pod {
        let unsafe_pod = pod.run_as_user == Some(0)
            || pod.run_as_non_root == Some(false)
            || host_process(pod.windows_options.as_ref());
        p.check(!unsafe_pod, || {
            format!(
                "{path}.podSecurityContext: may not set runAsUser 0, runAsNonRoot false or windowsOptions.hostProcess"
            )
        });
    }
    if let Some(c) = container {
        let adds = c
            .capabilities
            .as_ref()
            .and_then(|caps| caps.add.as_ref())
            .is_some_and(|add| !add.is_empty());
        let unsafe_container = c.privileged == Some(true)
            || c.allow_privilege_escalation == Some(true)
            || adds
            || c.run_as_user == Some(0)
            || c.run_as_non_root == Some(false)
            || c.proc_mount.as_deref().is_some_and(|m| m != "Default")
            || host_process(c.windows_options.as_ref());
        p.check(!unsafe_container, || {
            format!(
                "{path}.securityContext: may not set privileged, allowPrivilegeEscalation, capabilities.add, runAsUser 0, runAsNonRoot false, an unmasked procMount or windowsOptions.hostProcess"
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> CanvasChat {
        serde_yaml::from_str(yaml).expect("fixture parses")
    }

    #[test]
    fn minimal_spec_is_valid() {
        let cc = parse(
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: demo}\nspec: {}\n",
        );
        assert_eq!(cc.validate(), Ok(()));
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let cc = parse(
            r#"
apiVersion: canvaschat.io/v1alpha1
kind: CanvasChat
metadata: {name: 9bad}
spec:
  gateway:
    autoscaling: {minReplicas: 5, maxReplicas: 3}
    settings: {presenceHeartbeatSeconds: 300, presenceTtlSeconds: 60}
  redis:
    storage: {size: "lots"}
  ingress:
    tlsSecretName: chat-tls
"#,
        );
        let err = cc.validate().expect_err("invalid");
        let text = err.to_string();
        assert_eq!(err.problems.len(), 5, "{text}");
        assert!(text.contains("metadata.name"));
        assert!(text.contains("minReplicas must be less than or equal to maxReplicas"));
        assert!(text.contains("presenceTtlSeconds must be greater"));
        assert!(text.contains("spec.redis.storage.size"));
        assert!(text.contains("host is required when tlsSecretName is set"));
    }

    #[test]
    fn quantities_and_hosts() {
        assert!(is_quantity("1Gi"));
        assert!(is_quantity("500M"));
        assert!(!is_quantity("0"));
        assert!(!is_quantity("1.5Gi"));
        assert!(!is_quantity("Gi"));
        assert!(is_dns_name("chat.example.com"));
        assert!(!is_dns_name("Chat.example.com"));
        assert!(!is_dns_name("chat..example.com"));
    }

    #[test]
    fn privileged_security_contexts_are_refused() {
        let cc = parse(
            r#"
apiVersion: canvaschat.io/v1alpha1
kind: CanvasChat
metadata: {name: demo}
spec:
  gateway:
    securityContext: {privileged: true}
  redis:
    podSecurityContext: {runAsUser: 0}
    securityContext: {capabilities: {add: [NET_ADMIN]}}
"#,
        );
        let err = cc.validate().expect_err("privileged");
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(err.problems[0].starts_with("spec.gateway.securityContext"));
        let safe = parse(
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: demo}\nspec: {gateway: {securityContext: {runAsNonRoot: true, capabilities: {drop: [ALL]}}}}\n",
        );
        assert_eq!(safe.validate(), Ok(()));
    }

    #[test]
    fn rebalance_and_connection_target_ranges_are_the_gateways() {
        let spec = |settings: &str, autoscaling: &str| {
            parse(&format!(
                "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {{name: demo}}\nspec: {{gateway: {{settings: {{{settings}}}, autoscaling: {{{autoscaling}}}}}}}\n"
            ))
            .validate()
        };
        assert_eq!(
            spec(
                "rebalance: false, rebalanceTolerance: 0.05, rebalanceRate: 10000",
                "connectionsPerPod: 1"
            ),
            Ok(())
        );
        assert_eq!(
            spec("rebalanceTolerance: 10", "connectionsPerPod: 1000000"),
            Ok(())
        );
        let err = spec(
            "rebalanceTolerance: 0.01, rebalanceRate: 0",
            "connectionsPerPod: 0",
        )
        .expect_err("invalid");
        let text = err.to_string();
        assert_eq!(err.problems.len(), 3, "{text}");
        assert!(text.contains("spec.gateway.settings.rebalanceTolerance: 0.01 is outside"));
        assert!(text.contains("spec.gateway.settings.rebalanceRate: 0 is outside"));
        assert!(text.contains("spec.gateway.autoscaling.connectionsPerPod: 0 is outside"));
        let err = spec("rebalanceTolerance: 10.5, rebalanceRate: 10001", "").expect_err("invalid");
        assert_eq!(err.problems.len(), 2, "{err}");
    }

    #[test]
    fn auth_needs_one_key_source_in_jwt_mode_only() {
        let with = |auth: &str| {
            parse(&format!(
                "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {{name: demo}}\nspec: {{auth: {auth}}}\n"
            ))
            .validate()
        };
        assert_eq!(
            with("{mode: jwt, hmacSecretRef: {name: s, key: k}}"),
            Ok(())
        );
        assert_eq!(
            with(
                "{mode: jwt, jwksUrl: 'https://idp.example.com/jwks', audience: chat, issuer: 'https://idp.example.com', tokenUrl: /auth/token}"
            ),
            Ok(())
        );
        let two = with(
            "{mode: jwt, hmacSecretRef: {name: s, key: k}, publicKeySecretRef: {name: p, key: k}}",
        )
        .expect_err("two keys");
        assert!(two.to_string().contains("exactly one key source"), "{two}");
        let none = with("{mode: jwt}").expect_err("no key");
        assert!(none.to_string().contains("found 0"), "{none}");
        let anonymous = with("{hmacSecretRef: {name: s, key: k}}").expect_err("key without jwt");
        assert!(
            anonymous.to_string().contains("only with mode: jwt"),
            "{anonymous}"
        );
        let plain = with("{mode: jwt, jwksUrl: 'http://idp.example.com/jwks'}").expect_err("http");
        assert!(plain.to_string().contains("spec.auth.jwksUrl"), "{plain}");
        let token = with("{mode: jwt, jwksUrl: 'https://idp/jwks', tokenUrl: 'auth/token'}")
            .expect_err("relative token url");
        assert!(token.to_string().contains("spec.auth.tokenUrl"), "{token}");
    }

    #[test]
    fn any_origin_is_explicit_and_alone() {
        let with = |origins: &str| {
            parse(&format!(
                "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {{name: demo}}\nspec: {{gateway: {{settings: {{allowedOrigins: {origins}}}}}}}\n"
            ))
            .validate()
        };
        assert_eq!(with("['*']"), Ok(()));
        assert_eq!(with("['https://chat.example.com']"), Ok(()));
        let mixed = with("['*', 'https://chat.example.com']").expect_err("mixed");
        assert!(
            mixed.to_string().contains("must be the only entry"),
            "{mixed}"
        );
        assert!(with("['chat.example.com']").is_err());
    }

    #[test]
    fn long_names_are_refused() {
        let name = "a".repeat(limits::MAX_NAME_LEN + 1);
        let cc = CanvasChat::new(&name, CanvasChatSpec::default());
        assert!(cc.validate().is_err());
        let cc = CanvasChat::new(&name[1..], CanvasChatSpec::default());
        assert!(cc.validate().is_ok());
    }
}
