//! HTTP surface: probes, the page's runtime config, the WebSocket upgrade and the static
//! frontend on the public listener; metrics on the admin listener.

use std::{collections::HashMap, net::SocketAddr, path::Path, sync::Arc};

use axum::{
    Extension, Json, Router,
    extract::{ConnectInfo, Query, Request, State, WebSocketUpgrade},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use tower_http::{
    services::{ServeDir, ServeFile},
    trace::TraceLayer,
};

use crate::{
    access::Access,
    config::AuthMode,
    history::Since,
    metrics::RejectReason,
    node::Node,
    protocol::{DEFAULT_CHANNEL, timestamp, validate_name},
    session::Connect,
};

/// Read buffer of each WebSocket, which is also the most read from the socket at once.
/// Client frames are a few hundred bytes (a chat message, a cursor position); when a frame's
/// header announces a larger one, tungstenite reserves room for the whole frame. tungstenite
/// zero-fills the buffer before every read, so all of it is resident for every connection
/// (8 KiB, capped at the 4 KiB message limit, was the largest part of an idle connection).
const READ_BUFFER_BYTES: usize = 512;

/// The public listener: probes, `/config.json`, the chat upgrade and the frontend. Serve it
/// with connect info (`into_make_service_with_connect_info::<SocketAddr>`): the per-IP cap
/// needs the peer address.
pub fn router(app: Arc<Node>, access: Arc<Access>) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/config.json", get(page_config))
        // Not the frontend's fallback page either: scrapers pointed at the public port get
        // a clear 404.
        .route("/metrics", get(metrics_elsewhere))
        .route("/api/chat", get(chat_upgrade))
        .layer(Extension(access))
        .with_state(app.clone());
    let router = match &app.config.static_dir {
        Some(dir) => api.fallback_service(static_files(dir)),
        None => api.fallback(no_frontend),
    };
    router
        .layer(middleware::from_fn(cache_headers))
        .layer(TraceLayer::new_for_http())
}

/// The admin listener (`CANVASCHAT_ADMIN_LISTEN`): metrics, and the probes again for
/// monitoring that only reaches this port. Not routed by the Ingress.
pub fn admin_router(app: Arc<Node>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(app)
}

async fn metrics_elsewhere() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "metrics are served on the admin listener (CANVASCHAT_ADMIN_LISTEN, default port 9090)",
    )
}

/// What the page needs to know before it connects: the authentication mode and, in JWT
/// mode, the same-site URL it gets its token from.
async fn page_config(State(app): State<Arc<Node>>) -> Response {
    let body = match app.config.auth {
        AuthMode::Anonymous => json!({"auth": "anonymous"}),
        AuthMode::Jwt => json!({"auth": "jwt", "tokenUrl": app.config.auth_token_url}),
    };
    Json(body).into_response()
}

/// The built frontend, with unknown paths answered by `index.html` so client-side routes
/// survive a reload.
fn static_files(dir: &Path) -> ServeDir<ServeFile> {
    ServeDir::new(dir)
        .precompressed_gzip()
        .fallback(ServeFile::new(dir.join("index.html")))
}

/// Vite puts content-hashed files under `/assets/`; those never change, everything else
/// (notably `index.html`) must be revalidated so a deploy is picked up at once.
async fn cache_headers(request: Request, next: Next) -> Response {
    let immutable = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    if response.status().is_success() && !response.headers().contains_key(header::CACHE_CONTROL) {
        let value = if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

async fn no_frontend() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "no frontend is served: build it (npm run build in frontend/) or set CANVASCHAT_STATIC_DIR",
    )
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn health() -> Response {
    Json(json!({"status": "ok", "timestamp": timestamp(chrono::Utc::now())})).into_response()
}

async fn ready(State(app): State<Arc<Node>>) -> Response {
    if app.draining.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining", "checks": {"redis": "draining", "pubsub": "draining"}})),
        )
            .into_response();
    }
    let health = app.broker.health().await;
    let check = |ok: bool| if ok { "ok" } else { "failing" };
    let body = json!({
        "status": if health.store && health.pubsub { "ready" } else { "not_ready" },
        "checks": {"redis": check(health.store), "pubsub": check(health.pubsub)},
        "broker": app.broker_name(),
    });
    let status = if health.store && health.pubsub {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(app): State<Arc<Node>>) -> Response {
    match app.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "metrics could not be encoded",
        ),
    }
}

