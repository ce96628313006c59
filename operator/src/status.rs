//! Status computed from what the children report. Pure: the same inputs give the same
//! status, and a condition keeps its lastTransitionTime while its status does not change, so
//! the controller writes status only when something really changed.

use canvaschat_crds::{
    CONDITION_DEGRADED, CONDITION_PROGRESSING, CONDITION_READY, CanvasChat, CanvasChatStatus,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::resources;

/// What the gateway Deployment and Redis StatefulSet report.
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
    pub redis_ready: bool,
}

impl ChildState {
    pub fn from_children(
        deployment: Option<&Deployment>,
        statefulset: Option<&StatefulSet>,
    ) -> Self {
        let mut state = ChildState::default();
        if let Some(d) = deployment {
            let status = d.status.clone().unwrap_or_default();
            state.gateway_exists = true;
            state.gateway_observed = match (status.observed_generation, d.metadata.generation) {
                (Some(observed), Some(generation)) => observed >= generation,
                _ => false,
            };
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
            let observed = match (status.observed_generation, s.metadata.generation) {
                (Some(observed), Some(generation)) => observed >= generation,
                _ => false,
            };
            state.redis_ready = observed && status.ready_replicas.unwrap_or(0) >= 1;
        }
        state
    }

    fn rolled_out(&self) -> bool {
        self.gateway_observed
            && self.gateway_updated >= self.gateway_desired
            && self.gateway_replicas <= self.gateway_updated
            && self.gateway_ready >= self.gateway_desired
    }
}

/// How this reconcile went, before looking at the children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every child was applied.
    Applied,
    /// `spec.paused` is true; nothing was applied.
    Paused,
    /// The object breaks a validation rule; nothing was applied.
    InvalidSpec(String),
    /// Some children could not be applied (message names them).
    ApplyFailed(String),
}

struct Cond {
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

fn ready(outcome: &Outcome, s: &ChildState) -> Cond {
    let counts = format!(
        "{}/{} gateway pods ready, redis {}",
        s.gateway_ready,
        s.gateway_desired,
        if s.redis_ready { "ready" } else { "not ready" }
    );
    let (status, reason) = if let Outcome::InvalidSpec(_) = outcome {
        (false, "InvalidSpec")
    } else if !s.gateway_exists {
        (false, "GatewayMissing")
    } else if !s.redis_ready {
        (false, "RedisNotReady")
    } else if s.gateway_ready < 1 {
        (false, "GatewayNotReady")
    } else {
        (true, "Available")
    };
    Cond {
        type_: CONDITION_READY,
        status,
        reason,
        message: counts,
    }
}

fn progressing(outcome: &Outcome, s: &ChildState) -> Cond {
    let (status, reason, message) = match outcome {
        Outcome::Paused => (
            false,
            "Paused",
            "reconciliation is paused (spec.paused is true)".to_owned(),
        ),
        Outcome::InvalidSpec(_) => (
            false,
            "InvalidSpec",
            "the spec must be fixed first".to_owned(),
        ),
        _ if s.gateway_stalled => (
            false,
            "RolloutStalled",
            "the gateway rollout exceeded its progress deadline".to_owned(),
        ),
        _ if s.rolled_out() && s.redis_ready => (
            false,
            "RolloutComplete",
            format!("{} gateway pods up to date", s.gateway_updated),
        ),
        _ => (
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
    };
    Cond {
        type_: CONDITION_PROGRESSING,
        status,
        reason,
        message,
    }
}

fn degraded(outcome: &Outcome, s: &ChildState) -> Cond {
    let (status, reason, message) = match outcome {
        Outcome::InvalidSpec(m) => (true, "InvalidSpec", m.clone()),
        Outcome::ApplyFailed(m) => (true, "ApplyFailed", m.clone()),
        _ if s.gateway_stalled => (
            true,
            "RolloutStalled",
            "the gateway Deployment exceeded its progress deadline; check its pods".to_owned(),
        ),
        _ => (false, "AsExpected", "no problems found".to_owned()),
    };
    Cond {
        type_: CONDITION_DEGRADED,
        status,
        reason,
        message,
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
        reason: c.reason.to_owned(),
        message: bounded(c.message),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The status of `cc` given how the reconcile went and what its children report.
pub fn compute(
    cc: &CanvasChat,
    outcome: &Outcome,
    children: &ChildState,
    now: Timestamp,
) -> CanvasChatStatus {
    let previous = cc.status.clone().unwrap_or_default();
    let generation = cc.metadata.generation;
    let conditions = [
        ready(outcome, children),
        progressing(outcome, children),
        degraded(outcome, children),
    ]
    .into_iter()
    .map(|c| to_condition(c, &previous, generation, now))
    .collect();
    CanvasChatStatus {
        observed_generation: generation,
        conditions,
        replicas: children.gateway_replicas,
        ready_replicas: children.gateway_ready,
        redis_ready: children.redis_ready,
        url: Some(resources::url(cc)),
    }
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
            redis_ready: true,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).expect("valid timestamp")
    }

    fn cond<'a>(s: &'a CanvasChatStatus, t: &str) -> &'a Condition {
        s.condition(t).expect("condition present")
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
        assert_eq!((status.replicas, status.ready_replicas), (2, 2));
        assert!(status.redis_ready);
        assert_eq!(status.url.as_deref(), Some("http://demo-gateway.chat.svc"));
    }

