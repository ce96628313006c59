//! Status computed from what the children report. Pure: the same inputs give the same
//! status, and a condition keeps its lastTransitionTime while its status does not change, so
//! the controller writes status only when something really changed.

use canvaschat_crds::{
    CONDITION_DEGRADED, CONDITION_PAUSED, CONDITION_PROGRESSING, CONDITION_READY,
    CONDITION_ROUTE_ACCEPTED, CanvasChat, CanvasChatStatus,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::resources;

/// Container waiting reasons that need a human rather than more time.
const STUCK_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// A pod of the chat that will not get better by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProblem {
    pub pod: String,
    /// `CrashLoopBackOff`, `ImagePullBackOff`, ..., or `Unschedulable`.
    pub reason: String,
    pub message: String,
}

/// What the gateway Deployment, the Redis StatefulSet and their pods report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildState {
    /// The gateway Deployment exists.
    pub gateway_exists: bool,
    /// The Deployment controller has seen the latest Deployment spec.
    pub gateway_observed: bool,
    /// Pods the Deployment wants (set by the operator or the HPA).
    pub gateway_desired: i32,
    pub gateway_replicas: i32,
    pub gateway_updated: i32,
    pub gateway_ready: i32,
    /// The Deployment reports ProgressDeadlineExceeded.
    pub gateway_stalled: bool,
    /// The StatefulSet controller has seen the latest spec and its pod runs the latest
    /// revision.
    pub redis_current: bool,
    pub redis_ready: bool,
    /// Crash-looping, unpullable or unschedulable pods of this chat.
    pub pod_problems: Vec<PodProblem>,
}

fn generation_observed(observed: Option<i64>, generation: Option<i64>) -> bool {
    matches!((observed, generation), (Some(o), Some(g)) if o >= g)
}

/// Problems of one pod, if any: a stuck container or an unschedulable pod.
pub fn pod_problem(pod: &Pod) -> Option<PodProblem> {
    let status = pod.status.as_ref()?;
    let stuck = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            STUCK_REASONS.contains(&reason).then(|| PodProblem {
                pod: pod.name_any(),
                reason: reason.to_owned(),
                message: format!(
                    "container {}: {}",
                    c.name,
                    waiting.message.as_deref().unwrap_or(reason)
                ),
            })
        });
    stuck.or_else(|| {
        status.conditions.iter().flatten().find_map(|c| {
            (c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable"))
            .then(|| PodProblem {
                pod: pod.name_any(),
                reason: "Unschedulable".to_owned(),
                message: c.message.clone().unwrap_or_default(),
            })
        })
    })
}

impl ChildState {
    pub fn from_children<'a>(
        deployment: Option<&Deployment>,
        statefulset: Option<&StatefulSet>,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> Self {
        let mut state = ChildState::default();
        if let Some(d) = deployment {
            let status = d.status.clone().unwrap_or_default();
            state.gateway_exists = true;
            state.gateway_observed =
                generation_observed(status.observed_generation, d.metadata.generation);
            state.gateway_desired = d.spec.replicas.unwrap_or(1);
            state.gateway_replicas = status.replicas.unwrap_or(0);
            state.gateway_updated = status.updated_replicas.unwrap_or(0);
            state.gateway_ready = status.ready_replicas.unwrap_or(0);
            state.gateway_stalled = status.conditions.iter().flatten().any(|c| {
                c.type_.as_deref() == Some("Progressing")
                    && c.status.as_deref() == Some("False")
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            });
        }
        if let Some(s) = statefulset {
            let status = s.status.clone().unwrap_or_default();
            let observed = generation_observed(status.observed_generation, s.metadata.generation);
            let same_revision = status.update_revision.is_none()
                || status.current_revision == status.update_revision;
            state.redis_current = observed && same_revision;
            // Every desired pod ready; in sentinel mode a pod is ready only when its Sentinel
            // knows a master and its Redis is that master or in sync with it.
            let desired = s.spec.replicas.unwrap_or(1);
            state.redis_ready =
                state.redis_current && status.ready_replicas.unwrap_or(0) >= desired;
        }
        state.pod_problems = pods.into_iter().filter_map(pod_problem).collect();
        state.pod_problems.sort_by(|a, b| a.pod.cmp(&b.pod));
        state
    }

