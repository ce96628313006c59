#!/usr/bin/env bash
# Starts a local Kubernetes control plane on free loopback ports: etcd, kube-apiserver
# (RBAC on, service-account tokens), kube-controller-manager, kube-scheduler and kwok with
# one fake Node that is Ready (Pods bound to it become Running and Ready). Builds the
# binaries first if they are not cached (build.sh); its kubectl is the one used here.
#
# State (certificates, kubeconfigs, etcd data, logs, pids) lives in $CANVASCHAT_CP_DIR
# (default /tmp/canvaschat-controlplane). On success the last line printed is
#   export KUBECONFIG=<state dir>/admin.kubeconfig
# Stop everything with down.sh (same CANVASCHAT_CP_DIR).
#
# --real-node (needs root): instead of kwok's fake node, a real one named
# canvaschat-node: containerd, kubelet and kube-proxy running real containers on a bridge
# of their own (real-node.sh; tests/README.md, "Real node").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CP_SRC_DIR/real-node.sh"

real_node=false
[ "${1:-}" = "--real-node" ] && real_node=true

log() { echo "controlplane: $*" >&2; }
fail() {
    log "$*"
    log "logs are in $CP_STATE_DIR/logs; stopping what was started"
    "$CP_SRC_DIR/down.sh" --keep-state >&2 || true
    exit 1
}

bin_of() { # component -> its binary: the cached builds, containerd from Debian, scripts here
    case $1 in
    containerd) command -v containerd ;;
    hostpath-modes) echo "$CP_SRC_DIR/hostpath-modes.sh" ;;
    *) echo "$CP_BIN_DIR/$1" ;;
    esac
}

is_running() { # component -> true when its recorded pid is alive and still that program
    local pidfile=$CP_STATE_DIR/pids/$1 pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$(bin_of "$1") "
}

if $real_node; then
    CP_BIN_DIR=$("$CP_SRC_DIR/build.sh" "${CP_DEFAULT_COMPONENTS[@]}" node coredns pause | tail -n 1)
else
    CP_BIN_DIR=$("$CP_SRC_DIR/build.sh" | tail -n 1)
fi
export PATH=$CP_BIN_DIR:$PATH

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
if $real_node; then
    mkdir -p "$(rn_dir)"
    rn_preflight || fail "cannot start a real node here"
fi

# Ports: the OS names free ones, but they are released before the components bind them, so
# one can be taken in between; a component that then fails to bind is started again on new
# ports (launch).
declare -A port
pick_ports() { # NAME... : a free loopback port for each
    local name
    for name in "$@"; do
        port[$name]=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    done
}
pick_ports etcd etcd-peer kube-apiserver kube-controller-manager kube-scheduler kwok
if $real_node; then pick_ports kubelet kubelet-healthz kube-proxy kube-proxy-metrics coredns-health coredns-ready; fi

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
if $real_node; then
    cert kubelet "/O=system:nodes/CN=system:node:$RN_NODE" clientAuth
    cert kubelet-serving "/CN=$RN_NODE" serverAuth "IP:127.0.0.1,IP:$RN_GATEWAY,DNS:$RN_NODE"
    cert kube-proxy "/CN=system:kube-proxy" clientAuth
    # The aggregation layer's client (metrics-server.sh registers an APIService): the API
    # server proxies with it, and the extension server trusts only this name's headers.
    cert front-proxy-client "/CN=front-proxy-client" clientAuth
fi
# Service-account tokens are signed by this key; the controller-manager signs with it too.
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key"
ossl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

kubeconfig() { # NAME -> $CP_STATE_DIR/NAME.kubeconfig authenticating with pki/NAME.crt
    local file=$CP_STATE_DIR/$1.kubeconfig
    kubectl config --kubeconfig="$file" set-cluster canvaschat-local --server="https://127.0.0.1:${port[kube-apiserver]}" \
        --certificate-authority="$pki/ca.crt" --embed-certs=true > /dev/null
    kubectl config --kubeconfig="$file" set-credentials "$1" \
        --client-certificate="$pki/$1.crt" --client-key="$pki/$1.key" --embed-certs=true > /dev/null
    kubectl config --kubeconfig="$file" set-context canvaschat-local --cluster=canvaschat-local \
        --user="$1" > /dev/null
    kubectl config --kubeconfig="$file" use-context canvaschat-local > /dev/null
}
kubeconfigs() {
    local name
    for name in admin kube-controller-manager kube-scheduler kwok; do kubeconfig "$name"; done
    if $real_node; then kubeconfig kubelet && kubeconfig kube-proxy; fi
}
kubeconfigs
export KUBECONFIG=$CP_STATE_DIR/admin.kubeconfig

