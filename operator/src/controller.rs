//! The reconcile pipeline: validate, build the desired children (pure), apply them with
//! server-side apply, delete children the spec no longer wants, then compute status from what
//! the children report and write it only when it changed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canvaschat_crds::{
    CONDITION_PROGRESSING, CONDITION_READY, CanvasChat, CanvasChatStatus, SpecError,
};
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::resources::{self, BuildError, Desired, FIELD_MANAGER, MANAGED_BY_SELECTOR, Names};
use crate::status::{self, ChildState, Outcome};

/// Longest wait between retries of a failing CanvasChat.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// Failure counters kept for backoff; reset wholesale beyond this (only delays shrink).
const MAX_TRACKED_FAILURES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidSpec(#[from] SpecError),
    #[error("CanvasChat {0} has no namespace")]
    NoNamespace(String),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("could not apply {0}")]
    Apply(String),
    #[error("could not delete {kind} {name}: {source}")]
    Delete {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("could not read {kind} {name}: {source}")]
    Read {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("could not write the status of CanvasChat {name}: {source}")]
    Status { name: String, source: kube::Error },
}

impl Error {
    /// Label of the `reconcile_errors` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::NoNamespace(_) => "no_namespace",
            Error::Build(_) => "build",
            Error::Apply(_) => "apply",
            Error::Delete { .. } => "delete",
            Error::Read { .. } => "read",
            Error::Status { .. } => "status",
        }
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    reporter: Reporter,
    /// Shared so a failure that repeats on every retry extends one event series instead of
    /// adding an event per attempt.
    retries: Recorder,
    pub metrics: Arc<Metrics>,
    /// Periodic re-reconcile even when nothing changed (drift the watches missed).
    pub resync: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, resync: Duration) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            retries: Recorder::new(client.clone(), reporter.clone()),
            reporter,
            client,
            metrics,
            resync,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An event of its own. A fresh recorder has an empty series cache, so this note is not
    /// folded into an earlier event with the same reason (e.g. two different deletions).
    async fn event(&self, cc: &CanvasChat, type_: EventType, reason: &str, note: String) {
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        publish(&recorder, cc, type_, reason, note).await;
    }

    /// A warning that may repeat on every retry of the same failure.
    async fn retry_warning(&self, cc: &CanvasChat, reason: &str, note: String) {
        publish(&self.retries, cc, EventType::Warning, reason, note).await;
    }
}

async fn publish(
    recorder: &Recorder,
    cc: &CanvasChat,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &cc.object_ref(&())).await {
        warn!(name = %cc.name_any(), error = %e, "could not publish event");
    }
}

fn key(cc: &CanvasChat) -> String {
    format!("{}/{}", cc.namespace().unwrap_or_default(), cc.name_any())
}

/// Delay before retrying a CanvasChat that failed `failures` times in a row.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1u32 << exponent)
        .min(MAX_BACKOFF)
}

pub fn error_policy(cc: Arc<CanvasChat>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.kind());
    let failures = {
        let mut map = ctx.failures();
        if map.len() >= MAX_TRACKED_FAILURES {
            map.clear();
        }
        let count = map.entry(key(&cc)).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let delay = backoff(failures);
    warn!(
        name = %cc.name_any(),
        namespace = cc.namespace().unwrap_or_default(),
        error = %error,
        kind = error.kind(),
        retry_in_seconds = delay.as_secs(),
        "reconcile failed"
    );
    Action::requeue(delay)
}

async fn apply<K>(client: &Client, namespace: &str, obj: &K) -> Result<(), String>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("{} {name}: {e}", K::kind(&())))
}

/// Field manager that keeps `spec.replicas` when autoscaling takes over from fixed replicas.
const HANDOVER_MANAGER: &str = "canvaschat-operator-handover";

/// When autoscaling is switched on, the operator stops applying `replicas`. If it owned the
/// field until now, server-side apply would remove it and the Deployment would drop to 1 pod
/// until the HPA reacts. Handing the current value to a separate manager first keeps the
/// pod count; the HPA then takes the field over when it scales.
async fn hand_replicas_to_hpa(
    client: &Client,
    ns: &str,
    desired: &Deployment,
) -> Result<(), String> {
    let name = desired.metadata.name.clone().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let existing = api
        .get_opt(&name)
        .await
        .map_err(|e| format!("Deployment {name}: {e}"))?;
    let Some(existing) = existing else {
        return Ok(());
    };
    let owned_by_us = existing.managed_fields().iter().any(|entry| {
        entry.manager.as_deref() == Some(FIELD_MANAGER)
            && entry.subresource.is_none()
            && entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|spec| spec.get("f:replicas"))
                .is_some()
    });
    let Some(replicas) = existing.spec.replicas.filter(|_| owned_by_us) else {
        return Ok(());
    };
    let patch = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas},
    });
    api.patch(
        &name,
        &PatchParams::apply(HANDOVER_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("Deployment {name} (replicas handover): {e}"))
}

