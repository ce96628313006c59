//! `CANVASCHAT_REDIS_URL`: one Redis (`redis://[:password@]host:port/db`) or a master found
//! through Sentinels (`redis-sentinel://[:password@]h1:p1,h2:p2,h3:p3/db?sentinelServiceName=NAME`).
//! Turned into the client settings here, as pure code, so a bad URL stops the gateway at start
//! with a message that names the part at fault (never the password).

use fred::prelude::{Config, ServerConfig};

const SENTINEL_SCHEME: &str = "redis-sentinel://";
const SERVICE_NAME_PARAM: &str = "sentinelServiceName";
/// The port Sentinels listen on by default.
const SENTINEL_PORT: u16 = 26379;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisUrlError {
    #[error("CANVASCHAT_REDIS_URL must start with redis://, rediss:// or redis-sentinel://")]
    Scheme,
    #[error(
        "CANVASCHAT_REDIS_URL lists no Sentinel: expected redis-sentinel://host1:port,host2:port/0?sentinelServiceName=NAME"
    )]
    NoSentinels,
    #[error("CANVASCHAT_REDIS_URL Sentinel {0:?} is not host:port (port 1..65535)")]
    BadSentinel(String),
    #[error(
        "CANVASCHAT_REDIS_URL needs ?sentinelServiceName=NAME (the name in `sentinel monitor NAME ...`; letters, digits, . _ -)"
    )]
    ServiceName,
    #[error("CANVASCHAT_REDIS_URL parameter {0:?} is not supported (only sentinelServiceName)")]
    UnknownParameter(String),
    #[error("CANVASCHAT_REDIS_URL database {0:?} is not a number 0..255")]
    Database(String),
    /// The client library refused the URL; its reason never contains the password.
    #[error("CANVASCHAT_REDIS_URL is not a valid Redis URL: {0}")]
    Invalid(String),
}

/// Whether the URL names Sentinels rather than one Redis.
pub fn is_sentinel(url: &str) -> bool {
    url.starts_with(SENTINEL_SCHEME)
}

/// The client settings for `url`; a separate password (any character, no URL escaping)
/// replaces the URL's. With Sentinels, the same password authenticates to the Sentinels and
/// to the master.
pub fn client_config(url: &str, password: Option<&str>) -> Result<Config, RedisUrlError> {
    let mut config = if let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) {
        sentinel_config(rest)?
    } else if url.starts_with("redis://") || url.starts_with("rediss://") {
        Config::from_url(url).map_err(|e| RedisUrlError::Invalid(e.details().to_string()))?
    } else {
        return Err(RedisUrlError::Scheme);
    };
    if let Some(password) = password {
        config.password = Some(password.to_owned());
    }
    Ok(config)
}

/// `rest` is the Sentinel URL after its scheme.
fn sentinel_config(rest: &str) -> Result<Config, RedisUrlError> {
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
    // The password may contain '@' when escaped badly; the hosts never do.
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let sentinels = hosts
        .split(',')
        .filter(|h| !h.trim().is_empty())
        .map(sentinel_address)
        .collect::<Result<Vec<_>, _>>()?;
    if sentinels.is_empty() {
        return Err(RedisUrlError::NoSentinels);
    }
    let database = match path.trim_end_matches('/') {
        "" => None,
        db => Some(
            db.parse::<u8>()
                .map_err(|_| RedisUrlError::Database(db.to_owned()))?,
        ),
    };
    let mut service_name = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((SERVICE_NAME_PARAM, name)) if valid_service_name(name) => {
                service_name = Some(name.to_owned());
            }
            Some((SERVICE_NAME_PARAM, _)) => return Err(RedisUrlError::ServiceName),
            _ => {
                let key = pair.split_once('=').map_or(pair, |(k, _)| k);
                return Err(RedisUrlError::UnknownParameter(key.to_owned()));
            }
        }
    }
    let service_name = service_name.ok_or(RedisUrlError::ServiceName)?;
    // The client library decodes the (percent-escaped) credentials of a one-host URL.
    let credentials = match userinfo {
        Some(userinfo) => Config::from_url(&format!("redis://{userinfo}@sentinel"))
            .map_err(|e| RedisUrlError::Invalid(e.details().to_string()))?,
        None => Config::default(),
    };
    Ok(Config {
        server: ServerConfig::new_sentinel(sentinels, service_name),
        username: credentials.username,
        password: credentials.password,
        database,
        ..Config::default()
    })
}

