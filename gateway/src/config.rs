//! Gateway settings, read once at start from `CANVASCHAT_*` environment variables or the
//! matching `--flags`.

use std::{ffi::OsString, fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

use crate::{
    history::HistoryLimits,
    redis_url::{self, RedisUrlError},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where a connection's user id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    Anonymous,
    Jwt,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "canvaschat-gateway",
    version,
    about = "CanvasChat WebSocket gateway: canvas chat fan-out over Redis pub/sub, with presence"
)]
pub struct Config {
    /// HTTP and WebSocket listen address.
    #[arg(long, env = "CANVASCHAT_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Redis URL, `redis://[:password@]host:port/db`, or Sentinels naming the master,
    /// `redis-sentinel://[:password@]host1:port,host2:port/db?sentinelServiceName=NAME`.
    /// Unset: embedded in-process broker (single replica, for local use).
    #[arg(long, env = "CANVASCHAT_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Raw `CANVASCHAT_REDIS_PASSWORD`: environment only, never a flag, so it stays out of
    /// `ps`; `validate` turns it into `redis_password`.
    #[arg(skip = Secret(std::env::var_os(REDIS_PASSWORD_ENV)))]
    redis_password_env: Secret<Option<OsString>>,

    /// Redis password taken verbatim (any character); overrides a password in the URL.
    #[arg(skip)]
    pub redis_password: Option<Secret<String>>,

    /// Largest accepted client frame, in bytes.
    #[arg(long, env = "CANVASCHAT_MAX_MESSAGE_BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub max_message_bytes: u32,

    /// Chat messages per user per minute, across all replicas.
    #[arg(long, env = "CANVASCHAT_RATE_LIMIT_PER_MINUTE", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_per_minute: u32,

    /// How often a live connection refreshes its presence, in seconds.
    #[arg(long, env = "CANVASCHAT_PRESENCE_HEARTBEAT_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub presence_heartbeat_seconds: u64,

    /// Presence of a connection that stopped refreshing expires after this many seconds.
    #[arg(long, env = "CANVASCHAT_PRESENCE_TTL_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(2..=86_400))]
    pub presence_ttl_seconds: u64,

    /// Directory of the built frontend served at `/` (default: `frontend/dist` if present).
    #[arg(long, env = "CANVASCHAT_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Comma-separated Origin allow-list for the WebSocket upgrade; `*` or unset: any origin.
    #[arg(long, env = "CANVASCHAT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// `anonymous`: the user id is the `uid` query parameter; `jwt`: it is the `sub` of a
    /// token sent in the first frame.
    #[arg(long, env = "CANVASCHAT_AUTH", value_enum, default_value_t = AuthMode::Anonymous)]
    pub auth: AuthMode,

    /// Seconds a connection has to send its `auth` frame in JWT mode.
    #[arg(long, env = "CANVASCHAT_AUTH_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub auth_timeout_seconds: u64,

    /// File holding the HS256 secret (at least 32 bytes).
    #[arg(long, env = "CANVASCHAT_JWT_HMAC_SECRET_FILE")]
    pub jwt_hmac_secret_file: Option<PathBuf>,

    /// PEM file with the RSA (RS256) or P-256 (ES256) public key tokens are signed for.
    #[arg(long, env = "CANVASCHAT_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// URL of the identity provider's JWKS (RS256/ES256 keys, chosen by `kid`).
    #[arg(long, env = "CANVASCHAT_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// Required `aud` of tokens (unset: not checked).
    #[arg(long, env = "CANVASCHAT_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Required `iss` of tokens (unset: not checked).
    #[arg(long, env = "CANVASCHAT_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Same-site URL the page fetches its token from in JWT mode (told to it by /config.json).
    #[arg(long, env = "CANVASCHAT_AUTH_TOKEN_URL")]
    pub auth_token_url: Option<String>,

    /// Listen address of the admin endpoints (`/metrics`), kept off the public listener.
    #[arg(long, env = "CANVASCHAT_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,

    /// Most WebSocket connections from one client IP to this replica.
    #[arg(long, env = "CANVASCHAT_MAX_CONNECTIONS_PER_IP", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_ip: u32,

