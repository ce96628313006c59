//! One benchmark WebSocket client: connect until ready in its channel, then send on command
//! and record what arrives until told to stop or closed by the server.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::protocol::{Incoming, Stamp, Target};
use crate::stats::{Latencies, now_us};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Small read buffers (tungstenite's default is 128 KiB per socket) so 10,000 idle clients
/// fit in the load generator; benchmark frames are a few hundred bytes.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// Connects `uid` to `channel` and waits until the server says it is in the channel.
pub async fn open(
    target: Target,
    base: &str,
    uid: &str,
    channel: &str,
    timeout: Duration,
) -> Result<Ws, Error> {
    let url = target.url(base, uid, channel);
    let handshake = async {
        let (mut ws, _) = connect_async_with_config(url.as_str(), Some(client_config()), true)
            .await
            .map_err(|source| Error::Connect {
                url: url.clone(),
                source: Box::new(source),
            })?;
        for frame in target.handshake() {
            ws.send(Message::text(frame))
                .await
                .map_err(Error::ws(&url))?;
        }
        while let Some(message) = ws.next().await {
            let Message::Text(text) = message.map_err(Error::ws(&url))? else {
                continue;
            };
            for incoming in target.parse(text.as_str()) {
                match incoming {
                    Incoming::Ready => return Ok(ws),
                    Incoming::Connected => {
                        for frame in target.after_connected(channel) {
                            ws.send(Message::text(frame))
                                .await
                                .map_err(Error::ws(&url))?;
                        }
                    }
                    Incoming::Ping => {
                        if let Some(pong) = target.pong() {
                            ws.send(Message::text(pong))
                                .await
                                .map_err(Error::ws(&url))?;
                        }
                    }
                    Incoming::Error(code) => {
                        return Err(Error::Refused {
                            url: url.clone(),
                            code,
                        });
                    }
                    Incoming::Chat(_) | Incoming::Ack(_) | Incoming::Other => {}
                }
            }
        }
        Err(Error::ClosedEarly { url: url.clone() })
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| Error::Timeout {
            what: format!("connecting {url}"),
        })?
}

/// Who a client is in a run.
#[derive(Debug, Clone)]
pub struct Role {
    pub index: u32,
    pub replica: u32,
    pub channel: usize,
    pub channel_name: String,
    pub payload_size: usize,
    /// Keep every received (sender, seq) and every ack time, for the drain's loss count.
    pub track: bool,
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub index: u32,
    pub replica: u32,
    pub channel: usize,
    pub sent: u64,
    pub acks: u64,
    pub received: u64,
    pub errors: BTreeMap<String, u64>,
    /// (sender, seq) of every chat received, when tracking.
    pub seen: HashSet<(u32, u64)>,
    /// (seq, ack time µs) of every acked message, when tracking.
    pub acked: Vec<(u64, u64)>,
    /// When the server closed the connection, if it did.
    pub closed_at_us: Option<u64>,
}

/// Shared latency recorders: every delivery, and those that crossed replicas.
#[derive(Clone)]
pub struct Recorders {
    pub all: Latencies,
    pub cross_replica: Latencies,
}

/// Runs a ready client: sends a stamped message `seq` for every command, records deliveries.
pub async fn run(
    mut ws: Ws,
    target: Target,
    role: Role,
    mut commands: mpsc::Receiver<u64>,
    stop: CancellationToken,
    recorders: Recorders,
) -> Outcome {
    let mut outcome = Outcome {
        index: role.index,
        replica: role.replica,
        channel: role.channel,
        ..Outcome::default()
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                // Best effort: the run is over, a failed close changes no figure.
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                break;
            }
            command = commands.recv() => {
                let Some(seq) = command else { continue };
                let stamp = Stamp { sent_us: now_us(), sender: role.index, seq, replica: role.replica };
                let frame = target.chat(&role.channel_name, &stamp.encode(role.payload_size), seq);
                if ws.send(Message::text(frame)).await.is_err() {
                    outcome.closed_at_us.get_or_insert_with(now_us);
                    break;
                }
                outcome.sent += 1;
            }
            message = ws.next() => {
                match message {
                    Some(Ok(Message::Text(text))) => {
                        for incoming in target.parse(text.as_str()) {
                            if let Some(reply) = handle(&mut outcome, &role, target, incoming, &recorders) {
                                let _ = ws.send(Message::text(reply)).await;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        outcome.closed_at_us.get_or_insert_with(now_us);
                        break;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    outcome
}

fn handle(
    outcome: &mut Outcome,
    role: &Role,
    target: Target,
    incoming: Incoming,
    recorders: &Recorders,
) -> Option<String> {
    match incoming {
        Incoming::Chat(payload) => {
            let stamp = Stamp::decode(&payload)?;
            // Centrifugo echoes a publication to its publisher; the gateway does not.
            if stamp.sender == role.index {
                return None;
            }
            let latency = now_us().saturating_sub(stamp.sent_us);
            recorders.all.record(latency);
            if stamp.replica != role.replica {
                recorders.cross_replica.record(latency);
            }
            outcome.received += 1;
            if role.track {
                outcome.seen.insert((stamp.sender, stamp.seq));
            }
            None
        }
        Incoming::Ack(seq) => {
            outcome.acks += 1;
            if role.track {
                outcome.acked.push((seq, now_us()));
            }
            None
        }
        Incoming::Error(code) => {
            *outcome.errors.entry(code).or_default() += 1;
            None
        }
        Incoming::Ping => target.pong(),
        Incoming::Ready | Incoming::Connected | Incoming::Other => None,
    }
}
