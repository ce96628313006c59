//! JWT mode and the abuse limits, against real gateway processes with real tokens: HS256
//! from a secret file (also minted by `canvaschat-gateway token`), RS256 from a PEM key
//! generated with the openssl CLI, and keys published by a JWKS server run by the test.

mod common;

use std::{
    io::Write,
    net::SocketAddr,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Client, Event, Gateway, GatewayOptions, WAIT, join};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "an-hs256-secret-of-more-than-32-bytes-for-tests";

fn write_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(bytes).expect("write");
    file
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn hs256(claims: Value) -> String {
    sign(
        claims,
        &Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn sign(claims: Value, header: &Header, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, &claims, key).expect("sign")
}

async fn hmac_gateway(secret: &tempfile::NamedTempFile, extra: &[(&str, &str)]) -> Gateway {
    let mut options = GatewayOptions::embedded()
        .with("CANVASCHAT_AUTH", "jwt")
        .with("CANVASCHAT_JWT_HMAC_SECRET_FILE", secret.path().display());
    for (key, value) in extra {
        options = options.with(key, value);
    }
    Gateway::start(&options).await
}

/// Connects (any `uid` is ignored in JWT mode) and sends the token first.
async fn connect_with(g: &Gateway, uid: &str, channel: &str, token: &str) -> Client {
    let mut client = Client::connect(&g.url(uid, channel)).await;
    client
        .send_text(json!({"type":"auth","token":token}).to_string())
        .await;
    client
}

/// Connects with a token and returns the client with its `user_sync` (history consumed).
async fn join_with(g: &Gateway, uid: &str, channel: &str, token: &str) -> (Client, Value) {
    let mut client = connect_with(g, uid, channel, token).await;
    let sync = client.recv().await;
    assert_eq!(sync["type"], "user_sync", "{sync}");
    assert_eq!(client.recv().await["type"], "history");
    (client, sync)
}

/// Expects an `error` frame with `code`, then the close with `close`.
async fn expect_refusal(client: &mut Client, code: &str, close: u16) {
    match client.next_event(WAIT).await {
        Event::Frame(frame) => {
            assert_eq!(frame["type"], "error", "{frame}");
            assert_eq!(frame["code"], code, "{frame}");
            assert!(
                !frame["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("eyJ"),
                "the token is never echoed: {frame}"
            );
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    assert_eq!(client.expect_close().await, Some(close));
}

fn users(sync: &Value) -> Vec<&str> {
    sync["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[tokio::test]
async fn a_minted_token_names_the_user_and_uid_is_ignored() {
    let secret = write_file(format!("{SECRET}\n").as_bytes());
    let minted = Command::new(env!("CARGO_BIN_EXE_canvaschat-gateway"))
        .args(["token", "--sub", "alice", "--ttl", "60"])
        .env("CANVASCHAT_JWT_HMAC_SECRET_FILE", secret.path())
        .output()
        .expect("token subcommand");
    assert!(minted.status.success(), "{minted:?}");
    let token = String::from_utf8(minted.stdout).expect("utf-8");
    let g = hmac_gateway(&secret, &[]).await;

    let (mut bob, _) = join_with(
        &g,
        "whatever",
        "room",
        &hs256(json!({"sub":"bob","exp":now() + 60})),
    )
    .await;
    let (mut alice, sync) = join_with(&g, "mallory", "room", token.trim()).await;
    assert_eq!(users(&sync), ["alice", "bob"], "{sync}");
    let joined = bob.recv_type("user_joined").await;
    assert_eq!(joined["user_id"], "alice");
    alice.chat("hi", 1.0, 2.0, "m1").await;
    assert_eq!(alice.recv_type("ack").await["client_msg_id"], "m1");
    assert_eq!(bob.recv_type("chat").await["user_id"], "alice");
}

#[tokio::test]
async fn bad_tokens_are_closed_with_4401() {
    let secret = write_file(SECRET.as_bytes());
    let g = hmac_gateway(&secret, &[("CANVASCHAT_AUTH_TIMEOUT_SECONDS", "1")]).await;
    let exp = now() + 600;
    let valid_claims = hs256(json!({"sub":"eve","exp":exp}));
    let claims_part = valid_claims.split('.').nth(1).expect("claims");
    let wrong_key = sign(
        json!({"sub":"eve","exp":exp}),
        &Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(b"some-other-secret-of-32-bytes-or-more"),
    );
    let cases = [
        ("garbage", "not.a.jwt".to_owned()),
        ("expired", hs256(json!({"sub":"eve","exp":now() - 120}))),
        ("no exp", hs256(json!({"sub":"eve"}))),
        ("wrong key", wrong_key),
        // {"alg":"none","typ":"JWT"} with valid claims and no signature
        (
            "alg none",
            format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims_part}."),
        ),
        ("bad sub", hs256(json!({"sub":"e v e","exp":exp}))),
    ];
    for (name, token) in cases {
        let mut client = connect_with(&g, "eve", "c", &token).await;
        eprintln!("case: {name}");
        expect_refusal(&mut client, "unauthorized", 4401).await;
    }

    // A first frame that is not auth.
    let mut chatty = Client::connect(&g.url("eve", "c")).await;
    chatty.chat("let me in", 0.0, 0.0, "x").await;
    expect_refusal(&mut chatty, "unauthorized", 4401).await;

    // No frame at all within CANVASCHAT_AUTH_TIMEOUT_SECONDS.
    let mut silent = Client::connect(&g.url("eve", "c")).await;
    expect_refusal(&mut silent, "unauthorized", 4401).await;

    // Nobody joined: presence shows only the next valid user.
    let (_ok, sync) = join_with(&g, "x", "c", &valid_claims).await;
    assert_eq!(users(&sync), ["eve"]);
    let metrics = g.metrics().await;
    assert!(
        metrics.contains("canvaschat_rejected_total{reason=\"Unauthorized\"} 8"),
        "{metrics}"
    );
}

#[tokio::test]
async fn audience_and_issuer_are_enforced_when_configured() {
    let secret = write_file(SECRET.as_bytes());
    let g = hmac_gateway(
        &secret,
        &[
            ("CANVASCHAT_JWT_AUDIENCE", "canvaschat"),
            ("CANVASCHAT_JWT_ISSUER", "https://idp.test"),
        ],
    )
    .await;
    let exp = now() + 600;
    let good = json!({"sub":"a","exp":exp,"aud":"canvaschat","iss":"https://idp.test"});
    let (_a, _) = join_with(&g, "a", "c", &hs256(good.clone())).await;
    for bad in [
        json!({"sub":"a","exp":exp,"aud":"other","iss":"https://idp.test"}),
        json!({"sub":"a","exp":exp,"iss":"https://idp.test"}),
        json!({"sub":"a","exp":exp,"aud":"canvaschat","iss":"https://evil.test"}),
    ] {
        let mut client = connect_with(&g, "a", "c", &hs256(bad)).await;
        expect_refusal(&mut client, "unauthorized", 4401).await;
    }
}

#[tokio::test]
async fn a_channel_outside_the_claim_is_closed_with_4403() {
    let secret = write_file(SECRET.as_bytes());
    let g = hmac_gateway(&secret, &[]).await;
    let token = hs256(json!({"sub":"a","exp":now() + 600,"channels":["lobby"]}));
    let (_in_lobby, _) = join_with(&g, "a", "lobby", &token).await;
    let mut elsewhere = connect_with(&g, "a", "secret-room", &token).await;
    expect_refusal(&mut elsewhere, "forbidden_channel", 4403).await;
    assert!(
        g.metrics()
            .await
            .contains("canvaschat_rejected_total{reason=\"ForbiddenChannel\"} 1")
    );
}

#[tokio::test]
async fn expiry_closes_unless_a_fresh_token_arrives() {
    let secret = write_file(SECRET.as_bytes());
    let g = hmac_gateway(&secret, &[]).await;
    let short = |sub: &str| hs256(json!({"sub":sub,"exp":now() + 2}));

    let started = Instant::now();
    let (mut lapsing, _) = join_with(&g, "x", "c", &short("lapsing")).await;
    let (mut refreshed, _) = join_with(&g, "x", "c", &short("refreshed")).await;
    refreshed
        .send_text(
            json!({"type":"auth","token":hs256(json!({"sub":"refreshed","exp":now() + 600}))})
                .to_string(),
        )
        .await;
    // The lapsing one is told why and closed, once its token expired.
    loop {
        match lapsing.next_event(WAIT).await {
            Event::Frame(frame) if frame["type"] == "error" => {
                assert_eq!(frame["code"], "unauthorized", "{frame}");
                break;
            }
            Event::Frame(_) => continue,
            other => panic!("expected the expiry error, got {other:?}"),
        }
    }
    assert_eq!(lapsing.expect_close().await, Some(4401));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before exp"
    );
    // The refreshed one outlives its first token and still chats.
    refreshed.chat("still here", 0.0, 0.0, "r1").await;
    assert_eq!(refreshed.recv_type("ack").await["client_msg_id"], "r1");

    // A fresh token for someone else closes the connection.
    refreshed
        .send_text(
            json!({"type":"auth","token":hs256(json!({"sub":"other","exp":now() + 600}))})
                .to_string(),
        )
        .await;
    loop {
        match refreshed.next_event(WAIT).await {
            Event::Frame(frame) if frame["type"] == "error" => {
                assert_eq!(frame["code"], "unauthorized", "{frame}");
                break;
            }
            Event::Frame(_) => continue,
            other => panic!("expected an error, got {other:?}"),
        }
    }
    assert_eq!(refreshed.expect_close().await, Some(4401));
}

/// An RSA key pair from the openssl CLI: (private PEM, public PEM).
fn rsa_key_pair() -> (Vec<u8>, Vec<u8>) {
    let private = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl must be installed");
    assert!(private.status.success(), "{private:?}");
    let key = write_file(&private.stdout);
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(key.path())
        .output()
        .expect("openssl");
    assert!(public.status.success(), "{public:?}");
    (private.stdout, public.stdout)
}

#[tokio::test]
async fn rs256_with_a_public_key_file_refuses_algorithm_confusion() {
    let (private, public) = rsa_key_pair();
    let public_file = write_file(&public);
    let g = Gateway::start(
        &GatewayOptions::embedded()
            .with("CANVASCHAT_AUTH", "jwt")
            .with(
                "CANVASCHAT_JWT_PUBLIC_KEY_FILE",
                public_file.path().display(),
            ),
    )
    .await;
    let claims = json!({"sub":"rsa-user","exp":now() + 600});
    let key = EncodingKey::from_rsa_pem(&private).expect("rsa key");
    let token = sign(claims.clone(), &Header::new(Algorithm::RS256), &key);
    let (_c, sync) = join_with(&g, "x", "c", &token).await;
    assert_eq!(users(&sync), ["rsa-user"]);

    // HS256 with the public key as the HMAC secret: the classic confusion attack.
    let confused = sign(
        claims.clone(),
        &Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(&public),
    );
    let mut client = connect_with(&g, "x", "c", &confused).await;
    expect_refusal(&mut client, "unauthorized", 4401).await;

    // Signed by another RSA key.
    let (other, _) = rsa_key_pair();
    let forged = sign(
        claims,
        &Header::new(Algorithm::RS256),
        &EncodingKey::from_rsa_pem(&other).expect("rsa key"),
    );
    let mut client = connect_with(&g, "x", "c", &forged).await;
    expect_refusal(&mut client, "unauthorized", 4401).await;
}

/// A JWKS endpoint on a free loopback port: serves `keys` and counts fetches.
struct JwksServer {
    addr: SocketAddr,
    keys: Arc<std::sync::Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: Vec<Jwk>) -> JwksServer {
        let keys = Arc::new(std::sync::Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let app = {
            let keys = keys.clone();
            let fetches = fetches.clone();
            axum::Router::new().route(
                "/jwks.json",
                axum::routing::get(move || {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let body = json!({"keys": *keys.lock().expect("keys")});
                    async move { axum::Json(body) }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksServer {
            addr,
            keys,
            fetches,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }
}

fn jwk(private: &[u8], kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(
        &EncodingKey::from_rsa_pem(private).expect("rsa key"),
        Algorithm::RS256,
    )
    .expect("jwk");
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn rs256_with_kid(private: &[u8], kid: &str, sub: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    sign(
        json!({"sub":sub,"exp":now() + 600}),
        &header,
        &EncodingKey::from_rsa_pem(private).expect("rsa key"),
    )
}

#[tokio::test]
async fn jwks_keys_are_fetched_cached_and_refreshed_on_an_unknown_kid() {
    let (first, _) = rsa_key_pair();
    let (rotated, _) = rsa_key_pair();
    let jwks = JwksServer::start(vec![jwk(&first, "k1")]).await;
    let g = Gateway::start(
        &GatewayOptions::embedded()
            .with("CANVASCHAT_AUTH", "jwt")
            .with("CANVASCHAT_JWT_JWKS_URL", jwks.url()),
    )
    .await;
    let (_a, sync) = join_with(&g, "x", "c", &rs256_with_kid(&first, "k1", "a")).await;
    assert_eq!(users(&sync), ["a"]);
    let (_b, _) = join_with(&g, "x", "c", &rs256_with_kid(&first, "k1", "b")).await;
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "keys are cached");

    // The provider rotates: tokens with the new kid are accepted once the gateway refetched,
    // and unknown kids do not make it fetch on every attempt.
    jwks.keys.lock().expect("keys").push(jwk(&rotated, "k2"));
    let token = rs256_with_kid(&rotated, "k2", "c");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut client = connect_with(&g, "x", "c", &token).await;
        match client.next_event(WAIT).await {
            Event::Frame(frame) if frame["type"] == "user_sync" => break,
            Event::Frame(frame) if frame["type"] == "error" => {
                assert_eq!(frame["code"], "unauthorized", "{frame}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the rotated key was never fetched"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let fetches = jwks.fetches.load(Ordering::SeqCst);
    assert!(
        fetches <= 3,
        "{fetches} fetches for {attempts} attempts: refreshes are rate limited"
    );

    // A token signed by a key the provider never published.
    let (stranger, _) = rsa_key_pair();
    let mut client = connect_with(&g, "x", "c", &rs256_with_kid(&stranger, "k1", "d")).await;
    expect_refusal(&mut client, "unauthorized", 4401).await;
}

async fn connect_from(g: &Gateway, uid: &str, forwarded_for: Option<&str>) -> Option<Client> {
    let mut request = g.url(uid, "ip").into_client_request().expect("request");
    if let Some(ip) = forwarded_for {
        request
            .headers_mut()
            .insert("X-Forwarded-For", ip.parse().expect("header"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Some(Client::from_socket(socket)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429, "{response:?}");
            None
        }
        Err(error) => panic!("unexpected upgrade failure: {error}"),
    }
}

#[tokio::test]
async fn connections_per_client_ip_are_capped() {
    let g =
        Gateway::start(&GatewayOptions::embedded().with("CANVASCHAT_MAX_CONNECTIONS_PER_IP", 2))
            .await;
    let first = connect_from(&g, "a", None).await.expect("first");
    let _second = connect_from(&g, "b", None).await.expect("second");
    assert!(connect_from(&g, "c", None).await.is_none(), "third refused");
    assert!(
        connect_from(&g, "c", Some("203.0.113.7")).await.is_none(),
        "X-Forwarded-For is not trusted without CANVASCHAT_TRUSTED_PROXY_HOPS"
    );
    first.close().await;
    let deadline = Instant::now() + WAIT;
    while connect_from(&g, "c", None).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "a closed connection frees its slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_ip_counts() {
    let g = Gateway::start(
        &GatewayOptions::embedded()
            .with("CANVASCHAT_MAX_CONNECTIONS_PER_IP", 1)
            .with("CANVASCHAT_TRUSTED_PROXY_HOPS", 1),
    )
    .await;
    let _a = connect_from(&g, "a", Some("6.6.6.6, 198.51.100.1"))
        .await
        .expect("first client");
    assert!(
        connect_from(&g, "b", Some("7.7.7.7, 198.51.100.1"))
            .await
            .is_none(),
        "the same client behind a spoofed prefix"
    );
    let _c = connect_from(&g, "c", Some("198.51.100.2"))
        .await
        .expect("another client through the same proxy");
}

#[tokio::test]
async fn an_invalid_frame_flood_is_closed_with_1008() {
    let g =
        Gateway::start(&GatewayOptions::embedded().with("CANVASCHAT_INVALID_FRAMES_PER_MINUTE", 5))
            .await;
    let (mut client, _) = join(&g, "flooder", "f").await;
    // One frame at a time, each answer read before the next: nothing is left unread on the
    // server when it closes, so the close frame is not lost to a TCP reset.
    let mut errors = 0;
    let mut closed = None;
    for _ in 0..20 {
        client.send_text("{not json").await;
        match client.next_event(WAIT).await {
            Event::Frame(frame) => {
                assert_eq!(frame["type"], "error", "{frame}");
                errors += 1;
            }
            Event::Closed(code) => {
                closed = Some(code);
                break;
            }
            Event::Timeout => panic!("no answer to an invalid frame"),
        }
    }
    assert_eq!(closed, Some(Some(1008)), "the flood is closed with 1008");
    assert_eq!(errors, 5, "each tolerated invalid frame is answered");
    assert!(
        g.metrics()
            .await
            .contains("canvaschat_rejected_total{reason=\"InvalidFlood\"} 1")
    );
}

#[tokio::test]
async fn joins_per_user_are_rate_limited() {
    let g =
        Gateway::start(&GatewayOptions::embedded().with("CANVASCHAT_JOINS_PER_MINUTE", 2)).await;
    let (_a, _) = join(&g, "hopper", "j").await;
    let (_b, _) = join(&g, "hopper", "j").await;
    let mut third = Client::connect(&g.url("hopper", "j")).await;
    expect_refusal(&mut third, "rate_limited", 1013).await;
    assert!(
        g.metrics()
            .await
            .contains("canvaschat_rejected_total{reason=\"JoinRate\"} 1")
    );
    let (_other, _) = join(&g, "someone-else", "j").await;
}

#[tokio::test]
async fn page_config_names_the_mode_and_token_url() {
    let anonymous = Gateway::start(&GatewayOptions::embedded()).await;
    let (status, body) = anonymous.get("/config.json").await.expect("config");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!({"auth":"anonymous"})
    );
    let secret = write_file(SECRET.as_bytes());
    let jwt = hmac_gateway(&secret, &[("CANVASCHAT_AUTH_TOKEN_URL", "/auth/token")]).await;
    let (_, body) = jwt.get("/config.json").await.expect("config");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!({"auth":"jwt","tokenUrl":"/auth/token"})
    );
}

#[tokio::test]
async fn es256_with_a_p256_public_key_file() {
    let private = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .output()
        .expect("openssl must be installed");
    assert!(private.status.success(), "{private:?}");
    let key = write_file(&private.stdout);
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(key.path())
        .output()
        .expect("openssl");
    assert!(public.status.success(), "{public:?}");
    let public_file = write_file(&public.stdout);
    let g = Gateway::start(
        &GatewayOptions::embedded()
            .with("CANVASCHAT_AUTH", "jwt")
            .with(
                "CANVASCHAT_JWT_PUBLIC_KEY_FILE",
                public_file.path().display(),
            ),
    )
    .await;
    let signing = EncodingKey::from_ec_pem(&private.stdout).expect("ec key");
    let claims = json!({"sub":"ec-user","exp":now() + 600});
    let token = sign(claims.clone(), &Header::new(Algorithm::ES256), &signing);
    let (_c, sync) = join_with(&g, "x", "c", &token).await;
    assert_eq!(users(&sync), ["ec-user"]);
    // An exp at the end of time neither panics nor overflows the expiry timer.
    let forever = sign(
        json!({"sub":"forever","exp":u64::MAX}),
        &Header::new(Algorithm::ES256),
        &signing,
    );
    let (mut lasting, _) = join_with(&g, "x", "c", &forever).await;
    lasting.chat("still", 0.0, 0.0, "f1").await;
    assert_eq!(lasting.recv_type("ack").await["client_msg_id"], "f1");
    let confused = sign(
        claims,
        &Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(&public.stdout),
    );
    let mut client = connect_with(&g, "x", "c", &confused).await;
    expect_refusal(&mut client, "unauthorized", 4401).await;
}
