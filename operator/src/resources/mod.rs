//! Pure builders: a CanvasChat in, the Kubernetes objects the operator applies out.
//! Nothing here talks to a cluster, so `render` and the unit tests use the same code as the
//! controller.

mod access;
mod auth;
mod config;
mod gateway;
mod hpa;
mod ingress;
mod monitoring;
mod pdb;
mod redis;
mod route;
mod secret;
mod sentinel;

pub use auth::{
    AUTH_SECRET_HASH_ANNOTATION, key_hash as auth_key_hash, key_secret_name as auth_key_secret,
};
pub use monitoring::pod_monitor_resource;
pub use route::http_route_resource;
pub use secret::{PASSWORD_KEY, generated_secret};

#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod sentinel_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use canvaschat_crds::{CanvasChat, RedisMode, defaults};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::DynamicObject;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "canvaschat-operator";
/// Pod-template annotation carrying the hash of the gateway configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "canvaschat.io/config-hash";
/// Pod-template annotation carrying the hash of the Redis password, so rotation rolls pods.
pub const SECRET_HASH_ANNOTATION: &str = "canvaschat.io/secret-hash";
/// Annotation on every child: hash of the object the operator last applied, so an unchanged
/// child is not applied again.
pub const DESIRED_HASH_ANNOTATION: &str = "canvaschat.io/desired-hash";
/// Gateway container port.
pub const GATEWAY_PORT: i32 = 8080;
/// Name of the gateway container port that serves `/metrics` (what the PodMonitor scrapes).
pub const METRICS_PORT_NAME: &str = "metrics";
/// The gateway's admin port: the default of CANVASCHAT_ADMIN_LISTEN, where `/metrics` is.
pub const GATEWAY_METRICS_PORT: i32 = 9090;
/// Port of the gateway Service.
pub const GATEWAY_SERVICE_PORT: i32 = 80;
/// Redis port.
pub const REDIS_PORT: i32 = 6379;
/// Namespace assumed for a CanvasChat without one (only `render` sees such objects).
pub const DEFAULT_NAMESPACE: &str = "default";

/// A component of the chat, used in labels and selectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Gateway,
    Redis,
}

impl Component {
    fn as_str(self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Redis => "redis",
        }
    }
}

/// Names of the children of one CanvasChat, as fixed in design.md.
#[derive(Clone, Debug)]
pub struct Names {
    pub instance: String,
    pub namespace: String,
}

impl Names {
    pub fn of(cc: &CanvasChat) -> Self {
        Self {
            instance: cc.name_any(),
            namespace: cc
                .namespace()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        }
    }
    /// Prefix of the content-hashed, immutable gateway ConfigMaps `N-config-<hash>`.
    pub fn config_prefix(&self) -> String {
        format!("{}-config-", self.instance)
    }
    /// The operator-generated Redis password Secret.
    pub fn redis_auth(&self) -> String {
        format!("{}-redis-auth", self.instance)
    }
    pub fn redis(&self) -> String {
        format!("{}-redis", self.instance)
    }
    /// Service of the Sentinels (sentinel mode).
    pub fn redis_sentinel(&self) -> String {
        format!("{}-redis-sentinel", self.instance)
    }
    pub fn redis_headless(&self) -> String {
        format!("{}-redis-headless", self.instance)
    }
    pub fn gateway(&self) -> String {
        format!("{}-gateway", self.instance)
    }
    pub fn ingress(&self) -> String {
        self.instance.clone()
    }
    /// The in-cluster URL of the gateway Service.
    pub fn in_cluster_url(&self) -> String {
        format!("http://{}.{}.svc", self.gateway(), self.namespace)
    }
}

/// Labels that select the pods of one component of one chat.
pub fn selector_labels(names: &Names, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "canvaschat".to_owned()),
        (
            "app.kubernetes.io/instance".to_owned(),
            names.instance.clone(),
        ),
        (
            "app.kubernetes.io/component".to_owned(),
            component.as_str().to_owned(),
        ),
    ])
}

/// Selector labels plus `managed-by`, carried by every child object.
pub fn labels(names: &Names, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector_labels(names, component);
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        FIELD_MANAGER.to_owned(),
    );
    labels
}

/// Label selector the controller's watches on children use.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=canvaschat-operator";

/// Metadata of a child: name, namespace, labels and (once the CanvasChat has a uid, i.e.
/// exists in a cluster) the controller ownerReference that makes deletion garbage-collect it.
fn child_meta(cc: &CanvasChat, names: &Names, name: String, component: Component) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels(names, component)),
        owner_references: owner_reference(cc).map(|o| vec![o]),
        ..Default::default()
    }
}