start() { # COMPONENT ARGS... : run detached, log to logs/COMPONENT.log, pid to pids/COMPONENT
    setsid "$(bin_of "$1")" "${@:2}" > "$CP_STATE_DIR/logs/$1.log" 2>&1 < /dev/null &
    local pid=$! tries=0
    echo "$pid" > "$CP_STATE_DIR/pids/$1"
    # Until the forked shell has exec'd the program, its cmdline is this script's, and
    # is_running would call a component that is starting "exited" (with an empty log).
    while ! is_running "$1" && [ -e "/proc/$pid/cmdline" ] && [ $tries -lt 100 ]; do
        tries=$((tries + 1))
        sleep 0.05
    done
}

# how_it_ended COMPONENT: sets `ended` to its exit status (or signal) when it has ended, else
# to what its pid runs now, so a component that exits without a line in its log says how.
# Not in a $(...) subshell: only this shell can wait for the process it started.
how_it_ended() {
    local pid status=0 cmdline
    pid=$(cat "$CP_STATE_DIR/pids/$1")
    # Empty for a zombie, unreadable once reaped; then `wait` returns at once.
    cmdline=$({ tr '\0' ' ' < "/proc/$pid/cmdline"; } 2> /dev/null || true)
    if [ -n "$cmdline" ]; then
        ended="pid $pid still runs: $cmdline"
        return
    fi
    wait "$pid" 2> /dev/null || status=$?
    if [ "$status" -gt 128 ]; then ended="pid $pid killed by signal $((status - 128))"; else ended="pid $pid exit status $status"; fi
}

# wait_for COMPONENT SECONDS COMMAND... : retry COMMAND every 0.2 s until it succeeds,
# giving up early when COMPONENT's process has exited. Returns 2 when it exited because a
# port was taken.
wait_for() {
    local component=$1 deadline=$((SECONDS + $2))
    shift 2
    until "$@" > /dev/null 2>&1; do
        if ! is_running "$component"; then
            grep -q 'address already in use' "$CP_STATE_DIR/logs/$component.log" && return 2
            how_it_ended "$component"
            fail "$component exited ($ended): $(tail -n 20 "$CP_STATE_DIR/logs/$component.log")"
        fi
        [ $SECONDS -lt $deadline ] || fail "timed out waiting for $component: $*"
        sleep 0.2
    done
}

# --- processes ----------------------------------------------------------------------
# Per component: its command line and the check that it serves.
args_etcd() {
    local client=http://127.0.0.1:${port[etcd]} peer=http://127.0.0.1:${port[etcd-peer]}
    args=(--name=canvaschat --data-dir="$CP_STATE_DIR/etcd"
        --listen-client-urls="$client" --advertise-client-urls="$client"
        --listen-peer-urls="$peer" --initial-advertise-peer-urls="$peer"
        --initial-cluster="canvaschat=$peer"
        --unsafe-no-fsync=true --log-level=warn) # test only: state is thrown away anyway
}
ready_etcd() { wait_for etcd 30 curl -fs --max-time 2 "http://127.0.0.1:${port[etcd]}/health"; }

