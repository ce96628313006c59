//! CanvasChat API types: the `CanvasChat` custom resource (`canvaschat.io/v1alpha1`),
//! its documented defaults, and the validation that mirrors the CRD schema and CEL rules.

pub mod defaults;
mod spec;
mod status;
mod validation;

pub use spec::*;
pub use status::*;
pub use validation::{SpecError, limits};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

/// API group of every CanvasChat resource.
pub const GROUP: &str = "canvaschat.io";
/// Served and stored API version.
pub const VERSION: &str = "v1alpha1";

/// The CustomResourceDefinition generated from the Rust types, without schema defaults: the
/// API server stores only what the user wrote, and the operator fills in every default at
/// reconcile time, so a new operator version's defaults reach existing chats.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = CanvasChat::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            strip_defaults(schema);
        }
    }
    crd
}

fn strip_defaults(schema: &mut JSONSchemaProps) {
    schema.default = None;
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(schema.all_of.iter_mut().flatten())
        .chain(schema.any_of.iter_mut().flatten())
        .chain(schema.one_of.iter_mut().flatten())
        .chain(schema.not.as_deref_mut());
    for child in children {
        strip_defaults(child);
    }
    match &mut schema.items {
        Some(JSONSchemaPropsOrArray::Schema(item)) => strip_defaults(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(strip_defaults),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = &mut schema.additional_properties {
        strip_defaults(extra);
    }
}

/// The CRD as the YAML document committed under `crds/` and in the Helm chart.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(&crd())?;
    Ok(format!(
        "# Generated from the Rust types in crds/src (`canvaschat-operator crd`); do not edit by hand.\n{body}"
    ))
}
