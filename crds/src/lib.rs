//! CanvasChat API types: the `CanvasChat` custom resource (`canvaschat.io/v1alpha1`),
//! its documented defaults, and the validation that mirrors the CRD schema and CEL rules.

mod defaults;
mod spec;
mod status;
mod validation;

pub use spec::*;
pub use status::*;
pub use validation::{SpecError, limits};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every CanvasChat resource.
pub const GROUP: &str = "canvaschat.io";
/// Served and stored API version.
pub const VERSION: &str = "v1alpha1";

/// The CustomResourceDefinition generated from the Rust types.
pub fn crd() -> CustomResourceDefinition {
    CanvasChat::crd()
}

/// The CRD as the YAML document committed under `crds/` and in the Helm chart.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(&crd())?;
    Ok(format!(
        "# Generated from the Rust types in crds/src (`canvaschat-operator crd`); do not edit by hand.\n{body}"
    ))
}