    /// Every gateway pod runs the current template and at least `required` are ready.
    fn rolled_out(&self, required: i32) -> bool {
        self.gateway_observed
            && self.gateway_updated >= self.gateway_desired
            && self.gateway_replicas <= self.gateway_updated
            && self.gateway_ready >= required
    }
}

/// How this reconcile went, before looking at the children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every child is applied for the current generation.
    Applied,
    /// The Redis StatefulSet had an immutable field changed: it was deleted (pods and claims
    /// orphaned) and is being created again.
    RecreatingStatefulSet,
    /// `spec.paused` is true; nothing was applied.
    Paused,
    /// The object breaks a validation rule; nothing was applied.
    InvalidSpec(String),
    /// Some children could not be applied or deleted: the API's reason, and a message naming
    /// them.
    ApplyFailed { reason: String, message: String },
    /// The Redis password Secret (or its key) does not exist.
    SecretMissing(String),
}

struct Cond {
    type_: &'static str,
    status: bool,
    reason: String,
    message: String,
}

impl Cond {
    fn new(type_: &'static str, status: bool, reason: &str, message: String) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_owned(),
            message,
        }
    }
}

/// What decides readiness besides the children.
struct Target {
    /// Gateway pods that must be ready: the fixed replicas, or the HPA minimum.
    required: i32,
    /// The generation the operator last applied (None: never).
    applied: Option<i64>,
    generation: Option<i64>,
}

fn redis_word(s: &ChildState) -> &'static str {
    if s.redis_ready { "ready" } else { "not ready" }
}

fn ready(outcome: &Outcome, s: &ChildState, t: &Target) -> Cond {
    let counts = format!(
        "{}/{} gateway pods ready ({} required), redis {}",
        s.gateway_ready,
        s.gateway_desired,
        t.required,
        redis_word(s)
    );
    let not = |reason: &str, message: String| Cond::new(CONDITION_READY, false, reason, message);
    match outcome {
        Outcome::InvalidSpec(_) => {
            return not("InvalidSpec", "the spec must be fixed first".into());
        }
        Outcome::SecretMissing(m) => return not("SecretMissing", m.clone()),
        Outcome::ApplyFailed { reason, .. } => {
            return not(
                "ApplyFailed",
                format!("applying failed ({reason}); {counts}"),
            );
        }
        Outcome::Paused if t.applied != t.generation => {
            return not(
                "Paused",
                format!(
                    "paused: generation {} is not applied (last applied {}); {counts}",
                    t.generation.unwrap_or_default(),
                    t.applied.map_or("none".to_owned(), |g| g.to_string())
                ),
            );
        }
        Outcome::RecreatingStatefulSet => {
            return not(
                "RecreatingStatefulSet",
                format!("the Redis StatefulSet is being recreated; {counts}"),
            );
        }
        Outcome::Paused | Outcome::Applied => {}
    }
    if !s.gateway_exists {
        not("GatewayMissing", counts)
    } else if !s.redis_ready {
        not("RedisNotReady", counts)
    } else if !s.rolled_out(t.required) {
        let reason = if s.gateway_ready < t.required {
            "GatewayNotReady"
        } else {
            "RollingOut"
        };
        not(reason, counts)
    } else {
        Cond::new(CONDITION_READY, true, "Available", counts)
    }
}

