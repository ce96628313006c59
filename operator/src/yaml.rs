//! YAML output that every consumer reads the same way. serde_yaml writes YAML 1.2, where
//! `yes`, `no`, `on` and `off` are plain strings; YAML 1.1 readers (kubectl's and PyYAML among
//! them) turn those into booleans, which would corrupt e.g. `--appendonly yes`. This writer
//! quotes every string that is not unambiguously a string under both versions.

use serde_json::Value;

/// Plain (unquoted) scalars YAML 1.1 reads as something other than a string.
const YAML_1_1_SPECIAL: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
    "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL",
];

fn is_plain_safe(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/');
    first_ok
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !YAML_1_1_SPECIAL.contains(&s)
}

fn scalar(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_owned()
    } else {
        // A JSON string is a valid YAML double-quoted scalar.
        Value::String(s.to_owned()).to_string()
    }
}

fn inline(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("null".to_owned()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(scalar(s)),
        Value::Array(a) if a.is_empty() => Some("[]".to_owned()),
        Value::Object(o) if o.is_empty() => Some("{}".to_owned()),
        _ => None,
    }
}

fn emit(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                out.push_str(&pad);
                out.push_str(&scalar(key));
                out.push(':');
                match (inline(v), v) {
                    (Some(s), _) => {
                        out.push(' ');
                        out.push_str(&s);
                        out.push('\n');
                    }
                    (None, Value::Array(_)) => {
                        out.push('\n');
                        emit(v, indent, out);
                    }
                    (None, _) => {
                        out.push('\n');
                        emit(v, indent + 2, out);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                match inline(item) {
                    Some(s) => {
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&s);
                        out.push('\n');
                    }
                    None => {
                        // Emit the item one level deeper, then put the dash into the first
                        // line's indentation.
                        let mut nested = String::new();
                        emit(item, indent + 2, &mut nested);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&nested[indent + 2..]);
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&inline(other).unwrap_or_default());
            out.push('\n');
        }
    }
}

/// One YAML document (without the `---` separator) for `value`.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    emit(value, 0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ambiguous_strings_are_quoted() {
        let v = json!({"args": ["--appendonly", "yes", "no", "on"], "port": "8080", "on": "x"});
        let text = to_string(&v);
        assert!(text.contains("- \"yes\"\n"), "{text}");
        assert!(text.contains("- \"no\"\n"), "{text}");
        assert!(text.contains("port: \"8080\"\n"), "{text}");
        assert!(text.contains("\"on\": x\n"), "{text}");
        assert!(text.contains("- --appendonly\n") || text.contains("- \"--appendonly\"\n"));
    }

    #[test]
    fn round_trips_through_a_yaml_parser() {
        let v = json!({
            "apiVersion": "apps/v1",
            "metadata": {"name": "demo", "labels": {}, "annotations": {"a/b": "x: y # z", "multi": "one\ntwo"}},
            "spec": {
                "replicas": 3,
                "paused": false,
                "ratio": 0.5,
                "empty": [],
                "nothing": null,
                "containers": [
                    {"name": "c", "args": ["a", "$(REDIS_PASSWORD)"], "ports": [{"containerPort": 80}]},
                    {"name": "d", "env": []}
                ],
                "matrix": [["a", "b"], []],
                "unicode": "héllo ✓",
                "quote": "it's \"quoted\" \\ back"
            }
        });
        let text = to_string(&v);
        let parsed: Value = serde_yaml::from_str(&text).expect("valid YAML");
        assert_eq!(parsed, v, "{text}");
    }
}