args_kube_apiserver() {
    args=(--etcd-servers="http://127.0.0.1:${port[etcd]}"
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="${port[kube-apiserver]}"
        --endpoint-reconciler-type=none
        --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key"
        --client-ca-file="$pki/ca.crt"
        --authorization-mode=RBAC
        --service-cluster-ip-range=10.0.0.0/24
        --allow-privileged=true
        --service-account-issuer=https://kubernetes.default.svc.cluster.local
        --service-account-key-file="$pki/sa.pub"
        --service-account-signing-key-file="$pki/sa.key"
        --profiling=false)
    # A real node's kubelet checks clients against this CA (logs, exec, port-forward).
    if $real_node; then
        args+=(--kubelet-client-certificate="$pki/admin.crt" --kubelet-client-key="$pki/admin.key"
            --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP)
        args+=(--requestheader-client-ca-file="$pki/ca.crt" --requestheader-allowed-names=front-proxy-client
            --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group
            --requestheader-extra-headers-prefix=X-Remote-Extra-
            --proxy-client-cert-file="$pki/front-proxy-client.crt" --proxy-client-key-file="$pki/front-proxy-client.key")
    fi
}
ready_kube_apiserver() {
    wait_for kube-apiserver 90 curl -fs --max-time 2 --cacert "$pki/ca.crt" \
        --cert "$pki/admin.crt" --key "$pki/admin.key" "https://127.0.0.1:${port[kube-apiserver]}/readyz"
}

# Test-only client rate limits for the controller-manager and the scheduler (defaults 50/100):
# with 100 CanvasChats created at once their logs showed a second of client-side throttling
# (PVC binding, scheduler events).
args_kube_controller_manager() {
    local kc=$CP_STATE_DIR/kube-controller-manager.kubeconfig
    args=(--kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc"
        --bind-address=127.0.0.1 --secure-port="${port[kube-controller-manager]}"
        --leader-elect=false
        --use-service-account-credentials=true
        --service-account-private-key-file="$pki/sa.key"
        --root-ca-file="$pki/ca.crt"
        --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key"
        --enable-hostpath-provisioner=true
        --kube-api-qps=200 --kube-api-burst=400
        --profiling=false)
    # 1.37's PVC protection controller writes the Unused condition on a new claim and races
    # the PV binder's first update (409); the binder retries only at its 15 s resync, so
    # every Redis pod waited up to 15 s to schedule. Fixed upstream by
    # kubernetes/kubernetes#140833 (after 1.37.2); until then the beta gate is off here.
    args+=(--feature-gates=PersistentVolumeClaimUnusedSinceTime=false)
}
ready_kube_controller_manager() {
    wait_for kube-controller-manager 60 curl -fsk --max-time 2 "https://127.0.0.1:${port[kube-controller-manager]}/healthz"
}

args_kube_scheduler() {
    local kc=$CP_STATE_DIR/kube-scheduler.kubeconfig
    args=(--kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc"
        --bind-address=127.0.0.1 --secure-port="${port[kube-scheduler]}"
        --leader-elect=false --profiling=false
        --kube-api-qps=200 --kube-api-burst=400)
}
ready_kube_scheduler() {
    wait_for kube-scheduler 60 curl -fsk --max-time 2 "https://127.0.0.1:${port[kube-scheduler]}/healthz"
}

args_kwok() {
    args=(--kubeconfig="$CP_STATE_DIR/kwok.kubeconfig"
        --config="$(dirname "$CP_BIN_DIR")/kwok-stages.yaml"
        --manage-all-nodes=false
        --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake
        --node-ip=127.0.0.1 --cidr=10.244.0.0/16
        --server-address="127.0.0.1:${port[kwok]}")
}
ready_kwok() { wait_for kwok 60 curl -fs --max-time 2 "http://127.0.0.1:${port[kwok]}/healthz"; }

args_containerd() { args=(--config "$(rn_dir)/containerd/config.toml"); }
ready_containerd() { wait_for containerd 30 rn_ctr version; }

args_kubelet() {
    args=(--config="$(rn_dir)/kubelet/config.yaml" --kubeconfig="$CP_STATE_DIR/kubelet.kubeconfig"
        --hostname-override="$RN_NODE" --node-ip="$RN_GATEWAY" --root-dir="$(rn_dir)/kubelet/root"
        --node-labels="$RN_NODE_LABELS")
    rn_kubelet_config "${port[kubelet]}" "${port[kubelet-healthz]}"
}
ready_kubelet() { wait_for kubelet 60 curl -fs --max-time 2 "http://127.0.0.1:${port[kubelet-healthz]}/healthz"; }

args_kube_proxy() {
    args=(--config="$(rn_dir)/kube-proxy.yaml")
    rn_kube_proxy_config "${port[kube-proxy]}" "${port[kube-proxy-metrics]}"
}
ready_kube_proxy() { wait_for kube-proxy 60 curl -fs --max-time 2 "http://127.0.0.1:${port[kube-proxy]}/healthz"; }

