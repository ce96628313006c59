//! The reconcile pipeline: validate, resolve the Redis password Secret, build the desired
//! children (pure), delete what the spec no longer wants, apply what changed (concurrently,
//! skipping children whose live copy is what this process last applied), garbage-collect old
//! ConfigMaps, then compute status from the stores and write it only when it changed.
//! An unchanged CanvasChat costs no API request at all.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canvaschat_crds::{
    CONDITION_PROGRESSING, CONDITION_READY, CanvasChat, CanvasChatStatus, SpecError,
};
use futures::future::{BoxFuture, join_all};
use futures::{FutureExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::apply::{ApiFailure, Applied, apply};
use crate::metrics::Metrics;
use crate::optional::{Missing, OptionalKind};
use crate::resources::{self, BuildError, BuildOptions, Desired, FIELD_MANAGER, Names};
use crate::status::{self, ChildState, Outcome, RouteObservation};
use crate::stores::{self, Stores, controlled_by, get};

/// Longest wait between retries of a failing CanvasChat.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// Failure counters kept for backoff, and statuses remembered; each map is reset wholesale
/// beyond this (only delays shrink, or a status is written once more).
const MAX_TRACKED_FAILURES: usize = 4096;
/// Old gateway ConfigMaps kept besides the current one: the Deployment's
/// revisionHistoryLimit, so every ReplicaSet `rollout undo` can return to finds its config.
const KEEP_OLD_CONFIG_MAPS: usize = 5;
/// How long a reconcile waits for the stores' first listing before it gives up and retries.
const STORES_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How soon to look again after deleting a StatefulSet for recreation.
const RECREATE_RECHECK: Duration = Duration::from_secs(2);
/// CanvasChats reconciled at once. A reconcile mostly waits on the API server, so this
/// bounds the operator's share of it rather than its own CPU.
const CONCURRENCY: u16 = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidSpec(#[from] SpecError),
    #[error("CanvasChat {0} has no namespace")]
    NoNamespace(String),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{}", join(.0))]
    Api(Vec<ApiFailure>),
    #[error("{0}")]
    SecretMissing(String),
    #[error(
        "the watches of the children, Secrets and pods have not all listed yet (after {0:?}); check the operator's RBAC and its watch errors"
    )]
    StoresNotReady(Duration),
    #[error("could not write the status of CanvasChat {name}: {source}")]
    Status { name: String, source: kube::Error },
}

fn join(failures: &[ApiFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// Label of the `reconcile_errors` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::NoNamespace(_) => "no_namespace",
            Error::Build(_) => "build",
            Error::Api(_) => "api",
            Error::SecretMissing(_) => "secret_missing",
            Error::StoresNotReady(_) => "stores_not_ready",
            Error::Status { .. } => "status",
        }
    }
}

/// Operator-wide choices that shape every chat.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Periodic re-reconcile even when nothing changed (drift the watches missed); each
    /// CanvasChat's is jittered by up to ±10% so they do not all come at once.
    pub resync: Duration,
    /// Gateway image of chats that do not pin one.
    pub gateway_image: String,
}

/// The optional kinds the operator manages.
pub struct Optional {
    /// Gateway API HTTPRoute (`spec.httpRoute`).
    pub routes: OptionalKind,
    /// Prometheus Operator PodMonitor (`spec.monitoring.podMonitor`).
    pub monitors: OptionalKind,
}

/// A child of an optional kind that could not be applied because the cluster lacks its CRD.
fn not_served(name: &str, missing: &Missing) -> ApiFailure {
    ApiFailure {
        verb: "apply",
        kind: missing.kind.clone(),
        name: name.to_owned(),
        reason: "NotServed".to_owned(),
        code: 404,
        message: missing.to_string(),
    }
}