fn owner_reference(cc: &CanvasChat) -> Option<OwnerReference> {
    let mut owner = cc.controller_owner_ref(&())?;
    owner.block_owner_deletion = Some(true);
    Some(owner)
}

/// The public URL of a chat, as reported in its status: the HTTPRoute's first host name, else
/// the Ingress host, else the in-cluster Service. A route's scheme is the Gateway listener's,
/// which the CanvasChat does not know, so it is reported as http.
pub fn url(cc: &CanvasChat) -> String {
    if let Some(host) = cc
        .spec
        .http_route
        .as_ref()
        .and_then(|r| r.hostnames.first())
    {
        return format!("http://{host}");
    }
    let ingress = &cc.spec.ingress;
    match (&ingress.host, ingress.enabled) {
        (Some(host), true) if ingress.tls_secret_name.is_some() => format!("https://{host}"),
        (Some(host), true) => format!("http://{host}"),
        _ => Names::of(cc).in_cluster_url(),
    }
}

/// The Secret and key holding the Redis password: the user's, or the generated `N-redis-auth`.
pub fn password_secret(cc: &CanvasChat) -> (String, String) {
    match &cc.spec.redis.password_secret_ref {
        Some(r) => (r.name.clone(), r.key.clone()),
        None => (Names::of(cc).redis_auth(), PASSWORD_KEY.to_owned()),
    }
}

/// What the build takes besides the CanvasChat.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Gateway image for chats that do not set one (the operator's own release).
    pub gateway_image: String,
    /// Hash of the Redis password; `None` (render, no cluster) leaves the annotation out.
    pub password_hash: Option<String>,
    /// Hash of the spec.auth key from its Secret; `None` (no such key, or render) leaves the
    /// annotation out.
    pub auth_secret_hash: Option<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            gateway_image: defaults::gateway_image(),
            password_hash: None,
            auth_secret_hash: None,
        }
    }
}

/// Everything the operator applies for one CanvasChat. Optional children are `None` when the
/// spec does not want them; the controller then deletes any existing one.
#[derive(Clone, Debug)]
pub struct Desired {
    pub config_map: ConfigMap,
    pub redis_headless_service: Service,
    pub redis_service: Service,
    pub redis_statefulset: StatefulSet,
    pub redis_network_policy: NetworkPolicy,
    /// Sentinel mode only: Service `N-redis-sentinel` and PodDisruptionBudget `N-redis`.
    pub redis_sentinel_service: Option<Service>,
    pub redis_pdb: Option<PodDisruptionBudget>,
    pub gateway_service: Service,
    pub gateway_deployment: Deployment,
    pub hpa: Option<HorizontalPodAutoscaler>,
    pub pdb: Option<PodDisruptionBudget>,
    pub ingress: Option<Ingress>,
    /// HTTPRoute `N` (Gateway API), a dynamic object.
    pub http_route: Option<DynamicObject>,
    /// PodMonitor `N-gateway` (Prometheus Operator), a dynamic object.
    pub pod_monitor: Option<DynamicObject>,
}

/// Error while building children (only serialisation can fail; the spec is validated first).
#[derive(Debug, thiserror::Error)]
#[error("cannot hash a child object: {0}")]
pub struct BuildError(#[from] serde_json::Error);

/// Hex of the first 10 bytes of SHA-256 over `bytes`.
pub fn short_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(10)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Build every child of `cc`. The caller validates `cc` first.
pub fn build(cc: &CanvasChat, options: &BuildOptions) -> Result<Desired, BuildError> {
    let names = Names::of(cc);
    let config_map = config::config_map(cc, &names)?;
    let config_hash = config::config_hash(&config_map)?;
    let sentinel_mode = cc.spec.redis.mode == RedisMode::Sentinel;
    let mut desired = Desired {
        redis_headless_service: redis::headless_service(cc, &names),
        redis_service: redis::client_service(cc, &names),
        redis_statefulset: redis::statefulset(cc, &names, options.password_hash.as_deref()),
        redis_network_policy: redis::network_policy(cc, &names),
        redis_sentinel_service: sentinel_mode.then(|| sentinel::service(cc, &names)),
        redis_pdb: sentinel_mode.then(|| sentinel::pdb(cc, &names)),
        gateway_service: gateway::service(cc, &names),
        gateway_deployment: gateway::deployment(
            cc,
            &names,
            config_map.metadata.name.as_deref().unwrap_or_default(),
            &config_hash,
            options,
        ),
        hpa: cc
            .spec
            .gateway
            .autoscaling
            .enabled
            .then(|| hpa::hpa(cc, &names)),
        pdb: cc
            .spec
            .gateway
            .pod_disruption_budget
            .enabled
            .then(|| pdb::pdb(cc, &names)),
        ingress: cc
            .spec
            .ingress
            .enabled
            .then(|| ingress::ingress(cc, &names)),
        http_route: route::http_route(cc, &names),
        pod_monitor: monitoring::pod_monitor(cc, &names),
        config_map,
    };
    desired.stamp_hashes()?;
    Ok(desired)
}

/// Put the hash of `obj` (without the annotation itself) in its desired-hash annotation.
fn stamp<K: Resource + Serialize>(obj: &mut K) -> Result<(), serde_json::Error> {
    let hash = short_hash(&serde_json::to_vec(&*obj)?);
    obj.annotations_mut()
        .insert(DESIRED_HASH_ANNOTATION.to_owned(), hash);
    Ok(())
}

/// The desired-hash annotation of an object, if it has one.
pub fn desired_hash<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta()
        .annotations
        .as_ref()?
        .get(DESIRED_HASH_ANNOTATION)
        .map(String::as_str)
}

