#!/usr/bin/env bash
# Starts a local Kubernetes control plane on free loopback ports: etcd, kube-apiserver
# (RBAC on, service-account tokens), kube-controller-manager, kube-scheduler and kwok with
# one fake Node that is Ready (Pods bound to it become Running and Ready). Builds the
# binaries first if they are not cached (build.sh).
#
# State (certificates, kubeconfigs, etcd data, logs, pids) lives in $CANVASCHAT_CP_DIR
# (default /tmp/canvaschat-controlplane). On success the last line printed is
#   export KUBECONFIG=<state dir>/admin.kubeconfig
# Stop everything with down.sh (same CANVASCHAT_CP_DIR).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

log() { echo "controlplane: $*" >&2; }
fail() {
    log "$*"
    log "logs are in $CP_STATE_DIR/logs; stopping what was started"
    "$CP_SRC_DIR/down.sh" --keep-state >&2 || true
    exit 1
}

is_running() { # component -> true when its recorded pid is alive and still that program
    local pidfile=$CP_STATE_DIR/pids/$1 pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$CP_BIN_DIR/$1 "
}

"$CP_SRC_DIR/build.sh" > /dev/null

if is_running kube-apiserver; then
    log "already running in $CP_STATE_DIR"
    echo "export KUBECONFIG=$CP_STATE_DIR/admin.kubeconfig"
    exit 0
fi

# Leftovers of a run that died half-way: stop whatever of it still runs, then start clean.
[ -d "$CP_STATE_DIR" ] && "$CP_SRC_DIR/down.sh" > /dev/null 2>&1
rm -rf "$CP_STATE_DIR"
mkdir -p "$CP_STATE_DIR"/{pki,logs,pids,etcd}
pki=$CP_STATE_DIR/pki

# Ask the OS for free ports, holding all of them until every one is chosen so none repeats.
read -r etcd_port etcd_peer_port api_port kcm_port sched_port kwok_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
api_url=https://127.0.0.1:$api_port

# --- certificates -------------------------------------------------------------------
ossl() { openssl "$@" 2>> "$CP_STATE_DIR/logs/openssl.log"; }
ossl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 3650 \
    -subj "/CN=canvaschat-controlplane-ca" -keyout "$pki/ca.key" -out "$pki/ca.crt"

# cert NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
cert() {
    local ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$3"
    [ -n "${4:-}" ] && ext+=$'\n'"subjectAltName=$4"
    ossl req -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -subj "$2" \
        -keyout "$pki/$1.key" -out "$pki/$1.csr"
    ossl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
        -days 3650 -extfile <(echo "$ext") -out "$pki/$1.crt"
}
cert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin "/O=system:masters/CN=canvaschat-admin" clientAuth
cert kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
cert kube-scheduler "/CN=system:kube-scheduler" clientAuth
cert kwok "/O=system:masters/CN=kwok" clientAuth
# Service-account tokens are signed by this key; the controller-manager signs with it too.
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key"
ossl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

kubeconfig() { # NAME -> $CP_STATE_DIR/NAME.kubeconfig authenticating with pki/NAME.crt
    local file=$CP_STATE_DIR/$1.kubeconfig
    kubectl config --kubeconfig="$file" set-cluster canvaschat-local --server="$api_url" \
        --certificate-authority="$pki/ca.crt" --embed-certs=true > /dev/null
    kubectl config --kubeconfig="$file" set-credentials "$1" \
        --client-certificate="$pki/$1.crt" --client-key="$pki/$1.key" --embed-certs=true > /dev/null
    kubectl config --kubeconfig="$file" set-context canvaschat-local --cluster=canvaschat-local \
        --user="$1" > /dev/null
    kubectl config --kubeconfig="$file" use-context canvaschat-local > /dev/null
}
for name in admin kube-controller-manager kube-scheduler kwok; do kubeconfig "$name"; done
export KUBECONFIG=$CP_STATE_DIR/admin.kubeconfig

start() { # COMPONENT ARGS... : run detached, log to logs/COMPONENT.log, pid to pids/COMPONENT
    setsid "$CP_BIN_DIR/$1" "${@:2}" > "$CP_STATE_DIR/logs/$1.log" 2>&1 < /dev/null &
    echo $! > "$CP_STATE_DIR/pids/$1"
}

# wait_for COMPONENT SECONDS COMMAND... : retry COMMAND every 0.2 s until it succeeds,
# giving up early when COMPONENT's process has exited.
wait_for() {
    local component=$1 deadline=$((SECONDS + $2))
    shift 2
    until "$@" > /dev/null 2>&1; do
        is_running "$component" ||
            fail "$component exited: $(tail -n 20 "$CP_STATE_DIR/logs/$component.log")"
        [ $SECONDS -lt $deadline ] || fail "timed out waiting for $component: $*"
        sleep 0.2
    done
}

# --- processes ----------------------------------------------------------------------
start etcd --name=canvaschat --data-dir="$CP_STATE_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="canvaschat=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync=true --log-level=warn
wait_for etcd 30 curl -fs --max-time 2 "http://127.0.0.1:$etcd_port/health"

start kube-apiserver \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --endpoint-reconciler-type=none \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --authorization-mode=RBAC \
    --service-cluster-ip-range=10.0.0.0/24 \
    --allow-privileged=true \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --profiling=false
wait_for kube-apiserver 90 curl -fs --max-time 2 --cacert "$pki/ca.crt" \
    --cert "$pki/admin.crt" --key "$pki/admin.key" "$api_url/readyz"

start kube-controller-manager \
    --kubeconfig="$CP_STATE_DIR/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$CP_STATE_DIR/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$CP_STATE_DIR/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --enable-hostpath-provisioner=true \
    --profiling=false
start kube-scheduler \
    --kubeconfig="$CP_STATE_DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$CP_STATE_DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$CP_STATE_DIR/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$sched_port" \
    --leader-elect=false --profiling=false
start kwok \
    --kubeconfig="$CP_STATE_DIR/kwok.kubeconfig" \
    --config="$CP_CACHE_DIR/kwok-stages.yaml" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 --cidr=10.244.0.0/16 \
    --server-address="127.0.0.1:$kwok_port"
wait_for kube-controller-manager 60 curl -fsk --max-time 2 "https://127.0.0.1:$kcm_port/healthz"
wait_for kube-scheduler 60 curl -fsk --max-time 2 "https://127.0.0.1:$sched_port/healthz"
wait_for kwok 60 curl -fs --max-time 2 "http://127.0.0.1:$kwok_port/healthz"

# --- cluster objects ------------------------------------------------------------------
# One fake node managed by kwok (selected by the annotation), and a default StorageClass
# served by the controller-manager's test-only hostPath provisioner so StatefulSet volume
# claims bind (kwok never mounts them). Named "standard" like kind's default class.
kubectl apply -f - > /dev/null <<'EOF'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  capacity: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 100Gi}
  allocatable: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 100Gi}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
wait_for kwok 60 kubectl wait --for=condition=Ready node/kwok-node-0 --timeout=2s
# Pods are refused until the namespace's default ServiceAccount exists.
wait_for kube-controller-manager 60 kubectl get serviceaccount default -n default

cat > "$CP_STATE_DIR/ports" <<EOF
etcd=$etcd_port
kube-apiserver=$api_port
kube-controller-manager=$kcm_port
kube-scheduler=$sched_port
kwok=$kwok_port
EOF
log "ready at $api_url ($(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])'))"
echo "export KUBECONFIG=$KUBECONFIG"
