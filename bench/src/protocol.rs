//! The two client protocols under test (CanvasChat's and Centrifugo's JSON protocol) and the
//! benchmark payload that carries the send timestamp through either server unchanged.

use serde_json::{Value, json};

/// Which server a WebSocket client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The CanvasChat gateway: `/api/chat?uid=..&channel=..`, `chat` frames, `ack` replies.
    Gateway,
    /// Centrifugo's JSON protocol at `/connection/websocket`: connect, subscribe, publish.
    Centrifugo,
}

/// Centrifugo command ids: 1 connect, 2 subscribe, publishes from here on (seq + base).
const CENTRIFUGO_PUBLISH_ID_BASE: u64 = 100;

/// One thing a server sent that the benchmark cares about.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A chat message from another client, with the benchmark payload it carried.
    Chat(String),
    /// The server accepted message `seq` of this client.
    Ack(u64),
    /// The connection is ready to send and receive in its channel (gateway: `user_sync`;
    /// Centrifugo: the subscribe reply).
    Ready,
    /// The connect reply of Centrifugo (the subscribe command follows it).
    Connected,
    /// A Centrifugo server ping, which the client must answer with an empty message.
    Ping,
    /// A refusal, with the server's code.
    Error(String),
    /// Presence frames and anything else not measured.
    Other,
}

impl Target {
    /// The WebSocket URL for a user in a channel, given the server's `ws://host:port` base.
    pub fn url(self, base: &str, uid: &str, channel: &str) -> String {
        match self {
            Target::Gateway => format!("{base}/api/chat?uid={uid}&channel={channel}"),
            Target::Centrifugo => format!("{base}/connection/websocket?user={uid}"),
        }
    }

    /// Frames the client sends right after the upgrade, before it is ready.
    pub fn handshake(self) -> Vec<String> {
        match self {
            Target::Gateway => Vec::new(),
            Target::Centrifugo => vec![json!({"id": 1, "connect": {}}).to_string()],
        }
    }

    /// Frames to send once the server has answered the handshake's connect.
    pub fn after_connected(self, channel: &str) -> Vec<String> {
        match self {
            Target::Gateway => Vec::new(),
            Target::Centrifugo => {
                vec![json!({"id": 2, "subscribe": {"channel": channel}}).to_string()]
            }
        }
    }

    /// A chat message `seq` of this client carrying `payload`.
    pub fn chat(self, channel: &str, payload: &str, seq: u64) -> String {
        match self {
            Target::Gateway => json!({
                "type": "chat",
                "payload": payload,
                "position": {"x": 1.0, "y": 2.0},
                "client_msg_id": seq.to_string(),
            })
            .to_string(),
            Target::Centrifugo => json!({
                "id": seq + CENTRIFUGO_PUBLISH_ID_BASE,
                "publish": {"channel": channel, "data": {"payload": payload, "position": {"x": 1.0, "y": 2.0}}},
            })
            .to_string(),
        }
    }

    /// The reply to a server ping, when the protocol has one at the application level.
    pub fn pong(self) -> Option<String> {
        match self {
            Target::Gateway => None,
            Target::Centrifugo => Some("{}".to_owned()),
        }
    }

    /// Everything one text frame from the server means (Centrifugo batches several
    /// newline-separated messages into one frame).
    pub fn parse(self, frame: &str) -> Vec<Incoming> {
        match self {
            Target::Gateway => vec![parse_gateway(frame)],
            Target::Centrifugo => frame
                .split('\n')
                .filter(|line| !line.trim().is_empty())
                .map(parse_centrifugo)
                .collect(),
        }
    }
}

fn parse_gateway(frame: &str) -> Incoming {
    let Ok(value) = serde_json::from_str::<Value>(frame) else {
        return Incoming::Error("unparseable_frame".to_owned());
    };
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    match value.get("type").and_then(Value::as_str) {
        Some("chat") => text("payload").map_or(Incoming::Other, Incoming::Chat),
        Some("ack") => text("client_msg_id")
            .and_then(|id| id.parse().ok())
            .map_or(Incoming::Other, Incoming::Ack),
        Some("user_sync") => Incoming::Ready,
        Some("error") => Incoming::Error(text("code").unwrap_or_default()),
        _ => Incoming::Other,
    }
}

