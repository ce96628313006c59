//! The wire protocol: JSON text frames between browsers and the gateway, the validation of
//! user ids and channel names, and the envelope that carries frames between replicas.
//!
//! Everything here is pure so it can be unit tested without sockets or Redis.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// Longest user id or channel name, in bytes (all allowed characters are ASCII).
pub const MAX_NAME_LEN: usize = 64;
/// Longest `client_msg_id` echoed back in an ack.
pub const MAX_CLIENT_MSG_ID_LEN: usize = 128;
/// Channel used when the upgrade request names none.
pub const DEFAULT_CHANNEL: &str = "default";
/// Largest absolute canvas coordinate accepted in a position: far beyond any screen, small
/// enough that clients never meet float precision trouble drawing it.
pub const MAX_COORDINATE: f64 = 1_000_000.0;
/// Longest token accepted in an `auth` frame (the frame size limit applies too).
pub const MAX_TOKEN_LEN: usize = 8192;

/// Why a user id or channel name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("{field} must be at most {MAX_NAME_LEN} characters, got {len}")]
    TooLong { field: &'static str, len: usize },
    #[error("{field} may only contain letters, digits, '_', '.' and '-'")]
    BadCharacter { field: &'static str },
}

/// Checks a user id or channel name against `[A-Za-z0-9_.-]{1,64}`.
pub fn validate_name(field: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Missing { field });
    }
    if value.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            field,
            len: value.len(),
        });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(NameError::BadCharacter { field });
    }
    Ok(())
}

/// A point on the shared canvas, in canvas coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub x: f64,
    pub y: f64,
}

/// A frame sent by a client, after validation.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Chat {
        payload: String,
        position: Position,
        client_msg_id: Option<String>,
    },
    /// Where the user's pointer is: forwarded to the others, never stored or acked.
    Cursor { position: Position },
    /// A JWT: the first frame in JWT mode, and a fresh one before the previous expires.
    Auth { token: String },
}

/// The raw shape of a client frame before validation; unknown fields are ignored so that
/// newer clients keep working against older gateways.
#[derive(Deserialize)]
struct RawClientFrame {
    #[serde(rename = "type")]
    kind: String,
    payload: Option<serde_json::Value>,
    position: Option<RawPosition>,
    client_msg_id: Option<serde_json::Value>,
    token: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawPosition {
    x: serde_json::Value,
    y: serde_json::Value,
}

/// A client frame that cannot be accepted; the connection stays open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is not valid JSON of the form {{\"type\":...}}: {0}")]
    Malformed(String),
    #[error("unknown frame type {0:?}; expected \"chat\", \"cursor\" or \"auth\"")]
    UnknownType(String),
    #[error("auth token must be a non-empty string of at most {MAX_TOKEN_LEN} characters")]
    BadToken,
    #[error("chat payload must be a non-empty string")]
    EmptyPayload,
    #[error(
        "position must be an object {{\"x\":number,\"y\":number}} with numbers within ±{MAX_COORDINATE}"
    )]
    BadPosition,
    #[error("client_msg_id must be a string of at most {MAX_CLIENT_MSG_ID_LEN} characters")]
    BadClientMsgId,
}

impl FrameError {
    /// The machine-readable `code` sent in the error frame.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::UnknownType(_) => ErrorCode::UnsupportedType,
            _ => ErrorCode::InvalidMessage,
        }
    }
}

/// Parses and validates one text frame from a client.
///
/// The `client_msg_id`, when it could be read, is returned alongside an error so the
/// client can tell which of its messages failed.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, (FrameError, Option<String>)> {
    let raw: RawClientFrame =
        serde_json::from_str(text).map_err(|e| (FrameError::Malformed(short_reason(&e)), None))?;
    let client_msg_id = match raw.client_msg_id {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) if id.len() <= MAX_CLIENT_MSG_ID_LEN => Some(id),
        Some(_) => return Err((FrameError::BadClientMsgId, None)),
    };
    let fail = |e: FrameError| (e, client_msg_id.clone());
    if raw.kind == "auth" {
        return match raw.token {
            Some(serde_json::Value::String(token))
                if !token.is_empty() && token.len() <= MAX_TOKEN_LEN =>
            {
                Ok(ClientFrame::Auth { token })
            }
            _ => Err(fail(FrameError::BadToken)),
        };
    }
    if raw.kind != "chat" && raw.kind != "cursor" {
        return Err(fail(FrameError::UnknownType(raw.kind)));
    }
    let position = raw
        .position
        .and_then(|p| {
            Some(Position {
                x: finite(&p.x)?,
                y: finite(&p.y)?,
            })
        })
        .ok_or_else(|| fail(FrameError::BadPosition));
    if raw.kind == "cursor" {
        return Ok(ClientFrame::Cursor {
            position: position?,
        });
    }
    let payload = match raw.payload {
        Some(serde_json::Value::String(p)) if !p.trim().is_empty() => p,
        _ => return Err(fail(FrameError::EmptyPayload)),
    };
    let position = position?;
    Ok(ClientFrame::Chat {
        payload,
        position,
        client_msg_id,
    })
}

