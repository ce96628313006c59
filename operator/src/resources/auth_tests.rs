//! spec.auth, the origin allow-list and the proxy hops on the rendered gateway.

use std::collections::BTreeMap;

use canvaschat_crds::CanvasChat;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{PodSpec, Secret};

use super::*;

fn chat(spec_yaml: &str) -> CanvasChat {
    let doc = format!(
        "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {{name: demo, namespace: chat, uid: 1b4e28ba-2fa1-11d2-883f-0016d3cca427}}\nspec:\n{spec_yaml}\n"
    );
    let cc: CanvasChat = serde_yaml::from_str(&doc).expect("fixture parses");
    assert_eq!(cc.validate(), Ok(()), "the fixture is a valid chat");
    cc
}

fn opts(auth_secret_hash: Option<&str>) -> BuildOptions {
    BuildOptions {
        gateway_image: "registry.example/gateway:9.9.9".into(),
        password_hash: Some("pwhash".into()),
        auth_secret_hash: auth_secret_hash.map(Into::into),
    }
}

fn built(cc: &CanvasChat, auth_secret_hash: Option<&str>) -> Desired {
    build(cc, &opts(auth_secret_hash)).expect("builds")
}

fn env(desired: &Desired) -> BTreeMap<String, String> {
    desired.config_map.data.clone().expect("data")
}

fn pod(desired: &Desired) -> &PodSpec {
    desired
        .gateway_deployment
        .spec
        .template
        .spec
        .as_ref()
        .expect("pod spec")
}

fn annotations(desired: &Desired) -> BTreeMap<String, String> {
    desired
        .gateway_deployment
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

const HMAC: &str = "  auth:\n    mode: jwt\n    hmacSecretRef: {name: chat-jwt, key: secret}\n    audience: chat\n    issuer: https://idp.example.com\n    tokenUrl: /auth/token\n";

#[test]
fn anonymous_by_default_with_no_key_and_any_origin() {
    let desired = built(&chat("  {}"), None);
    let env = env(&desired);
    assert_eq!(env["CANVASCHAT_AUTH"], "anonymous");
    for var in [
        "CANVASCHAT_JWT_HMAC_SECRET_FILE",
        "CANVASCHAT_JWT_PUBLIC_KEY_FILE",
        "CANVASCHAT_JWT_JWKS_URL",
        "CANVASCHAT_JWT_AUDIENCE",
        "CANVASCHAT_JWT_ISSUER",
        "CANVASCHAT_AUTH_TOKEN_URL",
        // No host and no list: any origin, as before spec.auth.
        "CANVASCHAT_ALLOWED_ORIGINS",
        // No Ingress or route: clients connect directly.
        "CANVASCHAT_TRUSTED_PROXY_HOPS",
    ] {
        assert!(!env.contains_key(var), "{var} is set: {env:?}");
    }
    let pod = pod(&desired);
    let volumes: Vec<_> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, ["tmp"]);
    assert!(!annotations(&desired).contains_key(AUTH_SECRET_HASH_ANNOTATION));
}

