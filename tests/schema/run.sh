#!/usr/bin/env bash
# Schema checks without a cluster: builds canvaschat-operator, renders every example, and
# validates the objects, the CRD schema (good and bad CanvasChats) and the Helm chart, which
# must also template for every Kubernetes minor it supports and refuse the one before.
# helm is CANVASCHAT_HELM or the one tests/controlplane/build.sh builds; without it this fails.
# Last line: "N passed, M failed"; exit status non-zero on any failure.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${HOME}/.cache/canvaschat"
venv="${CANVASCHAT_SCHEMA_VENV:-$cache/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"

say() { echo "schema: $*" >&2; }

if ! "$venv/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' 2> /dev/null; then
    say "creating the Python venv in $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate jsonschema pyyaml
fi

say "building canvaschat-operator"
(cd "$repo" && nice -n 10 cargo build --quiet -p canvaschat-operator)
operator="$CARGO_TARGET_DIR/debug/canvaschat-operator"

helm=${CANVASCHAT_HELM:-}
if [ -z "$helm" ]; then
    bin=$("$repo/tests/controlplane/build.sh" helm | tail -n 1) ||
        { say "helm is needed: set CANVASCHAT_HELM or let tests/controlplane/build.sh build it (needs go)"; exit 1; }
    helm=$bin/helm
fi
[ -x "$helm" ] || { say "helm $helm is not executable"; exit 1; }

# The Gateway API and Prometheus Operator CRDs, to check rendered HTTPRoutes and PodMonitors.
crd_files=
for crd in gateway-api/gateway.networking.k8s.io_httproutes prometheus-operator/monitoring.coreos.com_podmonitors; do
    component=${crd%%/*}
    bin=$("$repo/tests/controlplane/build.sh" "$component" | tail -n 1) ||
        { say "cannot fetch the $component CRDs (tests/controlplane/build.sh $component)"; exit 1; }
    crd_files=$crd_files${crd_files:+:}$(dirname "$bin")/crds/$crd.yaml
done
export CANVASCHAT_SCHEMA_CRD_FILES=$crd_files

status=0
"$venv/bin/python" "$repo/tests/schema/validate.py" "$operator" "$repo" "$helm" | tee "${TMPDIR:-/tmp}/canvaschat-schema.$$" || status=$?
summary=$(tail -n 1 "${TMPDIR:-/tmp}/canvaschat-schema.$$")
rm -f "${TMPDIR:-/tmp}/canvaschat-schema.$$"
read -r passed _ failed _ <<< "$summary"
[[ $passed =~ ^[0-9]+$ && $failed =~ ^[0-9]+$ ]] || { say "validate.py ended without a summary: $summary"; exit 1; }

# Supported minors: from the chart's kubeVersion floor to the release the local control
# plane runs (tests/controlplane/kubernetes/go.mod).
chart=$repo/charts/canvaschat-operator
floor=$(sed -nE 's/^kubeVersion: *"?>= *1\.([0-9]+).*/\1/p' "$chart/Chart.yaml")
top=$(awk '!/=>/ { for (i = 1; i < NF; i++) if ($i == "k8s.io/kubernetes") print $(i + 1) }' \
    "$repo/tests/controlplane/kubernetes/go.mod" | cut -d. -f2)
[[ $floor =~ ^[0-9]+$ && $top =~ ^[0-9]+$ ]] ||
    { say "cannot read the supported Kubernetes minors (chart kubeVersion floor '$floor', control plane '$top')"; exit 1; }
check() { # NAME COMMAND...
    local out
    if out=$("${@:2}" 2>&1); then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $1: $(tail -n 5 <<< "$out")"
    fi
}
for minor in $(seq "$floor" "$top"); do
    check "helm template --kube-version 1.$minor" \
        "$helm" template canvaschat "$chart" --namespace canvaschat-system --include-crds --kube-version "1.$minor.0"
done
refuses() { ! "$@"; }
check "helm template refuses --kube-version 1.$((floor - 1))" \
    refuses "$helm" template canvaschat "$chart" --kube-version "1.$((floor - 1)).0"
# helm's default kube version (used by `helm template` without --kube-version) follows the
# client-go it was built with; a helm built without its module info says v1.20.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
mkdir -p "$probe/templates"
printf 'apiVersion: v2\nname: probe\nversion: 0.1.0\n' > "$probe/Chart.yaml"
echo '# {{ .Capabilities.KubeVersion.Minor }}' > "$probe/templates/probe.yaml"
default_minor_at_least() {
    local minor
    minor=$("$helm" template probe "$probe" | sed -n 's/^# \([0-9][0-9]*\)$/\1/p')
    [[ $minor =~ ^[0-9]+$ ]] && [ "$minor" -ge "$1" ]
}
check "helm's default kube version is 1.$floor or later" default_minor_at_least "$floor"

echo "$passed passed, $failed failed"
[ "$status" = 0 ] && [ "$failed" = 0 ]