/// Apply or delete the HTTPRoute and PodMonitor; returns what is known of the route, and
/// a note per deletion.
async fn sync_optional(
    ctx: &Context,
    cc: &CanvasChat,
    ns: &str,
    desired: &Desired,
    failures: &mut Vec<ApiFailure>,
) -> (Option<RouteObservation>, Vec<String>) {
    let names = Names::of(cc);
    let uid = cc.uid();
    let mut notes = Vec::new();
    let o = &ctx.optional;
    let route = match &desired.http_route {
        Some(route) => Some(match o.routes.ensure(&ctx.client, ns, route).await {
            Ok(Ok((Some(live), _))) => {
                RouteObservation::Live(live.data.get("status").cloned().unwrap_or_default())
            }
            Ok(Ok((None, _))) => RouteObservation::Absent(format!(
                "HTTPRoute {} was applied but is not visible yet",
                names.ingress()
            )),
            Ok(Err(missing)) => {
                failures.push(not_served(&names.ingress(), &missing));
                RouteObservation::NotServed(missing.to_string())
            }
            Err(e) => {
                let message = e.to_string();
                failures.push(e);
                RouteObservation::Absent(message)
            }
        }),
        None => {
            match o
                .routes
                .remove(&ctx.client, ns, &names.ingress(), uid.as_deref())
                .await
            {
                Ok(true) => notes.push(format!(
                    "deleted HTTPRoute {} (httpRoute removed)",
                    names.ingress()
                )),
                Ok(false) => {}
                Err(e) => failures.push(e),
            }
            None
        }
    };
    match &desired.pod_monitor {
        Some(monitor) => match o.monitors.ensure(&ctx.client, ns, monitor).await {
            Ok(Ok(_)) => {}
            Ok(Err(missing)) => failures.push(not_served(&names.gateway(), &missing)),
            Err(e) => failures.push(e),
        },
        None => match o
            .monitors
            .remove(&ctx.client, ns, &names.gateway(), uid.as_deref())
            .await
        {
            Ok(true) => notes.push(format!(
                "deleted PodMonitor {} (monitoring.podMonitor off)",
                names.gateway()
            )),
            Ok(false) => {}
            Err(e) => failures.push(e),
        },
    }
    (route, notes)
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    reporter: Reporter,
    /// Shared so a failure that repeats on every retry extends one event series instead of
    /// adding an event per attempt.
    retries: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub stores: Stores,
    /// Children of kinds from optional CRDs.
    pub optional: Optional,
    applied: Applied,
    failures: Mutex<HashMap<String, u32>>,
    statuses: WrittenStatuses,
}

/// The status this process last wrote for each chat, and the chat's resourceVersion it was
/// computed from. While the chat store still shows that version it has not seen the write:
/// a reconcile then starts from this status, so it neither writes the same status again nor
/// repeats the events of the transition (chats created together are reconciled again by
/// their children's events before the store shows the status write).
#[derive(Default)]
pub struct WrittenStatuses {
    written: Mutex<HashMap<String, (Option<String>, CanvasChatStatus)>>,
}

impl WrittenStatuses {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Option<String>, CanvasChatStatus)>> {
        // Entries are independent; a panic elsewhere cannot leave one half-written.
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `cc` with the status this process last wrote for it, while the store has not shown
    /// that write yet; otherwise `cc` as the store has it.
    pub fn latest(&self, cc: Arc<CanvasChat>) -> Arc<CanvasChat> {
        let key = key(&cc);
        let mut written = self.lock();
        match written.get(&key) {
            Some((based_on, status)) if *based_on == cc.metadata.resource_version => {
                let mut latest = (*cc).clone();
                latest.status = Some(status.clone());
                Arc::new(latest)
            }
            Some(_) => {
                written.remove(&key);
                cc
            }
            None => cc,
        }
    }

    /// Remember that `status` was written for `cc` (as this reconcile saw it).
    pub fn wrote(&self, cc: &CanvasChat, status: &CanvasChatStatus) {
        let mut written = self.lock();
        if written.len() >= MAX_TRACKED_FAILURES {
            // Costs at most one repeated status write per chat.
            written.clear();
        }
        written.insert(
            key(cc),
            (cc.metadata.resource_version.clone(), status.clone()),
        );
    }
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        settings: Settings,
        stores: Stores,
        optional: Optional,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            retries: Recorder::new(client.clone(), reporter.clone()),
            reporter,
            client,
            metrics,
            settings,
            stores,
            optional,
            applied: Applied::default(),
            failures: Mutex::new(HashMap::new()),
            statuses: WrittenStatuses::default(),
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

    /// The resync delay with jitter, so chats created together do not resync together.
    fn resync(&self) -> Duration {
        jittered(
            self.settings.resync,
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
        )
    }
}