    /// Proxies in front of the gateway that append to X-Forwarded-For; 0: the client IP is
    /// the peer address.
    #[arg(long, env = "CANVASCHAT_TRUSTED_PROXY_HOPS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=16))]
    pub trusted_proxy_hops: u32,

    /// Invalid frames one connection may send per minute before it is closed with 1008.
    #[arg(long, env = "CANVASCHAT_INVALID_FRAMES_PER_MINUTE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub invalid_frames_per_minute: u32,

    /// Channel joins (connections opened) per user per minute on this replica.
    #[arg(long, env = "CANVASCHAT_JOINS_PER_MINUTE", default_value_t = 120,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub joins_per_minute: u32,

    /// Drain time after SIGTERM, in seconds.
    #[arg(long, env = "CANVASCHAT_SHUTDOWN_GRACE_SECONDS", default_value_t = 25,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_seconds: u64,

    /// After SIGTERM, seconds the gateway keeps serving while reporting not-ready, so load
    /// balancers stop sending new connections before sockets close.
    #[arg(long, env = "CANVASCHAT_DRAIN_DELAY_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_delay_seconds: u64,

    /// Seconds of chat history kept per channel.
    #[arg(long, env = "CANVASCHAT_HISTORY_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub history_seconds: u64,

    /// Most chat messages kept per channel.
    #[arg(long, env = "CANVASCHAT_HISTORY_SIZE", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub history_size: u32,

    /// Seconds of recent messages a new connection gets when it cannot recover.
    #[arg(long, env = "CANVASCHAT_REPLAY_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub replay_seconds: u64,

    /// Most WebSocket connections this process accepts at once.
    #[arg(long, env = "CANVASCHAT_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Frames queued for one slow client before it is disconnected.
    #[arg(long, env = "CANVASCHAT_SEND_QUEUE_FRAMES", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub send_queue_frames: u32,

    /// Bytes of broadcast frames queued for one slow client before it is disconnected.
    #[arg(long, env = "CANVASCHAT_SEND_QUEUE_BYTES", default_value_t = 1_048_576,
          value_parser = clap::value_parser!(u32).range(1024..=1_073_741_824))]
    pub send_queue_bytes: u32,

    /// Most cursor positions forwarded per connection per second; the latest always goes last.
    #[arg(long, env = "CANVASCHAT_CURSOR_HZ", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=120))]
    pub cursor_hz: u32,

    /// With Redis, a replica holding more than its share of the fleet's connections closes
    /// some with code 4000 so they reconnect elsewhere (`false` turns it off).
    #[arg(long, env = "CANVASCHAT_REBALANCE", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub rebalance: bool,

    /// How far above the fleet's mean connection count a replica may be before it sheds.
    #[arg(long, env = "CANVASCHAT_REBALANCE_TOLERANCE", default_value_t = 0.2,
          value_parser = crate::rebalance::parse_tolerance)]
    pub rebalance_tolerance: f64,

    /// Most connections a replica closes per second to rebalance.
    #[arg(long, env = "CANVASCHAT_REBALANCE_RATE", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rebalance_rate: u32,

    /// Log format; the level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "CANVASCHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

pub const REDIS_PASSWORD_ENV: &str = "CANVASCHAT_REDIS_PASSWORD";

/// A value kept out of logs and `Debug` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "CANVASCHAT_PRESENCE_HEARTBEAT_SECONDS ({heartbeat}) must be less than CANVASCHAT_PRESENCE_TTL_SECONDS ({ttl}), or presence expires between heartbeats"
    )]
    HeartbeatNotBelowTtl { heartbeat: u64, ttl: u64 },
    #[error(transparent)]
    RedisUrl(#[from] RedisUrlError),
    #[error("CANVASCHAT_REDIS_PASSWORD is not valid UTF-8")]
    RedisPasswordNotUtf8,
    #[error(
        "CANVASCHAT_ALLOWED_ORIGINS entry {0:?} is not an origin like https://chat.example.com"
    )]
    BadOrigin(String),
    #[error("CANVASCHAT_STATIC_DIR {0} is not a directory")]
    StaticDirMissing(PathBuf),
}

