//! HorizontalPodAutoscaler `N-gateway` (autoscaling/v2) on CPU and memory utilisation and,
//! with `connectionsPerPod`, on the gateway's open WebSocket connections.

use canvaschat_crds::{CanvasChat, ScalingBehavior};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec,
    MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{Component, Names, child_meta};

fn utilization(resource: &str, percent: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".to_owned(),
        resource: Some(ResourceMetricSource {
            name: resource.to_owned(),
            target: MetricTarget {
                type_: "Utilization".to_owned(),
                average_utilization: Some(percent),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// The gateway's gauge of open WebSocket connections (on its admin port's `/metrics`), as a
/// custom metrics adapter serves it per pod.
pub const CONNECTIONS_METRIC: &str = "canvaschat_connections_active";

/// Open connections per pod, averaged over the gateway pods: the HPA wants
/// `ceil(total / target)` pods, whichever pods hold them, so connections still moving
/// after a scale-up do not make it add more.
fn connections(per_pod: i32) -> MetricSpec {
    MetricSpec {
        type_: "Pods".to_owned(),
        pods: Some(PodsMetricSource {
            metric: MetricIdentifier {
                name: CONNECTIONS_METRIC.to_owned(),
                selector: None,
            },
            target: MetricTarget {
                type_: "AverageValue".to_owned(),
                average_value: Some(Quantity(per_pod.to_string())),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// Within one period the larger of the two policies applies (selectPolicy Max).
fn rules(b: &ScalingBehavior) -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(b.stabilization_window_seconds),
        select_policy: Some("Max".to_owned()),
        policies: Some(vec![
            HPAScalingPolicy {
                type_: "Percent".to_owned(),
                value: b.percent,
                period_seconds: b.period_seconds,
            },
            HPAScalingPolicy {
                type_: "Pods".to_owned(),
                value: b.pods,
                period_seconds: b.period_seconds,
            },
        ]),
        ..Default::default()
    }
}

pub fn hpa(cc: &CanvasChat, names: &Names) -> HorizontalPodAutoscaler {
    let a = &cc.spec.gateway.autoscaling;
    HorizontalPodAutoscaler {
        metadata: child_meta(cc, names, names.gateway(), Component::Gateway),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: names.gateway(),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(
                [
                    Some(utilization("cpu", a.target_cpu_utilization_percentage)),
                    Some(utilization(
                        "memory",
                        a.target_memory_utilization_percentage,
                    )),
                    a.connections_per_pod.map(connections),
                ]
                .into_iter()
                .flatten()
                .collect(),
            ),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_up: Some(rules(&a.scale_up)),
                scale_down: Some(rules(&a.scale_down)),
            }),
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(autoscaling_yaml: &str) -> CanvasChat {
        serde_yaml::from_str(&format!(
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {{name: demo, namespace: chat}}\nspec: {{gateway: {{autoscaling: {autoscaling_yaml}}}}}\n"
        ))
        .expect("fixture parses")
    }

    fn render(cc: &CanvasChat) -> HorizontalPodAutoscaler {
        hpa(cc, &Names::of(cc))
    }

    #[test]
    fn without_connections_per_pod_only_cpu_and_memory() {
        let metrics = render(&chat("{}")).spec.metrics.expect("metrics");
        let kinds: Vec<(&str, Option<&str>)> = metrics
            .iter()
            .map(|m| {
                (
                    m.type_.as_str(),
                    m.resource.as_ref().map(|r| r.name.as_str()),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![("Resource", Some("cpu")), ("Resource", Some("memory"))]
        );
    }

    #[test]
    fn connections_per_pod_adds_a_pods_metric_on_the_connection_gauge() {
        let hpa = render(&chat("{connectionsPerPod: 800}"));
        let metrics = serde_json::to_value(&hpa).expect("serialises")["spec"]["metrics"].clone();
        assert_eq!(
            metrics[2],
            serde_json::json!({
                "type": "Pods",
                "pods": {
                    "metric": {"name": "canvaschat_connections_active"},
                    "target": {"type": "AverageValue", "averageValue": "800"},
                },
            })
        );
        assert_eq!(metrics.as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn connections_per_pod_changes_nothing_else() {
        let plain = render(&chat("{minReplicas: 3, maxReplicas: 30}"));
        let mut with = render(&chat(
            "{minReplicas: 3, maxReplicas: 30, connectionsPerPod: 2000}",
        ));
        let metrics = with.spec.metrics.as_mut().expect("metrics");
        let added = metrics.pop().expect("the connections metric");
        assert_eq!(added.type_, "Pods");
        assert_eq!(plain, with);
    }

    #[test]
    fn the_metric_is_the_gateways_gauge() {
        // The gateway registers its metrics under the `canvaschat` prefix.
        let gateway = include_str!("../../../gateway/src/metrics.rs");
        let name = CONNECTIONS_METRIC
            .strip_prefix("canvaschat_")
            .expect("canvaschat_ prefix");
        assert!(gateway.contains(&format!("\"{name}\"")));
        assert!(gateway.contains("Registry::with_prefix(\"canvaschat\")"));
    }
}