fn progressing(outcome: &Outcome, s: &ChildState, t: &Target) -> Cond {
    let cond =
        |status, reason: &str, message| Cond::new(CONDITION_PROGRESSING, status, reason, message);
    match outcome {
        Outcome::Paused => cond(
            false,
            "Paused",
            "reconciliation is paused (spec.paused is true)".into(),
        ),
        Outcome::InvalidSpec(_) => {
            cond(false, "InvalidSpec", "the spec must be fixed first".into())
        }
        Outcome::SecretMissing(m) => cond(false, "SecretMissing", m.clone()),
        Outcome::RecreatingStatefulSet => cond(
            true,
            "RecreatingStatefulSet",
            "the Redis StatefulSet is recreated with its pods and claims kept".into(),
        ),
        _ if s.gateway_stalled => cond(
            false,
            "RolloutStalled",
            "the gateway rollout exceeded its progress deadline".into(),
        ),
        _ if s.rolled_out(t.required) && s.redis_ready => cond(
            false,
            "RolloutComplete",
            format!("{} gateway pods up to date", s.gateway_updated),
        ),
        _ => cond(
            true,
            "RollingOut",
            format!(
                "{}/{} gateway pods updated, {} ready; redis {}",
                s.gateway_updated,
                s.gateway_desired,
                s.gateway_ready,
                if s.redis_ready { "ready" } else { "starting" }
            ),
        ),
    }
}

fn degraded(outcome: &Outcome, s: &ChildState) -> Cond {
    let yes = |reason: &str, message: String| Cond::new(CONDITION_DEGRADED, true, reason, message);
    match outcome {
        Outcome::InvalidSpec(m) => return yes("InvalidSpec", m.clone()),
        Outcome::ApplyFailed { reason, message } => {
            return yes(&format!("ApplyFailed{reason}"), message.clone());
        }
        Outcome::SecretMissing(m) => return yes("SecretMissing", m.clone()),
        _ => {}
    }
    if let Some(first) = s.pod_problems.first() {
        let message = s
            .pod_problems
            .iter()
            .map(|p| format!("pod {}: {}: {}", p.pod, p.reason, p.message))
            .collect::<Vec<_>>()
            .join("; ");
        return yes(&first.reason, message);
    }
    if s.gateway_stalled {
        return yes(
            "RolloutStalled",
            "the gateway Deployment exceeded its progress deadline; check its pods".into(),
        );
    }
    Cond::new(
        CONDITION_DEGRADED,
        false,
        "AsExpected",
        "no problems found".into(),
    )
}

fn paused(outcome: &Outcome, t: &Target) -> Cond {
    if *outcome == Outcome::Paused {
        Cond::new(
            CONDITION_PAUSED,
            true,
            "Paused",
            format!(
                "spec.paused is true: children are left as they are; generation {} applied, current {}",
                t.applied.map_or("none".to_owned(), |g| g.to_string()),
                t.generation.unwrap_or_default()
            ),
        )
    } else {
        Cond::new(
            CONDITION_PAUSED,
            false,
            "Reconciling",
            "spec.paused is false".into(),
        )
    }
}