impl Config {
    /// Checks rules that span several settings and normalises the origin list.
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        if self.presence_heartbeat_seconds >= self.presence_ttl_seconds {
            return Err(ConfigError::HeartbeatNotBelowTtl {
                heartbeat: self.presence_heartbeat_seconds,
                ttl: self.presence_ttl_seconds,
            });
        }
        if let Some(url) = &self.redis_url {
            if url.trim().is_empty() {
                self.redis_url = None;
            } else {
                redis_url::client_config(url, None)?;
            }
        }
        self.redis_password = match self.redis_password_env.0.take() {
            Some(raw) if !raw.is_empty() => Some(Secret(
                raw.into_string()
                    .map_err(|_| ConfigError::RedisPasswordNotUtf8)?,
            )),
            _ => None,
        };
        let mut origins = Vec::with_capacity(self.allowed_origins.len());
        for origin in &self.allowed_origins {
            let origin = origin.trim().trim_end_matches('/');
            if origin.is_empty() {
                continue;
            }
            if origin == "*" {
                origins.push(origin.to_owned());
                continue;
            }
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin
                    .split("://")
                    .nth(1)
                    .is_some_and(|rest| rest.contains('/'))
            {
                return Err(ConfigError::BadOrigin(origin.to_owned()));
            }
            origins.push(origin.to_ascii_lowercase());
        }
        self.allowed_origins = origins;
        if let Some(dir) = &self.static_dir
            && !dir.is_dir()
        {
            return Err(ConfigError::StaticDirMissing(dir.clone()));
        }
        if self.static_dir.is_none() {
            let default = PathBuf::from("frontend/dist");
            self.static_dir = default.is_dir().then_some(default);
        }
        Ok(self)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.presence_heartbeat_seconds)
    }

    pub fn presence_ttl(&self) -> Duration {
        Duration::from_secs(self.presence_ttl_seconds)
    }

    /// How often expired presence is swept: often enough that a dead replica's users are
    /// announced soon after their TTL, rarely enough to stay cheap with many channels.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_millis((self.presence_ttl_seconds * 100).clamp(500, 30_000))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    /// The shortest time between two cursor positions forwarded for one connection.
    pub fn cursor_interval(&self) -> Duration {
        Duration::from_secs(1) / self.cursor_hz
    }

    pub fn auth_timeout(&self) -> Duration {
        Duration::from_secs(self.auth_timeout_seconds)
    }

    /// The key settings of JWT mode.
    pub fn auth_settings(&self) -> crate::auth::AuthSettings {
        // An empty value (an unset optional in a manifest) means unset.
        let set = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        let file = |v: &Option<PathBuf>| v.clone().filter(|v| !v.as_os_str().is_empty());
        crate::auth::AuthSettings {
            hmac_secret_file: file(&self.jwt_hmac_secret_file),
            public_key_file: file(&self.jwt_public_key_file),
            jwks_url: set(&self.jwt_jwks_url),
            audience: set(&self.jwt_audience),
            issuer: set(&self.jwt_issuer),
        }
    }

    pub fn drain_delay(&self) -> Duration {
        Duration::from_secs(self.drain_delay_seconds)
    }

    pub fn history_limits(&self) -> HistoryLimits {
        HistoryLimits {
            size: self.history_size as usize,
            retain: self.history_seconds * 1000,
            replay: self.replay_seconds.min(self.history_seconds) * 1000,
        }
    }

    /// Whether a WebSocket upgrade from this `Origin` header is allowed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            // Non-browser clients send no Origin; the list protects browsers from
            // cross-site use, which always carries one.
            None => true,
            Some(_)
                if self.allowed_origins.is_empty()
                    || self.allowed_origins.iter().any(|o| o == "*") =>
            {
                true
            }
            Some(origin) => {
                let origin = origin.trim_end_matches('/').to_ascii_lowercase();
                self.allowed_origins.contains(&origin)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["canvaschat-gateway"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv).unwrap()
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = parse(&[]);
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.max_message_bytes, 4096);
        assert_eq!(c.rate_limit_per_minute, 100);
        assert_eq!(c.presence_heartbeat_seconds, 60);
        assert_eq!(c.presence_ttl_seconds, 300);
        assert_eq!(c.shutdown_grace_seconds, 25);
        assert_eq!(c.drain_delay_seconds, 5);
        assert_eq!(c.cursor_interval(), Duration::from_millis(50));
        assert_eq!(
            c.history_limits(),
            HistoryLimits {
                size: 1000,
                retain: 60_000,
                replay: 5_000
            }
        );
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.rebalance);
        assert_eq!(c.rebalance_tolerance, 0.2);
        assert_eq!(c.rebalance_rate, 5);
        assert!(c.allowed_origins.is_empty());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn heartbeat_must_be_below_ttl() {
        let c = parse(&[
            "--presence-heartbeat-seconds",
            "10",
            "--presence-ttl-seconds",
            "10",
        ]);
        assert_eq!(
            c.validate().err(),
            Some(ConfigError::HeartbeatNotBelowTtl {
                heartbeat: 10,
                ttl: 10
            })
        );
    }

    #[test]
    fn out_of_range_numbers_are_refused_by_the_parser() {
        let argv = ["canvaschat-gateway", "--max-message-bytes", "1"];
        assert!(Config::try_parse_from(argv).is_err());
    }

    #[test]
    fn origins_are_normalised_and_checked() {
        let c = parse(&[
            "--allowed-origins",
            "https://Chat.Example.com/, http://localhost:5173",
        ])
        .validate()
        .unwrap();
        assert!(c.origin_allowed(Some("https://chat.example.com")));
        assert!(c.origin_allowed(Some("http://localhost:5173/")));
        assert!(!c.origin_allowed(Some("https://evil.example.com")));
        assert!(c.origin_allowed(None));
        let bad = parse(&["--allowed-origins", "chat.example.com"]).validate();
        assert_eq!(
            bad.err(),
            Some(ConfigError::BadOrigin("chat.example.com".into()))
        );
    }

    #[test]
    fn a_star_allows_any_origin() {
        let c = parse(&["--allowed-origins", "*"])
            .validate()
            .expect("valid");
        assert!(c.origin_allowed(Some("https://anything.example")));
        let listed = parse(&["--allowed-origins", "https://chat.example.com"])
            .validate()
            .expect("valid");
        assert!(!listed.origin_allowed(Some("https://anything.example")));
    }

    #[test]
    fn any_origin_when_unset() {
        let c = parse(&[]).validate().unwrap();
        assert!(c.origin_allowed(Some("https://anything.example")));
    }

    #[test]
    fn redis_url_needs_a_redis_scheme() {
        let c = parse(&["--redis-url", "http://localhost:6379"]);
        assert_eq!(
            c.validate().err(),
            Some(ConfigError::RedisUrl(RedisUrlError::Scheme))
        );
    }

    #[test]
    fn a_sentinel_url_is_checked_at_start() {
        let ok = parse(&[
            "--redis-url",
            "redis-sentinel://s1:26379,s2:26379/0?sentinelServiceName=m",
        ]);
        assert!(ok.validate().is_ok());
        let bad = parse(&["--redis-url", "redis-sentinel://s1:26379,s2:26379/0"]);
        assert_eq!(
            bad.validate().err(),
            Some(ConfigError::RedisUrl(RedisUrlError::ServiceName))
        );
    }

    #[test]
    fn redis_password_is_taken_verbatim_and_never_printed() {
        let password = "p/@:#?%w";
        let mut c = parse(&["--redis-url", "redis://redis:6379/0"]);
        c.redis_password_env = Secret(Some(password.into()));
        let c = c.validate().unwrap();
        assert_eq!(
            c.redis_password
                .as_ref()
                .map(Secret::expose)
                .map(String::as_str),
            Some(password)
        );
        assert!(!format!("{c:?}").contains(password));
        let mut empty = parse(&[]);
        empty.redis_password_env = Secret(Some(OsString::new()));
        assert_eq!(empty.validate().unwrap().redis_password, None);
    }

    #[test]
    fn redis_password_is_not_a_flag() {
        let argv = ["canvaschat-gateway", "--redis-password", "x"];
        assert!(Config::try_parse_from(argv).is_err());
    }

    #[test]
    fn sweep_interval_scales_with_ttl() {
        assert_eq!(parse(&[]).sweep_interval(), Duration::from_secs(30));
        let short = parse(&[
            "--presence-heartbeat-seconds",
            "1",
            "--presence-ttl-seconds",
            "3",
        ]);
        assert_eq!(short.sweep_interval(), Duration::from_millis(500));
    }
}
