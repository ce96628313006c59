//! Sentinel mode: the pieces the Redis StatefulSet gains when `spec.redis.mode` is
//! `sentinel`. Every Redis pod runs a Sentinel beside it as a second container, so the
//! Sentinels live and die with the pods they watch, need no StatefulSet of their own (whose
//! pods' `controller-revision-hash` label, `N-redis-sentinel-<hash>`, would not fit in 63
//! characters for the longest names), and a node drain takes one Redis and one Sentinel at
//! a time, within the PodDisruptionBudget `N-redis`.

use canvaschat_crds::CanvasChat;
use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, EnvVarSource, ExecAction, ObjectFieldSelector, PodAffinityTerm,
    PodAntiAffinity, Probe, ResourceRequirements, Service, ServicePort, ServiceSpec,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Component, Names, REDIS_PORT, child_meta, selector_labels};

/// Port every Sentinel listens on.
pub const SENTINEL_PORT: i32 = 26379;
/// The master's name in `sentinel monitor NAME`; each chat has its own Sentinels, so one
/// fixed name is enough.
pub const SENTINEL_MASTER_NAME: &str = "canvaschat";
/// Milliseconds without an answer before a Sentinel calls the master down.
const DOWN_AFTER_MS: u32 = 5000;
/// Milliseconds before a stuck failover is retried by another Sentinel. A split vote waits
/// twice this before the next election, so Sentinel's default (3 min) or even 60 s would keep
/// chat down for minutes; 10 s bounds that while leaving a replica time to start its sync.
const FAILOVER_TIMEOUT_MS: u32 = 10000;
/// Where the Sentinel writes its config (it rewrites it as it learns the topology).
pub const SENTINEL_DIR: &str = "/sentinel";

/// Shell that asks the Sentinels listed in `$SENTINELS` (`host:port ...`) for the current
/// master and sets `master` to `host port`, or to `$INITIAL_MASTER` when none answers (first
/// start). Used by both containers, so a restarted pod follows a master elected meanwhile
/// instead of coming back as a second master.
const FIND_MASTER: &str = r#"master=""
for s in $SENTINELS; do
  reply=$(timeout 3 redis-cli --raw -h "${s%:*}" -p "${s##*:}" sentinel get-master-addr-by-name "$SENTINEL_NAME" 2>/dev/null | tr -d '\r' | tr '\n' ' ') || reply=""
  host=${reply%% *}
  rest=${reply#* }
  port=${rest%% *}
  case $port in ''|*[!0-9]*) continue ;; esac
  master="$host $port"
  break
done
[ -n "$master" ] || master=$INITIAL_MASTER
"#;

/// Every password byte as a `\xHH` escape inside a quoted config string, so any password
/// works and none is on a command line.
const HEX_PASSWORD: &str = r#"hex=$(printf %s "$REDIS_PASSWORD" | od -An -v -tx1 | tr -d ' \n' | sed 's/../\\x&/g')
"#;

/// Redis in sentinel mode: config on stdin with the password, the master's password for
/// replication, the stable name to announce, and `replicaof` unless this pod is the master.
pub fn redis_start_script() -> String {
    format!(
        r#"set -eu
{HEX_PASSWORD}{FIND_MASTER}follow=""
[ "$master" = "$ANNOUNCE_HOST $ANNOUNCE_PORT" ] || follow="replicaof $master"
exec redis-server - "$@" <<EOF
requirepass "$hex"
masterauth "$hex"
replica-announce-ip $ANNOUNCE_HOST
replica-announce-port $ANNOUNCE_PORT
$follow
EOF
"#
    )
}

/// The Sentinel: a config file written at start into its own memory-backed volume (Sentinel
/// needs a file it can rewrite), mode 600, then `redis-server FILE --sentinel`.
pub fn sentinel_start_script() -> String {
    format!(
        r#"set -eu
{HEX_PASSWORD}{FIND_MASTER}umask 077
conf="$SENTINEL_DIR/sentinel.conf"
cat > "$conf" <<EOF
port $SENTINEL_PORT
dir $SENTINEL_DIR
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $ANNOUNCE_HOST
sentinel announce-port $SENTINEL_PORT
requirepass "$hex"
sentinel sentinel-pass "$hex"
sentinel monitor $SENTINEL_NAME $master $QUORUM
sentinel auth-pass $SENTINEL_NAME "$hex"
sentinel down-after-milliseconds $SENTINEL_NAME {DOWN_AFTER_MS}
sentinel failover-timeout $SENTINEL_NAME {FAILOVER_TIMEOUT_MS}
sentinel parallel-syncs $SENTINEL_NAME 1
EOF
exec redis-server "$conf" --sentinel
"#
    )
}

