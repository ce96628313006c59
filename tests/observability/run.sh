#!/usr/bin/env bash
# Observability shipped with the chart, checked against the real binaries:
#  - renders the chart with dashboards.enabled and prometheusRule.enabled;
#  - starts a gateway (embedded broker; it binds a free port itself) and an operator against
#    a local control plane (tests/controlplane/up.sh), and reads their live /metrics;
#  - check.py: every dashboard query and alert reads only series these expose (or, for the
#    alerts on Kubernetes objects, kube-state-metrics series), the dashboard covers what it
#    must and the rule has every alert;
#  - promtool (built from its Go module by tests/controlplane/build.sh) checks the rules and
#    runs alerts.test.yaml: each alert fires on its failure and stays quiet otherwise;
#  - the API server, with the Prometheus Operator's CRDs, accepts the PrometheusRule, the
#    ServiceMonitor and the dashboard ConfigMap (server-side dry run).
# Binaries: CANVASCHAT_GATEWAY_BIN / CANVASCHAT_OPERATOR_BIN, else the debug builds.
# Last line: "N passed, M failed".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/canvaschat/target}
say() { echo "observability: $*" >&2; }

venv=${CANVASCHAT_OBSERVABILITY_VENV:-$HOME/.cache/canvaschat/venv-observability}
want=$(sha256sum "$here/requirements.txt" | cut -c1-16)
if [ "$(cat "$venv/.requirements" 2> /dev/null)" != "$want" ]; then
    say "preparing $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" > "$venv/.requirements"
fi

gateway=${CANVASCHAT_GATEWAY_BIN:-}
operator=${CANVASCHAT_OPERATOR_BIN:-}
if [ -z "$gateway" ] || [ -z "$operator" ]; then
    say "building canvaschat-gateway and canvaschat-operator"
    (cd "$repo" && nice -n 10 cargo build --quiet -p canvaschat-gateway -p canvaschat-operator)
    gateway=$CARGO_TARGET_DIR/debug/canvaschat-gateway
    operator=$CARGO_TARGET_DIR/debug/canvaschat-operator
fi
tools=$("$repo/tests/controlplane/build.sh" helm promtool prometheus-operator | tail -n 1)

work=$(mktemp -d "${TMPDIR:-/tmp}/canvaschat-observability.XXXXXX")
export CANVASCHAT_CP_DIR=$work/controlplane
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2> /dev/null || true; done
    "$repo/tests/controlplane/down.sh" > /dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

"$tools/helm" template canvaschat "$repo/charts/canvaschat-operator" --namespace canvaschat-system \
    --set dashboards.enabled=true --set prometheusRule.enabled=true > "$work/chart.yaml"

# wait_until SECONDS COMMAND...: retry every 0.2 s.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" > /dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

say "gateway"
CANVASCHAT_LISTEN=127.0.0.1:0 CANVASCHAT_ADMIN_LISTEN=127.0.0.1:0 CANVASCHAT_STATIC_DIR=$work CANVASCHAT_LOG_FORMAT=text \
    "$gateway" > "$work/gateway.log" 2>&1 &
pids+=($!)
gateway_url() { sed -nE 's#.*open (http://127\.0\.0\.1:[0-9]+)/.*#\1#p' "$work/gateway.log" | head -n 1 | grep .; }
wait_until 30 gateway_url || { say "the gateway did not start: $(tail -n 20 "$work/gateway.log")"; exit 1; }
admin_url() { sed -nE 's#.*metrics on (http://127\.0\.0\.1:[0-9]+)/metrics.*#\1#p' "$work/gateway.log" | head -n 1 | grep .; }
curl -fsS --max-time 5 "$(admin_url)/metrics" > "$work/gateway.metrics"

say "local control plane and operator"
# A component that dies at start gets one clean retry, as in tests/e2e/run.sh (the usual cause,
# a start check racing the fork, is fixed in up.sh); its first logs are kept beside the second's.
if ! cp_env=$("$repo/tests/controlplane/up.sh"); then
    cp -r "$CANVASCHAT_CP_DIR/logs" "$work/controlplane-first-start-logs" 2> /dev/null || true
    "$repo/tests/controlplane/down.sh" > /dev/null 2>&1 || true
    say "the control plane failed to start; retrying once"
    cp_env=$("$repo/tests/controlplane/up.sh") || { say "the local control plane did not start"; exit 1; }
