# shellcheck shell=bash disable=SC2034 # sourced by up.sh and down.sh
# A real node beside the local control plane (up.sh --real-node): containerd and runc from
# Debian with their configuration, root, state and socket in $CP_STATE_DIR/node, the
# bridge/host-local/loopback/portmap CNI plugins on a bridge of its own, the pause image
# built here as the sandbox image, kubelet and kube-proxy (iptables mode) of the control
# plane's release. Needs root. Everything it creates on the host (the bridge and its
# routes, iptables chains, network namespaces, mounts, cgroups, processes) is recorded or
# recognisable and removed by down.sh.

RN_BRIDGE=ccbr0
RN_POD_CIDR=10.244.0.0/24
RN_GATEWAY=10.244.0.1
# The API server's --service-cluster-ip-range (up.sh), routed onto the bridge too.
RN_SERVICE_CIDR=10.0.0.0/24
RN_NODE=canvaschat-node
# The label examples/production.yaml's nodeSelector names, set when the node registers (as
# the kind workflow's node carries it): the suite itself never relabels nodes.
RN_NODE_LABELS=workload=realtime
RN_CGROUP_ROOT=/canvaschat
# Debian's containernetworking-plugins.
RN_CNI_BIN=/usr/lib/cni
RN_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack debootstrap busybox-static)

rn_dir() { echo "$CP_STATE_DIR/node"; }

# rn_preflight: refuses to start when something is missing, when another real node (or
# anything else) owns the bridge or kube-proxy's chains, or when the pod or Service range
# overlaps a network of this machine.
rn_preflight() {
    local cmd
    [ "$(id -u)" = 0 ] || { echo "controlplane: --real-node needs root" >&2; return 1; }
    for cmd in containerd containerd-shim-runc-v2 runc ctr iptables conntrack ip gcc; do
        command -v "$cmd" > /dev/null || {
            echo "controlplane: $cmd is missing (scripts/install-deps.sh --real-node installs ${RN_PACKAGES[*]})" >&2
            return 1
        }
    done
    for cmd in bridge host-local loopback portmap; do
        [ -x "$RN_CNI_BIN/$cmd" ] || { echo "controlplane: CNI plugin $RN_CNI_BIN/$cmd is missing" >&2; return 1; }
    done
    if ip link show "$RN_BRIDGE" > /dev/null 2>&1; then
        echo "controlplane: the bridge $RN_BRIDGE exists: another real node runs on this machine (stop it with its down.sh)" >&2
        return 1
    fi
    if iptables-save 2> /dev/null | grep -qE '^:(KUBE|CNI)-'; then
        echo "controlplane: iptables has KUBE-/CNI- chains already: another Kubernetes node or leftovers own them" >&2
        return 1
    fi
    ip -4 -j addr > "$(rn_dir)/host-addrs.json"
    ip -4 -j route > "$(rn_dir)/host-routes.json"
    python3 - "$(rn_dir)" "$RN_POD_CIDR" "$RN_SERVICE_CIDR" <<'EOF'
import ipaddress, json, sys
d, *ranges = sys.argv[1:]
ours = [ipaddress.ip_network(r) for r in ranges]
nets = []
for link in json.load(open(f"{d}/host-addrs.json")):
    for a in link.get("addr_info", []):
        nets.append((ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network, link["ifname"]))
for r in json.load(open(f"{d}/host-routes.json")):
    if r["dst"] != "default":
        nets.append((ipaddress.ip_network(r["dst"], strict=False), r.get("dev", "?")))
bad = [f"{o} overlaps {n} ({dev})" for o in ours for n, dev in nets if o.overlaps(n) and not n.is_loopback]
if bad:
    sys.exit("controlplane: " + "; ".join(bad))
EOF
}

# rn_routes_local ADDRESS... : every address is routed to the node's bridge or loopback, so
# no test traffic can leave this machine.
rn_routes_local() {
    local addr route
    for addr in "$@"; do
        route=$(ip -4 route get "$addr" 2> /dev/null) || { echo "controlplane: no route to $addr" >&2; return 1; }
        if ! grep -qE "dev ($RN_BRIDGE|lo)( |$)" <<< "$route"; then
            echo "controlplane: $addr is not routed to $RN_BRIDGE or lo: $route" >&2
            return 1
        fi
    done
}

