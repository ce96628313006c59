//! Secret `N-redis-auth`: the Redis password the operator generates when the spec names none.
//! It is created once and never rewritten, so the password stays stable.

use std::collections::BTreeMap;

use canvaschat_crds::CanvasChat;
use k8s_openapi::api::core::v1::Secret;

use super::{Component, Names, child_meta};

/// Key of the password in the generated Secret (and the default key of a user's Secret).
pub const PASSWORD_KEY: &str = "password";

/// The generated Secret holding `password`.
pub fn generated_secret(cc: &CanvasChat, names: &Names, password: &str) -> Secret {
    Secret {
        metadata: child_meta(cc, names, names.redis_auth(), Component::Redis),
        type_: Some("Opaque".to_owned()),
        string_data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_owned(),
            password.to_owned(),
        )])),
        ..Default::default()
    }
}
