//! HorizontalPodAutoscaler `N-gateway` (autoscaling/v2) on CPU and memory utilisation.

use canvaschat_crds::{CanvasChat, ScalingBehavior};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};

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
            metrics: Some(vec![
                utilization("cpu", a.target_cpu_utilization_percentage),
                utilization("memory", a.target_memory_utilization_percentage),
            ]),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_up: Some(rules(&a.scale_up)),
                scale_down: Some(rules(&a.scale_down)),
            }),
        },
        ..Default::default()
    }
}