/// A coordinate within the canvas range (which also rules out NaN and infinities).
fn finite(value: &serde_json::Value) -> Option<f64> {
    value.as_f64().filter(|v| v.abs() <= MAX_COORDINATE)
}

/// serde_json errors quote the offending input; keep only the category and location so an
/// error frame never grows with the client's input.
fn short_reason(err: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        err.classify(),
        err.line(),
        err.column()
    )
    .to_lowercase()
}

/// Machine-readable error codes sent to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidMessage,
    UnsupportedType,
    TooLarge,
    RateLimited,
    BinaryNotSupported,
    Unavailable,
    /// Missing, invalid or expired token (then close code 4401).
    Unauthorized,
    /// The token's `channels` claim does not list this channel (then close code 4403).
    ForbiddenChannel,
}

/// A frame sent by the server. Serialized once per event and shared by every recipient.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    UserSync {
        channel_id: String,
        /// At most [`USER_SYNC_LIMIT`] users; `total` counts them all.
        users: Vec<String>,
        total: u64,
        epoch: String,
        offset: u64,
        timestamp: String,
    },
    /// Always the frame right after `user_sync`.
    History {
        channel_id: String,
        epoch: String,
        recovered: bool,
        /// Stored `chat` frames, oldest first, passed through without re-encoding.
        messages: Vec<Box<RawValue>>,
    },
    UserJoined {
        channel_id: String,
        user_id: String,
        timestamp: String,
    },
    UserLeft {
        channel_id: String,
        user_id: String,
        timestamp: String,
    },
    Chat {
        message_id: Uuid,
        channel_id: String,
        user_id: String,
        payload: String,
        position: Position,
        timestamp: String,
        /// Assigned by the broker when the message is stored (see [`stamp_chat`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    Ack {
        #[serde(skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
        message_id: Uuid,
        offset: u64,
        epoch: String,
        timestamp: String,
    },
    Cursor {
        channel_id: String,
        user_id: String,
        position: Position,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
    },
}

impl ServerFrame {
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: every key is a string and every
        // number is finite (positions are validated on the way in).
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","code":"internal","message":"encode failed: {e}"}}"#)
        })
    }

    pub fn error(
        code: ErrorCode,
        message: impl Into<String>,
        client_msg_id: Option<String>,
    ) -> Self {
        ServerFrame::Error {
            code,
            message: message.into(),
            client_msg_id,
        }
    }
}

/// Most users listed in a `user_sync`; a bigger channel's sync names these and its `total`.
pub const USER_SYNC_LIMIT: usize = 1_000;

/// A `chat` frame is published as its JSON without `offset` and `epoch`; the broker assigns
/// both in the same atomic step that stores and publishes it, and appends them with this
/// rule (the Redis script does the same in Lua: drop the closing brace, add both fields).
/// Epochs are hex, so they need no escaping.
pub fn stamp_chat(body: &str, offset: u64, epoch: &str) -> String {
    let open = body.strip_suffix('}').unwrap_or(body);
    format!("{open},\"offset\":{offset},\"epoch\":\"{epoch}\"}}")
}

/// `user_joined` and `user_left` frames, built around the user id so a presence script can
/// format one for each user it announces: `prefix + user + suffix`. User ids and channel
/// names need no JSON escaping (their charset is `[A-Za-z0-9_.-]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceFrame {
    pub prefix: String,
    pub suffix: String,
}