/// Keep condition messages short enough to read in `kubectl describe` (the API allows 32768).
fn bounded(message: String) -> String {
    const MAX: usize = 4096;
    if message.len() <= MAX {
        return message;
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// Condition reasons must match `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`, at most 1024.
fn reason_token(reason: &str) -> String {
    let token: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(1024)
        .collect();
    if token.starts_with(|c: char| c.is_ascii_alphabetic()) {
        token
    } else {
        format!("R{token}").chars().take(1024).collect()
    }
}

fn to_condition(
    c: Cond,
    previous: &CanvasChatStatus,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if c.status { "True" } else { "False" }.to_owned();
    let last_transition_time = previous
        .condition(c.type_)
        .filter(|p| p.status == status)
        .map(|p| p.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: c.type_.to_owned(),
        status,
        reason: reason_token(&c.reason),
        message: bounded(c.message),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The status of `cc` given how the reconcile went and what its children report. While
/// paused, `observedGeneration` stays at the last generation applied.
pub fn compute(
    cc: &CanvasChat,
    outcome: &Outcome,
    children: &ChildState,
    now: Timestamp,
) -> CanvasChatStatus {
    let previous = cc.status.clone().unwrap_or_default();
    let generation = cc.metadata.generation;
    let observed_generation = match outcome {
        Outcome::Paused => previous.observed_generation,
        _ => generation,
    };
    let gateway = &cc.spec.gateway;
    let target = Target {
        required: if gateway.autoscaling.enabled {
            gateway.autoscaling.min_replicas
        } else {
            gateway.replicas
        },
        applied: observed_generation,
        generation,
    };
    let conditions = [
        ready(outcome, children, &target),
        progressing(outcome, children, &target),
        degraded(outcome, children),
        paused(outcome, &target),
    ]
    .into_iter()
    .map(|c| to_condition(c, &previous, generation, now))
    .collect();
    CanvasChatStatus {
        observed_generation,
        conditions,
        replicas: children.gateway_replicas,
        ready_replicas: children.gateway_ready,
        redis_ready: children.redis_ready,
        url: Some(resources::url(cc)),
    }
}

/// What the operator knows of the chat's HTTPRoute.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteObservation {
    /// The cluster does not serve HTTPRoute; the message says what to install.
    NotServed(String),
    /// The route does not exist (yet), or could not be read: the message says which.
    Absent(String),
    /// The live route's `status` (Gateway API RouteStatus), `null` before any Gateway wrote.
    Live(serde_json::Value),
}

fn route_cond(route: &RouteObservation) -> Cond {
    let no =
        |reason: &str, message: String| Cond::new(CONDITION_ROUTE_ACCEPTED, false, reason, message);
    let parents = match route {
        RouteObservation::NotServed(message) => return no("GatewayAPIMissing", message.clone()),
        RouteObservation::Absent(message) => return no("RouteMissing", message.clone()),
        RouteObservation::Live(status) => status
            .get("parents")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default(),
    };
    if parents.is_empty() {
        return no(
            "Pending",
            "no Gateway has accepted or rejected the route yet (is a Gateway controller running for its parentRefs?)".to_owned(),
        );
    }
    let mut accepted = Vec::new();
    for parent in &parents {
        let gateway = parent
            .pointer("/parentRef/name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?");
        let conditions = parent
            .get("conditions")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        for type_ in ["Accepted", "ResolvedRefs"] {
            let found = conditions
                .iter()
                .find(|c| c.get("type").and_then(serde_json::Value::as_str) == Some(type_));
            let field = |c: &serde_json::Value, k: &str| {
                c.get(k)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            match found {
                Some(c) if field(c, "status") == "True" => {}
                Some(c) => {
                    let reason = field(c, "reason");
                    return no(
                        if reason.is_empty() { type_ } else { &reason },
                        format!(
                            "Gateway {gateway}: {type_} is {}: {}",
                            field(c, "status"),
                            field(c, "message")
                        ),
                    );
                }
                None => {
                    return no(
                        "Pending",
                        format!("Gateway {gateway} has not reported {type_} yet"),
                    );
                }
            }
        }
        accepted.push(gateway.to_owned());
    }
    Cond::new(
        CONDITION_ROUTE_ACCEPTED,
        true,
        "Accepted",
        format!(
            "accepted by Gateway {} with its backend resolved",
            accepted.join(", ")
        ),
    )
}

/// Add the RouteAccepted condition to `status` (a chat with `spec.httpRoute`).
pub fn add_route_condition(
    status: &mut CanvasChatStatus,
    cc: &CanvasChat,
    route: &RouteObservation,
    now: Timestamp,
) {
    let previous = cc.status.clone().unwrap_or_default();
    let condition = to_condition(route_cond(route), &previous, cc.metadata.generation, now);
    status.conditions.push(condition);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(yaml: &str) -> CanvasChat {
        serde_yaml::from_str(yaml).expect("fixture parses")
    }

    fn minimal() -> CanvasChat {
        chat(
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: demo, namespace: chat, generation: 3}\nspec: {}\n",
        )
    }

    fn healthy() -> ChildState {
        ChildState {
            gateway_exists: true,
            gateway_observed: true,
            gateway_desired: 2,
            gateway_replicas: 2,
            gateway_updated: 2,
            gateway_ready: 2,
            gateway_stalled: false,
            redis_current: true,
            redis_ready: true,
            pod_problems: Vec::new(),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).expect("valid timestamp")
    }

    fn cond<'a>(s: &'a CanvasChatStatus, t: &str) -> &'a Condition {
        s.condition(t).expect("condition present")
    }

    fn failed(reason: &str, message: &str) -> Outcome {
        Outcome::ApplyFailed {
            reason: reason.into(),
            message: message.into(),
        }
    }

    #[test]
    fn healthy_children_make_a_ready_chat() {
        let status = compute(&minimal(), &Outcome::Applied, &healthy(), now());
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(cond(&status, "Ready").status, "True");
        assert_eq!(cond(&status, "Ready").reason, "Available");
        assert_eq!(cond(&status, "Progressing").status, "False");
        assert_eq!(cond(&status, "Progressing").reason, "RolloutComplete");
        assert_eq!(cond(&status, "Degraded").status, "False");
        assert_eq!(cond(&status, "Paused").status, "False");
        assert_eq!((status.replicas, status.ready_replicas), (2, 2));
        assert!(status.redis_ready);
        assert_eq!(status.url.as_deref(), Some("http://demo-gateway.chat.svc"));
    }

    #[test]
    fn rollout_in_progress_is_not_ready_for_the_new_generation() {
        let mut state = healthy();
        state.gateway_replicas = 3;
        state.gateway_updated = 1;
        let status = compute(&minimal(), &Outcome::Applied, &state, now());
        assert_eq!(cond(&status, "Ready").status, "False");
        assert_eq!(cond(&status, "Ready").reason, "RollingOut");
        assert_eq!(cond(&status, "Progressing").status, "True");
        assert_eq!(cond(&status, "Progressing").reason, "RollingOut");
    }

    #[test]
    fn deployment_not_yet_observed_is_not_ready() {
        let mut state = healthy();
        state.gateway_observed = false;
        let status = compute(&minimal(), &Outcome::Applied, &state, now());
        assert_eq!(cond(&status, "Ready").status, "False");
    }

    #[test]
    fn one_ready_pod_is_not_enough_when_more_are_required() {
        let mut state = healthy();
        state.gateway_ready = 1;
        let status = compute(&minimal(), &Outcome::Applied, &state, now());
        assert_eq!(cond(&status, "Ready").reason, "GatewayNotReady");

        // Fixed replicas: all of them must be ready.
        let mut fixed = chat(
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: demo, namespace: chat, generation: 3}\nspec: {gateway: {replicas: 3, autoscaling: {enabled: false}}}\n",
        );
        let mut state = healthy();
        state.gateway_desired = 3;
        state.gateway_replicas = 3;
        state.gateway_updated = 3;
        state.gateway_ready = 2;
        let status = compute(&fixed, &Outcome::Applied, &state, now());
        assert_eq!(cond(&status, "Ready").status, "False");
        state.gateway_ready = 3;
        fixed.status = None;
        let status = compute(&fixed, &Outcome::Applied, &state, now());
        assert_eq!(cond(&status, "Ready").status, "True");
    }

    #[test]
    fn hpa_above_its_minimum_needs_only_the_minimum_ready() {
        let mut state = healthy();
        state.gateway_desired = 5;
        state.gateway_replicas = 5;
        state.gateway_updated = 5;
        state.gateway_ready = 2;
        let status = compute(&minimal(), &Outcome::Applied, &state, now());
        assert_eq!(cond(&status, "Ready").status, "True");
    }

    #[test]
    fn redis_not_ready_or_not_current_is_not_ready() {
        let mut state = healthy();
        state.redis_ready = false;
        let status = compute(&minimal(), &Outcome::Applied, &state, now());
        assert_eq!(cond(&status, "Ready").status, "False");
        assert_eq!(cond(&status, "Ready").reason, "RedisNotReady");
        assert_eq!(cond(&status, "Progressing").status, "True");
    }

    #[test]
    fn missing_gateway_is_not_ready() {
        let status = compute(&minimal(), &Outcome::Applied, &ChildState::default(), now());
        assert_eq!(cond(&status, "Ready").reason, "GatewayMissing");
    }

    #[test]
    fn apply_failure_is_degraded_with_the_api_reason() {
        let status = compute(
            &minimal(),
            &failed("Forbidden", "Ingress demo: Forbidden (403): no"),
            &healthy(),
            now(),
        );
        assert_eq!(cond(&status, "Degraded").status, "True");
        assert_eq!(cond(&status, "Degraded").reason, "ApplyFailedForbidden");
        assert!(cond(&status, "Degraded").message.contains("403"));
        assert_eq!(cond(&status, "Ready").status, "False");
        assert_eq!(cond(&status, "Ready").reason, "ApplyFailed");
    }

    #[test]
    fn stalled_rollout_is_degraded() {
        let mut state = healthy();
        state.gateway_stalled = true;
        let status = compute(&minimal(), &Outcome::Applied, &state, now());
        assert_eq!(cond(&status, "Degraded").reason, "RolloutStalled");
        assert_eq!(cond(&status, "Progressing").reason, "RolloutStalled");
    }

    #[test]
    fn crash_loops_and_unschedulable_pods_are_degraded_even_outside_a_rollout() {
        let mut state = healthy();
        state.pod_problems = vec![
            PodProblem {
                pod: "demo-gateway-1".into(),
                reason: "CrashLoopBackOff".into(),
                message: "container gateway: back-off".into(),
            },
            PodProblem {
                pod: "demo-redis-0".into(),
                reason: "Unschedulable".into(),
                message: "0/3 nodes are available".into(),
            },
        ];
        let status = compute(&minimal(), &Outcome::Applied, &state, now());
        let degraded = cond(&status, "Degraded");
        assert_eq!(degraded.status, "True");
        assert_eq!(degraded.reason, "CrashLoopBackOff");
        assert!(degraded.message.contains("demo-redis-0: Unschedulable"));
    }

    #[test]
    fn pod_problems_are_read_from_pod_status() {
        let crashing: Pod = serde_yaml::from_str(
            r#"
metadata: {name: demo-gateway-abc}
status:
  containerStatuses:
  - name: gateway
    image: x
    imageID: ""
    ready: false
    restartCount: 5
    state: {waiting: {reason: CrashLoopBackOff, message: back-off 5m0s}}
"#,
        )
        .expect("pod fixture");
        let problem = pod_problem(&crashing).expect("crash loop found");
        assert_eq!(problem.reason, "CrashLoopBackOff");
        assert!(problem.message.contains("back-off 5m0s"));

        let pending: Pod = serde_yaml::from_str(
            r#"
metadata: {name: demo-redis-0}
status:
  conditions:
  - {type: PodScheduled, status: "False", reason: Unschedulable, message: "0/1 nodes are available"}
"#,
        )
        .expect("pod fixture");
        assert_eq!(
            pod_problem(&pending).expect("found").reason,
            "Unschedulable"
        );

        let starting: Pod = serde_yaml::from_str(
            r#"
metadata: {name: demo-redis-0}
status:
  containerStatuses:
  - {name: redis, image: x, imageID: "", ready: false, restartCount: 0, state: {waiting: {reason: ContainerCreating}}}
"#,
        )
        .expect("pod fixture");
        assert_eq!(pod_problem(&starting), None);
    }

    #[test]
    fn invalid_spec_and_missing_secret() {
        let status = compute(
            &minimal(),
            &Outcome::InvalidSpec("spec.gateway.autoscaling: minReplicas ...".into()),
            &ChildState::default(),
            now(),
        );
        assert_eq!(cond(&status, "Ready").reason, "InvalidSpec");
        assert_eq!(cond(&status, "Degraded").reason, "InvalidSpec");
        let status = compute(
            &minimal(),
            &Outcome::SecretMissing("Secret demo-pw has no key password".into()),
            &healthy(),
            now(),
        );
        assert_eq!(cond(&status, "Degraded").reason, "SecretMissing");
        assert_eq!(cond(&status, "Ready").status, "False");
    }

    #[test]
    fn paused_keeps_the_observed_generation_and_says_so() {
        let mut cc = minimal();
        cc.status = Some(compute(&cc, &Outcome::Applied, &healthy(), now()));
        cc.metadata.generation = Some(5);
        let status = compute(&cc, &Outcome::Paused, &healthy(), now());
        assert_eq!(status.observed_generation, Some(3));
        let paused = cond(&status, "Paused");
        assert_eq!(paused.status, "True");
        assert!(
            paused.message.contains("generation 3 applied, current 5"),
            "{}",
            paused.message
        );
        assert_eq!(cond(&status, "Ready").status, "False");
        assert_eq!(cond(&status, "Ready").reason, "Paused");
        assert_eq!(cond(&status, "Progressing").reason, "Paused");

        // Unpausing applies the current generation.
        cc.status = Some(status);
        let status = compute(&cc, &Outcome::Applied, &healthy(), now());
        assert_eq!(status.observed_generation, Some(5));
        assert_eq!(cond(&status, "Paused").status, "False");
        assert_eq!(cond(&status, "Ready").status, "True");
    }

    #[test]
    fn recreating_statefulset_is_progressing() {
        let status = compute(
            &minimal(),
            &Outcome::RecreatingStatefulSet,
            &healthy(),
            now(),
        );
        assert_eq!(cond(&status, "Progressing").reason, "RecreatingStatefulSet");
        assert_eq!(cond(&status, "Ready").status, "False");
    }

    #[test]
    fn reasons_are_valid_condition_reasons() {
        assert_eq!(reason_token("ApplyFailedForbidden"), "ApplyFailedForbidden");
        assert_eq!(reason_token("ApplyFailed(403)"), "ApplyFailed403");
        assert_eq!(reason_token("409"), "R409");
    }

    #[test]
    fn unchanged_state_gives_identical_status() {
        let mut cc = minimal();
        let first = compute(&cc, &Outcome::Applied, &healthy(), now());
        cc.status = Some(first.clone());
        let later = Timestamp::from_second(1_700_000_600).expect("valid timestamp");
        let second = compute(&cc, &Outcome::Applied, &healthy(), later);
        assert_eq!(first, second);

        // A status change moves only that condition's transition time.
        let mut state = healthy();
        state.redis_ready = false;
        let third = compute(&cc, &Outcome::Applied, &state, later);
        assert_eq!(cond(&third, "Ready").last_transition_time, Time(later));
        assert_eq!(
            cond(&third, "Degraded").last_transition_time,
            cond(&first, "Degraded").last_transition_time
        );
    }

    #[test]
    fn sentinel_mode_redis_is_ready_only_with_every_desired_pod_ready() {
        let sts = |ready: i32| -> StatefulSet {
            serde_yaml::from_str(&format!(
                r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: demo-redis, generation: 1}}
spec:
  replicas: 3
  selector: {{matchLabels: {{a: b}}}}
  serviceName: demo-redis-headless
  template: {{spec: {{containers: [{{name: redis}}, {{name: sentinel}}]}}}}
status: {{observedGeneration: 1, replicas: 3, readyReplicas: {ready}, currentRevision: r1, updateRevision: r1}}
"#
            ))
            .expect("statefulset fixture")
        };
        let two = sts(2);
        assert!(!ChildState::from_children(None, Some(&two), []).redis_ready);
        let three = sts(3);
        assert!(ChildState::from_children(None, Some(&three), []).redis_ready);
    }

    #[test]
    fn child_state_from_deployment_and_statefulset() {
        let deployment: Deployment = serde_yaml::from_str(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: demo-gateway, generation: 4}
spec:
  replicas: 3
  selector: {matchLabels: {a: b}}
  template: {spec: {containers: [{name: gateway}]}}
status:
  observedGeneration: 4
  replicas: 3
  updatedReplicas: 3
  readyReplicas: 2
  conditions:
  - {type: Progressing, status: "True", reason: NewReplicaSetAvailable}
"#,
        )
        .expect("deployment fixture");
        let statefulset: StatefulSet = serde_yaml::from_str(
            r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: demo-redis, generation: 1}
