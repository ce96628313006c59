//! Server-side apply of one child, skipped when nothing changed, with errors that keep the
//! API's status reason.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::resources::{FIELD_MANAGER, desired_hash};

/// Entries kept in [`Applied`]; beyond this it starts afresh (costing one apply per child).
const MAX_REMEMBERED: usize = 100_000;

/// A failed API call on a child, with the API's reason (`Forbidden`, `Conflict`, `Invalid`,
/// ...) and HTTP code, or `ClientError` when the request never got an answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{verb} {kind} {name}: {reason} ({code}): {message}")]
pub struct ApiFailure {
    pub verb: &'static str,
    pub kind: String,
    pub name: String,
    pub reason: String,
    pub code: u16,
    pub message: String,
}

impl ApiFailure {
    pub fn new(verb: &'static str, kind: &str, name: &str, error: &kube::Error) -> Self {
        let (reason, code, message) = match error {
            kube::Error::Api(status) => (
                if status.reason.is_empty() {
                    "Unknown".to_owned()
                } else {
                    status.reason.clone()
                },
                status.code,
                status.message.clone(),
            ),
            other => ("ClientError".to_owned(), 0, other.to_string()),
        };
        Self {
            verb,
            kind: kind.to_owned(),
            name: name.to_owned(),
            reason,
            code,
            message,
        }
    }

    /// A StatefulSet update refused because it changes a field that cannot change. API
    /// servers word it as a forbidden spec update or, for volume claim templates (1.37), as
    /// an immutable field.
    pub fn is_immutable_statefulset_change(&self) -> bool {
        self.kind == "StatefulSet"
            && self.code == 422
            && (self
                .message
                .contains("updates to statefulset spec for fields other than")
                || self.message.contains("field is immutable"))
    }
}

/// What identifies the version of a child the operator wrote: its generation when the kind
/// has one (status updates do not move it), otherwise its resourceVersion.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Version {
    Generation(i64),
    ResourceVersion(String),
}

fn version<K: Resource>(obj: &K) -> Option<Version> {
    match obj.meta().generation {
        Some(g) if g > 0 => Some(Version::Generation(g)),
        _ => obj.resource_version().map(Version::ResourceVersion),
    }
}

fn key<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", K::kind(&()))
}

/// The desired hash and version of every child as this process last applied it. A child
/// whose live copy still has both was not changed by anyone since, so it needs no apply.
#[derive(Default)]
pub struct Applied {
    seen: Mutex<HashMap<String, (String, Version)>>,
}

impl Applied {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Version)>> {
        // Entries are independent; a panic elsewhere cannot leave one half-written.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `live` is exactly what this process last applied for `desired`.
    pub fn up_to_date<K>(&self, namespace: &str, desired: &K, live: Option<&K>) -> bool
    where
        K: Resource<DynamicType = ()>,
    {
        let (Some(live), Some(want)) = (live, desired_hash(desired)) else {
            return false;
        };
        if desired_hash(live) != Some(want) {
            return false;
        }
        let Some(live_version) = version(live) else {
            return false;
        };
        let name = desired.meta().name.as_deref().unwrap_or_default();
        self.lock()
            .get(&key::<K>(namespace, name))
            .is_some_and(|(hash, v)| hash == want && *v == live_version)
    }

    fn remember<K: Resource<DynamicType = ()>>(&self, namespace: &str, written: &K) {
        let (Some(hash), Some(v)) = (desired_hash(written), version(written)) else {
            return;
        };
        let mut seen = self.lock();
        if seen.len() >= MAX_REMEMBERED {
            seen.clear();
        }
        seen.insert(
            key::<K>(namespace, &written.name_any()),
            (hash.to_owned(), v),
        );
    }

    pub fn forget<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) {
        self.lock().remove(&key::<K>(namespace, name));
    }
}

