//! JWT authentication (`CANVASCHAT_AUTH=jwt`): who a connection is comes from a signed token,
//! never from the `uid` query parameter.
//!
//! The algorithm a token may use follows from the configured key alone (HMAC secret: HS256,
//! RSA key: RS256, P-256 key: ES256), never from the token's header, so `alg: none` and
//! algorithm confusion (an RSA public key used as an HMAC secret) cannot verify.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse},
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};

use crate::protocol::validate_name;

/// Close code for a missing, invalid or expired token.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// Close code for a channel the token's `channels` claim does not list.
pub const CLOSE_FORBIDDEN: u16 = 4403;

/// Shortest HMAC secret accepted: HS256 is only as strong as a 256-bit secret.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Longest a JWKS fetch may take before the token is refused.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS refresh triggered by an unknown `kid` happens at most this often, so tokens with
/// made-up key ids cannot turn the gateway into a load generator against the provider.
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(5);
/// Keys are fetched again after this long even when every `kid` is known (rotation in place).
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Largest JWKS document read; a key set is a few KiB.
const JWKS_MAX_BYTES: usize = 256 * 1024;

/// The key settings of JWT mode, as configured.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub hmac_secret_file: Option<PathBuf>,
    pub public_key_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
}

/// Why JWT mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "CANVASCHAT_AUTH=jwt needs exactly one of CANVASCHAT_JWT_HMAC_SECRET_FILE, CANVASCHAT_JWT_PUBLIC_KEY_FILE or CANVASCHAT_JWT_JWKS_URL; {0} are set"
    )]
    KeyCount(usize),
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the HMAC secret in {path} is {len} bytes; use at least {MIN_HMAC_SECRET_BYTES} random bytes (e.g. openssl rand -hex 32)"
    )]
    ShortSecret { path: PathBuf, len: usize },
    #[error(
        "{path} holds no RSA or P-256 public key in PEM form (-----BEGIN PUBLIC KEY-----): {reason}"
    )]
    BadPublicKey { path: PathBuf, reason: String },
    #[error("CANVASCHAT_JWT_JWKS_URL {url:?} must be an http:// or https:// URL")]
    BadJwksUrl { url: String },
    #[error("cannot build the JWKS HTTP client: {0}")]
    Client(String),
    #[error("cannot sign the token: {0}")]
    Sign(String),
    #[error("{0}")]
    BadName(String),
}

/// Why a token was refused; the message is sent to the client and never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the token is not a JWT signed with an accepted algorithm: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's audience (aud) is not this chat")]
    Audience,
    #[error("the token's issuer (iss) is not the configured one")]
    Issuer,
    #[error("the token's signature does not verify with the configured key")]
    Signature,
    #[error("the token lacks the required claim {0}")]
    MissingClaim(String),
    #[error("the token's {0} claim is not valid: {1}")]
    BadClaim(&'static str, String),
    #[error("no key with this token's kid is published at the JWKS URL")]
    UnknownKey,
    #[error("the identity provider's keys could not be fetched: {0}")]
    KeysUnavailable(String),
}

/// Who a verified token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// The only channels this token may join; `None`: any.
    pub channels: Option<Vec<String>>,
    /// Unix seconds after which the connection closes unless a fresh token arrived.
    pub expires_at: u64,
}

impl Identity {
    pub fn may_join(&self, channel: &str) -> bool {
        self.channels
            .as_ref()
            .is_none_or(|list| list.iter().any(|c| c == channel))
    }
}

/// Optional here so a missing claim is reported as missing, not as malformed JSON; the
/// validation requires both.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channels: Option<Vec<String>>,
}

/// Verifies tokens against the configured key, or the keys published at a JWKS URL.
pub struct Authenticator {
    keys: Keys,
    audience: Option<String>,
    issuer: Option<String>,
}

enum Keys {
    Static(VerifyKey),
    Jwks(Jwks),
}