fn parse_centrifugo(line: &str) -> Incoming {
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        return Incoming::Error("unparseable_frame".to_owned());
    };
    if value.as_object().is_some_and(serde_json::Map::is_empty) {
        return Incoming::Ping;
    }
    if let Some(error) = value.get("error") {
        let code = error.get("code").and_then(Value::as_u64).unwrap_or(0);
        return Incoming::Error(format!("centrifugo_{code}"));
    }
    if let Some(publication) = value.get("push").and_then(|push| push.get("pub")) {
        return publication
            .get("data")
            .and_then(|data| data.get("payload"))
            .and_then(Value::as_str)
            .map_or(Incoming::Other, |payload| {
                Incoming::Chat(payload.to_owned())
            });
    }
    match value.get("id").and_then(Value::as_u64) {
        Some(1) if value.get("connect").is_some() => Incoming::Connected,
        Some(2) if value.get("subscribe").is_some() => Incoming::Ready,
        Some(id) if id >= CENTRIFUGO_PUBLISH_ID_BASE && value.get("publish").is_some() => {
            Incoming::Ack(id - CENTRIFUGO_PUBLISH_ID_BASE)
        }
        _ => Incoming::Other,
    }
}

/// What every benchmark message carries: when and by whom it was sent, padded to a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Microseconds since the Unix epoch when the sender handed the frame to its socket.
    pub sent_us: u64,
    /// Index of the sending client.
    pub sender: u32,
    /// The sender's message number.
    pub seq: u64,
    /// Index of the server (replica) the sender is connected to.
    pub replica: u32,
}

impl Stamp {
    /// The payload text, padded with `x` to at least `size` bytes.
    pub fn encode(&self, size: usize) -> String {
        let mut text = format!(
            "{}:{}:{}:{}:",
            self.sent_us, self.sender, self.seq, self.replica
        );
        if text.len() < size {
            text.extend(std::iter::repeat_n('x', size - text.len()));
        }
        text
    }

    /// Reads a payload written by [`Stamp::encode`]; `None` for anything else.
    pub fn decode(payload: &str) -> Option<Stamp> {
        let mut parts = payload.splitn(5, ':');
        let mut next = || parts.next().and_then(|part| part.parse::<u64>().ok());
        Some(Stamp {
            sent_us: next()?,
            sender: u32::try_from(next()?).ok()?,
            seq: next()?,
            replica: u32::try_from(next()?).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_pads() {
        let stamp = Stamp {
            sent_us: 1_700_000_000_123_456,
            sender: 7,
            seq: 42,
            replica: 1,
        };
        let text = stamp.encode(64);
        assert_eq!(text.len(), 64);
        assert_eq!(Stamp::decode(&text), Some(stamp));
        assert_eq!(Stamp::decode("hello"), None);
        assert_eq!(Stamp::decode("1:2:3"), None);
    }

    #[test]
    fn gateway_frames() {
        let t = Target::Gateway;
        assert_eq!(
            t.parse(r#"{"type":"chat","payload":"1:2:3:0:xx","channel_id":"c"}"#),
            vec![Incoming::Chat("1:2:3:0:xx".to_owned())]
        );
        assert_eq!(
            t.parse(r#"{"type":"ack","client_msg_id":"17","message_id":"m"}"#),
            vec![Incoming::Ack(17)]
        );
        assert_eq!(
            t.parse(r#"{"type":"user_sync","users":[]}"#),
            vec![Incoming::Ready]
        );
        assert_eq!(
            t.parse(r#"{"type":"error","code":"rate_limited","message":"m"}"#),
            vec![Incoming::Error("rate_limited".to_owned())]
        );
        let chat: Value = serde_json::from_str(&t.chat("c", "p", 5)).unwrap();
        assert_eq!(chat["client_msg_id"], "5");
        assert_eq!(chat["payload"], "p");
    }

    #[test]
    fn centrifugo_frames_in_one_batch() {
        let t = Target::Centrifugo;
        let frame = concat!(
            r#"{"id":1,"connect":{"client":"abc","ping":25,"pong":true}}"#,
            "\n",
            r#"{"id":2,"subscribe":{}}"#,
            "\n",
            r#"{"push":{"channel":"c","pub":{"data":{"payload":"9:1:2:0:"}}}}"#,
            "\n",
            r#"{"id":105,"publish":{}}"#,
            "\n{}\n",
            r#"{"id":106,"error":{"code":103,"message":"permission denied"}}"#
        );
        assert_eq!(
            t.parse(frame),
            vec![
                Incoming::Connected,
                Incoming::Ready,
                Incoming::Chat("9:1:2:0:".to_owned()),
                Incoming::Ack(5),
                Incoming::Ping,
                Incoming::Error("centrifugo_103".to_owned()),
            ]
        );
        let publish: Value = serde_json::from_str(&t.chat("room", "p", 5)).unwrap();
        assert_eq!(publish["id"], 105);
        assert_eq!(publish["publish"]["channel"], "room");
        assert_eq!(publish["publish"]["data"]["payload"], "p");
    }
}
