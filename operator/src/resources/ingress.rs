//! Ingress `N`: `/api` (WebSocket) and `/` (frontend) to the gateway Service.

use std::collections::BTreeMap;

use canvaschat_crds::CanvasChat;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use super::{Component, Names, child_meta};

/// WebSocket connections live long; ingress-nginx closes idle proxied connections after 60 s
/// by default, so reads and sends may idle for an hour.
const WEBSOCKET_TIMEOUT_SECONDS: &str = "3600";

fn default_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "nginx.ingress.kubernetes.io/proxy-read-timeout".to_owned(),
            WEBSOCKET_TIMEOUT_SECONDS.to_owned(),
        ),
        (
            "nginx.ingress.kubernetes.io/proxy-send-timeout".to_owned(),
            WEBSOCKET_TIMEOUT_SECONDS.to_owned(),
        ),
    ])
}

fn path(prefix: &str, names: &Names) -> HTTPIngressPath {
    HTTPIngressPath {
        path: Some(prefix.to_owned()),
        path_type: "Prefix".to_owned(),
        backend: IngressBackend {
            service: Some(IngressServiceBackend {
                name: names.gateway(),
                port: Some(ServiceBackendPort {
                    name: Some("http".to_owned()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        },
    }
}

pub fn ingress(cc: &CanvasChat, names: &Names) -> Ingress {
    let spec = &cc.spec.ingress;
    let mut annotations = default_annotations();
    annotations.extend(spec.annotations.clone());
    let mut metadata = child_meta(cc, names, names.ingress(), Component::Gateway);
    metadata.annotations = Some(annotations);
    let tls = match (&spec.tls_secret_name, &spec.host) {
        (Some(secret), Some(host)) => Some(vec![IngressTLS {
            hosts: Some(vec![host.clone()]),
            secret_name: Some(secret.clone()),
        }]),
        _ => None,
    };
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: Some(spec.class_name.clone()),
            rules: Some(vec![IngressRule {
                host: spec.host.clone(),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![path("/api", names), path("/", names)],
                }),
            }]),
            tls,
            ..Default::default()
        }),
        ..Default::default()
    }
}
