//! PodMonitor `N-gateway` (Prometheus Operator) scraping the gateway pods' metrics port.
//! A dynamic object, so clusters without the Prometheus Operator CRDs need nothing.

use canvaschat_crds::CanvasChat;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{Component, METRICS_PORT_NAME, Names, child_meta, selector_labels};

/// The PodMonitor kind the operator owns.
pub fn pod_monitor_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "PodMonitor",
    ))
}

pub fn pod_monitor(cc: &CanvasChat, names: &Names) -> Option<DynamicObject> {
    if !cc.spec.monitoring.pod_monitor {
        return None;
    }
    let ar = pod_monitor_resource();
    let mut monitor = DynamicObject::new(&names.gateway(), &ar);
    monitor.metadata = child_meta(cc, names, names.gateway(), Component::Gateway);
    monitor.data = json!({
        "spec": {
            "selector": {"matchLabels": selector_labels(names, Component::Gateway)},
            "podMetricsEndpoints": [{"port": METRICS_PORT_NAME, "path": "/metrics"}],
        }
    });
    Some(monitor)
}
