//! Ingress `N`: `/api` (WebSocket) and `/` (frontend) to the gateway Service.

use canvaschat_crds::CanvasChat;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use super::{Component, Names, child_meta};

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
    // Controller-neutral: only the user's annotations (the chart README lists what common
    // controllers need for long-lived WebSockets).
    let mut metadata = child_meta(cc, names, names.ingress(), Component::Gateway);
    metadata.annotations = super::non_empty(&spec.annotations);
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
            ingress_class_name: spec.class_name.clone(),
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