/// Apply `desired` unless `live` shows it is already in place. Returns whether it applied.
pub async fn apply<K>(
    client: &Client,
    applied: &Applied,
    namespace: &str,
    desired: &K,
    live: Option<&K>,
) -> Result<bool, ApiFailure>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    if applied.up_to_date(namespace, desired, live) {
        return Ok(false);
    }
    let name = desired.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let written = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await
        .map_err(|e| ApiFailure::new("apply", &K::kind(&()), &name, &e))?;
    applied.remember(namespace, &written);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;
    use crate::resources::DESIRED_HASH_ANNOTATION;

    fn deployment(hash: &str, generation: i64) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = Some("demo-gateway".into());
        d.metadata.generation = Some(generation);
        d.metadata.resource_version = Some(format!("{generation}00"));
        d.metadata.annotations = Some(BTreeMap::from([(
            DESIRED_HASH_ANNOTATION.to_owned(),
            hash.to_owned(),
        )]));
        d
    }

    #[test]
    fn unchanged_child_needs_no_apply() {
        let applied = Applied::default();
        let desired = deployment("aaa", 0);
        let live = deployment("aaa", 2);
        // Never applied by this process: apply once.
        assert!(!applied.up_to_date("chat", &desired, Some(&live)));
        applied.remember("chat", &live);
        assert!(applied.up_to_date("chat", &desired, Some(&live)));
        // A status update moves the resourceVersion but not the generation.
        let mut status_only = live.clone();
        status_only.metadata.resource_version = Some("999".into());
        assert!(applied.up_to_date("chat", &desired, Some(&status_only)));
    }

    #[test]
    fn drift_new_spec_and_deletion_need_an_apply() {
        let applied = Applied::default();
        let live = deployment("aaa", 2);
        applied.remember("chat", &live);
        // Someone edited the spec: the generation moved.
        assert!(!applied.up_to_date("chat", &deployment("aaa", 0), Some(&deployment("aaa", 3))));
        // The CanvasChat changed: another desired hash.
        assert!(!applied.up_to_date("chat", &deployment("bbb", 0), Some(&live)));
        // The child is gone.
        assert!(!applied.up_to_date("chat", &deployment("aaa", 0), None));
        // Another namespace is another child.
        assert!(!applied.up_to_date("other", &deployment("aaa", 0), Some(&live)));
        applied.forget::<Deployment>("chat", "demo-gateway");
        assert!(!applied.up_to_date("chat", &deployment("aaa", 0), Some(&live)));
    }

    #[test]
    fn kinds_without_generation_use_the_resource_version() {
        let applied = Applied::default();
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("demo-config-1".into());
        cm.metadata.resource_version = Some("10".into());
        cm.metadata.annotations = Some(BTreeMap::from([(
            DESIRED_HASH_ANNOTATION.to_owned(),
            "h".to_owned(),
        )]));
        applied.remember("chat", &cm);
        assert!(applied.up_to_date("chat", &cm, Some(&cm)));
        let mut edited = cm.clone();
        edited.metadata.resource_version = Some("11".into());
        assert!(!applied.up_to_date("chat", &cm, Some(&edited)));
    }

    #[test]
    fn api_failures_keep_the_reason() {
        let status = kube::core::Status::failure("nope", "Forbidden").with_code(403);
        let failure = ApiFailure::new(
            "apply",
            "Ingress",
            "demo",
            &kube::Error::Api(Box::new(status)),
        );
        assert_eq!(failure.reason, "Forbidden");
        assert_eq!(failure.code, 403);
        assert_eq!(
            failure.to_string(),
            "apply Ingress demo: Forbidden (403): nope"
        );
        let immutable = ApiFailure {
            verb: "apply",
            kind: "StatefulSet".into(),
            name: "demo-redis".into(),
            reason: "Invalid".into(),
            code: 422,
            message: "StatefulSet.apps \"demo-redis\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas' are forbidden".into(),
        };
        assert!(immutable.is_immutable_statefulset_change());
        let claims = ApiFailure {
            message: "StatefulSet.apps \"demo-redis\" is invalid: spec.volumeClaimTemplates: Invalid value: [...]: field is immutable".into(),
            ..immutable.clone()
        };
        assert!(claims.is_immutable_statefulset_change());
        let other = ApiFailure {
            message: "spec.replicas: Invalid value: -1".into(),
            ..immutable
        };
        assert!(!other.is_immutable_statefulset_change());
    }
}