    #[test]
    fn rollout_in_progress_is_progressing_but_ready() {
        let mut state = healthy();
        state.gateway_replicas = 3;
        state.gateway_updated = 1;
        let status = compute(&minimal(), &Outcome::Applied, &state, now());
        assert_eq!(cond(&status, "Ready").status, "True");
        assert_eq!(cond(&status, "Progressing").status, "True");
        assert_eq!(cond(&status, "Progressing").reason, "RollingOut");
    }

    #[test]
    fn redis_not_ready_is_not_ready() {
        let mut state = healthy();
        state.redis_ready = false;
        let status = compute(&minimal(), &Outcome::Applied, &state, now());
        assert_eq!(cond(&status, "Ready").status, "False");
        assert_eq!(cond(&status, "Ready").reason, "RedisNotReady");
        assert_eq!(cond(&status, "Progressing").status, "True");
    }

    #[test]
    fn no_gateway_pods_ready() {
        let mut state = healthy();
        state.gateway_ready = 0;
        let status = compute(&minimal(), &Outcome::Applied, &state, now());
        assert_eq!(cond(&status, "Ready").reason, "GatewayNotReady");
    }

    #[test]
    fn apply_failure_and_stalled_rollout_are_degraded() {
        let status = compute(
            &minimal(),
            &Outcome::ApplyFailed("Ingress demo: forbidden".into()),
            &healthy(),
            now(),
        );
        assert_eq!(cond(&status, "Degraded").status, "True");
        assert_eq!(cond(&status, "Degraded").reason, "ApplyFailed");
        assert!(cond(&status, "Degraded").message.contains("forbidden"));

        let mut state = healthy();
        state.gateway_stalled = true;
        let status = compute(&minimal(), &Outcome::Applied, &state, now());
        assert_eq!(cond(&status, "Degraded").reason, "RolloutStalled");
        assert_eq!(cond(&status, "Progressing").reason, "RolloutStalled");
    }

    #[test]
    fn invalid_spec_and_paused() {
        let status = compute(
            &minimal(),
            &Outcome::InvalidSpec("spec.gateway.autoscaling: minReplicas ...".into()),
            &ChildState::default(),
            now(),
        );
        assert_eq!(cond(&status, "Ready").reason, "InvalidSpec");
        assert_eq!(cond(&status, "Degraded").reason, "InvalidSpec");
        let status = compute(&minimal(), &Outcome::Paused, &healthy(), now());
        assert_eq!(cond(&status, "Progressing").reason, "Paused");
        assert_eq!(cond(&status, "Ready").status, "True");
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
status: {observedGeneration: 1, replicas: 1, readyReplicas: 1}
"#,
        )
        .expect("statefulset fixture");
        let state = ChildState::from_children(Some(&deployment), Some(&statefulset));
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
                redis_ready: true,
            }
        );
        assert!(!state.rolled_out());
        assert_eq!(ChildState::from_children(None, None), ChildState::default());
    }

    #[test]
    fn urls_follow_ingress_and_tls() {
        let tls = chat(
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: demo, namespace: chat}\nspec: {ingress: {enabled: true, host: chat.example.com, tlsSecretName: chat-tls}}\n",
        );
        assert_eq!(resources::url(&tls), "https://chat.example.com");
        let plain = chat(
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: demo, namespace: chat}\nspec: {ingress: {enabled: true, host: chat.example.com}}\n",
        );
        assert_eq!(resources::url(&plain), "http://chat.example.com");
        let no_host = chat(
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: demo, namespace: chat}\nspec: {ingress: {enabled: true}}\n",
        );
        assert_eq!(resources::url(&no_host), "http://demo-gateway.chat.svc");
    }
}
