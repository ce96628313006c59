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
    assert_eq!(columns, ["Ready", "Replicas", "URL", "Age"]);
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let yaml = canvaschat_crds::crd_yaml().expect("CRD serialises");
    for rule in [
        "self.minReplicas <= self.maxReplicas",
        "self.presenceTtlSeconds > self.presenceHeartbeatSeconds",
        "!has(self.tlsSecretName) || has(self.host)",
        "self.metadata.name.matches",
        "self.size == oldSelf.size",
    ] {
        assert!(yaml.contains(rule), "missing CEL rule {rule}");
    }
}
