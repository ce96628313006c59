//! The committed CRD YAML (crds/ and the Helm chart's copy) must match the Rust types.
//! Regenerate both with `CANVASCHAT_UPDATE_CRDS=1 cargo test -p canvaschat-crds --test crd_drift`.

use std::path::PathBuf;

fn committed_copies() -> Vec<PathBuf> {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    vec![
        crate_dir.join("canvaschat.io_canvaschats.yaml"),
        crate_dir.join("../charts/canvaschat-operator/crds/canvaschat.io_canvaschats.yaml"),
    ]
}

#[test]
fn committed_crd_yaml_matches_rust_types() {
    let generated = canvaschat_crds::crd_yaml().expect("CRD serialises");
    let update = std::env::var_os("CANVASCHAT_UPDATE_CRDS").is_some();
    for path in committed_copies() {
        if update {
            std::fs::write(&path, &generated).expect("write CRD");
            continue;
        }
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert!(
            committed == generated,
            "{} is out of date with crds/src; regenerate with \
             CANVASCHAT_UPDATE_CRDS=1 cargo test -p canvaschat-crds --test crd_drift",
            path.display()
        );
    }
}

#[test]
fn crd_has_names_columns_and_status() {
    let crd = canvaschat_crds::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("canvaschats.canvaschat.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["cchat".to_owned()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Ready", "Reason", "Replicas", "URL", "Age"]);
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let yaml = canvaschat_crds::crd_yaml().expect("CRD serialises");
    for rule in [
        "self.minReplicas : 2) <= (has(self.maxReplicas)",
        "self.presenceTtlSeconds : 300) > (has(self.presenceHeartbeatSeconds)",
        "self.securityContext.privileged",
        "self.podSecurityContext.runAsUser != 0",
        "size(self.metadata.name) <= 46",
        "!has(self.tlsSecretName) || has(self.host)",
        "self.metadata.name.matches",
        "has(oldSelf.size) ? oldSelf.size",
        "(has(self.jwksUrl) ? 1 : 0) == 1",
        "!(has(self.hmacSecretRef) || has(self.publicKeySecretRef)",
        "self.allowedOrigins.exists(o, o ==",
    ] {
        assert!(yaml.contains(rule), "missing CEL rule {rule}");
    }
}

#[test]
fn crd_stores_no_defaults_and_keys_conditions_by_type() {
    let yaml = canvaschat_crds::crd_yaml().expect("CRD serialises");
    let value: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("CRD parses");
    /// Whether a schema below `v` has a `default` (a property called "default" does not count).
    fn has_default(v: &serde_yaml::Value, in_properties: bool) -> bool {
        match v {
            serde_yaml::Value::Mapping(m) => m.iter().any(|(k, child)| {
                (!in_properties && k.as_str() == Some("default"))
                    || has_default(child, !in_properties && k.as_str() == Some("properties"))
            }),
            serde_yaml::Value::Sequence(s) => s.iter().any(|c| has_default(c, false)),
            _ => false,
        }
    }
    assert!(
        !has_default(&value, false),
        "the CRD schema still carries a default"
    );
    let conditions = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        ["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"].as_str(), Some("map"));
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"][0].as_str(),
        Some("type")
    );
}