fi
eval "$cp_env"
PATH=$("$repo/tests/controlplane/build.sh" | tail -n 1):$PATH
"$operator" crd | kubectl apply -f - > /dev/null
# The operator refuses to start while the API server does not serve the CRD yet.
"$repo/tests/controlplane/wait-established.sh" canvaschats.canvaschat.io > /dev/null
# The operator binds the port it is given; one taken in the meantime gets it restarted on
# another (three tries).
for attempt in 1 2 3; do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$operator" run --leader-election=false --metrics-addr "127.0.0.1:$port" > "$work/operator.log" 2>&1 &
    pid=$!
    if wait_until 60 curl -fs --max-time 2 "http://127.0.0.1:$port/readyz"; then
        pids+=("$pid")
        break
    fi
    kill "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    grep -q 'address already in use\|Address already in use' "$work/operator.log" ||
        { say "the operator did not become ready: $(tail -n 20 "$work/operator.log")"; exit 1; }
    [ "$attempt" -lt 3 ] || { say "the operator found no free port in three tries"; exit 1; }
done
# The operator exposes a labelled family only once it has a series: make one reconcile fail
# (a Redis password Secret that does not exist) so the error counter appears.
kubectl apply -f - > /dev/null <<'EOF'
apiVersion: canvaschat.io/v1alpha1
kind: CanvasChat
metadata: {name: metrics, namespace: default}
spec:
  redis: {passwordSecretRef: {name: missing-secret}}
EOF
error_series() {
    curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" > "$work/operator.metrics" &&
        grep -q '^canvaschat_operator_reconcile_errors_total{kind="secret_missing"}' "$work/operator.metrics"
}
wait_until 60 error_series ||
    { say "no secret_missing reconcile error in the operator's metrics: $(tail -n 20 "$work/operator.log")"; exit 1; }

status=0
"$venv/bin/python" "$here/check.py" "$work/chart.yaml" "$work/gateway.metrics" "$work/operator.metrics" \
    --rules-out "$work/rules.yaml" | tee "$work/check.out" || status=$?
read -r passed _ failed _ <<< "$(tail -n 1 "$work/check.out")"
[[ $passed =~ ^[0-9]+$ && $failed =~ ^[0-9]+$ ]] || { say "check.py ended without a summary"; exit 1; }

check() { # NAME COMMAND...
    if out=$("${@:2}" 2>&1); then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $1:"
        echo "$out"
    fi
}
monitoring_objects() {
    local crds
    crds=$(dirname "$tools")/crds/prometheus-operator
    kubectl apply --server-side -f "$crds/monitoring.coreos.com_prometheusrules.yaml" \
        -f "$crds/monitoring.coreos.com_servicemonitors.yaml" &&
        "$repo/tests/controlplane/wait-established.sh" \
            prometheusrules.monitoring.coreos.com servicemonitors.monitoring.coreos.com &&
        kubectl create namespace canvaschat-system --dry-run=client -o yaml | kubectl apply -f - &&
        "$tools/helm" template canvaschat "$repo/charts/canvaschat-operator" --namespace canvaschat-system \
            --set dashboards.enabled=true --set prometheusRule.enabled=true --set serviceMonitor.enabled=true \
            --show-only templates/prometheusrule.yaml --show-only templates/servicemonitor.yaml \
            --show-only templates/dashboards.yaml |
        kubectl apply --dry-run=server -f -
}
check "the API server accepts the PrometheusRule, ServiceMonitor and dashboard ConfigMap" monitoring_objects
if [ -s "$work/rules.yaml" ]; then
    cp "$here/alerts.test.yaml" "$work/"
    check "promtool check rules" "$tools/promtool" check rules "$work/rules.yaml"
    check "promtool test rules (alerts.test.yaml)" "$tools/promtool" test rules "$work/alerts.test.yaml"
fi
echo "$passed passed, $failed failed"
if [ "$status" != 0 ] || [ "$failed" != 0 ]; then
    artifacts=$repo/tests/artifacts/observability
    mkdir -p "$artifacts"
    cp "$work"/*.metrics "$work"/*.log "$work/chart.yaml" "$artifacts/" 2> /dev/null || true
    exit 1
fi
