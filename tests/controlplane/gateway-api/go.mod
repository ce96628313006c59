// Wrapper module pinning sigs.k8s.io/gateway-api v1.6.3, whose config/crd/standard/ holds the
// Gateway API CRDs tests/controlplane/build.sh copies into its cache (nothing is compiled).
module canvaschat.io/tests/controlplane/gateway-api

go 1.26.0

require sigs.k8s.io/gateway-api v1.6.3