async fn chat_upgrade(
    State(app): State<Arc<Node>>,
    Extension(access): Extension<Arc<Access>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(params): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let reject = |status, code, reason, message: &str| {
        app.metrics.reject(reason);
        error_response(status, code, message)
    };
    let jwt = access.authenticator.is_some();
    // In JWT mode the user comes from the token; a uid parameter is ignored.
    let user = params.get("uid").map(String::as_str).unwrap_or_default();
    let channel = params
        .get("channel")
        .map(String::as_str)
        .unwrap_or(DEFAULT_CHANNEL);
    let checked = if jwt {
        Ok(())
    } else {
        validate_name("uid", user)
    };
    if let Err(error) = checked.and_then(|()| validate_name("channel", channel)) {
        return reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            RejectReason::BadRequest,
            &error.to_string(),
        );
    }
    let since = match parse_since(&params) {
        Ok(since) => since,
        Err(message) => {
            return reject(
                StatusCode::BAD_REQUEST,
                "bad_request",
                RejectReason::BadRequest,
                message,
            );
        }
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return reject(
                StatusCode::BAD_REQUEST,
                "not_websocket",
                RejectReason::BadRequest,
                &format!("expected a WebSocket upgrade: {rejection}"),
            );
        }
    };
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("\u{0}"));
    if !app.config.origin_allowed(origin) {
        return reject(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            RejectReason::Origin,
            "this Origin is not in CANVASCHAT_ALLOWED_ORIGINS",
        );
    }
    if app.draining.is_cancelled() {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            RejectReason::Draining,
            "this gateway is shutting down; reconnect to another",
        );
    }
    let Ok(permit) = app.connection_slots.clone().try_acquire_owned() else {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            RejectReason::ConnectionLimit,
            "this gateway is at its connection limit; retry shortly",
        );
    };
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let ip = access.client_ip(peer.ip(), forwarded);
    let Some(ip_slot) = access.connect_from(ip) else {
        return reject(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections_from_ip",
            RejectReason::IpLimit,
            "too many connections from this address to this gateway; close some and retry",
        );
    };
    // Boxed until the session starts: the upgrade's task keeps its callback, and so this,
    // for the connection's whole life otherwise.
    let session = Box::new(Connect {
        node: app.clone(),
        access: access.clone(),
        // In JWT mode the token names the user, in the first frame.
        user: if jwt { String::new() } else { user.to_owned() },
        channel: channel.to_owned(),
        since,
        expires_at: None,
        permit,
        ip_slot,
    });
    let limit = app.config.max_message_bytes as usize;
    upgrade
        // tungstenite reserves 128 KiB per socket by default.
        .read_buffer_size(READ_BUFFER_BYTES.min(limit))
        .max_message_size(limit)
        .max_frame_size(limit)
        // The session runs in a task of its own: axum's upgrade task would keep the socket
        // it handed over (about 370 bytes) for the connection's life.
        .on_upgrade(move |socket| {
            tokio::spawn(session.run(socket));
            std::future::ready(())
        })
}

/// `since` and `epoch` name where a reconnecting client stopped; both or neither. A client
/// that has not seen any message yet sends neither and gets the recent messages.
fn parse_since(params: &HashMap<String, String>) -> Result<Option<Since>, &'static str> {
    match (params.get("since"), params.get("epoch")) {
        (None, None) => Ok(None),
        (Some(offset), Some(epoch)) => {
            let offset = offset
                .parse()
                .map_err(|_| "since must be a non-negative integer offset")?;
            validate_name("epoch", epoch).map_err(
                |_| "epoch must be 1-64 characters of [A-Za-z0-9_.-], as received in user_sync",
            )?;
            Ok(Some(Since {
                offset,
                epoch: epoch.clone(),
            }))
        }
        _ => Err(
            "since and epoch go together: send both (from the last message received) or neither",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn since_and_epoch_are_read_together() {
        assert_eq!(parse_since(&params(&[])), Ok(None));
        assert_eq!(
            parse_since(&params(&[("since", "12"), ("epoch", "ab")])),
            Ok(Some(Since {
                offset: 12,
                epoch: "ab".into()
            }))
        );
        for bad in [
            params(&[("since", "12")]),
            params(&[("epoch", "ab")]),
            params(&[("since", "-1"), ("epoch", "ab")]),
            params(&[("since", "1"), ("epoch", "a b")]),
        ] {
            assert!(parse_since(&bad).is_err(), "{bad:?}");
        }
    }
}
