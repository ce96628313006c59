#!/usr/bin/env bash
# Starts metrics-server (build.sh metrics-server) as a host process beside a control plane
# started with up.sh --real-node (same CANVASCHAT_CP_DIR) and registers it as the
# v1beta1.metrics.k8s.io APIService, so `kubectl top` and the HPA read real CPU and memory.
#
# It listens on the bridge's address (the node's InternalIP) on a free port; a Service
# without a selector and an EndpointSlice for that address are what the APIService names,
# so the API server's aggregation layer (the front-proxy-client flags up.sh --real-node
# sets) reaches it through kube-proxy's ClusterIP rules, on the bridge. It scrapes the
# kubelet over TLS verified against the control plane's CA (the kubelet's serving
# certificate names the bridge address), with a client certificate of its own that RBAC
# binds to what it reads. down.sh stops it. Waits until `kubectl top nodes` answers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CP_SRC_DIR/real-node.sh"

log() { echo "metrics-server: $*" >&2; }
pki=$CP_STATE_DIR/pki
export KUBECONFIG=$CP_STATE_DIR/admin.kubeconfig
[ -f "$pki/front-proxy-client.crt" ] ||
    { log "no control plane with a real node in $CP_STATE_DIR (start it with up.sh --real-node)"; exit 1; }

bin_dir=$("$CP_SRC_DIR/build.sh" kubectl metrics-server | tail -n 1)
export PATH=$bin_dir:$PATH

rn_routes_local "$RN_GATEWAY"
port=$(python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$RN_GATEWAY")

ossl() { openssl "$@" 2>> "$CP_STATE_DIR/logs/openssl.log"; }
cert() { # NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES], signed by the control plane's CA
    ossl req -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -subj "$2" \
        -keyout "$pki/$1.key" -out "$pki/$1.csr"
    ossl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 3650 \
        -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s' \
            "$3" "${4:+subjectAltName=$4}") -out "$pki/$1.crt"
}
cert metrics-server-serving "/CN=metrics-server" serverAuth \
    "DNS:metrics-server.kube-system.svc,IP:$RN_GATEWAY"
cert metrics-server "/CN=canvaschat:metrics-server" clientAuth

kc=$CP_STATE_DIR/metrics-server.kubeconfig
server=$(kubectl config view -o jsonpath='{.clusters[0].cluster.server}')
kubectl config --kubeconfig="$kc" set-cluster local --server="$server" \
    --certificate-authority="$pki/ca.crt" --embed-certs=true > /dev/null
kubectl config --kubeconfig="$kc" set-credentials metrics-server \
    --client-certificate="$pki/metrics-server.crt" --client-key="$pki/metrics-server.key" --embed-certs=true > /dev/null
kubectl config --kubeconfig="$kc" set-context local --cluster=local --user=metrics-server > /dev/null
kubectl config --kubeconfig="$kc" use-context local > /dev/null

# What upstream's manifest grants: read nodes, pods and the kubelet's metrics; delegate
# authentication and authorization of the aggregated requests to the API server.
user=canvaschat:metrics-server
kubectl create clusterrole canvaschat:metrics-server --verb=get,list,watch \
    --resource=nodes,pods,nodes/metrics --dry-run=client -o yaml | kubectl apply -f - > /dev/null
kubectl create clusterrolebinding canvaschat:metrics-server --clusterrole=canvaschat:metrics-server \
    --user="$user" --dry-run=client -o yaml | kubectl apply -f - > /dev/null
kubectl create clusterrolebinding canvaschat:metrics-server:auth-delegator --clusterrole=system:auth-delegator \
    --user="$user" --dry-run=client -o yaml | kubectl apply -f - > /dev/null
kubectl create rolebinding canvaschat:metrics-server:auth-reader -n kube-system \
    --role=extension-apiserver-authentication-reader --user="$user" --dry-run=client -o yaml |
    kubectl apply -f - > /dev/null

setsid "$bin_dir/metrics-server" --bind-address="$RN_GATEWAY" --secure-port="$port" \
    --tls-cert-file="$pki/metrics-server-serving.crt" --tls-private-key-file="$pki/metrics-server-serving.key" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --kubelet-use-node-status-port --metric-resolution=15s \
    > "$CP_STATE_DIR/logs/metrics-server.log" 2>&1 < /dev/null &
echo $! > "$CP_STATE_DIR/pids/metrics-server"

kubectl apply -f - > /dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system}
spec:
  ports: [{name: https, port: 443, targetPort: $port}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server-host
  namespace: kube-system
  labels: {kubernetes.io/service-name: metrics-server}
addressType: IPv4
ports: [{name: https, port: $port, protocol: TCP}]
endpoints: [{addresses: ["$RN_GATEWAY"], conditions: {ready: true}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  service: {name: metrics-server, namespace: kube-system, port: 443}
  group: metrics.k8s.io
  version: v1beta1
  caBundle: $(base64 -w0 "$pki/ca.crt")
  groupPriorityMinimum: 100
  versionPriority: 100
EOF
rn_routes_local "$(kubectl get service -n kube-system metrics-server -o jsonpath='{.spec.clusterIP}')"

# The first CPU figures need two scrapes (one metric resolution apart).
deadline=$((SECONDS + 90))
until kubectl top nodes > /dev/null 2>&1; do
    if ! kill -0 "$(cat "$CP_STATE_DIR/pids/metrics-server")" 2> /dev/null; then
        log "exited: $(tail -n 20 "$CP_STATE_DIR/logs/metrics-server.log")"
        exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
        log "kubectl top nodes still fails after 90 s: $(kubectl top nodes 2>&1 | tail -n 3)"
        kubectl get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions}' >&2 || true
        exit 1
    fi
    sleep 1
done
log "serving v1beta1.metrics.k8s.io from $RN_GATEWAY:$port"