/// `base` moved by up to ±10% according to `random`.
pub fn jittered(base: Duration, random: u64) -> Duration {
    let permille = 900 + random % 201;
    base.mul_f64(permille as f64 / 1000.0)
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

/// A random password for the generated Secret: 244 bits from the OS generator (two v4 UUIDs).
fn random_password() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The hash of the Redis password, from the store; creates the generated Secret when the
/// spec names none and it does not exist yet. Never rewrites an existing Secret.
async fn password_hash(ctx: &Context, cc: &CanvasChat, ns: &str) -> Result<String, Error> {
    let (name, key) = resources::password_secret(cc);
    let value_hash = |secret: &Secret| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(&key))
            .map(|v| resources::short_hash(&v.0))
    };
    if let Some(secret) = get(&ctx.stores.secrets, ns, &name) {
        return value_hash(&secret)
            .ok_or_else(|| Error::SecretMissing(format!("Secret {name} has no key {key:?}")));
    }
    if cc.spec.redis.password_secret_ref.is_some() {
        return Err(Error::SecretMissing(format!(
            "Secret {name} (spec.redis.passwordSecretRef, type Opaque) does not exist in namespace {ns}"
        )));
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = resources::generated_secret(cc, &Names::of(cc), &random_password());
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    let created = match api.create(&params, &secret).await {
        Ok(created) => created,
        // Created by an earlier reconcile the store has not seen yet.
        Err(kube::Error::Api(s)) if s.code == 409 => api
            .get(&name)
            .await
            .map_err(|e| Error::Api(vec![ApiFailure::new("get", "Secret", &name, &e)]))?,
        Err(e) => {
            return Err(Error::Api(vec![ApiFailure::new(
                "create", "Secret", &name, &e,
            )]));
        }
    };
    info!(name = %cc.name_any(), %ns, secret = %name, "created the Redis password Secret");
    value_hash(&created)
        .ok_or_else(|| Error::SecretMissing(format!("Secret {name} has no key {key:?}")))
}

/// The hashes the gateway pod template carries: the Redis password's and, when spec.auth reads
/// a key from a Secret, that key's. A missing Secret or key is `SecretMissing`.
async fn secret_hashes(
    ctx: &Context,
    cc: &CanvasChat,
    ns: &str,
) -> Result<(String, Option<String>), Error> {
    let password = password_hash(ctx, cc, ns).await?;
    let auth_secret = resources::auth_key_secret(cc).and_then(|n| get(&ctx.stores.secrets, ns, n));
    let auth =
        resources::auth_key_hash(cc, auth_secret.as_deref(), ns).map_err(Error::SecretMissing)?;
    Ok((password, auth))
}

/// Delete `name` of kind `K` if the store holds it and this CanvasChat controls it.
async fn delete_controlled<K>(
    ctx: &Context,
    store: &Store<K>,
    cc: &CanvasChat,
    name: &str,
    propagation: PropagationPolicy,
) -> Result<bool, ApiFailure>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let ns = cc.namespace().unwrap_or_default();
    let Some(existing) = get(store, &ns, name) else {
        return Ok(false);
    };
    if !controlled_by(existing.as_ref(), cc) || existing.meta().deletion_timestamp.is_some() {
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    // Only the object the decision was made on: the store may lag behind a newer one.
    let params = DeleteParams {
        propagation_policy: Some(propagation),
        preconditions: Some(Preconditions {
            uid: existing.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    ctx.applied.forget::<K>(&ns, name);
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        // 409: the precondition failed, another object has the name by now.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(ApiFailure::new("delete", &K::kind(&()), name, &e)),
    }
}

/// Remove optional children the spec no longer wants, the HPA first so it stops scaling the
/// Deployment before fixed replicas are applied. Returns a note per deletion.
async fn delete_unwanted(
    ctx: &Context,
    cc: &CanvasChat,
    desired: &Desired,
) -> Result<Vec<String>, ApiFailure> {
    let names = Names::of(cc);
    let s = &ctx.stores;
    let mut deleted = Vec::new();
    let background = || PropagationPolicy::Background;
    if desired.hpa.is_none()
        && delete_controlled(ctx, &s.hpas, cc, &names.gateway(), background()).await?
    {
        deleted.push(format!(
            "deleted HorizontalPodAutoscaler {} (autoscaling disabled)",
            names.gateway()
        ));
    }
    if desired.pdb.is_none()
        && delete_controlled(ctx, &s.pdbs, cc, &names.gateway(), background()).await?
    {
        deleted.push(format!(
            "deleted PodDisruptionBudget {} (podDisruptionBudget disabled)",
            names.gateway()
        ));
    }
    if desired.ingress.is_none()
        && delete_controlled(ctx, &s.ingresses, cc, &names.ingress(), background()).await?
    {
        deleted.push(format!(
            "deleted Ingress {} (ingress disabled)",
            names.ingress()
        ));
    }
    Ok(deleted)
}

/// Delete the chat's Services that cannot become what is desired in place (between headless
/// and ClusterIP, e.g. `N-redis` of an earlier operator); the applies that follow create them
/// anew. Returns a note per deletion.
async fn delete_services_to_recreate(
    ctx: &Context,
    cc: &CanvasChat,
    desired: &Desired,
) -> Result<Vec<String>, ApiFailure> {
    let ns = cc.namespace().unwrap_or_default();
    let mut notes = Vec::new();
    for service in desired.services() {
        let name = service.name_any();
        let Some(live) = get(&ctx.stores.services, &ns, &name) else {
            continue;
        };
        if !resources::service_needs_recreation(service, &live) {
            continue;
        }
        let background = PropagationPolicy::Background;
        if delete_controlled(ctx, &ctx.stores.services, cc, &name, background).await? {
            let wanted =
                if service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
                    "headless (clusterIP None)"
                } else {
                    "a ClusterIP Service"
                };
            notes.push(format!(
                "recreating Service {name} as {wanted}: a Service's clusterIP cannot change in place"
            ));
        }
    }
    Ok(notes)
}

/// How the gateway Deployment's `spec.replicas` is written. Pure, so it is unit tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replicas {
    /// As built: fixed replicas, or left out while the HPA owns the field.
    AsDesired,
    /// Create the Deployment at the HPA's minimum, so the HPA has nothing to scale at first
    /// (starting at 1 cost a scale write, a ReplicaSet update and a second pod wave per chat).
    StartAt(i32),
    /// The operator still owns `replicas` (set at creation, or fixed before autoscaling was
    /// switched on): apply the live count. Leaving the field out would make server-side apply
    /// remove it, and the Deployment would drop to one pod until the HPA scales it again. The
    /// HPA takes the field over when it first scales (through the scale subresource).
    Keep(i32),
}