/// Whether the live Service must be deleted and created again to become `desired`: its
/// clusterIP cannot change in place, and a headless Service (clusterIP None) cannot get an
/// address nor lose one (`N-redis` was a ClusterIP Service before it became headless).
pub fn service_needs_recreation(desired: &Service, live: &Service) -> bool {
    let headless =
        |s: &Service| s.spec.as_ref().and_then(|spec| spec.cluster_ip.as_deref()) == Some("None");
    headless(desired) != headless(live)
}

impl Desired {
    /// Every Service of the chat.
    pub fn services(&self) -> Vec<&Service> {
        let mut services = vec![
            &self.redis_headless_service,
            &self.redis_service,
            &self.gateway_service,
        ];
        services.extend(&self.redis_sentinel_service);
        services
    }

    fn stamp_hashes(&mut self) -> Result<(), serde_json::Error> {
        stamp(&mut self.config_map)?;
        stamp(&mut self.redis_headless_service)?;
        stamp(&mut self.redis_service)?;
        stamp(&mut self.redis_statefulset)?;
        stamp(&mut self.redis_network_policy)?;
        if let Some(service) = &mut self.redis_sentinel_service {
            stamp(service)?;
        }
        if let Some(pdb) = &mut self.redis_pdb {
            stamp(pdb)?;
        }
        stamp(&mut self.gateway_service)?;
        stamp(&mut self.gateway_deployment)?;
        if let Some(hpa) = &mut self.hpa {
            stamp(hpa)?;
        }
        if let Some(pdb) = &mut self.pdb {
            stamp(pdb)?;
        }
        if let Some(ingress) = &mut self.ingress {
            stamp(ingress)?;
        }
        if let Some(route) = &mut self.http_route {
            stamp(route)?;
        }
        if let Some(monitor) = &mut self.pod_monitor {
            stamp(monitor)?;
        }
        Ok(())
    }

    /// Every object in apply order (configuration and Redis before the gateway that needs
    /// them), serialised with apiVersion and kind.
    pub fn to_values(&self) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        fn push<T: Serialize>(
            out: &mut Vec<serde_json::Value>,
            obj: &T,
        ) -> Result<(), serde_json::Error> {
            out.push(serde_json::to_value(obj)?);
            Ok(())
        }
        let mut out = Vec::new();
        push(&mut out, &self.config_map)?;
        push(&mut out, &self.redis_headless_service)?;
        push(&mut out, &self.redis_service)?;
        push(&mut out, &self.redis_network_policy)?;
        if let Some(service) = &self.redis_sentinel_service {
            push(&mut out, service)?;
        }
        if let Some(pdb) = &self.redis_pdb {
            push(&mut out, pdb)?;
        }
        push(&mut out, &self.redis_statefulset)?;
        push(&mut out, &self.gateway_service)?;
        push(&mut out, &self.gateway_deployment)?;
        if let Some(hpa) = &self.hpa {
            push(&mut out, hpa)?;
        }
        if let Some(pdb) = &self.pdb {
            push(&mut out, pdb)?;
        }
        if let Some(ingress) = &self.ingress {
            push(&mut out, ingress)?;
        }
        if let Some(route) = &self.http_route {
            push(&mut out, route)?;
        }
        if let Some(monitor) = &self.pod_monitor {
            push(&mut out, monitor)?;
        }
        Ok(out)
    }
}

/// Image pull secrets for both components' pods.
fn image_pull_secrets(
    cc: &CanvasChat,
) -> Option<Vec<k8s_openapi::api::core::v1::LocalObjectReference>> {
    let secrets = &cc.spec.image_pull_secrets;
    (!secrets.is_empty()).then(|| secrets.clone())
}

fn non_empty<K: Ord + Clone, V: Clone>(map: &BTreeMap<K, V>) -> Option<BTreeMap<K, V>> {
    (!map.is_empty()).then(|| map.clone())
}