# rn_network: the bridge with the pod range's gateway address and a route for the Service
# range onto it (a ClusterIP that kube-proxy has not translated yet stays on this bridge
# instead of following the default route). IPv4 forwarding is needed for pod-to-Service
# traffic; its previous value is restored by down.sh.
rn_network() {
    local d
    d=$(rn_dir)
    ip link add "$RN_BRIDGE" type bridge
    touch "$d/bridge"
    ip addr add "$RN_GATEWAY/${RN_POD_CIDR#*/}" dev "$RN_BRIDGE"
    ip link set "$RN_BRIDGE" up
    ip route add "$RN_SERVICE_CIDR" dev "$RN_BRIDGE" src "$RN_GATEWAY"
    cat /proc/sys/net/ipv4/ip_forward > "$d/ip_forward.before"
    echo 1 > /proc/sys/net/ipv4/ip_forward
    ip netns list 2> /dev/null | awk '{print $1}' > "$d/netns.before"
    mkdir -p "$d/cni/net.d" "$d/cni/ipam"
    # Pods get routes to the pod and Service ranges only, no default route: nothing they
    # send can leave this machine. No IP masquerade for the same reason.
    cat > "$d/cni/net.d/10-canvaschat.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "canvaschat",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$RN_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$d/cni/ipam",
        "ranges": [[{"subnet": "$RN_POD_CIDR", "gateway": "$RN_GATEWAY"}]],
        "routes": [{"dst": "$RN_POD_CIDR"}, {"dst": "$RN_SERVICE_CIDR", "gw": "$RN_GATEWAY"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# rn_cgroups: kubelet wants its cgroup root to exist in every v1 hierarchy; a new cpuset
# cgroup starts with no CPUs or memory nodes, so it gets its parent's.
rn_cgroups() {
    local h
    for h in /sys/fs/cgroup/*/; do
        if [ -f "$h/cgroup.procs" ] && [ "$(stat -fc %T "$h")" = cgroupfs ]; then
            mkdir -p "$h${RN_CGROUP_ROOT#/}"
        fi
    done
    if [ -f /sys/fs/cgroup/cpuset/cpuset.cpus ]; then
        cat /sys/fs/cgroup/cpuset/cpuset.cpus > "/sys/fs/cgroup/cpuset$RN_CGROUP_ROOT/cpuset.cpus"
        cat /sys/fs/cgroup/cpuset/cpuset.mems > "/sys/fs/cgroup/cpuset$RN_CGROUP_ROOT/cpuset.mems"
    fi
}

# rn_containerd_config PAUSE_REF
rn_containerd_config() {
    local d
    d=$(rn_dir)
    mkdir -p "$d/containerd/root" "$d/containerd/state" "$d/containerd/opt"
    cat > "$d/containerd/config.toml" <<EOF
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$d/containerd/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$1"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Root here lacks CAP_SYS_RESOURCE, so no process may lower its OOM score below
  # containerd's (runc would fail to start the pause container at -998).
  restrict_oom_score_adj = true
  # Pods' network namespaces in the state directory, not in the host's /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$d/containerd/runc"
  # Images are imported, never pulled: every registry is a closed loopback port, so a pull
  # fails at once instead of reaching out.
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."*"]
    endpoint = ["http://127.0.0.1:9"]
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$RN_CNI_BIN"
    conf_dir = "$d/cni/net.d"
    max_conf_num = 1
EOF
}

rn_ctr() { ctr --address "$(rn_dir)/containerd/containerd.sock" --namespace k8s.io "$@"; }

# rn_kubelet_config PORT HEALTHZ_PORT
rn_kubelet_config() {
    local d
    d=$(rn_dir)
    mkdir -p "$d/kubelet" "$d/pod-logs"
    cat > "$d/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# On the bridge's address (the node's InternalIP), where the API server reaches it for
# logs and exec.
address: $RN_GATEWAY
port: $1
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $2
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $CP_STATE_DIR/pki/ca.crt}
authorization: {mode: AlwaysAllow}
tlsCertFile: $CP_STATE_DIR/pki/kubelet-serving.crt
tlsPrivateKeyFile: $CP_STATE_DIR/pki/kubelet-serving.key
containerRuntimeEndpoint: unix://$d/containerd/containerd.sock
# This machine has cgroup v1 (cgroupfs, no systemd), which kubelets since 1.35 refuse
# unless told otherwise. Everything lives under one cgroup that down.sh removes.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $RN_CGROUP_ROOT
failSwapOn: false
# The hard limit of open files here is below kubelet's default of 1,000,000.
maxOpenFiles: 20000
# No host resolver in pods (its nameserver is off this machine); cluster DNS is CoreDNS on
# the bridge's address.
resolvConf: ""
clusterDNS: [$RN_GATEWAY]
clusterDomain: cluster.local
podLogsDir: $d/pod-logs
# Images are imported, never pulled: garbage collection must not remove them, and the
# shared disk must not evict test pods.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
enableServer: true
registerNode: true
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusReportFrequency: 10s
EOF
}

# rn_corefile HEALTH_PORT READY_PORT: CoreDNS on the host at the bridge's address, serving
# cluster.local from the API server and nothing else (no forwarding: names outside the
# cluster get REFUSED rather than a query leaving this machine).
rn_corefile() {
    cat > "$(rn_dir)/Corefile" <<EOF
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $RN_GATEWAY
    errors
    health 127.0.0.1:$1
    ready 127.0.0.1:$2
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $CP_STATE_DIR/admin.kubeconfig
        pods insecure
        ttl 5
    }
    cache 5
}
EOF
}

# rn_kube_proxy_config HEALTHZ_PORT METRICS_PORT
rn_kube_proxy_config() {
    cat > "$(rn_dir)/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $CP_STATE_DIR/kube-proxy.kubeconfig
hostnameOverride: $RN_NODE
clusterCIDR: $RN_POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$1
metricsBindAddress: 127.0.0.1:$2
# Node ports only on the bridge, not on this machine's own interfaces.
nodePortAddresses: ["$RN_GATEWAY/32"]
iptables:
  # Node ports on 127.0.0.1 would need route_localnet, a host-wide setting.
  localhostNodePorts: false
  masqueradeAll: false
  syncPeriod: 10s
  minSyncPeriod: 1s
# Leave the host's conntrack table size alone.
conntrack:
  maxPerCore: 0
  min: 0
EOF
}

# rn_down: stops the node and removes what it created on the host; the control plane must
# still run (pods are deleted through it so kubelet tears their sandboxes down).
rn_down() {
    local d ns chain chains table rule shim pid pids mounts m task volumes
    d=$(rn_dir)
    [ -d "$d" ] || return 0
    local kubectl
    kubectl=$("$CP_SRC_DIR/build.sh" kubectl | tail -n 1)/kubectl
    # No new pods, then delete every pod so kubelet stops its containers and releases its
    # network (CNI DEL) the normal way.
    # hostpath-modes.sh runs in its own process group (setsid), with its kubectl watch.
    if pid=$(pid_of hostpath-modes); then kill -TERM -- "-$pid" 2> /dev/null || true; fi
    stop kube-controller-manager kube-scheduler hostpath-modes
    # Volume directories of the hostPath provisioner, removed once nothing uses them.
    volumes=$("$kubectl" --kubeconfig "$CP_STATE_DIR/admin.kubeconfig" get pv \
        -o jsonpath='{range .items[*]}{.spec.hostPath.path}{"\n"}{end}' 2> /dev/null || true)
    if [ -f "$CP_STATE_DIR/admin.kubeconfig" ] && pid_of kubelet > /dev/null; then
        "$kubectl" --kubeconfig "$CP_STATE_DIR/admin.kubeconfig" delete pods --all --all-namespaces \
            --grace-period=5 --wait=false > /dev/null 2>&1 || true
        for _ in $(seq 150); do
            [ -z "$("$kubectl" --kubeconfig "$CP_STATE_DIR/admin.kubeconfig" get pods -A -o name 2> /dev/null)" ] && break
            sleep 0.2
        done
    fi
    stop kube-proxy kubelet coredns
    if [ -x "$d/kube-proxy" ]; then
        "$d/kube-proxy" --cleanup > "$CP_STATE_DIR/logs/kube-proxy-cleanup.log" 2>&1 || true
    fi
    # Containers left behind (a pod kubelet could not stop in time): kill their tasks, then
    # containerd, then its shims, which outlive containerd by design.
    if pid_of containerd > /dev/null; then
        for task in $(rn_ctr tasks ls -q 2> /dev/null); do rn_ctr tasks kill -s SIGKILL "$task" > /dev/null 2>&1 || true; done
    fi
    stop containerd
    pids=$(pgrep -f -- "-address $d/containerd/containerd.sock" || true)
    for shim in $pids; do kill -KILL "$shim" 2> /dev/null || true; done
    # Network namespaces that CNI made for pods of this node (not there before it started).
    if [ -f "$d/netns.before" ]; then
        for ns in $(ip netns list 2> /dev/null | awk '{print $1}'); do
            if [[ $ns == cni-* ]] && ! grep -qx "$ns" "$d/netns.before"; then ip netns delete "$ns" 2> /dev/null || true; fi
        done
    fi
    # Chains the kubelet and the portmap plugin made (kube-proxy removed its own above);
    # preflight refused to start when any existed before.
    for table in filter nat mangle; do
        # Jumps to them from the built-in chains first, then their rules, then the chains.
        while read -r rule; do
            if [ -n "$rule" ]; then eval "iptables -t $table -D ${rule#-A }" 2> /dev/null || true; fi
        done <<< "$(iptables-save -t "$table" 2> /dev/null | grep -E '^-A [A-Z]+ .*-j (KUBE|CNI)-' || true)"
        chains=$(iptables-save -t "$table" 2> /dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p')
        for chain in $chains; do iptables -t "$table" -F "$chain" 2> /dev/null || true; done
        for chain in $chains; do iptables -t "$table" -X "$chain" 2> /dev/null || true; done
    done
    if [ -f "$d/bridge" ]; then ip link delete "$RN_BRIDGE" 2> /dev/null || true; fi
    if [ -f "$d/ip_forward.before" ]; then cat "$d/ip_forward.before" > /proc/sys/net/ipv4/ip_forward; fi
    # Mounts under the state directory (snapshots, pod volumes, shm), deepest first.
    mounts=$(awk -v p="$CP_STATE_DIR/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r)
    for m in $mounts; do umount "$m" 2> /dev/null || umount -l "$m" 2> /dev/null || true; done
    for m in $volumes; do
        case $m in /tmp/hostpath_pv/*) rm -rf "$m" ;; esac
    done
    # The node's cgroups, deepest first (empty once its processes are gone).
    find /sys/fs/cgroup/*"$RN_CGROUP_ROOT" -depth -type d -exec rmdir {} + 2> /dev/null || true
}

# rn_busybox_image OUT_DIR -> writes OUT_DIR/busybox.tar, an image of Debian's static
# busybox (sh, httpd, nc, nslookup as links; its wget crashes in static glibc's resolver) named canvaschat.local/busybox:<its version>, and
# prints that name. A small real image for checks of the node.
rn_busybox_image() {
    local root=$1/busybox-root version applet
    version=$(busybox 2>&1 | sed -n 's/^BusyBox v\([^ ]*\).*/\1/p' | head -n 1)
    rm -rf "$root"
    mkdir -p "$root/bin" "$root/tmp" "$root/www"
    cp "$(command -v busybox)" "$root/bin/busybox"
    for applet in sh httpd nc nslookup cat ls sleep; do ln -s busybox "$root/bin/$applet"; done
    chmod 1777 "$root/tmp"
    python3 "$CP_SRC_DIR/oci_image.py" --name "canvaschat.local/busybox:$version" --out "$1/busybox.tar" \
        --entrypoint '["/bin/sh"]' --env PATH=/bin "$root" > /dev/null
    rm -rf "$root"
    echo "canvaschat.local/busybox:$version"
}

# rn_web_app NAMESPACE -> (re)creates NAMESPACE with a Deployment "web" of two busybox httpd
# pods (uid 65534, each serving its own name on :8080 with a readiness probe) and its
# Service "web" (:80), waits until both pods are Ready and prints the image's name. The
# test workload of real-node-check.sh and addons-check.sh.
rn_web_app() {
    local image
    image=$(rn_busybox_image "$(rn_dir)")
    rn_ctr images import "$(rn_dir)/busybox.tar" > /dev/null
    kubectl delete namespace "$1" --ignore-not-found --wait=true > /dev/null
    kubectl create namespace "$1" > /dev/null
    kubectl -n "$1" apply -f - > /dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      automountServiceAccountToken: false
      containers:
        - name: httpd
          image: $image
          imagePullPolicy: Never
          # The pod's own name as the page, so answers show which pod served them.
          command: ["/bin/sh", "-c", "echo \$POD_NAME > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"]
          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
          ports: [{containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /index.html, port: 8080}
            periodSeconds: 1
          securityContext: {runAsUser: 65534, runAsNonRoot: true, allowPrivilegeEscalation: false}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOF
    kubectl -n "$1" rollout status deployment/web --timeout=120s > /dev/null || return 1
    echo "$image"
}

# rn_clean: true when nothing of the node is left on the host (down.sh checks it before
# removing the state directory).
rn_clean() {
    local left=()
    ip link show "$RN_BRIDGE" > /dev/null 2>&1 && left+=("bridge $RN_BRIDGE")
    iptables-save 2> /dev/null | grep -qE '^:(KUBE|CNI)-' && left+=("iptables chains")
    awk -v p="$CP_STATE_DIR/" 'index($2, p) == 1 {found = 1} END {exit !found}' /proc/self/mounts && left+=("mounts under $CP_STATE_DIR")
    compgen -G "/sys/fs/cgroup/*$RN_CGROUP_ROOT" > /dev/null && left+=("cgroups $RN_CGROUP_ROOT")
    pgrep -f -- "$(rn_dir)/containerd/" > /dev/null && left+=("containerd or its shims")
    [ ${#left[@]} = 0 ] && return 0
    echo "controlplane: left behind: ${left[*]}" >&2
    return 1
}