/// `host:port`, `[ipv6]:port` or a bare host (the Sentinel port, 26379).
fn sentinel_address(raw: &str) -> Result<(String, u16), RedisUrlError> {
    let raw = raw.trim();
    let bad = || RedisUrlError::BadSentinel(raw.to_owned());
    let (host, port) = if let Some(v6) = raw.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(bad()),
        }
    } else {
        match raw.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        }
    };
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(bad)?,
        None => SENTINEL_PORT,
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests {
    use fred::types::config::Server;

    use super::*;

    fn sentinel_parts(config: &Config) -> (Vec<(String, u16)>, String) {
        match &config.server {
            ServerConfig::Sentinel {
                hosts,
                service_name,
                ..
            } => (
                hosts
                    .iter()
                    .map(|Server { host, port, .. }| (host.to_string(), *port))
                    .collect(),
                service_name.clone(),
            ),
            other => panic!("not a sentinel config: {other:?}"),
        }
    }

    #[test]
    fn a_sentinel_url_lists_every_sentinel_in_order() {
        let config = client_config(
            "redis-sentinel://:s3cret@s1:26379,s2:26380,10.0.0.3:5000/2?sentinelServiceName=chat-redis",
            None,
        )
        .unwrap();
        let (hosts, name) = sentinel_parts(&config);
        assert_eq!(
            hosts,
            vec![
                ("s1".to_owned(), 26379),
                ("s2".to_owned(), 26380),
                ("10.0.0.3".to_owned(), 5000)
            ]
        );
        assert_eq!(name, "chat-redis");
        assert_eq!(config.password.as_deref(), Some("s3cret"));
        assert_eq!(config.username, None);
        assert_eq!(config.database, Some(2));
    }

    #[test]
    fn escaped_passwords_bare_hosts_and_ipv6_are_understood() {
        let config = client_config(
            "redis-sentinel://user:p%40ss%2Fw@sentinel,[::1]:26390?sentinelServiceName=m",
            None,
        )
        .unwrap();
        let (hosts, _) = sentinel_parts(&config);
        assert_eq!(
            hosts,
            vec![("sentinel".to_owned(), 26379), ("::1".to_owned(), 26390)]
        );
        assert_eq!(config.username.as_deref(), Some("user"));
        assert_eq!(config.password.as_deref(), Some("p@ss/w"));
        assert_eq!(config.database, None);
    }

    #[test]
    fn a_separate_password_replaces_the_url_password_verbatim() {
        for url in [
            "redis://:inurl@redis:6379/0",
            "redis-sentinel://:inurl@s1:26379/0?sentinelServiceName=m",
        ] {
            let config = client_config(url, Some("p/@:#?%w")).unwrap();
            assert_eq!(config.password.as_deref(), Some("p/@:#?%w"), "{url}");
            let from_url = client_config(url, None).unwrap();
            assert_eq!(from_url.password.as_deref(), Some("inurl"), "{url}");
        }
    }

    #[test]
    fn a_plain_url_stays_one_server() {
        let config = client_config("redis://127.0.0.1:6380/1", None).unwrap();
        assert!(matches!(config.server, ServerConfig::Centralized { .. }));
        assert!(!is_sentinel("redis://127.0.0.1:6380/1"));
        assert!(is_sentinel("redis-sentinel://s:1?sentinelServiceName=m"));
    }

    #[test]
    fn bad_urls_name_what_is_wrong_and_never_the_password() {
        let cases = [
            ("http://redis:6379", RedisUrlError::Scheme),
            (
                "redis-sentinel:///0?sentinelServiceName=m",
                RedisUrlError::NoSentinels,
            ),
            (
                "redis-sentinel://:pw@s1:26379,s2:nope/0?sentinelServiceName=m",
                RedisUrlError::BadSentinel("s2:nope".into()),
            ),
            (
                "redis-sentinel://s1:0?sentinelServiceName=m",
                RedisUrlError::BadSentinel("s1:0".into()),
            ),
            (
                "redis-sentinel://s1:70000?sentinelServiceName=m",
                RedisUrlError::BadSentinel("s1:70000".into()),
            ),
            (
                "redis-sentinel://:pw@s1:26379/0",
                RedisUrlError::ServiceName,
            ),
            (
                "redis-sentinel://s1:26379/0?sentinelServiceName=",
                RedisUrlError::ServiceName,
            ),
            (
                "redis-sentinel://s1:26379/0?sentinelServiceName=m&sentinelPassword=x",
                RedisUrlError::UnknownParameter("sentinelPassword".into()),
            ),
            (
                "redis-sentinel://s1:26379/db1?sentinelServiceName=m",
                RedisUrlError::Database("db1".into()),
            ),
        ];
        for (url, expected) in cases {
            let error = client_config(url, None).unwrap_err();
            assert_eq!(error, expected, "{url}");
            assert!(!error.to_string().contains("pw@"), "{error}");
        }
    }
}
