//! `render -f FILE`: every object the operator would apply for the CanvasChats in a file,
//! as a multi-document YAML stream, without a cluster.

use canvaschat_crds::{CanvasChat, GROUP, SpecError, VERSION};
use serde::Deserialize;

use crate::resources::{self, BuildError};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{source_name}: document {index}: not valid YAML: {error}")]
    Yaml {
        source_name: String,
        index: usize,
        error: serde_yaml::Error,
    },
    #[error(
        "{source_name}: document {index}: expected apiVersion {GROUP}/{VERSION} and kind CanvasChat, found {api_version}/{kind}"
    )]
    NotACanvasChat {
        source_name: String,
        index: usize,
        api_version: String,
        kind: String,
    },
    #[error("{source_name}: document {index}: not a valid CanvasChat: {error}")]
    Shape {
        source_name: String,
        index: usize,
        error: serde_json::Error,
    },
    #[error("{source_name}: document {index}: unknown field(s) {fields}")]
    UnknownFields {
        source_name: String,
        index: usize,
        fields: String,
    },
    #[error("{source_name}: document {index} ({name}): {error}")]
    Invalid {
        source_name: String,
        index: usize,
        name: String,
        error: SpecError,
    },
    #[error("{source_name}: no CanvasChat found")]
    Empty { source_name: String },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot serialise the rendered objects: {0}")]
    Serialise(String),
}

/// Parse every YAML document of `text` as a validated CanvasChat. Empty documents are
/// skipped; `source_name` appears in error messages.
pub fn parse(source_name: &str, text: &str) -> Result<Vec<CanvasChat>, RenderError> {
    let mut chats = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value =
            serde_json::Value::deserialize(document).map_err(|error| RenderError::Yaml {
                source_name: source_name.to_owned(),
                index,
                error,
            })?;
        if value.is_null() {
            continue;
        }
        let field = |k: &str| {
            value
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("<none>")
                .to_owned()
        };
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        if api_version != format!("{GROUP}/{VERSION}") || kind != "CanvasChat" {
            return Err(RenderError::NotACanvasChat {
                source_name: source_name.to_owned(),
                index,
                api_version,
                kind,
            });
        }
        let mut unknown = Vec::new();
        let chat: CanvasChat = serde_ignored::deserialize(value, |path| {
            unknown.push(path.to_string());
        })
        .map_err(|error| RenderError::Shape {
            source_name: source_name.to_owned(),
            index,
            error,
        })?;
        // Like kubectl's strict field validation: a misspelt field is an error, not a
        // silently ignored setting. Only the spec is checked: metadata and status are the
        // API server's business, apiVersion and kind were checked above.
        unknown.retain(|path| path.starts_with("spec"));
        if !unknown.is_empty() {
            return Err(RenderError::UnknownFields {
                source_name: source_name.to_owned(),
                index,
                fields: unknown.join(", "),
            });
        }
        chat.validate().map_err(|error| RenderError::Invalid {
            source_name: source_name.to_owned(),
            index,
            name: chat.metadata.name.clone().unwrap_or_default(),
            error,
        })?;
        chats.push(chat);
    }
    if chats.is_empty() {
        return Err(RenderError::Empty {
            source_name: source_name.to_owned(),
        });
    }
    Ok(chats)
}

/// Render the children of every CanvasChat in `text` as one YAML stream.
pub fn render(source_name: &str, text: &str) -> Result<String, RenderError> {
    let mut out = String::new();
    for chat in parse(source_name, text)? {
        let desired = resources::build(&chat, &resources::BuildOptions::default())?;
        let values = desired
            .to_values()
            .map_err(|e| RenderError::Serialise(e.to_string()))?;
        for value in values {
            out.push_str("---\n");
            out.push_str(&crate::yaml::to_string(&value));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_chat_in_a_stream() {
        let text = "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: one}\nspec: {}\n---\n---\napiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: two}\nspec: {ingress: {enabled: true}}\n";
        let out = render("test.yaml", text).expect("renders");
        let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&out)
            .map(|d| serde_json::Value::deserialize(d).expect("yaml"))
            .collect();
        assert_eq!(docs.len(), 9 + 10);
        assert!(
            docs.iter()
                .any(|d| d["kind"] == "Ingress" && d["metadata"]["name"] == "two")
        );
    }

    #[test]
    fn clear_errors() {
        let err = render(
            "f.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        )
        .expect_err("not a chat");
        assert!(err.to_string().contains("document 1: expected apiVersion canvaschat.io/v1alpha1 and kind CanvasChat, found v1/ConfigMap"), "{err}");

        let err = render(
            "f.yaml",
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: x}\nspec: {gateway: {replicas: many}}\n",
        )
        .expect_err("bad type");
        assert!(err.to_string().contains("not a valid CanvasChat"), "{err}");

        let err = render(
            "f.yaml",
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: x}\nspec: {gateway: {autoscaling: {minReplicas: 4, maxReplicas: 2}}}\n",
        )
        .expect_err("invalid");
        assert!(
            err.to_string().contains("(x)") && err.to_string().contains("minReplicas"),
            "{err}"
        );

        let err = render(
            "f.yaml",
            "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: x, labels: {a: b}}\nspec: {gateway: {replica: 3, settings: {logLevl: debug}}}\n",
        )
        .expect_err("unknown fields");
        assert!(
            err.to_string()
                .contains("unknown field(s) spec.gateway.replica, spec.gateway.settings.logLevl"),
            "{err}"
        );

        let err = render("f.yaml", "").expect_err("empty");
        assert!(err.to_string().contains("no CanvasChat"), "{err}");

        let err = render("f.yaml", "a: [b").expect_err("yaml");
        assert!(err.to_string().contains("not valid YAML"), "{err}");
    }
}
