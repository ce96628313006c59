//! Test harness: real `redis-server` and real gateway processes on free loopback ports, and
//! WebSocket clients that speak the wire protocol.
#![allow(dead_code)]

pub mod scenarios;

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{self, Message, client::IntoClientRequest, protocol::CloseFrame},
};

pub const WAIT: Duration = Duration::from_secs(10);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn redis_server_bin() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// A private Redis on a free loopback port, killed on drop.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    pub async fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        redis.spawn().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new(redis_server_bin())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills Redis, losing everything it held.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Closes every pub/sub connection (the gateways' subscribers), as a network blip would.
    pub fn kill_pubsub_clients(&self) {
        let status = Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "CLIENT",
                "KILL",
                "TYPE",
                "pubsub",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli must be installed with redis-server");
        assert!(status.success());
    }

    /// Starts an empty Redis again on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Settings for one gateway process; short TTLs keep the tests fast.
#[derive(Clone)]
pub struct GatewayOptions {
    pub redis_url: Option<String>,
    pub env: Vec<(String, String)>,
}

impl GatewayOptions {
    pub fn embedded() -> Self {
        GatewayOptions {
            redis_url: None,
            env: Vec::new(),
        }
    }

    pub fn redis(redis: &Redis) -> Self {
        GatewayOptions {
            redis_url: Some(redis.url()),
            env: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }
}

/// A gateway process built from this crate; killed on drop.
pub struct Gateway {
    pub addr: SocketAddr,
    /// The admin listener, serving `/metrics`.
    pub admin: SocketAddr,
    child: Option<Child>,
}

impl Gateway {
    pub async fn start(options: &GatewayOptions) -> Gateway {
        let port = free_port();
        let admin_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_canvaschat-gateway"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("GATEWAY_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("CANVASCHAT_LISTEN", format!("127.0.0.1:{port}"))
            .env("CANVASCHAT_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
            .env("CANVASCHAT_PRESENCE_HEARTBEAT_SECONDS", "1")
            .env("CANVASCHAT_PRESENCE_TTL_SECONDS", "3")
            .env("CANVASCHAT_SHUTDOWN_GRACE_SECONDS", "5")
            .env("CANVASCHAT_DRAIN_DELAY_SECONDS", "0")
            // Tests place clients on given replicas; the rebalancing tests turn it on.
            .env("CANVASCHAT_REBALANCE", "false")
            .env("CANVASCHAT_STATIC_DIR", empty_static_dir())
            .stdout(if std::env::var_os("GATEWAY_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::inherit());
        if let Some(url) = &options.redis_url {
            cmd.env("CANVASCHAT_REDIS_URL", url);
        }
        for (key, value) in &options.env {
            cmd.env(key, value);
        }
        let child = cmd.spawn().expect("gateway binary");
        let gateway = Gateway {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            child: Some(child),
        };
        gateway.wait_ready().await;
        gateway
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok((200, _)) = self.get("/ready").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway {} never became ready",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get(&self, path: &str) -> Result<(u16, String), reqwest::Error> {
        let response = reqwest::get(format!("http://{}{path}", self.addr)).await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// The Prometheus text of the admin listener.
    pub async fn metrics(&self) -> String {
        let response = reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .expect("metrics");
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.expect("metrics text")
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code and how long it took.
    pub async fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        let mut child = self.child.take().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status.code(), start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "gateway did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, uid: &str, channel: &str) -> String {
        format!("ws://{}/api/chat?uid={uid}&channel={channel}", self.addr)
    }

    pub async fn connect(&self, uid: &str, channel: &str) -> Client {
        Client::connect(&self.url(uid, channel)).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn empty_static_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("canvaschat-gateway-tests-empty-static");
    std::fs::create_dir_all(&dir).expect("static dir");
    dir
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug)]
pub enum Event {
    Frame(Value),
    Closed(Option<u16>),
    Timeout,
}

/// A WebSocket client speaking the chat protocol.
pub struct Client {
    socket: Socket,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (socket, _) = connect_async(url).await.expect("websocket upgrade");
        Client { socket }
    }

    pub fn from_socket(socket: Socket) -> Client {
        Client { socket }
    }

    pub async fn try_connect(url: &str) -> Result<Client, tungstenite::Error> {
        let (socket, _) = connect_async(url).await?;
        Ok(Client { socket })
    }

    pub async fn connect_with_origin(
        url: &str,
        origin: &str,
    ) -> Result<Client, tungstenite::Error> {
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("header"));
        let (socket, _) = connect_async(request).await?;
        Ok(Client { socket })
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.socket
            .send(Message::Text(text.into().into()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), tungstenite::Error> {
        self.socket.send(Message::Binary(bytes.into())).await
    }

    pub async fn chat(&mut self, payload: &str, x: f64, y: f64, client_msg_id: &str) {
        self.send_text(
            json!({"type":"chat","payload":payload,"position":{"x":x,"y":y},"client_msg_id":client_msg_id})
                .to_string(),
        )
        .await;
    }

    /// The next JSON frame, failing the test after `WAIT`.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(WAIT).await.expect("expected a frame")
    }

    pub async fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??;
            match next.expect("websocket error") {
                Message::Text(text) => {
                    return Some(serde_json::from_str(text.as_str()).expect("json frame"));
                }
                Message::Close(frame) => panic!("closed unexpectedly: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame, or the close: for clients that expect to be closed and reconnect.
    pub async fn next_event(&mut self, wait: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Event::Timeout,
                Ok(None) | Ok(Some(Err(_))) => return Event::Closed(None),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Event::Closed(frame.map(|f: CloseFrame| u16::from(f.code)));
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Event::Frame(serde_json::from_str(text.as_str()).expect("json frame"));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next frame of the given type, skipping others.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
            assert!(Instant::now() < deadline, "no {kind} frame");
        }
    }

    /// Asserts that nothing but pings arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(frame) = self.try_recv(wait).await {
            panic!("expected no frame, got {frame}");
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => panic!("server did not close the connection"),
                Ok(None) => return None,
                Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return frame.map(|f: CloseFrame| u16::from(f.code));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        // Wait for the server's close so the goodbye is processed before the test goes on.
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }
}

/// Opens a connection and returns it with its `user_sync` frame (the `history` frame that
/// must follow it is checked and consumed).
pub async fn join(gateway: &Gateway, uid: &str, channel: &str) -> (Client, Value) {
    let (client, sync, _) = join_since(gateway, uid, channel, None).await;
    (client, sync)
}

/// Opens a connection, optionally resuming from `(offset, epoch)`; returns it with its
/// `user_sync` and `history` frames, checked to be the first two.
pub async fn join_since(
    gateway: &Gateway,
    uid: &str,
    channel: &str,
    since: Option<(u64, &str)>,
) -> (Client, Value, Value) {
    let mut url = gateway.url(uid, channel);
    if let Some((offset, epoch)) = since {
        url.push_str(&format!("&since={offset}&epoch={epoch}"));
    }
    let mut client = Client::connect(&url).await;
    let sync = client.recv().await;
    assert_eq!(
        sync["type"], "user_sync",
        "first frame is user_sync: {sync}"
    );
    assert!(
        sync["epoch"].as_str().is_some_and(|e| !e.is_empty()),
        "{sync}"
    );
    assert!(sync["offset"].as_u64().is_some(), "{sync}");
    let history = client.recv().await;
    assert_eq!(
        history["type"], "history",
        "the frame after user_sync is history: {history}"
    );
    assert_eq!(history["epoch"], sync["epoch"], "{history}");
    (client, sync, history)
}

/// The offsets of a `history` frame's messages.
pub fn history_offsets(history: &Value) -> Vec<u64> {
    history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect()
}

pub fn users(sync: &Value) -> Vec<String> {
    sync["users"]
        .as_array()
        .expect("users array")
        .iter()
        .map(|u| u.as_str().expect("user id").to_owned())
        .collect()
}

/// Raw HTTP GET with arbitrary headers, for upgrade requests a WebSocket client would not send.
pub async fn raw_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("http");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}