impl PresenceFrame {
    pub fn joined(channel: &str, at: DateTime<Utc>) -> Self {
        Self::new("user_joined", channel, at)
    }

    pub fn left(channel: &str, at: DateTime<Utc>) -> Self {
        Self::new("user_left", channel, at)
    }

    fn new(kind: &str, channel: &str, at: DateTime<Utc>) -> Self {
        PresenceFrame {
            prefix: format!(r#"{{"type":"{kind}","channel_id":"{channel}","user_id":""#),
            suffix: format!(r#"","timestamp":"{}"}}"#, timestamp(at)),
        }
    }

    pub fn for_user(&self, user: &str) -> String {
        format!("{}{user}{}", self.prefix, self.suffix)
    }
}

/// What the gateway reads from a frame passing through the hub, without decoding the rest.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub struct FrameMeta {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub offset: Option<u64>,
    pub epoch: Option<String>,
    pub user_id: Option<String>,
}

impl FrameMeta {
    pub fn of(frame: &str) -> FrameMeta {
        serde_json::from_str(frame).unwrap_or_default()
    }
}

/// RFC 3339 timestamp with millisecond precision, as used in every server frame.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Identifies one WebSocket connection across the whole deployment: the node id keeps ids
/// from different replicas apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId {
    pub node: Uuid,
    pub local: u64,
}

impl ConnectionId {
    /// Reads the `node.local` form that `Display` writes.
    pub fn parse(text: &str) -> Result<Self, EnvelopeError> {
        let (node, local) = text
            .split_once('.')
            .ok_or(EnvelopeError("sender is not node.local"))?;
        Ok(ConnectionId {
            node: Uuid::parse_str(node).map_err(|_| EnvelopeError("bad sender node"))?,
            local: local.parse().map_err(|_| EnvelopeError("bad sender id"))?,
        })
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.node.simple(), self.local)
    }
}

/// A frame travelling between replicas through the broker: who sent it (so the sending
/// connection is skipped), when it was published (for the latency histogram), and the
/// serialized frame, passed through to clients without re-encoding.
///
/// Encoded as `<node>.<local or ->|<unix micros>|<frame json>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub sender: Option<ConnectionId>,
    pub published_at_micros: i64,
    pub frame: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed broker envelope: {0}")]