#[derive(Clone)]
struct VerifyKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        let set = [
            settings.hmac_secret_file.is_some(),
            settings.public_key_file.is_some(),
            settings.jwks_url.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        if set != 1 {
            return Err(AuthConfigError::KeyCount(set));
        }
        let keys = if let Some(path) = &settings.hmac_secret_file {
            Keys::Static(VerifyKey {
                key: DecodingKey::from_secret(&read_hmac_secret(path)?),
                algorithm: Algorithm::HS256,
            })
        } else if let Some(path) = &settings.public_key_file {
            Keys::Static(read_public_key(path)?)
        } else {
            let url = settings.jwks_url.clone().unwrap_or_default();
            Keys::Jwks(Jwks::new(url)?)
        };
        Ok(Authenticator {
            keys,
            audience: settings.audience.clone(),
            issuer: settings.issuer.clone(),
        })
    }

    /// Checks a token's signature and claims and returns who it names.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let key = match &self.keys {
            Keys::Static(key) => key.clone(),
            Keys::Jwks(jwks) => {
                let header = jsonwebtoken::decode_header(token).map_err(refusal)?;
                jwks.key(header.kid.as_deref()).await?
            }
        };
        let claims =
            jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation(key.algorithm))
                .map_err(refusal)?
                .claims;
        identity(claims)
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        // The connection closes at `exp` exactly, so acceptance uses the same instant.
        validation.leeway = 0;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

fn identity(claims: Claims) -> Result<Identity, AuthError> {
    let sub = claims
        .sub
        .ok_or_else(|| AuthError::MissingClaim("sub".into()))?;
    let expires_at = claims
        .exp
        .ok_or_else(|| AuthError::MissingClaim("exp".into()))?;
    validate_name("sub", &sub).map_err(|e| AuthError::BadClaim("sub", e.to_string()))?;
    if let Some(channels) = &claims.channels {
        for channel in channels {
            validate_name("channels", channel)
                .map_err(|e| AuthError::BadClaim("channels", e.to_string()))?;
        }
    }
    Ok(Identity {
        user: sub,
        channels: claims.channels,
        expires_at,
    })
}

fn refusal(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.into_kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim),
        ErrorKind::InvalidClaimFormat(claim) => {
            AuthError::BadClaim("registered", format!("{claim} has the wrong type"))
        }
        ErrorKind::Json(_) => AuthError::Invalid("its header or claims are not valid JSON".into()),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::Invalid("its alg is not the one the configured key allows".into())
        }
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            AuthError::Invalid("it is not three base64url parts".into())
        }
        other => AuthError::Invalid(format!("{other:?}")),
    }
}

/// Reads an HMAC secret file; a trailing newline (as `echo` writes) is not part of it.
fn read_hmac_secret(path: &Path) -> Result<Vec<u8>, AuthConfigError> {
    let mut secret = std::fs::read(path).map_err(|source| AuthConfigError::Read {
        what: "the HMAC secret file",
        path: path.to_owned(),
        source,
    })?;
    while secret.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        secret.pop();
    }
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(AuthConfigError::ShortSecret {
            path: path.to_owned(),
            len: secret.len(),
        });
    }
    Ok(secret)
}

fn read_public_key(path: &Path) -> Result<VerifyKey, AuthConfigError> {
    let pem = std::fs::read(path).map_err(|source| AuthConfigError::Read {
        what: "the public key file",
        path: path.to_owned(),
        source,
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok(VerifyKey {
            key,
            algorithm: Algorithm::RS256,
        });
    }
    DecodingKey::from_ec_pem(&pem)
        .map(|key| VerifyKey {
            key,
            algorithm: Algorithm::ES256,
        })
        .map_err(|error| AuthConfigError::BadPublicKey {
            path: path.to_owned(),
            reason: error.to_string(),
        })
}

/// The keys published at a JWKS URL, fetched on first use, again when a token names an
/// unknown `kid` (at most every [`JWKS_MIN_REFRESH`]) and when they are older than
/// [`JWKS_MAX_AGE`].
struct Jwks {
    url: String,
    client: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Held while fetching, so concurrent misses cause one fetch.
    refresh: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, VerifyKey>,
    /// The only usable key, for tokens without `kid` when the set has just one.
    single: Option<VerifyKey>,
    fetched: Option<Instant>,
}

impl Jwks {
    fn new(url: String) -> Result<Self, AuthConfigError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(AuthConfigError::BadJwksUrl { url });
        }
        let client = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| AuthConfigError::Client(e.to_string()))?;
        Ok(Jwks {
            url,
            client,
            cache: RwLock::default(),
            refresh: Mutex::new(None),
        })
    }

    async fn key(&self, kid: Option<&str>) -> Result<VerifyKey, AuthError> {
        if let Some(key) = self.cached(kid, false).await {
            return Ok(key);
        }
        let mut last_attempt = self.refresh.lock().await;
        // Another task may have fetched while this one waited.
        if let Some(key) = self.cached(kid, false).await {
            return Ok(key);
        }
        if last_attempt.is_some_and(|at| at.elapsed() < JWKS_MIN_REFRESH) {
            return self.cached(kid, true).await.ok_or(AuthError::UnknownKey);
        }
        *last_attempt = Some(Instant::now());
        match self.fetch().await {
            Ok(cache) => {
                tracing::info!(keys = cache.keys.len(), "fetched the JWKS");
                *self.cache.write().await = cache;
            }
            Err(error) => {
                tracing::warn!(url = self.url, %error, "JWKS fetch failed");
                // Stale keys still verify while the provider is unreachable.
                return self
                    .cached(kid, true)
                    .await
                    .ok_or(AuthError::KeysUnavailable(error));
            }
        }
        self.cached(kid, true).await.ok_or(AuthError::UnknownKey)
    }

    async fn cached(&self, kid: Option<&str>, stale_ok: bool) -> Option<VerifyKey> {
        let cache = self.cache.read().await;
        let fresh = cache.fetched.is_some_and(|at| at.elapsed() < JWKS_MAX_AGE);
        if !(fresh || stale_ok && cache.fetched.is_some()) {
            return None;
        }
        match kid {
            Some(kid) => cache.keys.get(kid).cloned(),
            None => cache.single.clone(),
        }
    }

    async fn fetch(&self) -> Result<KeyCache, String> {
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.without_url().to_string())?;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(format!("the key set is larger than {JWKS_MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("not a JWK set: {e}"))?;
        Ok(key_cache(&set))
    }
}

