//! Reflector stores: what the watches last saw of every CanvasChat child, the password
//! Secrets and the chats' pods. Reconciles read them instead of asking the API server.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use canvaschat_crds::CanvasChat;
use futures::Stream;
use futures::future::join_all;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::resources::MANAGED_BY_SELECTOR;

/// Readers of every store the reconciler uses.
#[derive(Clone)]
pub struct Stores {
    pub config_maps: Store<ConfigMap>,
    pub services: Store<Service>,
    pub statefulsets: Store<StatefulSet>,
    pub network_policies: Store<NetworkPolicy>,
    pub deployments: Store<Deployment>,
    pub hpas: Store<HorizontalPodAutoscaler>,
    pub pdbs: Store<PodDisruptionBudget>,
    pub ingresses: Store<Ingress>,
    pub secrets: Store<Secret>,
    pub pods: Store<Pod>,
}

/// A watch stream that fills a store as the controller polls it.
pub type Watch<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Watch `K` into a new store; the stream yields every object touched (deletions included).
pub fn reflect<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, Watch<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    (reader, Box::pin(stream))
}

/// The watch streams that feed [`Stores`], handed to the controller to poll.
pub struct Streams {
    pub config_maps: Watch<ConfigMap>,
    pub services: Watch<Service>,
    pub statefulsets: Watch<StatefulSet>,
    pub network_policies: Watch<NetworkPolicy>,
    pub deployments: Watch<Deployment>,
    pub hpas: Watch<HorizontalPodAutoscaler>,
    pub pdbs: Watch<PodDisruptionBudget>,
    pub ingresses: Watch<Ingress>,
    pub secrets: Watch<Secret>,
    pub pods: Watch<Pod>,
}

impl Stores {
    /// Stores and their streams for `namespace` (None: all). Children and pods are watched
    /// by the managed-by label; Secrets of type Opaque only (where passwords live), since a
    /// user's password Secret carries no label of ours.
    pub fn new(client: &Client, namespace: Option<&str>) -> (Self, Streams) {
        let owned = || watcher::Config::default().labels(MANAGED_BY_SELECTOR);
        let (config_maps, config_maps_s) = reflect(api(client, namespace), owned());
        let (services, services_s) = reflect(api(client, namespace), owned());
        let (statefulsets, statefulsets_s) = reflect(api(client, namespace), owned());
        let (network_policies, network_policies_s) = reflect(api(client, namespace), owned());
        let (deployments, deployments_s) = reflect(api(client, namespace), owned());
        let (hpas, hpas_s) = reflect(api(client, namespace), owned());
        let (pdbs, pdbs_s) = reflect(api(client, namespace), owned());
        let (ingresses, ingresses_s) = reflect(api(client, namespace), owned());
        let (secrets, secrets_s) = reflect(
            api(client, namespace),
            watcher::Config::default().fields("type=Opaque"),
        );
        let (pods, pods_s) = reflect(api(client, namespace), owned());
        (
            Self {
                config_maps,
                services,
                statefulsets,
                network_policies,
                deployments,
                hpas,
                pdbs,
                ingresses,
                secrets,
                pods,
            },
            Streams {
                config_maps: config_maps_s,
                services: services_s,
                statefulsets: statefulsets_s,
                network_policies: network_policies_s,
                deployments: deployments_s,
                hpas: hpas_s,
                pdbs: pdbs_s,
                ingresses: ingresses_s,
                secrets: secrets_s,
                pods: pods_s,
            },
        )
    }

    /// Resolves once every store has had its first complete listing.
    pub async fn ready(&self) -> bool {
        let results = join_all([
            Box::pin(self.config_maps.wait_until_ready())
                as std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>>,
            Box::pin(self.services.wait_until_ready()),
            Box::pin(self.statefulsets.wait_until_ready()),
            Box::pin(self.network_policies.wait_until_ready()),
            Box::pin(self.deployments.wait_until_ready()),
            Box::pin(self.hpas.wait_until_ready()),
            Box::pin(self.pdbs.wait_until_ready()),
            Box::pin(self.ingresses.wait_until_ready()),
            Box::pin(self.secrets.wait_until_ready()),
            Box::pin(self.pods.wait_until_ready()),
        ])
        .await;
        results.iter().all(Result::is_ok)
    }
}

/// The object `name` in `namespace` from `store`.
pub fn get<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

/// Whether `obj` is controlled by the CanvasChat `cc`.
pub fn controlled_by<K: Resource>(obj: &K, cc: &CanvasChat) -> bool {
    let uid = cc.uid();
    obj.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}
