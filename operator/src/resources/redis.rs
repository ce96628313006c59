//! Redis: StatefulSet `N-redis` (one replica, PVC template, AOF), headless Service
//! `N-redis-headless`, client Service `N-redis`, and NetworkPolicy `N-redis` that admits only
//! the chat's gateway pods.

use std::collections::BTreeMap;

use canvaschat_crds::{CanvasChat, defaults};
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

use super::{
    Component, Names, REDIS_PORT, SECRET_HASH_ANNOTATION, child_meta, image_pull_secrets, labels,
    non_empty, password_secret, selector_labels,
};

const DATA_VOLUME: &str = "data";

fn redis_port() -> ServicePort {
    ServicePort {
        name: Some("redis".to_owned()),
        port: REDIS_PORT,
        target_port: Some(IntOrString::String("redis".to_owned())),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

pub fn headless_service(cc: &CanvasChat, names: &Names) -> Service {
    Service {
        metadata: child_meta(cc, names, names.redis_headless(), Component::Redis),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            // Stable DNS for the pod even before it is ready (governing Service).
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(names, Component::Redis)),
            ports: Some(vec![redis_port()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn client_service(cc: &CanvasChat, names: &Names) -> Service {
    Service {
        metadata: child_meta(cc, names, names.redis(), Component::Redis),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(names, Component::Redis)),
            ports: Some(vec![redis_port()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn network_policy(cc: &CanvasChat, names: &Names) -> NetworkPolicy {
    NetworkPolicy {
        metadata: child_meta(cc, names, names.redis(), Component::Redis),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(names, Component::Redis)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(names, Component::Gateway)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(REDIS_PORT)),
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                }]),
            }]),
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
    let mut command: Vec<String> = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        START_SCRIPT.to_owned(),
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
    command
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
    let ping = Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "sh".to_owned(),
                "-c".to_owned(),
                r#"test "$(redis-cli -h 127.0.0.1 ping)" = PONG"#.to_owned(),
            ]),
        }),
        period_seconds: Some(5),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let container = Container {
        name: "redis".to_owned(),
        image: Some(r.image.clone().unwrap_or_else(defaults::redis_image)),
        image_pull_policy: Some(r.image_pull_policy.as_str().to_owned()),
        command: Some(command(cc)),
        env: Some(password_env(cc)),
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
    let (volumes, claims) = if r.storage.enabled {
        (None, Some(vec![volume_claim(cc, names)]))
    } else {
        (
            Some(vec![Volume {
                name: DATA_VOLUME.to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            }]),
            None,
        )
    };
    let when_deleted = if r.storage.retain_on_delete {
        "Retain"
    } else {
        "Delete"
    };
    StatefulSet {
        metadata: child_meta(cc, names, names.redis(), Component::Redis),
        spec: StatefulSetSpec {
            replicas: Some(1),
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
                    containers: vec![container],
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
                    affinity: r.scheduling.affinity.clone(),
                    tolerations: (!r.scheduling.tolerations.is_empty())
                        .then(|| r.scheduling.tolerations.clone()),
                    volumes,
                    ..Default::default()
                }),
            },
            volume_claim_templates: claims,
            ..Default::default()
        },
        ..Default::default()
    }
}
