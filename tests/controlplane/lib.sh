# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source it
# Shared settings for build.sh, up.sh and down.sh (sourced, not executed).

CP_SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# module_version DIR MODULE -> the version DIR/go.mod requires MODULE at.
module_version() {
    awk -v m="$2" '!/=>/ && !/^\/\// { for (i = 1; i < NF; i++) if ($i == m) { print $(i + 1); exit } }' "$CP_SRC_DIR/$1/go.mod"
}

# The Kubernetes release is the one the wrapper module requires; everything else is pinned
# by its own wrapper module next to this file.
KUBE_VERSION=$(module_version kubernetes k8s.io/kubernetes)
if [ -z "$KUBE_VERSION" ]; then
    echo "controlplane: cannot read the k8s.io/kubernetes version from $CP_SRC_DIR/kubernetes/go.mod" >&2
    exit 1
fi

CP_CACHE_ROOT=${CANVASCHAT_CP_CACHE:-$HOME/.cache/canvaschat/controlplane}
CP_STATE_DIR=${CANVASCHAT_CP_DIR:-/tmp/canvaschat-controlplane}

# What the suites run: the control plane, a kubectl of the same release and helm.
CP_DEFAULT_COMPONENTS=(kubernetes kubectl etcd kwok helm)

# component NAME: sets the recipe of one cached component. C_DIR is its wrapper module,
# C_PKGS the packages built into bin/ (C_OUT names the binary when there is one package
# whose directory name is not the command's), C_TAGS and C_LDFLAGS the build flags,
# C_VERSION the release named in the cache directory and C_PROBE, when the flags stamp a
# version, the first line the binaries print and the arguments that print it. Components
# that ship CustomResourceDefinitions instead of binaries name, in C_CRDS, the module and
# its directory of CRD files, copied to crds/ in the cache.
component() {
    C_DIR=$1 C_OUT="" C_TAGS="" C_LDFLAGS="-s -w" C_PROBE=() C_PKGS=() C_CRDS=()
    local minor pkg
    case $1 in
    kubernetes | kubectl | node)
        C_DIR=kubernetes C_VERSION=$KUBE_VERSION
        # Without the version stamp /version reports v0.0.0 and version checks (helm
        # kubeVersion, clients) fail. Both the server and client-go copies are stamped.
        minor=${KUBE_VERSION#v1.}
        minor=${minor%%.*}
        for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
            C_LDFLAGS+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
            C_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
        done
        case $1 in
        kubernetes)
            C_TAGS=selinux,notest C_PROBE=("Kubernetes $KUBE_VERSION" --version)
            C_PKGS=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
                k8s.io/kubernetes/cmd/kube-scheduler)
            ;;
        kubectl)
            C_PROBE=("Client Version: $KUBE_VERSION" version --client)
            C_PKGS=(k8s.io/kubernetes/cmd/kubectl)
            ;;
        node) # what a real node runs (up.sh --real-node); kwok needs neither
            C_TAGS=selinux,notest C_PROBE=("Kubernetes $KUBE_VERSION" --version)
            C_PKGS=(k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
            ;;
        esac
        ;;
    etcd)
        C_VERSION=$(module_version etcd go.etcd.io/etcd/server/v3)
        C_PKGS=(go.etcd.io/etcd/server/v3) C_OUT=etcd
        ;;
    kwok)
        C_VERSION=$(module_version kwok sigs.k8s.io/kwok)
        C_PKGS=(sigs.k8s.io/kwok/cmd/kwok)
        ;;
    helm)
        # The flags of helm's release Makefile: without them `helm version` says
        # "unreleased" and the version is empty.
        C_VERSION=$(module_version helm helm.sh/helm/v4)
        C_PKGS=(helm.sh/helm/v4/cmd/helm)
        C_LDFLAGS+=" -X helm.sh/helm/v4/internal/version.version=$C_VERSION"
        C_LDFLAGS+=" -X helm.sh/helm/v4/internal/version.metadata= -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
        C_PROBE=("$C_VERSION clean" version --template '{{.Version}} {{.GitTreeState}}')
        ;;
    actionlint)
        C_VERSION=$(module_version actionlint github.com/rhysd/actionlint)
        C_PKGS=(github.com/rhysd/actionlint/cmd/actionlint)
        C_LDFLAGS+=" -X github.com/rhysd/actionlint.version=$C_VERSION"
        C_PROBE=("$C_VERSION" --version)
        ;;
    coredns) # the cluster DNS of a real node, with the plugins its Corefile uses (main.go)
        C_VERSION=$(module_version coredns github.com/coredns/coredns)
        C_PKGS=(canvaschat.io/tests/controlplane/coredns) C_OUT=coredns
        ;;
    metrics-server) # the resource metrics API (kubectl top, the HPA) of a real node
        C_VERSION=$(module_version metrics-server sigs.k8s.io/metrics-server)
        C_PKGS=(sigs.k8s.io/metrics-server/cmd/metrics-server)
        # Its Makefile's stamp: without it /version and the log say v0.0.0.
        C_LDFLAGS+=" -X k8s.io/client-go/pkg/version.gitVersion=$C_VERSION"
        ;;
    traefik) # an Ingress and Gateway API implementation for a real node
        C_VERSION=$(module_version traefik github.com/traefik/traefik/v3)
        C_PKGS=(github.com/traefik/traefik/v3/cmd/traefik)
        C_LDFLAGS+=" -X github.com/traefik/traefik/v3/pkg/version.Version=$C_VERSION"
        ;;
    kind)
        C_VERSION=$(module_version kind sigs.k8s.io/kind)
        C_PKGS=(sigs.k8s.io/kind)
        ;;
    pause)
        # The sandbox (pause) image of a real node, built here from the release's pause.c
        # (no registry to pull it from): images/pause.tar and its name in images/pause.ref.
        C_DIR=kubernetes C_VERSION=$KUBE_VERSION
        ;;
    gateway-api)
        C_VERSION=$(module_version gateway-api sigs.k8s.io/gateway-api)
        C_CRDS=(sigs.k8s.io/gateway-api config/crd/standard)
        ;;
    prometheus-operator)
        C_VERSION=$(module_version prometheus-operator github.com/prometheus-operator/prometheus-operator)
        C_CRDS=(github.com/prometheus-operator/prometheus-operator example/prometheus-operator-crd)
        ;;
    promtool)
        # It only checks and tests rules here: without Prometheus's service discovery plugins
        # (its documented remove_all_sd tag), a fifth fewer packages to compile.
        C_VERSION=$(module_version promtool github.com/prometheus/prometheus)
        C_PKGS=(github.com/prometheus/prometheus/cmd/promtool) C_TAGS=remove_all_sd
        ;;
    *)
        echo "controlplane: unknown component $1" >&2
        return 1
        ;;
    esac
}