pub fn replicas_plan(
    desired: &Deployment,
    hpa: Option<&HorizontalPodAutoscaler>,
    live: Option<&Deployment>,
) -> Replicas {
    if desired.spec.replicas.is_some() {
        return Replicas::AsDesired;
    }
    let Some(live) = live else {
        return hpa
            .and_then(|h| h.spec.min_replicas)
            .map_or(Replicas::AsDesired, Replicas::StartAt);
    };
    let owned_by_us = live.managed_fields().iter().any(|entry| {
        entry.manager.as_deref() == Some(FIELD_MANAGER)
            && entry.subresource.is_none()
            && entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|spec| spec.get("f:replicas"))
                .is_some()
    });
    match live.spec.replicas {
        Some(replicas) if owned_by_us => Replicas::Keep(replicas),
        _ => Replicas::AsDesired,
    }
}

/// Apply the gateway Deployment unless it is up to date, writing `replicas` per
/// [`replicas_plan`].
async fn apply_gateway_deployment(
    ctx: &Context,
    ns: &str,
    desired: &Desired,
) -> Result<usize, ApiFailure> {
    let want = &desired.gateway_deployment;
    let live = get(&ctx.stores.deployments, ns, &want.name_any());
    let replicas = match replicas_plan(want, desired.hpa.as_ref(), live.as_deref()) {
        Replicas::AsDesired => None,
        Replicas::StartAt(n) | Replicas::Keep(n) => Some(n),
    };
    // The desired-hash annotation is the one built without `replicas`, so whether the live
    // Deployment is up to date does not depend on the count.
    let with_replicas = replicas.map(|n| {
        let mut d = want.clone();
        d.spec.replicas = Some(n);
        d
    });
    let applied = apply(
        &ctx.client,
        &ctx.applied,
        ns,
        with_replicas.as_ref().unwrap_or(want),
        live.as_deref(),
    )
    .await?;
    Ok(usize::from(applied))
}

/// Applies to run, each resolving to how many objects it wrote.
type Applies<'a> = Vec<BoxFuture<'a, Result<usize, ApiFailure>>>;

fn push<'a, K>(
    out: &mut Applies<'a>,
    ctx: &'a Context,
    ns: &'a str,
    store: &'a Store<K>,
    desired: &'a K,
) where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + serde::Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug
        + Send
        + Sync,
{
    out.push(
        async move {
            let name = desired.meta().name.as_deref().unwrap_or_default();
            let live = get(store, ns, name);
            apply(&ctx.client, &ctx.applied, ns, desired, live.as_deref())
                .await
                .map(usize::from)
        }
        .boxed(),
    );
}