/// The usable keys of a set: RSA keys verify RS256, P-256 keys ES256; keys meant for
/// encryption or announcing another algorithm are skipped.
fn key_cache(set: &JwkSet) -> KeyCache {
    let mut usable = Vec::new();
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        let announced = match jwk.common.key_algorithm {
            None => true,
            Some(KeyAlgorithm::RS256) => algorithm == Algorithm::RS256,
            Some(KeyAlgorithm::ES256) => algorithm == Algorithm::ES256,
            Some(_) => false,
        };
        if !announced {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if key.family() == AlgorithmFamily::Hmac {
            continue;
        }
        usable.push((jwk.common.key_id.clone(), VerifyKey { key, algorithm }));
    }
    let single = match usable.as_slice() {
        [(_, key)] => Some(key.clone()),
        _ => None,
    };
    KeyCache {
        keys: usable
            .into_iter()
            .filter_map(|(kid, key)| Some((kid?, key)))
            .collect(),
        single,
        fetched: Some(Instant::now()),
    }
}

/// Signs an HS256 token for `sub` valid for `ttl`, with the secret in `secret_file`: what
/// `canvaschat-gateway token` prints.
pub fn mint(
    secret_file: &Path,
    sub: &str,
    channels: Option<Vec<String>>,
    ttl: Duration,
) -> Result<String, AuthConfigError> {
    validate_name("sub", sub).map_err(|e| AuthConfigError::BadName(e.to_string()))?;
    for channel in channels.iter().flatten() {
        validate_name("channels", channel).map_err(|e| AuthConfigError::BadName(e.to_string()))?;
    }
    let secret = read_hmac_secret(secret_file)?;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: Some(sub.to_owned()),
        exp: Some(now + ttl.as_secs()),
        iat: Some(now),
        channels,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret),
    )
    .map_err(|e| AuthConfigError::Sign(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

    fn secret_file(secret: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(secret).expect("write");
        file
    }

    fn hmac(file: &tempfile::NamedTempFile) -> AuthSettings {
        AuthSettings {
            hmac_secret_file: Some(file.path().to_owned()),
            ..AuthSettings::default()
        }
    }

    fn sign(claims: serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("sign")
    }

    fn in_an_hour() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    #[tokio::test]
    async fn a_minted_token_names_its_sub_and_channels() {
        let file = secret_file(SECRET);
        let token = mint(
            file.path(),
            "alice",
            Some(vec!["lobby".into()]),
            Duration::from_secs(60),
        )
        .expect("mint");
        let auth = Authenticator::new(&hmac(&file)).expect("auth");
        let identity = auth.verify(&token).await.expect("valid");
        assert_eq!(identity.user, "alice");
        assert!(identity.may_join("lobby"));
        assert!(!identity.may_join("other"));
        let now = jsonwebtoken::get_current_timestamp();
        assert!((now + 59..=now + 60).contains(&identity.expires_at));
    }

    #[tokio::test]
    async fn refusals_name_the_reason() {
        let file = secret_file(SECRET);
        let auth = Authenticator::new(&hmac(&file)).expect("auth");
        let expired = sign(json!({"sub":"a","exp":1_000}), SECRET);
        assert_eq!(auth.verify(&expired).await, Err(AuthError::Expired));
        let no_exp = sign(json!({"sub":"a"}), SECRET);
        assert_eq!(
            auth.verify(&no_exp).await,
            Err(AuthError::MissingClaim("exp".into()))
        );
        let wrong_key = sign(
            json!({"sub":"a","exp":in_an_hour()}),
            b"another-secret-another-secret-another",
        );
        assert_eq!(auth.verify(&wrong_key).await, Err(AuthError::Signature));
        let bad_sub = sign(json!({"sub":"a b","exp":in_an_hour()}), SECRET);
        assert!(matches!(
            auth.verify(&bad_sub).await,
            Err(AuthError::BadClaim("sub", _))
        ));
        let future = sign(
            json!({"sub":"a","exp":in_an_hour(),"nbf":in_an_hour() - 60}),
            SECRET,
        );
        assert_eq!(auth.verify(&future).await, Err(AuthError::NotYetValid));
        assert!(matches!(
            auth.verify("garbage").await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let file = secret_file(SECRET);
        let auth = Authenticator::new(&hmac(&file)).expect("auth");
        let signed = sign(json!({"sub":"a","exp":in_an_hour()}), SECRET);
        let claims = signed.split('.').nth(1).expect("claims part");
        // base64url of {"alg":"none","typ":"JWT"}
        let token = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.");
        assert!(matches!(
            auth.verify(&token).await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn audience_and_issuer_are_checked_when_configured() {
        let file = secret_file(SECRET);
        let auth = Authenticator::new(&AuthSettings {
            audience: Some("chat".into()),
            issuer: Some("https://idp.example".into()),
            ..hmac(&file)
        })
        .expect("auth");
        let good = sign(
            json!({"sub":"a","exp":in_an_hour(),"aud":"chat","iss":"https://idp.example"}),
            SECRET,
        );
        assert!(auth.verify(&good).await.is_ok());
        let wrong_aud = sign(
            json!({"sub":"a","exp":in_an_hour(),"aud":"other","iss":"https://idp.example"}),
            SECRET,
        );
        assert_eq!(auth.verify(&wrong_aud).await, Err(AuthError::Audience));
        let no_aud = sign(
            json!({"sub":"a","exp":in_an_hour(),"iss":"https://idp.example"}),
            SECRET,
        );
        assert_eq!(
            auth.verify(&no_aud).await,
            Err(AuthError::MissingClaim("aud".into()))
        );
        let wrong_iss = sign(
            json!({"sub":"a","exp":in_an_hour(),"aud":"chat","iss":"https://evil.example"}),
            SECRET,
        );
        assert_eq!(auth.verify(&wrong_iss).await, Err(AuthError::Issuer));
    }

    #[test]
    fn configuration_is_checked() {
        assert!(matches!(
            Authenticator::new(&AuthSettings::default()),
            Err(AuthConfigError::KeyCount(0))
        ));
        let short = secret_file(b"short\n");
        assert!(matches!(
            Authenticator::new(&hmac(&short)),
            Err(AuthConfigError::ShortSecret { len: 5, .. })
        ));
        let not_pem = secret_file(b"not a key");
        assert!(matches!(
            Authenticator::new(&AuthSettings {
                public_key_file: Some(not_pem.path().to_owned()),
                ..AuthSettings::default()
            }),
            Err(AuthConfigError::BadPublicKey { .. })
        ));
        assert!(matches!(
            Authenticator::new(&AuthSettings {
                jwks_url: Some("ftp://x".into()),
                ..AuthSettings::default()
            }),
            Err(AuthConfigError::BadJwksUrl { .. })
        ));
    }

    #[test]
    fn jwks_keys_follow_their_type_and_announced_alg() {
        let rsa = json!({"kty":"RSA","kid":"r","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"});
        let oct = json!({"kty":"oct","kid":"h","k":"c2VjcmV0"});
        let rs384 = json!({"kty":"RSA","kid":"x","alg":"RS384","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"});
        let set: JwkSet = serde_json::from_value(json!({"keys":[rsa, oct, rs384]})).expect("jwks");
        let cache = key_cache(&set);
        assert_eq!(cache.keys.len(), 1);
        assert_eq!(cache.keys["r"].algorithm, Algorithm::RS256);
        assert!(
            cache.single.is_some(),
            "one usable key serves tokens without kid"
        );
    }
}
