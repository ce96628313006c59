#!/usr/bin/env bash
# On a real node started by `up.sh --real-node` (same CANVASCHAT_CP_DIR): builds and imports
# the images (scripts/build-images.sh --import), installs the CRD, runs the operator release
# binary on this host, applies examples/minimal.yaml with the locally built Redis image and
# checks that it becomes Ready with real Redis and gateway pods: real containers of the
# right non-root users, the gateway's root filesystem read-only, probes passing, and the
# gateway Service's ClusterIP (checked with `ip route get` first) serving the chat page.
# Prints one line per check; exits non-zero on the first failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CP_SRC_DIR/real-node.sh"
repo=$(cd "$CP_SRC_DIR/../.." && pwd)

export KUBECONFIG=$CP_STATE_DIR/admin.kubeconfig
[ -d "$(rn_dir)" ] || { echo "real-node-canvaschat-check: no real node in $CP_STATE_DIR (up.sh --real-node)" >&2; exit 1; }
PATH=$("$CP_SRC_DIR/build.sh" kubectl | tail -n 1):$PATH
target=${CARGO_TARGET_DIR:-$repo/target}
ns=real-node-canvaschat
ok() { echo "real-node-canvaschat-check: ok: $*"; }
operator_pid=""
cleanup() {
    if [ -n "$operator_pid" ]; then kill "$operator_pid" 2> /dev/null || true; fi
}
trap cleanup EXIT
fail() {
    echo "real-node-canvaschat-check: FAILED: $*" >&2
    kubectl get canvaschat -n "$ns" -o yaml >&2 || true
    kubectl -n "$ns" get pods,svc,pvc -o wide >&2 || true
    kubectl -n "$ns" describe pods >&2 || true
    tail -n 30 "$CP_STATE_DIR/logs/operator.log" >&2 || true
    exit 1
}

started=$SECONDS
mapfile -t images < <("$repo/scripts/build-images.sh" --import)
redis_image=$(printf '%s\n' "${images[@]}" | grep '/redis:')
ok "images built and imported in $((SECONDS - started)) s: ${images[*]}"

kubectl apply --server-side -f "$repo/charts/canvaschat-operator/crds/" > /dev/null
"$CP_SRC_DIR/wait-established.sh" canvaschats.canvaschat.io > /dev/null
kubectl delete namespace "$ns" --ignore-not-found --wait=true > /dev/null
kubectl create namespace "$ns" > /dev/null

metrics_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$target/release/canvaschat-operator" run --namespace "$ns" --leader-election=false \
    --metrics-addr "127.0.0.1:$metrics_port" --resync-seconds 10 > "$CP_STATE_DIR/logs/operator.log" 2>&1 &
operator_pid=$!

# examples/minimal.yaml as it is, but with Redis from the local image and nothing pulled.
python3 - "$repo/examples/minimal.yaml" "$redis_image" <<'EOF' | kubectl -n "$ns" apply -f - > /dev/null
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
spec = doc.setdefault("spec", None) or {}
spec.setdefault("redis", {}).update(image=sys.argv[2], imagePullPolicy="Never")
spec.setdefault("gateway", {})["imagePullPolicy"] = "Never"
doc["spec"] = spec
print(yaml.safe_dump(doc))
EOF
name=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["metadata"]["name"])' "$repo/examples/minimal.yaml")
kubectl -n "$ns" wait "canvaschat/$name" --for=condition=Ready --timeout=300s > /dev/null ||
    fail "CanvasChat $name did not become Ready"
ok "CanvasChat $name Ready in $((SECONDS - started)) s"

# Real containers of the right users; the gateway cannot write its root filesystem.
check_pods() { # COMPONENT UID
    local pod id pid
    for pod in $(kubectl -n "$ns" get pods -l "app.kubernetes.io/component=$1" -o jsonpath='{.items[*].metadata.name}'); do
        id=$(kubectl -n "$ns" get pod "$pod" -o jsonpath='{.status.containerStatuses[0].containerID}')
        pid=$(rn_ctr tasks ls | awk -v id="${id#containerd://}" '$1 == id && $3 == "RUNNING" {print $2}')
        [ -n "$pid" ] || fail "$pod has no running container ($id)"
        [ "$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")" = "$2" ] || fail "$pod does not run as uid $2"
        echo "$pod"
    done
}
gateways=$(check_pods gateway 10001)
[ "$(wc -w <<< "$gateways")" -ge 2 ] || fail "fewer than 2 gateway pods: $gateways"
redis=$(check_pods redis 999)
[ -n "$redis" ] || fail "no Redis pod"
ok "gateway pods ${gateways//$'\n'/ } run as uid 10001, Redis pod $redis as uid 999 (real runc processes)"
for pod in $gateways; do
    # The shell of the base runs, and the write fails for the file system, not a permission.
    err=$(kubectl -n "$ns" exec "$pod" -- sh -c ': > /usr/local/bin/x' 2>&1) && fail "$pod could write its root filesystem"
    grep -q 'Read-only file system' <<< "$err" || fail "$pod: writing its root filesystem failed otherwise: $err"
done
ok "the gateways' root filesystem is read-only"

service_ip=$(kubectl -n "$ns" get svc "$name-gateway" -o jsonpath='{.spec.clusterIP}')
port=$(kubectl -n "$ns" get svc "$name-gateway" -o jsonpath='{.spec.ports[0].port}')
rn_routes_local "$service_ip" || fail "Service IP $service_ip is not routed to the bridge"
curl -fsS --max-time 5 "http://$service_ip:$port/" | grep -qi '<html' || fail "http://$service_ip:$port/ did not serve the chat page"
ok "Service $name-gateway ($service_ip:$port) serves the chat page from the host"

kubectl delete namespace "$ns" --wait=true --timeout=120s > /dev/null || fail "the namespace was not deleted"
ok "all checks passed in $((SECONDS - started)) s"