#[test]
fn jwt_with_an_hmac_secret_mounts_the_key_read_only_and_names_the_file() {
    let desired = built(&chat(HMAC), Some("keyhash"));
    let env = env(&desired);
    assert_eq!(env["CANVASCHAT_AUTH"], "jwt");
    assert_eq!(
        env["CANVASCHAT_JWT_HMAC_SECRET_FILE"],
        "/etc/canvaschat/jwt/hmac-secret"
    );
    assert_eq!(env["CANVASCHAT_JWT_AUDIENCE"], "chat");
    assert_eq!(env["CANVASCHAT_JWT_ISSUER"], "https://idp.example.com");
    assert_eq!(env["CANVASCHAT_AUTH_TOKEN_URL"], "/auth/token");
    assert!(!env.contains_key("CANVASCHAT_JWT_PUBLIC_KEY_FILE"));
    assert!(!env.contains_key("CANVASCHAT_JWT_JWKS_URL"));

    let pod = pod(&desired);
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "jwt-key")
        .expect("key volume");
    let source = volume.secret.as_ref().expect("a Secret volume");
    assert_eq!(source.secret_name.as_deref(), Some("chat-jwt"));
    assert_eq!(source.optional, Some(false));
    let items = source.items.as_ref().expect("only the key is projected");
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("secret", "hmac-secret")
    );
    let mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "jwt-key")
        .expect("key mount");
    assert_eq!(mount.read_only, Some(true));
    assert_eq!(
        format!("{}/{}", mount.mount_path, items[0].path),
        env["CANVASCHAT_JWT_HMAC_SECRET_FILE"],
        "the variable names the mounted file"
    );
    // The key never travels as an environment variable.
    assert!(
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .all(|e| e.name == "CANVASCHAT_REDIS_PASSWORD")
    );
    assert_eq!(
        annotations(&desired)[AUTH_SECRET_HASH_ANNOTATION],
        "keyhash"
    );
}

#[test]
fn jwt_with_a_public_key_or_jwks() {
    let pem = built(
        &chat("  auth: {mode: jwt, publicKeySecretRef: {name: idp-key, key: tls.pub}}"),
        Some("h"),
    );
    let env_pem = env(&pem);
    assert_eq!(
        env_pem["CANVASCHAT_JWT_PUBLIC_KEY_FILE"],
        "/etc/canvaschat/jwt/public-key.pem"
    );
    assert!(!env_pem.contains_key("CANVASCHAT_JWT_HMAC_SECRET_FILE"));
    let volume = pod(&pem)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "jwt-key")
        .and_then(|v| v.secret.clone())
        .expect("key volume");
    assert_eq!(volume.secret_name.as_deref(), Some("idp-key"));
    assert_eq!(volume.items.expect("items")[0].key, "tls.pub");

    let jwks = built(
        &chat("  auth: {mode: jwt, jwksUrl: 'https://idp.example.com/jwks'}"),
        None,
    );
    let env_jwks = env(&jwks);
    assert_eq!(
        env_jwks["CANVASCHAT_JWT_JWKS_URL"],
        "https://idp.example.com/jwks"
    );
    assert!(!env_jwks.contains_key("CANVASCHAT_JWT_PUBLIC_KEY_FILE"));
    assert!(
        pod(&jwks)
            .volumes
            .iter()
            .flatten()
            .all(|v| v.name != "jwt-key")
    );
}

#[test]
fn a_new_key_rolls_the_gateway() {
    let cc = chat(HMAC);
    let before = built(&cc, Some("first"));
    let after = built(&cc, Some("second"));
    assert_ne!(
        annotations(&before)[AUTH_SECRET_HASH_ANNOTATION],
        annotations(&after)[AUTH_SECRET_HASH_ANNOTATION]
    );
    assert_ne!(
        desired_hash(&before.gateway_deployment),
        desired_hash(&after.gateway_deployment),
        "the new pod template is applied"
    );
    // Switching the mode changes the ConfigMap, hence the config hash, too.
    assert_ne!(
        config::config_hash(&before.config_map).expect("hash"),
        config::config_hash(&built(&chat("  {}"), None).config_map).expect("hash")
    );
}