args_coredns() {
    args=(-conf "$(rn_dir)/Corefile")
    rn_corefile "${port[coredns-health]}" "${port[coredns-ready]}"
}
ready_coredns() { wait_for coredns 60 curl -fs --max-time 2 "http://127.0.0.1:${port[coredns-ready]}/ready"; }

args_hostpath_modes() { args=("$CP_BIN_DIR/kubectl" "$KUBECONFIG"); }
ready_hostpath_modes() { wait_for hostpath-modes 10 is_running hostpath-modes; }

launch() { # COMPONENT: start it on its current ports
    local args=()
    "args_${1//-/_}"
    start "$1" "${args[@]}"
}

# await COMPONENT: wait until it serves; when it could not bind a port, start it again on
# new ports (at most three times).
await() {
    local attempt status
    for attempt in 1 2 3; do
        status=0
        "ready_${1//-/_}" || status=$?
        [ $status = 0 ] && return 0
        log "$1: a port was taken (attempt $attempt); starting it again on new ports"
        if [ "$1" = etcd ]; then pick_ports etcd etcd-peer; else pick_ports "$1"; fi
        [ "$1" = kube-apiserver ] && kubeconfigs
        launch "$1"
    done
    fail "$1 could not bind free ports three times"
}

launch etcd
await etcd
launch kube-apiserver
await kube-apiserver
# The API server's clients start together.
clients=(kube-controller-manager kube-scheduler)
$real_node || clients+=(kwok)
for component in "${clients[@]}"; do launch "$component"; done
for component in "${clients[@]}"; do await "$component"; done

# --- cluster objects ------------------------------------------------------------------
# A default StorageClass served by the controller-manager's test-only hostPath provisioner
# so StatefulSet volume claims bind. Named "standard" like kind's default class.
kubectl apply -f - > /dev/null <<'EOF'
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

if $real_node; then
    # The node's credentials get the node role (the API server runs RBAC alone, without
    # the Node authorizer); kube-proxy's user is bound by the default policy.
    kubectl create clusterrolebinding canvaschat-node --clusterrole=system:node \
        --user="system:node:$RN_NODE" > /dev/null
    ln -s "$CP_BIN_DIR/kube-proxy" "$(rn_dir)/kube-proxy"
    rn_network
    rn_cgroups
    rn_containerd_config "$(cat "$(dirname "$CP_BIN_DIR")/images/pause.ref")"
    launch containerd
    await containerd
    rn_ctr images import "$(dirname "$CP_BIN_DIR")/images/pause.tar" > /dev/null
    launch kubelet
    await kubelet
    launch kube-proxy
    await kube-proxy
    launch coredns
    await coredns
    launch hostpath-modes
    await hostpath-modes
    wait_for kubelet 90 kubectl wait --for=condition=Ready "node/$RN_NODE" --timeout=2s
    node_line="real node $RN_NODE (pods $RN_POD_CIDR on $RN_BRIDGE, Services $RN_SERVICE_CIDR)"
else
    # One fake node managed by kwok (selected by the annotation). It takes 400 pods, not a
    # real node's 110, so 100 CanvasChats (3 pods each) can all be Ready (test_convergence.py).
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
  capacity: {cpu: "32", memory: 256Gi, pods: "400", ephemeral-storage: 100Gi}
  allocatable: {cpu: "32", memory: 256Gi, pods: "400", ephemeral-storage: 100Gi}
EOF
    wait_for kwok 60 kubectl wait --for=condition=Ready node/kwok-node-0 --timeout=2s
    node_line="fake node kwok-node-0"
fi
# Pods are refused until the namespace's default ServiceAccount exists.
wait_for kube-controller-manager 60 kubectl get serviceaccount default -n default

cat > "$CP_STATE_DIR/ports" <<EOF
etcd=${port[etcd]}
kube-apiserver=${port[kube-apiserver]}
kube-controller-manager=${port[kube-controller-manager]}
kube-scheduler=${port[kube-scheduler]}
kwok=${port[kwok]}
EOF
log "ready at https://127.0.0.1:${port[kube-apiserver]}, $node_line ($(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])'))"
echo "export KUBECONFIG=$KUBECONFIG"