/// Apply every desired child. All are attempted; failures are collected.
async fn apply_all(client: &Client, ns: &str, desired: &Desired) -> Vec<String> {
    let mut failures = Vec::new();
    let mut record = |r: Result<(), String>| {
        if let Err(e) = r {
            failures.push(e);
        }
    };
    record(apply(client, ns, &desired.config_map).await);
    record(apply(client, ns, &desired.redis_headless_service).await);
    record(apply(client, ns, &desired.redis_service).await);
    record(apply(client, ns, &desired.redis_network_policy).await);
    record(apply(client, ns, &desired.redis_statefulset).await);
    record(apply(client, ns, &desired.gateway_service).await);
    record(apply(client, ns, &desired.gateway_deployment).await);
    if let Some(hpa) = &desired.hpa {
        record(apply(client, ns, hpa).await);
    }
    if let Some(pdb) = &desired.pdb {
        record(apply(client, ns, pdb).await);
    }
    if let Some(ingress) = &desired.ingress {
        record(apply(client, ns, ingress).await);
    }
    failures
}

/// Delete `name` if it exists and this CanvasChat controls it. Returns whether it deleted.
async fn delete_if_controlled<K>(
    client: &Client,
    cc: &CanvasChat,
    name: &str,
) -> Result<bool, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let ns = cc.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let kind = K::kind(&()).into_owned();
    let existing = api.get_opt(name).await.map_err(|source| Error::Read {
        kind: kind.clone(),
        name: name.to_owned(),
        source,
    })?;
    let Some(existing) = existing else {
        return Ok(false);
    };
    let uid = cc.uid();
    let controlled = existing
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref());
    if !controlled {
        return Ok(false);
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(source) => Err(Error::Delete {
            kind,
            name: name.to_owned(),
            source,
        }),
    }
}

/// Remove optional children the spec no longer wants; returns a note per deletion.
async fn delete_unwanted(
    client: &Client,
    cc: &CanvasChat,
    desired: &Desired,
) -> Result<Vec<String>, Error> {
    let names = Names::of(cc);
    let mut deleted = Vec::new();
    if desired.hpa.is_none()
        && delete_if_controlled::<HorizontalPodAutoscaler>(client, cc, &names.gateway()).await?
    {
        deleted.push(format!(
            "deleted HorizontalPodAutoscaler {} (autoscaling disabled)",
            names.gateway()
        ));
    }
    if desired.pdb.is_none()
        && delete_if_controlled::<PodDisruptionBudget>(client, cc, &names.gateway()).await?
    {
        deleted.push(format!(
            "deleted PodDisruptionBudget {} (podDisruptionBudget disabled)",
            names.gateway()
        ));
    }
    if desired.ingress.is_none()
        && delete_if_controlled::<Ingress>(client, cc, &names.ingress()).await?
    {
        deleted.push(format!(
            "deleted Ingress {} (ingress disabled)",
            names.ingress()
        ));
    }
    Ok(deleted)
}

async fn observe_children(client: &Client, cc: &CanvasChat) -> Result<ChildState, Error> {
    let names = Names::of(cc);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &names.namespace);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &names.namespace);
    let deployment = deployments
        .get_opt(&names.gateway())
        .await
        .map_err(|source| Error::Read {
            kind: "Deployment".to_owned(),
            name: names.gateway(),
            source,
        })?;
    let statefulset = statefulsets
        .get_opt(&names.redis())
        .await
        .map_err(|source| Error::Read {
            kind: "StatefulSet".to_owned(),
            name: names.redis(),
            source,
        })?;
    Ok(ChildState::from_children(
        deployment.as_ref(),
        statefulset.as_ref(),
    ))
}

/// Write `status` unless it equals the current one; returns whether it wrote.
async fn write_status(
    ctx: &Context,
    cc: &CanvasChat,
    status: &CanvasChatStatus,
) -> Result<bool, Error> {
    if cc.status.as_ref() == Some(status) {
        return Ok(false);
    }
    let name = cc.name_any();
    let api: Api<CanvasChat> =
        Api::namespaced(ctx.client.clone(), &cc.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": CanvasChat::api_version(&()),
        "kind": CanvasChat::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Status { name, source })?;
    Ok(true)
}

