#!/usr/bin/env bash
# Checks a real node started by `up.sh --real-node` (same CANVASCHAT_CP_DIR) end to end: a
# pod of a locally built busybox image runs as a real container (a runc process on this
# host), pods reach each other through a Service's ClusterIP, and the host reaches it too.
# Every address is checked with `ip route get` first: on the node's bridge or loopback.
# Prints one line per check; exits non-zero on the first failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CP_SRC_DIR/real-node.sh"

export KUBECONFIG=$CP_STATE_DIR/admin.kubeconfig
[ -d "$(rn_dir)" ] || { echo "real-node-check: no real node in $CP_STATE_DIR (up.sh --real-node)" >&2; exit 1; }
PATH=$("$CP_SRC_DIR/build.sh" kubectl | tail -n 1):$PATH
ns=real-node-check
ok() { echo "real-node-check: ok: $*"; }
fail() {
    echo "real-node-check: FAILED: $*" >&2
    kubectl -n "$ns" get pods,svc,endpointslices -o wide >&2 || true
    kubectl -n "$ns" describe pods >&2 || true
    exit 1
}

started=$SECONDS
image=$(rn_web_app "$ns") || fail "the pods did not become Ready"
ok "image $image imported; 2 pods Running and Ready (readiness probe over the pod network) in $((SECONDS - started)) s"

# Real containers: each pod's container is a task of this node's containerd with a live
# process on this host, running as the pod's user.
for pod in $(kubectl -n "$ns" get pods -l app=web -o jsonpath='{.items[*].metadata.name}'); do
    id=$(kubectl -n "$ns" get pod "$pod" -o jsonpath='{.status.containerStatuses[0].containerID}')
    [[ $id == containerd://* ]] || fail "$pod has no containerd container: '$id'"
    pid=$(rn_ctr tasks ls | awk -v id="${id#containerd://}" '$1 == id && $3 == "RUNNING" {print $2}')
    { [ -n "$pid" ] && [ -d "/proc/$pid" ]; } || fail "$pod's container ${id#containerd://} is not a running task"
    [ "$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")" = 65534 ] || fail "$pod's process does not run as 65534"
    pod_ip=$(kubectl -n "$ns" get pod "$pod" -o jsonpath='{.status.podIP}')
    rn_routes_local "$pod_ip" || fail "pod IP $pod_ip is not on the bridge"
    [ "$(curl -fsS --max-time 5 "http://$pod_ip:8080/index.html")" = "$pod" ] || fail "$pod_ip:8080 did not answer as $pod"
done
ok "containers are runc processes of uid 65534 (pid $pid ...); pod IPs answer from the host"

cluster_ip=$(kubectl -n "$ns" get svc web -o jsonpath='{.spec.clusterIP}')
rn_routes_local "$cluster_ip" || fail "ClusterIP $cluster_ip is not routed to the bridge"
# kube-proxy programs the Service shortly after its endpoints exist.
declare -A seen=()
deadline=$((SECONDS + 60))
while [ ${#seen[@]} -lt 2 ]; do
    [ $SECONDS -lt $deadline ] || fail "ClusterIP $cluster_ip reached ${#seen[@]} of 2 pods in 60 s"
    if answer=$(curl -fsS --max-time 2 "http://$cluster_ip/index.html" 2> /dev/null); then seen[$answer]=1; else sleep 0.2; fi
done
ok "host -> ClusterIP $cluster_ip:80 reaches both pods (${!seen[*]})"

# Pod -> Service -> pod on the same bridge (DNAT in the host, back onto the bridge), both
# to the other pod and to itself (hairpin).
first=$(kubectl -n "$ns" get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
seen=()
for _ in $(seq 30); do
    answer=$(kubectl -n "$ns" exec "$first" -- sh -c \
        "printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc -w 5 $cluster_ip 80" 2> /dev/null | tail -n 1) ||
        fail "pod $first could not reach ClusterIP $cluster_ip"
    seen[$answer]=1
    [ ${#seen[@]} = 2 ] && break
done
[ ${#seen[@]} = 2 ] || fail "pod $first reached only ${!seen[*]} through ClusterIP $cluster_ip in 30 requests"
ok "pod $first -> ClusterIP $cluster_ip reaches both pods, itself included (${!seen[*]})"

# Cluster DNS (CoreDNS on the bridge address): the Service's name gives its ClusterIP; a
# name outside the cluster gets no answer (nothing is forwarded off this machine).
lookup=$(kubectl -n "$ns" exec "$first" -- nslookup "web.$ns.svc.cluster.local" 2>&1) || fail "pod $first could not resolve web: $lookup"
grep -q "Address: $cluster_ip" <<< "$lookup" || fail "web.$ns.svc.cluster.local did not resolve to $cluster_ip: $lookup"
short=$(kubectl -n "$ns" exec "$first" -- sh -c 'nslookup web 2>&1 || true')
grep -q "Address: $cluster_ip" <<< "$short" || fail "the search path did not resolve web: $short"
if outside=$(kubectl -n "$ns" exec "$first" -- nslookup example.com 2>&1) && grep -q '^Address: ' <<< "$(sed 1,2d <<< "$outside")"; then
    fail "example.com resolved inside the cluster: $outside"
fi
ok "pod $first resolves web and web.$ns.svc.cluster.local to $cluster_ip; example.com gets no answer"

# Pods have no default route: nothing they send can leave for another address.
routes=$(kubectl -n "$ns" exec "$first" -- cat /proc/net/route) || fail "cannot read $first's routes"
awk 'NR > 1 && $2 == "00000000" {found = 1} END {exit found}' <<< "$routes" ||
    fail "pod $first has a default route: $routes"
ok "pod $first has routes to the pod and Service ranges only"

kubectl delete namespace "$ns" --wait=true --timeout=60s > /dev/null || fail "the namespace was not deleted"
[ -z "$(rn_ctr tasks ls -q)" ] || fail "containers left after their pods were deleted: $(rn_ctr tasks ls -q | tr '\n' ' ')"
ok "pods deleted, no container left"
ok "all checks passed in $((SECONDS - started)) s"
