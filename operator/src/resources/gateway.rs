//! The gateway Deployment `N-gateway` and its Service.

use canvaschat_crds::{CanvasChat, defaults};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    EnvVarSource, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, SecretKeySelector, Service,
    ServicePort, ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::auth::{self, AUTH_SECRET_HASH_ANNOTATION};
use super::{
    BuildOptions, CONFIG_HASH_ANNOTATION, Component, GATEWAY_METRICS_PORT, GATEWAY_PORT,
    GATEWAY_SERVICE_PORT, METRICS_PORT_NAME, Names, SECRET_HASH_ANNOTATION, child_meta,
    image_pull_secrets, labels, non_empty, password_secret, selector_labels,
};

/// Seconds added to the gateway's drain time for terminationGracePeriodSeconds, so the
/// kubelet never kills a pod that is still draining.
const TERMINATION_MARGIN_SECONDS: i64 = 10;

pub fn service(cc: &CanvasChat, names: &Names) -> Service {
    Service {
        metadata: child_meta(cc, names, names.gateway(), Component::Gateway),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(names, Component::Gateway)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: GATEWAY_SERVICE_PORT,
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// The Redis password as the gateway's own variable, straight from the Secret.
fn password_env(cc: &CanvasChat) -> Vec<EnvVar> {
    let (name, key) = password_secret(cc);
    vec![EnvVar {
        name: "CANVASCHAT_REDIS_PASSWORD".to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name,
                key,
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]
}

pub fn deployment(
    cc: &CanvasChat,
    names: &Names,
    config_map: &str,
    config_hash: &str,
    options: &BuildOptions,
) -> Deployment {
    let g = &cc.spec.gateway;
    let mut pod_annotations = g.pod_annotations.clone();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.to_owned(), config_hash.to_owned());
    if let Some(hash) = &options.password_hash {
        pod_annotations.insert(SECRET_HASH_ANNOTATION.to_owned(), hash.clone());
    }
    if let Some(hash) = &options.auth_secret_hash {
        pod_annotations.insert(AUTH_SECRET_HASH_ANNOTATION.to_owned(), hash.clone());
    }
    let mut volumes = vec![Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }];
    let mut volume_mounts = vec![VolumeMount {
        name: "tmp".to_owned(),
        mount_path: "/tmp".to_owned(),
        ..Default::default()
    }];
    if let Some((volume, mount)) = auth::key_volume(&cc.spec.auth) {
        volumes.push(volume);
        volume_mounts.push(mount);
    }
    let selector = selector_labels(names, Component::Gateway);

    let container = Container {
        name: "gateway".to_owned(),
        image: Some(
            g.image
                .clone()
                .unwrap_or_else(|| options.gateway_image.clone()),
        ),
        image_pull_policy: Some(g.image_pull_policy.as_str().to_owned()),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".to_owned()),
                container_port: GATEWAY_PORT,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            },
            // The admin listener (CANVASCHAT_ADMIN_LISTEN, default 0.0.0.0:9090) serving
            // /metrics; not behind the Service, scraped by the PodMonitor.
            ContainerPort {
                name: Some(METRICS_PORT_NAME.to_owned()),
                container_port: GATEWAY_METRICS_PORT,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            },
        ]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: config_map.to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }]),
        env: Some(password_env(cc)),
        resources: Some(
            g.resources
                .clone()
                .unwrap_or_else(defaults::gateway_resources),
        ),
        security_context: Some(
            g.security_context
                .clone()
                .unwrap_or_else(defaults::container_security_context),
        ),
        // Startup gives a slow node up to a minute before liveness may restart the pod.
        startup_probe: Some(http_probe("/health", 2, 30)),
        liveness_probe: Some(http_probe("/health", 10, 3)),
        readiness_probe: Some(http_probe("/ready", 5, 2)),
        volume_mounts: Some(volume_mounts),
        ..Default::default()
    };

    Deployment {
        metadata: child_meta(cc, names, names.gateway(), Component::Gateway),
        spec: DeploymentSpec {
            // While the HPA owns scaling the field is left out, so the operator never
            // resets the HPA's choice.
            replicas: (!g.autoscaling.enabled).then_some(g.replicas),
            revision_history_limit: Some(5),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::String("25%".to_owned())),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(names, Component::Gateway)),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(
                        i64::from(g.settings.shutdown_grace_seconds) + TERMINATION_MARGIN_SECONDS,
                    ),
                    security_context: Some(
                        g.pod_security_context
                            .clone()
                            .unwrap_or_else(defaults::gateway_pod_security_context),
                    ),
                    image_pull_secrets: image_pull_secrets(cc),
                    node_selector: non_empty(&g.scheduling.node_selector),
                    affinity: g.scheduling.affinity.clone(),
                    tolerations: (!g.scheduling.tolerations.is_empty())
                        .then(|| g.scheduling.tolerations.clone()),
                    topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                        max_skew: 1,
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        when_unsatisfiable: "ScheduleAnyway".to_owned(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}
