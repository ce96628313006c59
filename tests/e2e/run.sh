#!/usr/bin/env bash
# Runs the CanvasChat end-to-end suite against the cluster in KUBECONFIG.
#
# Without KUBECONFIG it builds and starts the local control plane (tests/controlplane/up.sh),
# runs the operator as host processes against it and tears it all down on exit.
# With KUBECONFIG the operator runs as the chart's Deployment (set
# CANVASCHAT_E2E_OPERATOR=process to run it on this host instead).
#
# Extra arguments go to pytest (e.g. -k drift, -x). The last line printed is pytest's summary.
# Environment: CANVASCHAT_E2E_HELM_ARGS (extra `helm install` arguments, e.g. the operator
# image), CANVASCHAT_E2E_GATEWAY_IMAGE (gateway image for every CanvasChat the suite
# creates), CANVASCHAT_OPERATOR_BIN / CANVASCHAT_GATEWAY_BIN (binaries to use instead of
# the release builds), CANVASCHAT_E2E_SKIP_BUILD=1 (use already built release binaries).
# CANVASCHAT_E2E_REAL_NODE=1 (needs root): the local control plane gets a real node (up.sh
# --real-node) with Traefik and metrics-server, the images of scripts/build-images.sh are
# imported into it, and only the real-node tests (marker real_node) run. With KUBECONFIG
# given, only the selection changes (the caller provides what tests/README.md lists).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/canvaschat/target}
export CANVASCHAT_E2E_ARTIFACTS=${CANVASCHAT_E2E_ARTIFACTS:-$repo/tests/artifacts/e2e}
export PYTHONDONTWRITEBYTECODE=1
mkdir -p "$CANVASCHAT_E2E_ARTIFACTS"

say() { echo "e2e: $*" >&2; }

# Python environment, rebuilt only when requirements.txt changes.
venv=${CANVASCHAT_E2E_VENV:-$HOME/.cache/canvaschat/venv-e2e}
want=$(sha256sum "$repo/tests/e2e/requirements.txt" | cut -c1-16)
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]; then
    say "preparing $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$repo/tests/e2e/requirements.txt"
    echo "$want" > "$venv/.requirements"
fi

real_node=false
[ "${CANVASCHAT_E2E_REAL_NODE:-0}" = 1 ] && real_node=true
up_args=()
$real_node && up_args=(--real-node)
local_cp=false
if [ -z "${KUBECONFIG:-}" ]; then
    local_cp=true
    export CANVASCHAT_CP_DIR=${CANVASCHAT_CP_DIR:-/tmp/canvaschat-e2e-controlplane}
    # Quiet teardown so pytest's summary stays the last line; the log keeps the details.
    trap '"$repo/tests/controlplane/down.sh" >> "$CANVASCHAT_E2E_ARTIFACTS/controlplane-down.log" 2>&1' EXIT
    say "starting the local control plane in $CANVASCHAT_CP_DIR"
    # A component that dies at start (seen once right after another control plane was torn
    # down) gets one clean retry; its logs are copied to the artifacts first.
    if ! cp_env=$("$repo/tests/controlplane/up.sh" "${up_args[@]}"); then
        cp -r "$CANVASCHAT_CP_DIR/logs" "$CANVASCHAT_E2E_ARTIFACTS/controlplane-first-start-logs" 2> /dev/null || true
        "$repo/tests/controlplane/down.sh" > /dev/null 2>&1 || true
        say "the control plane failed to start; retrying once"
        cp_env=$("$repo/tests/controlplane/up.sh" "${up_args[@]}") || { echo "ERROR: the local control plane did not start" >&2; exit 1; }
    fi
    eval "$cp_env"
    export CANVASCHAT_E2E_OPERATOR=${CANVASCHAT_E2E_OPERATOR:-process}
    cp_bin=$("$repo/tests/controlplane/build.sh" 2>/dev/null | tail -n 1)
    export PATH=$cp_bin:$PATH
else
    export CANVASCHAT_E2E_OPERATOR=${CANVASCHAT_E2E_OPERATOR:-deployment}
fi
if ! command -v helm >/dev/null; then
    say "no helm on PATH; using the one tests/controlplane/build.sh builds"
    helm_bin=$("$repo/tests/controlplane/build.sh" | tail -n 1)
    export PATH=$helm_bin:$PATH
fi

# Binaries given by the caller (CANVASCHAT_OPERATOR_BIN, CANVASCHAT_GATEWAY_BIN) are used
# as they are; otherwise the release builds are made (a no-op when up to date).
if [ "${CANVASCHAT_E2E_SKIP_BUILD:-0}" != 1 ] &&
    ! { [ -x "${CANVASCHAT_OPERATOR_BIN:-}" ] && [ -x "${CANVASCHAT_GATEWAY_BIN:-}" ]; }; then
    say "building canvaschat-operator and canvaschat-gateway (release)"
    (cd "$repo" && cargo build --release --quiet -p canvaschat-operator -p canvaschat-gateway)
fi

if $real_node && $local_cp; then
    # The images carry the release binaries and frontend/dist, whatever binaries the
    # caller gave for the host-process tests: build-images.sh builds both (cached).
    say "building the images and importing them into the real node"
    mapfile -t images < <("$repo/scripts/build-images.sh" --import)
    CANVASCHAT_E2E_GATEWAY_IMAGE=$(printf '%s\n' "${images[@]}" | grep -- '-gateway:')
    CANVASCHAT_E2E_REDIS_IMAGE=$(printf '%s\n' "${images[@]}" | grep -- '/redis:')
    export CANVASCHAT_E2E_GATEWAY_IMAGE CANVASCHAT_E2E_REDIS_IMAGE
    # The node's add-ons: Traefik (Ingress and Gateway API on 127.0.0.1) and metrics-server
    # (the HPA's CPU figures); down.sh stops both.
    say "starting Traefik and metrics-server on the real node"
    "$repo/tests/controlplane/traefik.sh"
    "$repo/tests/controlplane/metrics-server.sh"
    # shellcheck source=/dev/null # written by traefik.sh
    source "$CANVASCHAT_CP_DIR/traefik.env"
    export CANVASCHAT_E2E_TRAEFIK_WEB=$TRAEFIK_WEB CANVASCHAT_E2E_TRAEFIK_GATEWAY=$TRAEFIK_GATEWAY
fi
if $real_node; then
    # On a cluster of the caller's (kind), the caller provides the images, Traefik and
    # metrics-server and names them in the same variables (.github/workflows/e2e-kind.yml).
    export CANVASCHAT_E2E_REAL_NODE=1
    # Real containers, volumes and probes (sentinel mode's three Redis pods) take longer than kwok.
    export CANVASCHAT_E2E_READY_TIMEOUT=${CANVASCHAT_E2E_READY_TIMEOUT:-300}
    set -- -m real_node "$@"
fi

say "testing $(kubectl config current-context) with the operator as a $CANVASCHAT_E2E_OPERATOR"
cd "$repo/tests/e2e"
status=0
"$venv/bin/python" -m pytest -p no:cacheprovider -rfEs "$@" || status=$?
exit $status
