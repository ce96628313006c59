//! Children whose kinds come from CRDs a cluster may not have: the Gateway API HTTPRoute and
//! the Prometheus Operator PodMonitor. Whether a kind exists is discovered at start (then it
//! is also watched) and, when it was missing then, again at most once a minute when a chat
//! needs it; a chat that asks for a missing kind gets a clear failure instead of the operator
//! crashing. A watched kind, or a chat that does not want one, costs no request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    PropagationPolicy,
};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt, discovery};
use tracing::{info, warn};

use crate::apply::ApiFailure;
use crate::resources::{FIELD_MANAGER, MANAGED_BY_SELECTOR, desired_hash};
use crate::stores::Watch;

/// How long a discovery answer is trusted.
const REDISCOVER_AFTER: Duration = Duration::from_secs(60);
/// Entries kept in the applied map; beyond this it starts afresh (one apply per child).
const MAX_REMEMBERED: usize = 100_000;

/// One optional kind: its discovery, its watch (when it existed at start) and what this
/// process last applied.
pub struct OptionalKind {
    pub resource: ApiResource,
    /// What to install when the kind is missing, for messages.
    pub needs: &'static str,
    store: Option<Store<DynamicObject>>,
    discovered: Mutex<Option<(Instant, bool)>>,
    applied: Mutex<HashMap<String, (String, i64)>>,
}

/// The kind is not served by this cluster.
#[derive(Debug, thiserror::Error)]
#[error("{kind} is not served by this cluster: install {needs}")]
pub struct Missing {
    pub kind: String,
    pub needs: &'static str,
}

/// Whether the API server serves `resource`. Other discovery errors are returned.
async fn served(client: &Client, resource: &ApiResource) -> Result<bool, kube::Error> {
    let gvk = GroupVersionKind::gvk(&resource.group, &resource.version, &resource.kind);
    match discovery::pinned_kind(client, &gvk).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(kube::Error::Discovery(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data: a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl OptionalKind {
    /// Discover `resource`; when served, watch the operator's objects of it in `namespace`
    /// (None: all) and return the stream for the controller to poll.
    pub async fn start(
        client: &Client,
        resource: ApiResource,
        needs: &'static str,
        namespace: Option<&str>,
    ) -> (Self, Option<Watch<DynamicObject>>) {
        let present = match served(client, &resource).await {
            Ok(present) => present,
            Err(e) => {
                warn!(kind = %resource.kind, error = %e, "discovery failed; assuming the kind is missing until the next try");
                false
            }
        };
        let (store, stream) = if present {
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            let writer = reflector::store::Writer::new(resource.clone());
            let reader = writer.as_reader();
            let stream = watcher(api, watcher::Config::default().labels(MANAGED_BY_SELECTOR))
                .default_backoff()
                .reflect(writer)
                .touched_objects();
            info!(kind = %resource.kind, "watching");
            (Some(reader), Some(Box::pin(stream) as Watch<DynamicObject>))
        } else {
            info!(kind = %resource.kind, "not served by this cluster; not watched (restart the operator after installing its CRDs to watch it)");
            (None, None)
        };
        let kind = Self {
            resource,
            needs,
            store,
            discovered: Mutex::new(Some((Instant::now(), present))),
            applied: Mutex::new(HashMap::new()),
        };
        (kind, stream)
    }

    /// Whether the kind is served, from a cache refreshed once a minute.
    async fn present(&self, client: &Client) -> Result<bool, kube::Error> {
        if let Some((at, present)) = *lock(&self.discovered)
            && at.elapsed() < REDISCOVER_AFTER
        {
            return Ok(present);
        }
        let present = served(client, &self.resource).await?;
        *lock(&self.discovered) = Some((Instant::now(), present));
        Ok(present)
    }

    fn api(&self, client: &Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &self.resource)
    }

    fn failure(&self, verb: &'static str, name: &str, e: &kube::Error) -> ApiFailure {
        ApiFailure::new(verb, &self.resource.kind, name, e)
    }

    /// The live object: from the watch when there is one, else from the API server.
    async fn live(
        &self,
        client: &Client,
        ns: &str,
        name: &str,
    ) -> Result<Option<Arc<DynamicObject>>, ApiFailure> {
        if let Some(store) = &self.store {
            return Ok(store.get(&ObjectRef::new_with(name, self.resource.clone()).within(ns)));
        }
        self.api(client, ns)
            .get_opt(name)
            .await
            .map(|o| o.map(Arc::new))
            .map_err(|e| self.failure("get", name, &e))
    }

    /// Apply `desired` unless the live copy is what this process last applied. Returns the
    /// live object after it (for status) and whether it wrote.
    pub async fn ensure(
        &self,
        client: &Client,
        ns: &str,
        desired: &DynamicObject,
    ) -> Result<Result<(Option<Arc<DynamicObject>>, bool), Missing>, ApiFailure> {
        let name = desired.name_any();
        // Watched means served at start; if its CRD goes away, the apply says so.
        if self.store.is_none() {
            match self.present(client).await {
                Ok(true) => {}
                Ok(false) => {
                    return Ok(Err(Missing {
                        kind: self.resource.kind.clone(),
                        needs: self.needs,
                    }));
                }
                Err(e) => return Err(self.failure("discover", &name, &e)),
            }
        }
        let live = self.live(client, ns, &name).await?;
        let key = format!("{ns}/{name}");
        let want = desired_hash(desired).unwrap_or_default().to_owned();
        let unchanged = live.as_ref().is_some_and(|l| {
            desired_hash(l.as_ref()) == Some(want.as_str())
                && lock(&self.applied).get(&key)
                    == Some(&(want.clone(), l.metadata.generation.unwrap_or_default()))
        });
        if unchanged {
            return Ok(Ok((live, false)));
        }
        let written = self
            .api(client, ns)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(desired),
            )
            .await
            .map_err(|e| self.failure("apply", &name, &e))?;
        let mut applied = lock(&self.applied);
        if applied.len() >= MAX_REMEMBERED {
            applied.clear();
        }
        applied.insert(key, (want, written.metadata.generation.unwrap_or_default()));
        Ok(Ok((Some(Arc::new(written)), true)))
    }

    /// Delete `name` in `ns` if it exists and is controlled by the owner `uid`. Returns
    /// whether it deleted. Without a watch (the kind was not served at start) only an object
    /// this process applied can exist, so nothing else is asked for.
    pub async fn remove(
        &self,
        client: &Client,
        ns: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<bool, ApiFailure> {
        if self.store.is_none() && !lock(&self.applied).contains_key(&format!("{ns}/{name}")) {
            return Ok(false);
        }
        let Some(live) = self.live(client, ns, name).await? else {
            return Ok(false);
        };
        let controlled = live
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid);
        if !controlled || live.metadata.deletion_timestamp.is_some() {
            return Ok(false);
        }
        lock(&self.applied).remove(&format!("{ns}/{name}"));
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match self.api(client, ns).delete(name, &params).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(self.failure("delete", name, &e)),
        }
    }
}
