#!/usr/bin/env bash
# Builds the local control plane from the Go module proxy: kube-apiserver,
# kube-controller-manager, kube-scheduler, etcd, kwok and helm, plus kwok's stage file.
# Idempotent: a no-op when the binaries for the pinned versions are already cached under
# $HOME/.cache/canvaschat/controlplane/<version>-<hash>/ (override the root with
# CANVASCHAT_CP_CACHE). Prints the bin directory on its last line.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ -f "$CP_CACHE_DIR/complete" ]; then
    echo "controlplane: cached binaries in $CP_BIN_DIR" >&2
    echo "$CP_BIN_DIR"
    exit 0
fi

command -v go >/dev/null || { echo "controlplane: go is not installed" >&2; exit 1; }
command -v openssl >/dev/null || { echo "controlplane: openssl is not installed" >&2; exit 1; }

# Build into a scratch directory and rename at the end, so an interrupted build never
# leaves a half-filled cache that looks complete.
mkdir -p "$(dirname "$CP_CACHE_DIR")"
work=$(mktemp -d "${CP_CACHE_DIR}.partial.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"

export CGO_ENABLED=0
GOBUILD=(nice -n 10 go build -trimpath -ldflags "-s -w")

step() { echo "controlplane: $* ($(date -u +%H:%M:%S))" >&2; }

# Without the version stamp /version reports v0.0.0 and version checks (helm kubeVersion,
# clients) fail. Both the server and client-go copies of the version package are stamped.
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
step "building kube-apiserver, kube-controller-manager, kube-scheduler $KUBE_VERSION (a cold build takes 10-25 minutes)"
# One invocation for the three commands so they share compilation.
(cd "$CP_SRC_DIR/kubernetes" && nice -n 10 go build -trimpath -tags selinux,notest -ldflags "$ldflags" \
    -o "$work/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler)

step "building etcd"
(cd "$CP_SRC_DIR/etcd" && "${GOBUILD[@]}" -o "$work/bin/etcd" go.etcd.io/etcd/server/v3)

step "building kwok"
(cd "$CP_SRC_DIR/kwok" && "${GOBUILD[@]}" -o "$work/bin/kwok" sigs.k8s.io/kwok/cmd/kwok)

step "building helm"
helm_version=$(cd "$CP_SRC_DIR/helm" && go list -m -f '{{.Version}}' helm.sh/helm/v4)
(cd "$CP_SRC_DIR/helm" && nice -n 10 go build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version" \
    -o "$work/bin/helm" helm.sh/helm/v4/cmd/helm)

# kwok's stages (fast node initialisation, node heartbeat, pods Running and Ready at once,
# pod completion and deletion) ship as YAML in the module, not in the binary's defaults.
kwok_dir=$(cd "$CP_SRC_DIR/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
stage_dir=$kwok_dir/kustomize/stage
for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [ -f "$stage_dir/$f" ] || { echo "controlplane: kwok stage $stage_dir/$f is missing" >&2; exit 1; }
    echo "---"
    cat "$stage_dir/$f"
done > "$work/kwok-stages.yaml"

touch "$work/complete"
rm -rf "$CP_CACHE_DIR"
mv "$work" "$CP_CACHE_DIR"
trap - EXIT
step "built into $CP_BIN_DIR"
echo "$CP_BIN_DIR"
