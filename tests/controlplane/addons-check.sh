#!/usr/bin/env bash
# Checks the add-ons of a real node (up.sh --real-node, same CANVASCHAT_CP_DIR) with two pods
# of a busybox web server and their Service:
#   metrics   (after metrics-server.sh) `kubectl top pods` lists both pods with CPU and memory
# Every address is checked with `ip route get` first: on the node's bridge or loopback.
# Usage: addons-check.sh metrics...   Prints one line per check; exits non-zero on
# the first failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CP_SRC_DIR/real-node.sh"

[ $# -gt 0 ] || { echo "usage: $0 metrics..." >&2; exit 2; }
export KUBECONFIG=$CP_STATE_DIR/admin.kubeconfig
[ -d "$(rn_dir)" ] || { echo "addons-check: no real node in $CP_STATE_DIR (up.sh --real-node)" >&2; exit 1; }
PATH=$("$CP_SRC_DIR/build.sh" kubectl | tail -n 1):$PATH
ns=addons-check
ok() { echo "addons-check: ok: $*"; }
fail() {
    echo "addons-check: FAILED: $*" >&2
    kubectl -n "$ns" get pods,svc -o wide >&2 || true
    exit 1
}

started=$SECONDS
rn_web_app "$ns" > /dev/null || fail "the pods did not become Ready"
pods=$(kubectl -n "$ns" get pods -l app=web -o jsonpath='{.items[*].metadata.name}')
for ip in $(kubectl -n "$ns" get pods -l app=web -o jsonpath='{.items[*].status.podIP}'); do
    rn_routes_local "$ip" || fail "pod IP $ip is not on the bridge"
done
ok "2 web pods Ready ($pods), their IPs on $RN_BRIDGE"

check_metrics() {
    local deadline=$((SECONDS + 90)) top pod
    # A new pod's figures appear after metrics-server has scraped it twice.
    while :; do
        top=$(kubectl -n "$ns" top pods --no-headers 2>&1) || top=""
        local missing=0
        for pod in $pods; do
            grep -qE "^$pod +[0-9]+m +[0-9]+Mi" <<< "$top" || missing=1
        done
        [ $missing = 0 ] && break
        [ $SECONDS -lt $deadline ] || fail "kubectl top pods did not list both pods in 90 s: $top"
        sleep 1
    done
    ok "kubectl top pods: $(tr -s ' \n' ' ' <<< "$top")"
}

for what in "$@"; do
    case $what in
    metrics) check_metrics ;;
    *) fail "unknown check $what" ;;
    esac
done
kubectl delete namespace "$ns" --wait=true --timeout=60s > /dev/null || fail "the namespace was not deleted"
ok "all checks passed in $((SECONDS - started)) s"
