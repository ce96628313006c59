#!/usr/bin/env bash
# Regenerates kubernetes/go.mod for another Kubernetes release: requires k8s.io/kubernetes
# at vX.Y.Z and replaces every staging module it requires at v0.0.0 with the published
# v0.Y.Z release (the same replacements kubernetes itself makes with local paths).
# Usage: tests/controlplane/gen-kubernetes-mod.sh v1.37.2
set -euo pipefail
version=${1:?usage: $0 v1.X.Y}
[[ $version =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "not a v1.X.Y version: $version" >&2; exit 1; }
staging=v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/kubernetes" && pwd)

upstream_mod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
go_directive=$(awk '$1 == "go" {print $2; exit}' "$upstream_mod")

{
    echo "// Wrapper module: builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,"
    echo "// kubelet and kube-proxy from k8s.io/kubernetes, whose staging modules are required at"
    echo "// v0.0.0 and must be replaced by their published v0.X.Y releases. Regenerate with ../gen-kubernetes-mod.sh."
    echo "module canvaschat.io/tests/controlplane/kubernetes"
    echo
    echo "go $go_directive"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    echo "tool ("
    printf '\tk8s.io/kubernetes/cmd/%s\n' kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy
    echo ")"
    echo
    echo "replace ("
    awk '/^require \(/ {r = 1; next} r && /^\)/ {r = 0} r && $1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$upstream_mod" |
        sort -u | while read -r module; do printf '\t%s => %s %s\n' "$module" "$module" "$staging"; done
    echo ")"
} > "$dir/go.mod"
rm -f "$dir/go.sum"
(cd "$dir" && go mod tidy)
echo "kubernetes/go.mod now builds $version; run build.sh" >&2