/// Apply every child that changed, all at once except the gateway's chain: the Deployment
/// waits for its ConfigMap (the pods mount it) and the HPA for the Deployment (an HPA created
/// before its target first scales at the HPA controller's next sync, 15 s later). Returns how
/// many were applied, and every failure.
async fn apply_all(ctx: &Context, ns: &str, desired: &Desired) -> (usize, Vec<ApiFailure>) {
    let s = &ctx.stores;
    let mut applied = 0;
    let mut failures = Vec::new();
    let mut gateway_chain: Applies<'_> = Vec::new();
    push(
        &mut gateway_chain,
        ctx,
        ns,
        &s.config_maps,
        &desired.config_map,
    );
    gateway_chain.push(apply_gateway_deployment(ctx, ns, desired).boxed());
    if let Some(hpa) = &desired.hpa {
        push(&mut gateway_chain, ctx, ns, &s.hpas, hpa);
    }
    let mut rest: Applies<'_> = Vec::new();
    rest.push(
        async move {
            let mut wrote = 0;
            for step in gateway_chain {
                wrote += step.await?;
            }
            Ok(wrote)
        }
        .boxed(),
    );
    push(
        &mut rest,
        ctx,
        ns,
        &s.services,
        &desired.redis_headless_service,
    );
    push(&mut rest, ctx, ns, &s.services, &desired.redis_service);
    push(
        &mut rest,
        ctx,
        ns,
        &s.network_policies,
        &desired.redis_network_policy,
    );
    push(
        &mut rest,
        ctx,
        ns,
        &s.statefulsets,
        &desired.redis_statefulset,
    );
    push(&mut rest, ctx, ns, &s.services, &desired.gateway_service);
    if let Some(pdb) = &desired.pdb {
        push(&mut rest, ctx, ns, &s.pdbs, pdb);
    }
    if let Some(service) = &desired.redis_sentinel_service {
        push(&mut rest, ctx, ns, &s.services, service);
    }
    if let Some(pdb) = &desired.redis_pdb {
        push(&mut rest, ctx, ns, &s.pdbs, pdb);
    }
    if let Some(ingress) = &desired.ingress {
        push(&mut rest, ctx, ns, &s.ingresses, ingress);
    }
    for result in join_all(rest).await {
        match result {
            Ok(wrote) => applied += wrote,
            Err(e) => failures.push(e),
        }
    }
    (applied, failures)
}

/// Gateway ConfigMaps of this chat other than the current one, beyond the newest
/// [`KEEP_OLD_CONFIG_MAPS`]: pure, so it is unit tested.
pub fn stale_config_maps(
    cc: &CanvasChat,
    current: &str,
    config_maps: &[Arc<ConfigMap>],
) -> Vec<String> {
    let prefix = Names::of(cc).config_prefix();
    let mut old: Vec<&ConfigMap> = config_maps
        .iter()
        .map(AsRef::as_ref)
        .filter(|cm| {
            let name = cm.name_any();
            name != current
                && name.starts_with(&prefix)
                && controlled_by(*cm, cc)
                && cm.metadata.deletion_timestamp.is_none()
        })
        .collect();
    // Newest first; the name breaks ties so the order is stable.
    old.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    old.into_iter()
        .skip(KEEP_OLD_CONFIG_MAPS)
        .map(ResourceExt::name_any)
        .collect()
}

async fn collect_config_maps(
    ctx: &Context,
    cc: &CanvasChat,
    ns: &str,
    current: &str,
) -> Result<(), ApiFailure> {
    let in_namespace: Vec<Arc<ConfigMap>> = ctx
        .stores
        .config_maps
        .state_filter(|cm| cm.namespace().as_deref() == Some(ns));
    for name in stale_config_maps(cc, current, &in_namespace) {
        delete_controlled(
            ctx,
            &ctx.stores.config_maps,
            cc,
            &name,
            PropagationPolicy::Background,
        )
        .await?;
        debug!(%ns, configmap = %name, "deleted an old gateway ConfigMap");
    }
    Ok(())
}

/// What the stores hold for the chat's Deployment, StatefulSet and pods.
fn observe_children(ctx: &Context, cc: &CanvasChat) -> ChildState {
    let names = Names::of(cc);
    let s = &ctx.stores;
    let deployment = get(&s.deployments, &names.namespace, &names.gateway());
    let statefulset = get(&s.statefulsets, &names.namespace, &names.redis());
    let pods: Vec<Arc<Pod>> = s.pods.state_filter(|pod| {
        pod.namespace().as_deref() == Some(names.namespace.as_str())
            && pod.labels().get("app.kubernetes.io/instance") == Some(&names.instance)
    });
    ChildState::from_children(
        deployment.as_deref(),
        statefulset.as_deref(),
        pods.iter().map(AsRef::as_ref),
    )
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
    ctx.statuses.wrote(cc, status);
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
    finish_with_route(ctx, cc, outcome, None).await
}

/// [`finish`], with the RouteAccepted condition when the chat asks for an HTTPRoute (when this
/// reconcile did not look at the route, the previous condition is kept).
async fn finish_with_route(
    ctx: &Context,
    cc: &CanvasChat,
    outcome: &Outcome,
    route: Option<&RouteObservation>,
) -> Result<(), Error> {
    let children = observe_children(ctx, cc);
    let now = Timestamp::now();
    let mut new = status::compute(cc, outcome, &children, now);
    if cc.spec.http_route.is_some() {
        match route {
            Some(route) => status::add_route_condition(&mut new, cc, route, now),
            None => new.conditions.extend(
                cc.status
                    .as_ref()
                    .and_then(|s| s.condition(canvaschat_crds::CONDITION_ROUTE_ACCEPTED))
                    .cloned(),
            ),
        }
    }
    transition_events(ctx, cc, &new).await;
    if write_status(ctx, cc, &new).await? {
        debug!(name = %cc.name_any(), "status updated");
    }
    Ok(())
}