/// Ready once this Sentinel knows a master (a reply whose second line is a port).
pub fn sentinel_readiness() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "sh".to_owned(),
                "-c".to_owned(),
                format!(
                    r#"redis-cli --raw -p {SENTINEL_PORT} sentinel get-master-addr-by-name {SENTINEL_MASTER_NAME} | tr -d '\r' | grep -qxE '[0-9]+'"#
                ),
            ]),
        }),
        period_seconds: Some(5),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// A Redis pod is ready when it is the master or a replica in sync with one.
pub const REDIS_READY_SENTINEL_MODE: &str = "redis-cli -h 127.0.0.1 info replication | tr -d '\\r' | grep -qxE 'role:master|master_link_status:up'";

/// Stable DNS name of Redis pod `ordinal` (resolvable before it is ready: the headless
/// Service publishes not-ready addresses).
pub fn pod_host(names: &Names, ordinal: i32) -> String {
    format!(
        "{}-{ordinal}.{}.{}.svc",
        names.redis(),
        names.redis_headless(),
        names.namespace
    )
}

fn pod_hosts(cc: &CanvasChat, names: &Names) -> impl Iterator<Item = String> {
    (0..cc.spec.redis.pod_count()).map(move |k| pod_host(names, k))
}

/// The gateways' `CANVASCHAT_REDIS_URL`: every Sentinel by its pod's stable name.
pub fn redis_url(cc: &CanvasChat, names: &Names) -> String {
    let sentinels: Vec<String> = pod_hosts(cc, names)
        .map(|h| format!("{h}:{SENTINEL_PORT}"))
        .collect();
    format!(
        "redis-sentinel://{}/0?sentinelServiceName={SENTINEL_MASTER_NAME}",
        sentinels.join(",")
    )
}

fn plain(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

/// Environment shared by both containers of a Redis pod in sentinel mode (the password
/// variables come separately, from the Secret).
pub fn topology_env(cc: &CanvasChat, names: &Names) -> Vec<EnvVar> {
    let sentinels: Vec<String> = pod_hosts(cc, names)
        .map(|h| format!("{h}:{SENTINEL_PORT}"))
        .collect();
    vec![
        EnvVar {
            name: "POD_NAME".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        // $(POD_NAME) is expanded by the kubelet.
        plain(
            "ANNOUNCE_HOST",
            format!(
                "$(POD_NAME).{}.{}.svc",
                names.redis_headless(),
                names.namespace
            ),
        ),
        plain("ANNOUNCE_PORT", REDIS_PORT.to_string()),
        plain(
            "INITIAL_MASTER",
            format!("{} {REDIS_PORT}", pod_host(names, 0)),
        ),
        plain("SENTINELS", sentinels.join(" ")),
        plain("SENTINEL_NAME", SENTINEL_MASTER_NAME.to_owned()),
        plain("SENTINEL_PORT", SENTINEL_PORT.to_string()),
        plain("SENTINEL_DIR", SENTINEL_DIR.to_owned()),
        plain("QUORUM", (cc.spec.redis.pod_count() / 2 + 1).to_string()),
    ]
}

pub fn sentinel_service_port() -> ServicePort {
    ServicePort {
        name: Some("sentinel".to_owned()),
        port: SENTINEL_PORT,
        target_port: Some(IntOrString::String("sentinel".to_owned())),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

/// Service `N-redis-sentinel`: any Sentinel, for clients other than the gateways (which list
/// every Sentinel by name).
pub fn service(cc: &CanvasChat, names: &Names) -> Service {
    Service {
        metadata: child_meta(cc, names, names.redis_sentinel(), Component::Redis),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(names, Component::Redis)),
            ports: Some(vec![sentinel_service_port()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// PodDisruptionBudget `N-redis`: a drain takes one Redis pod (and its Sentinel) at a time,
/// so a Sentinel majority and a replica to promote remain.
pub fn pdb(cc: &CanvasChat, names: &Names) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(cc, names, names.redis(), Component::Redis),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(names, Component::Redis)),
                ..Default::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Prefer one Redis pod per node, so losing a node loses at most one Redis and one Sentinel;
/// only preferred, so a one-node cluster still runs.
pub fn default_affinity(names: &Names) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(names, Component::Redis)),
                            ..Default::default()
                        }),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Requests and limits of the Sentinel container: it holds only the topology.
pub fn resources() -> ResourceRequirements {
    let q = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect(),
        )
    };
    ResourceRequirements {
        requests: q(&[("cpu", "10m"), ("memory", "16Mi")]),
        limits: q(&[("memory", "64Mi")]),
        ..Default::default()
    }
}
