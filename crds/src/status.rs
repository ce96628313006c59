use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type: the chat serves traffic (gateway pods ready, Redis ready).
pub const CONDITION_READY: &str = "Ready";
/// Condition type: a rollout or scale operation is under way.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition type: something needs a human (invalid spec, failed apply, failed rollout,
/// crash-looping or unschedulable pods).
pub const CONDITION_DEGRADED: &str = "Degraded";
/// Condition type: `spec.paused` is true, so the latest generation is not applied.
pub const CONDITION_PAUSED: &str = "Paused";

/// Condition type: the HTTPRoute of `spec.httpRoute` is accepted by every parent Gateway and
/// its backend resolves (the route's `Accepted` and `ResolvedRefs`). Present only with
/// `spec.httpRoute`.
pub const CONDITION_ROUTE_ACCEPTED: &str = "RouteAccepted";

/// Observed state of a CanvasChat, computed by the operator from its children.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanvasChatStatus {
    /// The latest metadata.generation the operator applied. It does not advance while the
    /// chat is paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded and Paused (and RouteAccepted with spec.httpRoute), each
    /// with a reason and message; one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Gateway pods that exist (from the Deployment status).
    #[serde(default)]
    pub replicas: i32,
    /// Gateway pods that pass their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Whether the Redis pod is ready.
    #[serde(default)]
    pub redis_ready: bool,
    /// Where users reach the chat: http://HOST for the HTTPRoute's first host name (the
    /// scheme is the Gateway listener's), else https://HOST with Ingress TLS, http://HOST
    /// without, or the in-cluster http://NAME-gateway.NAMESPACE.svc when there is no host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl CanvasChatStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}