/// Events for condition changes a user cares about.
async fn transition_events(ctx: &Context, cc: &CanvasChat, new: &CanvasChatStatus) {
    let old = cc.status.clone().unwrap_or_default();
    let status_of = |s: &CanvasChatStatus, t: &str| {
        s.condition(t).map(|c| (c.status.clone(), c.reason.clone()))
    };
    if let (Some(now), before) = (
        new.condition(CONDITION_READY),
        status_of(&old, CONDITION_READY),
    ) {
        let changed = before.as_ref().map(|b| &b.0) != Some(&now.status);
        if changed && now.status == "True" {
            ctx.event(cc, EventType::Normal, "Ready", now.message.clone())
                .await;
        } else if changed && before.is_some() {
            ctx.event(
                cc,
                EventType::Warning,
                "NotReady",
                format!("{}: {}", now.reason, now.message),
            )
            .await;
        }
    }
    if let Some(now) = new.condition(CONDITION_PROGRESSING) {
        let before = status_of(&old, CONDITION_PROGRESSING).map(|b| b.1);
        if now.reason == "Paused" && before.as_deref() != Some("Paused") {
            ctx.event(cc, EventType::Normal, "Paused", now.message.clone())
                .await;
        }
        if now.reason == "RolloutStalled" && before.as_deref() != Some("RolloutStalled") {
            ctx.event(
                cc,
                EventType::Warning,
                "RolloutStalled",
                now.message.clone(),
            )
            .await;
        }
    }
}

async fn finish(ctx: &Context, cc: &CanvasChat, outcome: &Outcome) -> Result<(), Error> {
    let children = observe_children(&ctx.client, cc).await?;
    let new = status::compute(cc, outcome, &children, Timestamp::now());
    transition_events(ctx, cc, &new).await;
    if write_status(ctx, cc, &new).await? {
        debug!(name = %cc.name_any(), "status updated");
    }
    Ok(())
}

pub async fn reconcile(cc: Arc<CanvasChat>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let name = cc.name_any();
    let ns = cc
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    if cc.metadata.deletion_timestamp.is_some() {
        // Garbage collection removes the children through their ownerReferences.
        return Ok(Action::await_change());
    }

    if let Err(invalid) = cc.validate() {
        ctx.retry_warning(&cc, "InvalidSpec", invalid.to_string())
            .await;
        finish(&ctx, &cc, &Outcome::InvalidSpec(invalid.to_string())).await?;
        return Err(invalid.into());
    }

    if cc.spec.paused {
        finish(&ctx, &cc, &Outcome::Paused).await?;
        return Ok(Action::requeue(ctx.resync));
    }

    let desired = resources::build(&cc)?;
    let mut failures = Vec::new();
    if desired.gateway_deployment.spec.replicas.is_none()
        && let Err(e) = hand_replicas_to_hpa(&ctx.client, &ns, &desired.gateway_deployment).await
    {
        failures.push(e);
    }
    failures.extend(apply_all(&ctx.client, &ns, &desired).await);
    if !failures.is_empty() {
        let message = failures.join("; ");
        ctx.retry_warning(&cc, "ApplyFailed", message.clone()).await;
        finish(&ctx, &cc, &Outcome::ApplyFailed(message.clone())).await?;
        return Err(Error::Apply(message));
    }
    for note in delete_unwanted(&ctx.client, &cc, &desired).await? {
        info!(%name, %ns, "{note}");
        ctx.event(&cc, EventType::Normal, "Deleted", note).await;
    }
    let generation = cc.metadata.generation;
    if cc.status.as_ref().and_then(|s| s.observed_generation) != generation {
        let note = format!(
            "applied {} objects for generation {}",
            desired.to_values().map(|v| v.len()).unwrap_or_default(),
            generation.unwrap_or_default()
        );
        info!(%name, %ns, "{note}");
        ctx.event(&cc, EventType::Normal, "Applied", note).await;
    }
    finish(&ctx, &cc, &Outcome::Applied).await?;
    ctx.failures().remove(&key(&cc));
    Ok(Action::requeue(ctx.resync))
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Run the controller until `stop` is cancelled, watching `namespace` or all namespaces.
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>, stop: CancellationToken) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels(MANAGED_BY_SELECTOR);
    Controller::new(api::<CanvasChat>(&client, namespace), watcher::Config::default())
        .owns(api::<ConfigMap>(&client, namespace), owned.clone())
        .owns(api::<Service>(&client, namespace), owned.clone())
        .owns(api::<StatefulSet>(&client, namespace), owned.clone())
        .owns(api::<NetworkPolicy>(&client, namespace), owned.clone())
        .owns(api::<Deployment>(&client, namespace), owned.clone())
        .owns(api::<HorizontalPodAutoscaler>(&client, namespace), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, namespace), owned.clone())
        .owns(api::<Ingress>(&client, namespace), owned)
        // Child status updates come in bursts during a rollout; coalesce them, and bound how
        // many CanvasChats reconcile at once.
        .with_config(
            controller::Config::default()
                .debounce(Duration::from_millis(500))
                .concurrency(8),
        )
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(name = %obj.name, namespace = obj.namespace.as_deref().unwrap_or_default(), "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {
                    // Already logged and counted by error_policy.
                }
                Err(e) => warn!(error = %e, "controller event"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(7), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
