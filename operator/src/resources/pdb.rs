//! PodDisruptionBudget `N-gateway`: node drains take down at most maxUnavailable gateways.

use canvaschat_crds::CanvasChat;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Component, Names, child_meta, selector_labels};

pub fn pdb(cc: &CanvasChat, names: &Names) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(cc, names, names.gateway(), Component::Gateway),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(
                cc.spec.gateway.pod_disruption_budget.max_unavailable,
            )),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(names, Component::Gateway)),
                ..Default::default()
            }),
            // Pods that never became ready may be evicted, so a crash-looping rollout cannot
            // block node drains.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}
