//! spec.auth on the gateway: CANVASCHAT_AUTH and CANVASCHAT_JWT_* settings, and the key from a
//! Secret mounted read-only as a file whose contents' hash is on the pod template.

use canvaschat_crds::{AuthMode, AuthSpec, CanvasChat, KeySecretRef};
use k8s_openapi::api::core::v1::{KeyToPath, Secret, SecretVolumeSource, Volume, VolumeMount};

use super::short_hash;

/// Pod-template annotation carrying the hash of the auth key, so a new key rolls the gateway
/// (it reads the key file once at start).
pub const AUTH_SECRET_HASH_ANNOTATION: &str = "canvaschat.io/auth-secret-hash";
/// Directory the key Secret is mounted at in the gateway container.
pub const KEY_DIR: &str = "/etc/canvaschat/jwt";
/// Name of the key volume in the gateway pod.
pub const KEY_VOLUME: &str = "jwt-key";

/// A key the gateway reads from a file: where it comes from and how the gateway is told.
pub struct KeyFile<'a> {
    /// The spec field naming it, for messages.
    pub field: &'static str,
    pub secret: &'a KeySecretRef,
    /// The gateway variable holding the file's path.
    pub env: &'static str,
    /// File name under [`KEY_DIR`].
    pub file: &'static str,
}

/// The key file of a JWT-mode chat keyed by a Secret (none for JWKS or anonymous chats).
pub fn key_file(auth: &AuthSpec) -> Option<KeyFile<'_>> {
    if auth.mode != AuthMode::Jwt {
        return None;
    }
    if let Some(secret) = &auth.hmac_secret_ref {
        return Some(KeyFile {
            field: "spec.auth.hmacSecretRef",
            secret,
            env: "CANVASCHAT_JWT_HMAC_SECRET_FILE",
            file: "hmac-secret",
        });
    }
    auth.public_key_secret_ref.as_ref().map(|secret| KeyFile {
        field: "spec.auth.publicKeySecretRef",
        secret,
        env: "CANVASCHAT_JWT_PUBLIC_KEY_FILE",
        file: "public-key.pem",
    })
}

/// The name of the Secret holding the auth key, if the chat uses one.
pub fn key_secret_name(cc: &CanvasChat) -> Option<&str> {
    key_file(&cc.spec.auth).map(|k| k.secret.name.as_str())
}

/// The gateway's authentication variables (all but the mode only in JWT mode).
pub fn env(auth: &AuthSpec) -> Vec<(String, String)> {
    let mut env = vec![("CANVASCHAT_AUTH".to_owned(), auth.mode.as_str().to_owned())];
    if auth.mode != AuthMode::Jwt {
        return env;
    }
    if let Some(key) = key_file(auth) {
        env.push((key.env.to_owned(), format!("{KEY_DIR}/{}", key.file)));
    }
    for (var, value) in [
        ("CANVASCHAT_JWT_JWKS_URL", &auth.jwks_url),
        ("CANVASCHAT_JWT_AUDIENCE", &auth.audience),
        ("CANVASCHAT_JWT_ISSUER", &auth.issuer),
        ("CANVASCHAT_AUTH_TOKEN_URL", &auth.token_url),
    ] {
        if let Some(value) = value {
            env.push((var.to_owned(), value.clone()));
        }
    }
    env
}

/// The key Secret as a read-only volume holding only the key's file.
pub fn key_volume(auth: &AuthSpec) -> Option<(Volume, VolumeMount)> {
    let key = key_file(auth)?;
    let volume = Volume {
        name: KEY_VOLUME.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(key.secret.name.clone()),
            items: Some(vec![KeyToPath {
                key: key.secret.key.clone(),
                path: key.file.to_owned(),
                ..Default::default()
            }]),
            optional: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mount = VolumeMount {
        name: KEY_VOLUME.to_owned(),
        mount_path: KEY_DIR.to_owned(),
        read_only: Some(true),
        ..Default::default()
    };
    Some((volume, mount))
}

/// The hash of the auth key's value in `secret` (the Secret [`key_secret_name`] names, as the
/// operator sees it), or a message a user can act on when it or its key is missing. None when
/// the chat reads no key from a Secret.
pub fn key_hash(
    cc: &CanvasChat,
    secret: Option<&Secret>,
    namespace: &str,
) -> Result<Option<String>, String> {
    let Some(key) = key_file(&cc.spec.auth) else {
        return Ok(None);
    };
    let (name, item) = (&key.secret.name, &key.secret.key);
    let Some(secret) = secret else {
        return Err(format!(
            "Secret {name} ({}, type Opaque) does not exist in namespace {namespace}; create it with the key {item:?}",
            key.field
        ));
    };
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(item))
        .map(|v| Some(short_hash(&v.0)))
        .ok_or_else(|| format!("Secret {name} has no key {item:?} ({}.key)", key.field))
}
