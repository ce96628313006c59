#!/usr/bin/env bash
# Schema checks without a cluster: builds canvaschat-operator, renders every example, and
# validates the objects, the CRD schema (good and bad CanvasChats) and the Helm chart.
# Last line: "N passed, M failed"; exit status non-zero on any failure.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${HOME}/.cache/canvaschat"
venv="${CANVASCHAT_SCHEMA_VENV:-$cache/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"

say() { echo "schema: $*" >&2; }

if ! "$venv/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null; then
    say "creating the Python venv in $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate jsonschema pyyaml
fi

say "building canvaschat-operator"
(cd "$repo" && nice -n 10 cargo build --quiet -p canvaschat-operator)
operator="$CARGO_TARGET_DIR/debug/canvaschat-operator"

helm="${CANVASCHAT_HELM:-$(command -v helm || true)}"
if [[ -z "$helm" && -x "$cache/bin/helm" ]]; then
    helm="$cache/bin/helm"
fi
if [[ -z "$helm" ]]; then
    say "helm not found (go install helm.sh/helm/v4/cmd/helm@latest); chart checks are skipped"
fi

exec "$venv/bin/python" "$repo/tests/schema/validate.py" "$operator" "$repo" ${helm:+"$helm"}