pub struct EnvelopeError(&'static str);

impl Envelope {
    pub fn encode(&self) -> String {
        let sender = match self.sender {
            Some(id) => id.to_string(),
            None => "-".to_owned(),
        };
        format!("{sender}|{}|{}", self.published_at_micros, self.frame)
    }

    pub fn decode(raw: &str) -> Result<Self, EnvelopeError> {
        let mut parts = raw.splitn(3, '|');
        let sender = parts.next().ok_or(EnvelopeError("missing sender"))?;
        let at = parts.next().ok_or(EnvelopeError("missing timestamp"))?;
        let frame = parts.next().ok_or(EnvelopeError("missing frame"))?;
        let sender = if sender == "-" {
            None
        } else {
            Some(ConnectionId::parse(sender)?)
        };
        Ok(Envelope {
            sender,
            published_at_micros: at.parse().map_err(|_| EnvelopeError("bad timestamp"))?,
            frame: frame.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_charset_and_length_rules() {
        assert_eq!(validate_name("uid", "alice_1.b-2"), Ok(()));
        assert_eq!(validate_name("uid", &"a".repeat(64)), Ok(()));
        assert_eq!(
            validate_name("uid", ""),
            Err(NameError::Missing { field: "uid" })
        );
        assert_eq!(
            validate_name("uid", &"a".repeat(65)),
            Err(NameError::TooLong {
                field: "uid",
                len: 65
            })
        );
        for bad in ["a b", "a/b", "ä", "<script>", "a\nb", "a|b"] {
            assert_eq!(
                validate_name("channel", bad),
                Err(NameError::BadCharacter { field: "channel" }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parses_a_chat_frame() {
        let frame = parse_client_frame(
            r#"{"type":"chat","payload":"Hello","position":{"x":120.5,"y":-40},"client_msg_id":"c1","extra":1}"#,
        );
        assert_eq!(
            frame,
            Ok(ClientFrame::Chat {
                payload: "Hello".into(),
                position: Position { x: 120.5, y: -40.0 },
                client_msg_id: Some("c1".into()),
            })
        );
    }

    #[test]
    fn parses_a_cursor_frame() {
        assert_eq!(
            parse_client_frame(r#"{"type":"cursor","position":{"x":1.5,"y":-2}}"#),
            Ok(ClientFrame::Cursor {
                position: Position { x: 1.5, y: -2.0 }
            })
        );
        let bad = parse_client_frame(r#"{"type":"cursor","position":{"x":"1","y":2}}"#);
        assert_eq!(bad, Err((FrameError::BadPosition, None)));
        let cursor = ServerFrame::Cursor {
            channel_id: "c".into(),
            user_id: "bob".into(),
            position: Position { x: 1.0, y: 2.0 },
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&cursor.to_json()).unwrap(),
            json!({"type":"cursor","channel_id":"c","user_id":"bob","position":{"x":1.0,"y":2.0}})
        );
    }

    #[test]
    fn client_msg_id_is_optional() {
        let frame = parse_client_frame(r#"{"type":"chat","payload":"x","position":{"x":0,"y":0}}"#);
        assert!(matches!(
            frame,
            Ok(ClientFrame::Chat {
                client_msg_id: None,
                ..
            })
        ));
    }

    #[test]
    fn refuses_bad_frames_with_the_right_code() {
        let cases = [
            ("not json", ErrorCode::InvalidMessage),
            ("[1,2]", ErrorCode::InvalidMessage),
            (r#"{"payload":"x"}"#, ErrorCode::InvalidMessage),
            (r#"{"type":"dance"}"#, ErrorCode::UnsupportedType),
            (
                r#"{"type":"chat","position":{"x":1,"y":2}}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"chat","payload":"","position":{"x":1,"y":2}}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"chat","payload":"  ","position":{"x":1,"y":2}}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"chat","payload":5,"position":{"x":1,"y":2}}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"chat","payload":"x"}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"chat","payload":"x","position":{"x":"1","y":2}}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"chat","payload":"x","position":{"x":1e999,"y":2}}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"chat","payload":"x","position":{"x":1}}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"chat","payload":"x","position":{"x":1,"y":2},"client_msg_id":7}"#,
                ErrorCode::InvalidMessage,
            ),
        ];
        for (input, code) in cases {
            match parse_client_frame(input) {
                Err((err, _)) => assert_eq!(err.code(), code, "{input}"),
                Ok(frame) => panic!("{input} was accepted as {frame:?}"),
            }
        }
    }

    #[test]
    fn a_refused_chat_still_reports_its_client_msg_id() {
        let err = parse_client_frame(
            r#"{"type":"chat","payload":"","position":{"x":1,"y":2},"client_msg_id":"m7"}"#,
        );
        assert_eq!(err, Err((FrameError::EmptyPayload, Some("m7".into()))));
    }

    #[test]
    fn malformed_json_errors_do_not_echo_input() {
        let secret = "x".repeat(500);
        let Err((err, _)) = parse_client_frame(&format!("{{\"type\":{secret}")) else {
            panic!("accepted");
        };
        assert!(err.to_string().len() < 200);
        assert!(!err.to_string().contains(&secret));
    }

    #[test]
    fn server_frames_serialize_to_the_documented_shape() {
        let id = Uuid::nil();
        let chat = ServerFrame::Chat {
            message_id: id,
            channel_id: "default".into(),
            user_id: "alice".into(),
            payload: "Hello".into(),
            position: Position { x: 120.5, y: -40.0 },
            timestamp: "t".into(),
            offset: Some(3),
            epoch: Some("e1".into()),
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&chat.to_json()).unwrap(),
            json!({"type":"chat","message_id":id.to_string(),"channel_id":"default","user_id":"alice",
                   "payload":"Hello","position":{"x":120.5,"y":-40.0},"timestamp":"t",
                   "offset":3,"epoch":"e1"})
        );
        let ack = ServerFrame::Ack {
            client_msg_id: None,
            message_id: id,
            offset: 3,
            epoch: "e1".into(),
            timestamp: "t".into(),
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&ack.to_json()).unwrap(),
            json!({"type":"ack","message_id":id.to_string(),"offset":3,"epoch":"e1","timestamp":"t"})
        );
        let err = ServerFrame::error(ErrorCode::RateLimited, "slow down", Some("c".into()));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&err.to_json()).unwrap(),
            json!({"type":"error","code":"rate_limited","message":"slow down","client_msg_id":"c"})
        );
        let sync = ServerFrame::UserSync {
            channel_id: "c".into(),
            users: vec!["a".into()],
            total: 1,
            epoch: "e1".into(),
            offset: 0,
            timestamp: "t".into(),
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&sync.to_json()).unwrap(),
            json!({"type":"user_sync","channel_id":"c","users":["a"],"total":1,"epoch":"e1","offset":0,"timestamp":"t"})
        );
        let history = ServerFrame::History {
            channel_id: "c".into(),
            epoch: "e1".into(),
            recovered: false,
            messages: vec![RawValue::from_string(r#"{"type":"chat","offset":1}"#.into()).unwrap()],
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&history.to_json()).unwrap(),
            json!({"type":"history","channel_id":"c","epoch":"e1","recovered":false,
                   "messages":[{"type":"chat","offset":1}]})
        );
    }

    #[test]
    fn presence_frames_match_their_serialized_form() {
        let at = chrono::Utc::now();
        let joined = ServerFrame::UserJoined {
            channel_id: "c".into(),
            user_id: "bob".into(),
            timestamp: timestamp(at),
        };
        assert_eq!(
            PresenceFrame::joined("c", at).for_user("bob"),
            joined.to_json()
        );
        let left = ServerFrame::UserLeft {
            channel_id: "c".into(),
            user_id: "bob".into(),
            timestamp: timestamp(at),
        };
        assert_eq!(PresenceFrame::left("c", at).for_user("bob"), left.to_json());
    }

    #[test]
    fn chat_frames_are_stamped_with_offset_and_epoch() {
        let stamped = stamp_chat(r#"{"type":"chat","payload":"}"}"#, 7, "ab12");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&stamped).unwrap(),
            json!({"type":"chat","payload":"}","offset":7,"epoch":"ab12"})
        );
        let meta = FrameMeta::of(&stamped);
        assert_eq!(meta.kind, "chat");
        assert_eq!(meta.offset, Some(7));
        assert_eq!(meta.epoch.as_deref(), Some("ab12"));
        assert_eq!(FrameMeta::of("not json"), FrameMeta::default());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(at), "2026-01-02T03:04:05.678Z");
    }

    #[test]
    fn envelopes_round_trip_and_frames_may_contain_separators() {
        let env = Envelope {
            sender: Some(ConnectionId {
                node: Uuid::new_v4(),
                local: 42,
            }),
            published_at_micros: 1_700_000_000_000_000,
            frame: r#"{"payload":"a|b|c"}"#.into(),
        };
        assert_eq!(Envelope::decode(&env.encode()), Ok(env));
        let anonymous = Envelope {
            sender: None,
            published_at_micros: 5,
            frame: "{}".into(),
        };
        assert_eq!(Envelope::decode(&anonymous.encode()), Ok(anonymous));
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        for raw in ["", "x", "-|", "-|nan|{}", "abc|1|{}", "zz.1|1|{}"] {
            assert!(Envelope::decode(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn auth_frames_carry_a_token() {
        assert_eq!(
            parse_client_frame(r#"{"type":"auth","token":"a.b.c"}"#),
            Ok(ClientFrame::Auth {
                token: "a.b.c".into()
            })
        );
        for bad in [
            r#"{"type":"auth"}"#,
            r#"{"type":"auth","token":""}"#,
            r#"{"type":"auth","token":7}"#,
        ] {
            assert!(
                matches!(parse_client_frame(bad), Err((FrameError::BadToken, _))),
                "{bad}"
            );
        }
    }

    #[test]
    fn positions_stay_within_the_canvas_range() {
        let at = |x: f64| {
            parse_client_frame(&json!({"type":"cursor","position":{"x":x,"y":0}}).to_string())
        };
        assert!(at(MAX_COORDINATE).is_ok());
        assert!(at(-MAX_COORDINATE).is_ok());
        assert!(matches!(
            at(MAX_COORDINATE + 1.0),
            Err((FrameError::BadPosition, _))
        ));
        assert!(matches!(at(-1e12), Err((FrameError::BadPosition, _))));
    }
}