# component_dir NAME -> the cache directory of NAME's current recipe. The key covers every
# input of that component alone (its wrapper module and its recipe), so changing one
# component rebuilds only that one.
component_dir() {
    component "$1" || return 1
    local key
    key=$({
        cat "$CP_SRC_DIR/$C_DIR/go.mod" "$CP_SRC_DIR/$C_DIR/go.sum"
        cat "$CP_SRC_DIR/$C_DIR"/*.go 2> /dev/null || true
        printf '%s\n' "${C_PKGS[@]}" "$C_OUT" "$C_TAGS" "$C_LDFLAGS" "${C_CRDS[@]}"
        if [ "$1" = kwok ]; then declare -f kwok_stages; fi
        if [ "$1" = pause ]; then
            declare -f pause_image
            cat "$CP_SRC_DIR/oci_image.py"
            gcc --version 2> /dev/null | head -n 1
        fi
    } | sha256sum | cut -c1-12)
    echo "$CP_CACHE_ROOT/$1/$C_VERSION-$key"
}

# kwok_stages OUT: kwok's stages (fast node initialisation, node heartbeat, pods Running and
# Ready at once, pod completion and deletion) ship as YAML in the module, not in the binary.
kwok_stages() {
    local kwok_dir stage_dir f
    kwok_dir=$(cd "$CP_SRC_DIR/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
    stage_dir=$kwok_dir/kustomize/stage
    for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
        pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
        [ -f "$stage_dir/$f" ] || { echo "controlplane: kwok stage $stage_dir/$f is missing" >&2; return 1; }
        echo "---"
        cat "$stage_dir/$f"
    done > "$1/kwok-stages.yaml"
}

# pause_image OUT: a static pause binary from the release's build/pause/linux/pause.c (with
# the flags of its Makefile) in a one-layer OCI archive, OUT/images/pause.tar, named
# canvaschat.local/pause:<its tag> (OUT/images/pause.ref).
pause_image() {
    local src tag root
    command -v gcc > /dev/null || { echo "controlplane: gcc is needed for the pause image" >&2; return 1; }
    src=$(cd "$CP_SRC_DIR/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause
    tag=$(awk '$1 == "TAG" && $2 == "?=" {print $3; exit}' "$src/Makefile")
    [ -n "$tag" ] || { echo "controlplane: no TAG in $src/Makefile" >&2; return 1; }
    root=$1/pause-root
    mkdir -p "$root" "$1/images"
    gcc -Os -Wall -Werror -static -DVERSION="v$tag-canvaschat" -o "$root/pause" "$src/linux/pause.c"
    strip "$root/pause"
    echo "canvaschat.local/pause:$tag" > "$1/images/pause.ref"
    python3 "$CP_SRC_DIR/oci_image.py" --name "canvaschat.local/pause:$tag" --out "$1/images/pause.tar" \
        --entrypoint '["/pause"]' --user 65535:65535 "$root" > /dev/null
    rm -rf "$root"
}