spec:
  selector: {matchLabels: {a: b}}
  serviceName: demo-redis-headless
  template: {spec: {containers: [{name: redis}]}}
status: {observedGeneration: 1, replicas: 1, readyReplicas: 1, currentRevision: demo-redis-1, updateRevision: demo-redis-2}
"#,
        )
        .expect("statefulset fixture");
        let state = ChildState::from_children(Some(&deployment), Some(&statefulset), []);
        assert_eq!(
            state,
            ChildState {
                gateway_exists: true,
                gateway_observed: true,
                gateway_desired: 3,
                gateway_replicas: 3,
                gateway_updated: 3,
                gateway_ready: 2,
                gateway_stalled: false,
                redis_current: false,
                redis_ready: false,
                pod_problems: Vec::new(),
            }
        );
        assert!(!state.rolled_out(3));
        assert!(state.rolled_out(2));
        assert_eq!(
            ChildState::from_children(None, None, []),
            ChildState::default()
        );
    }

    #[test]
    fn urls_follow_ingress_and_tls() {
        let tls = chat(
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: demo, namespace: chat}\nspec: {ingress: {enabled: true, host: chat.example.com, tlsSecretName: chat-tls}}\n",
        );
        assert_eq!(resources::url(&tls), "https://chat.example.com");
        let no_host = chat(
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: demo, namespace: chat}\nspec: {ingress: {enabled: true}}\n",
        );
        assert_eq!(resources::url(&no_host), "http://demo-gateway.chat.svc");
    }

    fn route_status(json: serde_json::Value) -> RouteObservation {
        RouteObservation::Live(json)
    }

    #[test]
    fn route_condition_follows_every_parent() {
        let accepted = route_status(serde_json::json!({"parents": [{
            "parentRef": {"name": "public"},
            "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""},
                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": ""},
            ],
        }]}));
        let c = route_cond(&accepted);
        assert!(c.status, "{}", c.message);
        assert_eq!(c.reason, "Accepted");
        assert!(c.message.contains("public"));

        let unresolved = route_status(serde_json::json!({"parents": [
            {"parentRef": {"name": "public"}, "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted"},
                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"}]},
            {"parentRef": {"name": "internal"}, "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted"},
                {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound", "message": "no Service"}]},
        ]}));
        let c = route_cond(&unresolved);
        assert!(!c.status);
        assert_eq!(c.reason, "BackendNotFound");
        assert!(c.message.contains("internal") && c.message.contains("no Service"));

        let rejected = route_status(
            serde_json::json!({"parents": [{"parentRef": {"name": "public"},
            "conditions": [{"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners"}]}]}),
        );
        assert_eq!(route_cond(&rejected).reason, "NotAllowedByListeners");

        let half = route_status(
            serde_json::json!({"parents": [{"parentRef": {"name": "public"},
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}]}]}),
        );
        assert_eq!(route_cond(&half).reason, "Pending");
        assert_eq!(
            route_cond(&route_status(serde_json::Value::Null)).reason,
            "Pending"
        );
        let missing = route_cond(&RouteObservation::NotServed("install the CRDs".into()));
        assert!(!missing.status);
        assert_eq!(missing.reason, "GatewayAPIMissing");
    }

    #[test]
    fn route_condition_joins_the_status() {
        let mut cc = minimal();
        cc.spec.http_route = Some(canvaschat_crds::HttpRouteSpec {
            parent_refs: vec![],
            hostnames: vec![],
        });
        let mut status = compute(&cc, &Outcome::Applied, &healthy(), Timestamp::UNIX_EPOCH);
        add_route_condition(
            &mut status,
            &cc,
            &RouteObservation::Absent("not yet".into()),
            Timestamp::UNIX_EPOCH,
        );
        let route = status
            .condition(CONDITION_ROUTE_ACCEPTED)
            .expect("condition");
        assert_eq!(route.status, "False");
        assert_eq!(route.reason, "RouteMissing");
    }
}