/// The first failure's API reason, for the Degraded condition.
fn first_reason(failures: &[ApiFailure]) -> String {
    failures
        .first()
        .map_or_else(|| "Unknown".to_owned(), |f| f.reason.clone())
}

pub async fn reconcile(cc: Arc<CanvasChat>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let cc = ctx.statuses.latest(cc);
    let name = cc.name_any();
    let ns = cc
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    if cc.metadata.deletion_timestamp.is_some() {
        // Garbage collection removes the children through their ownerReferences.
        return Ok(Action::await_change());
    }
    // Decisions below read the stores; before their first listing they would look empty.
    if !matches!(
        tokio::time::timeout(STORES_READY_TIMEOUT, ctx.stores.ready()).await,
        Ok(true)
    ) {
        return Err(Error::StoresNotReady(STORES_READY_TIMEOUT));
    }

    if let Err(invalid) = cc.validate() {
        ctx.retry_warning(&cc, "InvalidSpec", invalid.to_string())
            .await;
        finish(&ctx, &cc, &Outcome::InvalidSpec(invalid.to_string())).await?;
        return Err(invalid.into());
    }

    if cc.spec.paused {
        finish(&ctx, &cc, &Outcome::Paused).await?;
        return Ok(Action::requeue(ctx.resync()));
    }

    let (password_hash, auth_secret_hash) = match secret_hashes(&ctx, &cc, &ns).await {
        Ok(hashes) => hashes,
        Err(Error::SecretMissing(message)) => {
            ctx.retry_warning(&cc, "SecretMissing", message.clone())
                .await;
            finish(&ctx, &cc, &Outcome::SecretMissing(message.clone())).await?;
            return Err(Error::SecretMissing(message));
        }
        Err(e) => return Err(e),
    };
    let options = BuildOptions {
        gateway_image: ctx.settings.gateway_image.clone(),
        password_hash: Some(password_hash),
        auth_secret_hash,
    };
    let desired = resources::build(&cc, &options)?;

    let mut failures = Vec::new();
    let deletions = async {
        (
            delete_unwanted(&ctx, &cc, &desired).await,
            delete_services_to_recreate(&ctx, &cc, &desired).await,
        )
    };
    let (unwanted, recreated) = ctx.metrics.phase("delete", deletions).await;
    for (reason, result) in [("Deleted", unwanted), ("RecreatingService", recreated)] {
        match result {
            Ok(notes) => {
                for note in notes {
                    info!(%name, %ns, "{note}");
                    ctx.event(&cc, EventType::Normal, reason, note).await;
                }
            }
            Err(e) => failures.push(e),
        }
    }
    let (applied, apply_failures) = ctx
        .metrics
        .phase("apply", apply_all(&ctx, &ns, &desired))
        .await;
    failures.extend(apply_failures);
    let (route, notes) = ctx
        .metrics
        .phase(
            "optional",
            sync_optional(&ctx, &cc, &ns, &desired, &mut failures),
        )
        .await;
    for note in notes {
        info!(%name, %ns, "{note}");
        ctx.event(&cc, EventType::Normal, "Deleted", note).await;
    }

    if let Some(pos) = failures
        .iter()
        .position(ApiFailure::is_immutable_statefulset_change)
    {
        let failure = failures.remove(pos);
        let sts = desired.redis_statefulset.name_any();
        // Orphan: the Redis pod and its claim stay and the new StatefulSet adopts them.
        match delete_controlled(
            &ctx,
            &ctx.stores.statefulsets,
            &cc,
            &sts,
            PropagationPolicy::Orphan,
        )
        .await
        {
            Ok(deleted) => {
                // Until the deletion completes, later reconciles see the same refusal.
                if deleted {
                    let note = format!(
                        "recreating StatefulSet {sts} (pods and volume claims kept): {}",
                        failure.message
                    );
                    info!(%name, %ns, "{note}");
                    ctx.event(&cc, EventType::Normal, "RecreatingStatefulSet", note)
                        .await;
                }
                if failures.is_empty() {
                    finish(&ctx, &cc, &Outcome::RecreatingStatefulSet).await?;
                    return Ok(Action::requeue(RECREATE_RECHECK));
                }
            }
            Err(e) => failures.push(e),
        }
    }
    if !failures.is_empty() {
        let message = join(&failures);
        ctx.retry_warning(&cc, "ApplyFailed", message.clone()).await;
        let outcome = Outcome::ApplyFailed {
            reason: first_reason(&failures),
            message,
        };
        finish_with_route(&ctx, &cc, &outcome, route.as_ref()).await?;
        return Err(Error::Api(failures));
    }
    let current_config = desired
        .config_map
        .meta()
        .name
        .as_deref()
        .unwrap_or_default();
    if let Err(e) = ctx
        .metrics
        .phase("gc", collect_config_maps(&ctx, &cc, &ns, current_config))
        .await
    {
        // Old ConfigMaps only cost space; report and go on.
        warn!(%name, %ns, error = %e, "could not delete an old gateway ConfigMap");
    }
    let generation = cc.metadata.generation;
    if cc.status.as_ref().and_then(|s| s.observed_generation) != generation {
        let note = format!(
            "applied generation {} ({applied} objects changed)",
            generation.unwrap_or_default()
        );
        info!(%name, %ns, "{note}");
        ctx.event(&cc, EventType::Normal, "Applied", note).await;
    }
    ctx.metrics
        .phase(
            "status",
            finish_with_route(&ctx, &cc, &Outcome::Applied, route.as_ref()),
        )
        .await?;
    ctx.failures().remove(&key(&cc));
    Ok(Action::requeue(ctx.resync()))
}

