//! HTTPRoute `N` (Gateway API): `/` to the gateway Service, attached to the user's Gateways.
//! Built as a dynamic object, so the operator needs no Gateway API types and runs on
//! clusters without those CRDs.

use canvaschat_crds::CanvasChat;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{Component, GATEWAY_SERVICE_PORT, Names, child_meta};

/// The HTTPRoute kind the operator owns.
pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ))
}

pub fn http_route(cc: &CanvasChat, names: &Names) -> Option<DynamicObject> {
    let spec = cc.spec.http_route.as_ref()?;
    let ar = http_route_resource();
    let mut route = DynamicObject::new(&names.ingress(), &ar);
    route.metadata = child_meta(cc, names, names.ingress(), Component::Gateway);
    let mut route_spec = json!({
        "parentRefs": spec.parent_refs,
        "rules": [{
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [{"name": names.gateway(), "port": GATEWAY_SERVICE_PORT}],
        }],
    });
    if !spec.hostnames.is_empty() {
        route_spec["hostnames"] = json!(spec.hostnames);
    }
    route.data = json!({ "spec": route_spec });
    Some(route)
}
