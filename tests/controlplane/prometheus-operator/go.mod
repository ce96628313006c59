// Wrapper module pinning github.com/prometheus-operator/prometheus-operator v0.85.0, whose
// example/prometheus-operator-crd/ holds the monitoring.coreos.com CRDs
// tests/controlplane/build.sh copies into its cache (nothing is compiled).
module canvaschat.io/tests/controlplane/prometheus-operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