/// CanvasChats in `namespace` that use the Secret `secret` for their Redis password or auth key.
fn chats_using_secret(chats: &Store<CanvasChat>, secret: &Secret) -> Vec<ObjectRef<CanvasChat>> {
    let ns = secret.namespace();
    let name = secret.name_any();
    chats
        .state()
        .iter()
        .filter(|cc| {
            cc.namespace() == ns
                && (resources::password_secret(cc).0 == name
                    || resources::auth_key_secret(cc) == Some(name.as_str()))
        })
        .map(|cc| ObjectRef::from_obj(cc.as_ref()))
        .collect()
}

/// The CanvasChat a pod belongs to, from its instance label.
fn chat_of_pod(pod: &Pod) -> Option<ObjectRef<CanvasChat>> {
    let instance = pod.labels().get("app.kubernetes.io/instance")?;
    Some(ObjectRef::new(instance).within(&pod.namespace()?))
}

/// Run the controller until `stop` is cancelled, watching `namespace` or all namespaces.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    settings: Settings,
    namespace: Option<&str>,
    stop: CancellationToken,
) {
    let (stores, streams) = Stores::new(&client, namespace);
    let (routes, route_stream) = OptionalKind::start(
        &client,
        resources::http_route_resource(),
        "the Gateway API CRDs (gateway.networking.k8s.io/v1)",
        namespace,
    )
    .await;
    let (monitors, monitor_stream) = OptionalKind::start(
        &client,
        resources::pod_monitor_resource(),
        "the Prometheus Operator CRDs (monitoring.coreos.com/v1)",
        namespace,
    )
    .await;
    let optional = Optional { routes, monitors };
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics,
        settings,
        stores,
        optional,
    ));
    let (chats, chats_writer) = reflector::store();
    // Status writes do not change the generation, so they do not trigger a reconcile.
    let chat_stream = watcher(
        stores::api::<CanvasChat>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(chats_writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());
    let secret_chats = chats.clone();
    let mut controller = Controller::for_stream(chat_stream, chats);
    if let Some(stream) = route_stream {
        controller = controller.owns_stream_with(stream, resources::http_route_resource());
    }
    if let Some(stream) = monitor_stream {
        controller = controller.owns_stream_with(stream, resources::pod_monitor_resource());
    }
    controller
        .owns_stream(streams.config_maps)
        .owns_stream(streams.services)
        .owns_stream(streams.statefulsets)
        .owns_stream(streams.network_policies)
        .owns_stream(streams.deployments)
        .owns_stream(streams.hpas)
        .owns_stream(streams.pdbs)
        .owns_stream(streams.ingresses)
        .watches_stream(streams.secrets, move |secret| {
            chats_using_secret(&secret_chats, &secret)
        })
        .watches_stream(streams.pods, |pod| chat_of_pod(&pod))
        // No debounce: kube's restarts its wait on every new event, so a chat whose children
        // kept changing (any rollout, chats created together) waited for a quiet spell before
        // each reconcile. Coalescing saved nothing: a reconcile with nothing new to do makes
        // no API request.
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
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
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        FieldsV1, ManagedFieldsEntry, OwnerReference, Time,
    };

    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(7), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn resync_jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(300);
        assert_eq!(jittered(base, 0), Duration::from_secs(270));
        assert_eq!(jittered(base, 200), Duration::from_secs(330));
        assert_eq!(jittered(base, 100), base);
        for random in [1, 7, 12_345, u64::MAX] {
            let d = jittered(base, random);
            assert!(d >= Duration::from_secs(270) && d <= Duration::from_secs(330));
        }
    }

    fn chat() -> CanvasChat {
        let mut cc = CanvasChat::new("demo", Default::default());
        cc.metadata.namespace = Some("chat".into());
        cc.metadata.uid = Some("uid-1".into());
        cc
    }

    fn config_map(name: &str, second: i64, owner: &str) -> Arc<ConfigMap> {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.metadata.namespace = Some("chat".into());
        cm.metadata.creation_timestamp = Some(Time(
            Timestamp::from_second(1_700_000_000 + second).expect("timestamp"),
        ));
        cm.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "canvaschat.io/v1alpha1".into(),
            kind: "CanvasChat".into(),
            name: "demo".into(),
            uid: owner.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        Arc::new(cm)
    }

    #[test]
    fn old_config_maps_beyond_the_history_are_stale() {
        let mut maps: Vec<_> = (0..8)
            .map(|i| config_map(&format!("demo-config-{i}"), i, "uid-1"))
            .collect();
        maps.push(config_map("demo-config-other-owner", 0, "uid-2"));
        maps.push(config_map("demo-redis-unrelated", 0, "uid-1"));
        let stale = stale_config_maps(&chat(), "demo-config-7", &maps);
        // Current 7; the five newest old ones (6..=2) stay.
        assert_eq!(stale, ["demo-config-1", "demo-config-0"]);
        assert!(stale_config_maps(&chat(), "demo-config-7", &maps[..5]).is_empty());
    }

    fn deployment(replicas: Option<i32>, replicas_manager: Option<&str>) -> Deployment {
        let mut d = Deployment::default();
        d.spec.replicas = replicas;
        d.metadata.managed_fields = replicas_manager.map(|manager| {
            vec![ManagedFieldsEntry {
                manager: Some(manager.to_owned()),
                operation: Some("Apply".to_owned()),
                fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {"f:replicas": {}}}))),
                ..Default::default()
            }]
        });
        d
    }

    #[test]
    fn deployment_starts_at_the_hpa_minimum_and_keeps_its_count_until_the_hpa_scales() {
        let mut hpa = HorizontalPodAutoscaler::default();
        hpa.spec.min_replicas = Some(3);
        let autoscaled = deployment(None, None);
        // Created at the minimum, so the HPA has nothing to scale at first.
        assert_eq!(
            replicas_plan(&autoscaled, Some(&hpa), None),
            Replicas::StartAt(3)
        );
        // Applied again while the operator still owns the count: keep the live count.
        let created = deployment(Some(3), Some(FIELD_MANAGER));
        assert_eq!(
            replicas_plan(&autoscaled, Some(&hpa), Some(&created)),
            Replicas::Keep(3)
        );
        // The HPA scaled it and took the field over.
        let scaled = deployment(Some(5), Some("kube-controller-manager"));
        assert_eq!(
            replicas_plan(&autoscaled, Some(&hpa), Some(&scaled)),
            Replicas::AsDesired
        );
        // Fixed replicas are applied as they are.
        let fixed = deployment(Some(2), None);
        assert_eq!(
            replicas_plan(&fixed, None, Some(&created)),
            Replicas::AsDesired
        );
        assert_eq!(replicas_plan(&fixed, None, None), Replicas::AsDesired);
    }

    #[test]
    fn a_written_status_counts_until_the_store_shows_a_newer_chat() {
        let statuses = WrittenStatuses::default();
        let mut stored = chat();
        stored.metadata.resource_version = Some("10".into());
        let stored = Arc::new(stored);
        let written = CanvasChatStatus {
            observed_generation: Some(1),
            ..Default::default()
        };
        assert_eq!(statuses.latest(stored.clone()).status, None);
        statuses.wrote(&stored, &written);
        // The store has not seen the write: start from what was written.
        assert_eq!(
            statuses.latest(stored.clone()).status.as_ref(),
            Some(&written)
        );
        // The store moved on (this write, or anyone's): it is the truth again.
        let mut newer = (*stored).clone();
        newer.metadata.resource_version = Some("11".into());
        assert_eq!(statuses.latest(Arc::new(newer)).status, None);
        assert_eq!(statuses.latest(stored).status, None);
    }

    #[test]
    fn secrets_and_pods_map_to_their_chats() {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("chat".into());
        pod.metadata.labels =
            Some([("app.kubernetes.io/instance".to_owned(), "demo".to_owned())].into());
        assert_eq!(
            chat_of_pod(&pod),
            Some(ObjectRef::new("demo").within("chat"))
        );
        assert_eq!(chat_of_pod(&Pod::default()), None);
    }
}
