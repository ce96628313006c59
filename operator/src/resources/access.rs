//! Who may reach the gateway: the WebSocket Origin allow-list and the proxy hops in front.

use canvaschat_crds::CanvasChat;

/// CANVASCHAT_ALLOWED_ORIGINS: the spec's list when it has one (`["*"]` is any origin), else
/// the chat's own hosts. Each host gives `https://HOST`; `http://HOST` is added where the
/// operator cannot tell TLS is in front (an Ingress without tlsSecretName, whose status URL is
/// http://HOST, and HTTPRoutes, whose scheme is the Gateway listener's): refusing the page's own
/// origin there would break the chat, and that origin is the chat's host, not another site.
/// Wildcard route host names name no single origin and are skipped. Empty (no host and no
/// list) leaves the variable out: the gateway then accepts any origin.
pub fn allowed_origins(cc: &CanvasChat) -> Vec<String> {
    let explicit = &cc.spec.gateway.settings.allowed_origins;
    if !explicit.is_empty() {
        return explicit.clone();
    }
    let mut origins: Vec<String> = Vec::new();
    let mut add = |origin: String| {
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    };
    let ingress = &cc.spec.ingress;
    if ingress.enabled
        && let Some(host) = &ingress.host
    {
        add(format!("https://{host}"));
        if ingress.tls_secret_name.is_none() {
            add(format!("http://{host}"));
        }
    }
    if let Some(route) = &cc.spec.http_route {
        for host in route.hostnames.iter().filter(|h| !h.starts_with("*.")) {
            add(format!("https://{host}"));
            add(format!("http://{host}"));
        }
    }
    origins
}

/// CANVASCHAT_TRUSTED_PROXY_HOPS: behind the operator's Ingress or HTTPRoute one proxy (the
/// ingress controller or Gateway) appends the client address to X-Forwarded-For, so the
/// per-IP connection limit counts clients, not the proxy. None: clients connect directly.
pub fn trusted_proxy_hops(cc: &CanvasChat) -> Option<u32> {
    (cc.spec.ingress.enabled || cc.spec.http_route.is_some()).then_some(1)
}
