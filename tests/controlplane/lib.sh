# Shared settings for build.sh, up.sh and down.sh (sourced, not executed).

CP_SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The Kubernetes release is the one the wrapper module requires; everything else is pinned
# by its own wrapper module next to this file.
KUBE_VERSION=$(awk '!/=>/ { for (i = 1; i < NF; i++) if ($i == "k8s.io/kubernetes") print $(i + 1) }' \
    "$CP_SRC_DIR/kubernetes/go.mod")
if [ -z "$KUBE_VERSION" ]; then
    echo "controlplane: cannot read the k8s.io/kubernetes version from $CP_SRC_DIR/kubernetes/go.mod" >&2
    exit 1
fi

# The cache key covers every input of the build, so editing a wrapper module or the build
# flags rebuilds into a fresh directory instead of reusing stale binaries.
cp_cache_key() {
    cat "$CP_SRC_DIR"/*/go.mod "$CP_SRC_DIR"/*/go.sum "$CP_SRC_DIR/build.sh" | sha256sum | cut -c1-12
}

CP_CACHE_DIR=${CANVASCHAT_CP_CACHE:-$HOME/.cache/canvaschat/controlplane}/$KUBE_VERSION-$(cp_cache_key)
CP_BIN_DIR=$CP_CACHE_DIR/bin
CP_STATE_DIR=${CANVASCHAT_CP_DIR:-/tmp/canvaschat-controlplane}
