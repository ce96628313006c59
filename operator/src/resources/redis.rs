//! Redis: StatefulSet `N-redis` (one pod, or in sentinel mode `replicas` pods each with a
//! Sentinel, see `sentinel`; PVC template, AOF, `maxmemory` with `noeviction`), headless
//! Services `N-redis-headless` (governing) and `N-redis` (clients), and NetworkPolicy `N-redis` that
//! admits the chat's gateway pods (and, in sentinel mode, the Redis pods to each other).

use std::collections::BTreeMap;

use canvaschat_crds::{CanvasChat, RedisMode, defaults};
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe,
    SecretKeySelector, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::sentinel;
use super::{
    Component, Names, REDIS_PORT, SECRET_HASH_ANNOTATION, child_meta, image_pull_secrets, labels,
    non_empty, password_secret, selector_labels,
};

const DATA_VOLUME: &str = "data";
const SENTINEL_VOLUME: &str = "sentinel";

fn redis_port() -> ServicePort {
    ServicePort {
        name: Some("redis".to_owned()),
        port: REDIS_PORT,
        target_port: Some(IntOrString::String("redis".to_owned())),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

fn sentinel_mode(cc: &CanvasChat) -> bool {
    cc.spec.redis.mode == RedisMode::Sentinel
}

pub fn headless_service(cc: &CanvasChat, names: &Names) -> Service {
    let mut ports = vec![redis_port()];
    if sentinel_mode(cc) {
        ports.push(sentinel::sentinel_service_port());
    }
    Service {
        metadata: child_meta(cc, names, names.redis_headless(), Component::Redis),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            // Stable DNS for the pod even before it is ready (governing Service).
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(names, Component::Redis)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `N-redis`, the name the gateways connect to: headless, so its DNS name resolves to the ready
/// Redis pod itself. A ClusterIP would add nothing in front of one pod, and allocating one is
/// serialised API-server-wide (an IPAddress object per Service), which slows creating chats.
/// Unlike `N-redis-headless` it lists ready pods only.
pub fn client_service(cc: &CanvasChat, names: &Names) -> Service {
    Service {
        metadata: child_meta(cc, names, names.redis(), Component::Redis),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(selector_labels(names, Component::Redis)),
            ports: Some(vec![redis_port()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tcp_ports(ports: &[i32]) -> Vec<NetworkPolicyPort> {
    ports
        .iter()
        .map(|p| NetworkPolicyPort {
            port: Some(IntOrString::Int(*p)),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        })
        .collect()
}

fn from_pods(names: &Names, component: Component, ports: &[i32]) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(names, component)),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(tcp_ports(ports)),
    }
}

/// Gateways reach Redis (and in sentinel mode the Sentinels); in sentinel mode the Redis pods
/// also reach each other (replication, Sentinel to Redis, Sentinel to Sentinel).
pub fn network_policy(cc: &CanvasChat, names: &Names) -> NetworkPolicy {
    let ingress = if sentinel_mode(cc) {
        let both = [REDIS_PORT, sentinel::SENTINEL_PORT];
        vec![
            from_pods(names, Component::Gateway, &both),
            from_pods(names, Component::Redis, &both),
        ]
    } else {
        vec![from_pods(names, Component::Gateway, &[REDIS_PORT])]
    };
    NetworkPolicy {
        metadata: child_meta(cc, names, names.redis(), Component::Redis),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(names, Component::Redis)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            ..Default::default()
        }),
    }
}

/// Starts `redis-server` with the password in a config read from stdin (`redis-server -`),
/// so it is on no command line (`ps`) and in no file. Every byte is written as a `\xHH`
/// escape inside a quoted config string, so any password works. `exec` keeps redis-server as
/// the container's main process; `$@` are the arguments after it.
const START_SCRIPT: &str = r#"set -eu
hex=$(printf %s "$REDIS_PASSWORD" | od -An -v -tx1 | tr -d ' \n' | sed 's/../\\x&/g')
exec redis-server - "$@" <<EOF
requirepass "$hex"
EOF
"#;

/// The container command: the start script, then `redis-server` arguments without secrets.
fn command(cc: &CanvasChat) -> Vec<String> {
    let r = &cc.spec.redis;
    let script = if sentinel_mode(cc) {
        sentinel::redis_start_script()
    } else {
        START_SCRIPT.to_owned()
    };
    let mut command: Vec<String> = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        script,
        "redis-server".to_owned(),
    ];
    command.extend(
        [
            "--port",
            &REDIS_PORT.to_string(),
            "--dir",
            "/data",
            "--appendonly",
            if r.append_only { "yes" } else { "no" },
            // Auth is always on; protected mode stays on as a second guard.
            "--protected-mode",
            "yes",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    if let Some(max) = max_memory(cc) {
        command.extend(["--maxmemory".to_owned(), max]);
    }
    // Presence and history keys must never be dropped to make room: at the limit Redis
    // refuses writes instead, and the gateways answer sends with a retryable error.
    command.extend(["--maxmemory-policy".to_owned(), "noeviction".to_owned()]);
    command
}

/// `maxmemory`: the spec's, else three quarters of the container's memory limit (room for
/// replication buffers and AOF rewrites), else none.
fn max_memory(cc: &CanvasChat) -> Option<String> {
    let r = &cc.spec.redis;
    if let Some(m) = &r.max_memory {
        return Some(m.clone());
    }
    let resources = r
        .resources
        .clone()
        .unwrap_or_else(defaults::redis_resources);
    let limit = resources.limits?.get("memory").cloned()?;
    quantity_bytes(&limit.0).map(|b| (b / 4 * 3).to_string())
}

/// Bytes of a whole Kubernetes memory quantity (`256Mi`, `1G`, `1000000`); `None` for forms
/// it does not cover (fractions, exponents), which then set no maxmemory.
fn quantity_bytes(q: &str) -> Option<u64> {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (digits, suffix) = q.split_at(split);
    let factor: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

/// REDIS_PASSWORD for the start script and REDISCLI_AUTH so the probe's redis-cli
/// authenticates; both from the Secret, never in the pod spec.
fn password_env(cc: &CanvasChat) -> Vec<EnvVar> {
    let (name, key) = password_secret(cc);
    let from_secret = || {
        Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: name.clone(),
                key: key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        })
    };
    vec![
        EnvVar {
            name: "REDIS_PASSWORD".to_owned(),
            value_from: from_secret(),
            ..Default::default()
        },
        EnvVar {
            name: "REDISCLI_AUTH".to_owned(),
            value_from: from_secret(),
            ..Default::default()
        },
    ]
}

fn volume_claim(cc: &CanvasChat, names: &Names) -> PersistentVolumeClaim {
    let storage = &cc.spec.redis.storage;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(labels(names, Component::Redis)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(storage.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn statefulset(cc: &CanvasChat, names: &Names, password_hash: Option<&str>) -> StatefulSet {
    let r = &cc.spec.redis;
    let sentinels = sentinel_mode(cc);
    let ready_check = if sentinels {
        sentinel::REDIS_READY_SENTINEL_MODE
    } else {
        r#"test "$(redis-cli -h 127.0.0.1 ping)" = PONG"#
    };
    let ping = Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "sh".to_owned(),
                "-c".to_owned(),
                ready_check.to_owned(),
            ]),
        }),
        period_seconds: Some(5),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let mut env = password_env(cc);
    if sentinels {
        env.extend(sentinel::topology_env(cc, names));
    }
    let container = Container {
        name: "redis".to_owned(),
        image: Some(r.image.clone().unwrap_or_else(defaults::redis_image)),
        image_pull_policy: Some(r.image_pull_policy.as_str().to_owned()),
        command: Some(command(cc)),
        env: Some(env.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("redis".to_owned()),
            container_port: REDIS_PORT,
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        resources: Some(
            r.resources
                .clone()
                .unwrap_or_else(defaults::redis_resources),
        ),
        security_context: Some(
            r.security_context
                .clone()
                .unwrap_or_else(defaults::container_security_context),
        ),
        readiness_probe: Some(ping),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("redis".to_owned()),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            timeout_seconds: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: DATA_VOLUME.to_owned(),
            mount_path: "/data".to_owned(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mut containers = vec![container];
    let mut volumes = Vec::new();
    if sentinels {
        containers.push(sentinel_container(cc, env));
        volumes.push(Volume {
            name: SENTINEL_VOLUME.to_owned(),
            // Memory-backed: the config holds the password.
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                size_limit: Some(Quantity("1Mi".to_owned())),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let claims = if r.storage.enabled {
        Some(vec![volume_claim(cc, names)])
    } else {
        volumes.push(Volume {
            name: DATA_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        None
    };
    let affinity = match (&r.scheduling.affinity, sentinels) {
        (Some(a), _) => Some(a.clone()),
        (None, true) => Some(sentinel::default_affinity(names)),
        (None, false) => None,
    };
    let when_deleted = if r.storage.retain_on_delete {
        "Retain"
    } else {
        "Delete"
    };
    StatefulSet {
        metadata: child_meta(cc, names, names.redis(), Component::Redis),
        spec: StatefulSetSpec {
            replicas: Some(r.pod_count()),
            service_name: Some(names.redis_headless()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(names, Component::Redis)),
                ..Default::default()
            },
            persistent_volume_claim_retention_policy: r.storage.enabled.then(|| {
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(when_deleted.to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                }
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(names, Component::Redis)),
                    annotations: password_hash.map(|hash| {
                        BTreeMap::from([(SECRET_HASH_ANNOTATION.to_owned(), hash.to_owned())])
                    }),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(
                        r.pod_security_context
                            .clone()
                            .unwrap_or_else(defaults::redis_pod_security_context),
                    ),
                    image_pull_secrets: image_pull_secrets(cc),
                    node_selector: non_empty(&r.scheduling.node_selector),
                    affinity,
                    tolerations: (!r.scheduling.tolerations.is_empty())
                        .then(|| r.scheduling.tolerations.clone()),
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..Default::default()
                }),
            },
            volume_claim_templates: claims,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The Sentinel beside Redis: same image, same password variables and topology, its own
/// small memory budget.
fn sentinel_container(cc: &CanvasChat, env: Vec<EnvVar>) -> Container {
    let r = &cc.spec.redis;
    Container {
        name: "sentinel".to_owned(),
        image: Some(r.image.clone().unwrap_or_else(defaults::redis_image)),
        image_pull_policy: Some(r.image_pull_policy.as_str().to_owned()),
        command: Some(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            sentinel::sentinel_start_script(),
        ]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("sentinel".to_owned()),
            container_port: sentinel::SENTINEL_PORT,
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        resources: Some(sentinel::resources()),
        security_context: Some(
            r.security_context
                .clone()
                .unwrap_or_else(defaults::container_security_context),
        ),
        readiness_probe: Some(sentinel::sentinel_readiness()),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("sentinel".to_owned()),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            timeout_seconds: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: SENTINEL_VOLUME.to_owned(),
            mount_path: sentinel::SENTINEL_DIR.to_owned(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[cfg(test)]
mod quantity_tests {
    use super::quantity_bytes;

    #[test]
    fn memory_quantities_in_bytes() {
        assert_eq!(quantity_bytes("256Mi"), Some(256 << 20));
        assert_eq!(quantity_bytes("1G"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("1000"), Some(1000));
        assert_eq!(quantity_bytes("1.5Gi"), None);
        assert_eq!(quantity_bytes("1e9"), None);
        assert_eq!(quantity_bytes("99999999999999Ti"), None);
    }
}