fn secret(data: &[(&str, &[u8])]) -> Secret {
    Secret {
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

#[test]
fn key_hash_follows_the_secret_and_explains_what_is_missing() {
    let cc = chat(HMAC);
    assert_eq!(auth_key_secret(&cc), Some("chat-jwt"));
    let missing = auth_key_hash(&cc, None, "chat").expect_err("no Secret");
    assert!(
        missing.contains("Secret chat-jwt")
            && missing.contains("spec.auth.hmacSecretRef")
            && missing.contains("namespace chat"),
        "{missing}"
    );
    let no_key = auth_key_hash(&cc, Some(&secret(&[("other", b"x")])), "chat").expect_err("no key");
    assert!(no_key.contains("no key \"secret\""), "{no_key}");
    let one = auth_key_hash(&cc, Some(&secret(&[("secret", b"one")])), "chat").expect("hash");
    let two = auth_key_hash(&cc, Some(&secret(&[("secret", b"two")])), "chat").expect("hash");
    assert!(one.is_some() && one != two, "{one:?} {two:?}");
    // Other keys of the Secret do not roll the gateway.
    let other = auth_key_hash(
        &cc,
        Some(&secret(&[("secret", b"one"), ("unrelated", b"z")])),
        "chat",
    )
    .expect("hash");
    assert_eq!(one, other);

    let anonymous = chat("  {}");
    assert_eq!(auth_key_secret(&anonymous), None);
    assert_eq!(auth_key_hash(&anonymous, None, "chat"), Ok(None));
    let jwks = chat("  auth: {mode: jwt, jwksUrl: 'https://idp.example.com/jwks'}");
    assert_eq!(auth_key_hash(&jwks, None, "chat"), Ok(None));
}

#[test]
fn origins_default_to_the_chats_hosts() {
    let origins = |spec: &str| {
        env(&built(&chat(spec), None))
            .get("CANVASCHAT_ALLOWED_ORIGINS")
            .cloned()
    };
    assert_eq!(
        origins("  ingress: {enabled: true, host: chat.example.com, tlsSecretName: chat-tls}"),
        Some("https://chat.example.com".into()),
        "with TLS on the Ingress only https"
    );
    assert_eq!(
        origins("  ingress: {enabled: true, host: chat.example.com}"),
        Some("https://chat.example.com,http://chat.example.com".into())
    );
    assert_eq!(
        origins("  ingress: {enabled: false, host: chat.example.com}"),
        None,
        "a disabled Ingress serves no host"
    );
    assert_eq!(origins("  ingress: {enabled: true}"), None);
    assert_eq!(
        origins(
            "  ingress: {enabled: true, host: a.example.com, tlsSecretName: t}\n  httpRoute:\n    parentRefs: [{name: public}]\n    hostnames: [b.example.com, '*.example.com', a.example.com]\n"
        ),
        Some(
            "https://a.example.com,https://b.example.com,http://b.example.com,http://a.example.com"
                .into()
        ),
        "every host once, wildcards skipped"
    );
    assert_eq!(
        origins(
            "  ingress: {enabled: true, host: chat.example.com}\n  gateway: {settings: {allowedOrigins: ['https://other.example.com']}}\n"
        ),
        Some("https://other.example.com".into()),
        "an explicit list wins"
    );
    assert_eq!(
        origins(
            "  ingress: {enabled: true, host: chat.example.com}\n  gateway: {settings: {allowedOrigins: ['*']}}\n"
        ),
        Some("*".into()),
        "any origin only when asked for"
    );
}

#[test]
fn one_trusted_proxy_behind_the_ingress_or_route() {
    let hops = |spec: &str| {
        env(&built(&chat(spec), None))
            .get("CANVASCHAT_TRUSTED_PROXY_HOPS")
            .cloned()
    };
    assert_eq!(hops("  ingress: {enabled: true}"), Some("1".into()));
    assert_eq!(
        hops("  httpRoute:\n    parentRefs: [{name: public}]\n"),
        Some("1".into())
    );
    assert_eq!(hops("  {}"), None);
}

#[test]
fn every_auth_variable_is_one_the_gateway_reads() {
    let gateway = include_str!("../../../gateway/src/config.rs");
    for spec in [
        HMAC,
        "  auth: {mode: jwt, publicKeySecretRef: {name: k, key: pem}}",
        "  auth: {mode: jwt, jwksUrl: 'https://idp.example.com/jwks'}\n  ingress: {enabled: true, host: chat.example.com}",
    ] {
        for key in env(&built(&chat(spec), None)).keys() {
            assert!(
                key == "RUST_LOG" || gateway.contains(&format!("env = \"{key}\"")),
                "the gateway reads no {key}"
            );
        }
    }
}
