#!/usr/bin/env bash
# Installs what the test suites need on a fresh Debian machine; a no-op for what is there.
# Needs root (or sudo) for apt-get; everything else goes to $HOME/.cache/canvaschat.
# --real-node (the test command passes it) also installs what `tests/controlplane/up.sh
# --real-node` runs (containerd, runc, CNI plugins, iptables, conntrack, debootstrap, static
# busybox) and builds kubelet, kube-proxy, CoreDNS, the pause image, metrics-server, Traefik
# and the image bases (scripts/build-images.sh --bases).
# --real-node-packages installs what --real-node installs but builds none of the real node's
# components; --real-node-builds only builds them. The test command runs the two apart, the
# builds behind the suites that do not need them.
set -euo pipefail
cd "$(dirname "$0")/.."
real_node=false real_node_builds=false
case ${1:-} in
--real-node) real_node=true real_node_builds=true ;;
--real-node-packages) real_node=true ;;
--real-node-builds)
    bash tests/controlplane/build.sh node coredns pause metrics-server traefik > /dev/null
    bash scripts/build-images.sh --bases
    exit 0
    ;;
"") ;;
*) echo "usage: $0 [--real-node | --real-node-packages | --real-node-builds]" >&2; exit 2 ;;
esac

say() { printf '\n== %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo > /dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2
        return 1
    fi
}

missing=()
command -v redis-server > /dev/null || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v openssl > /dev/null || missing+=(openssl)
command -v curl > /dev/null || missing+=(curl)
command -v shellcheck > /dev/null || missing+=(shellcheck)
# cc for the Rust crates that compile C; the venv module is a separate package on Debian.
{ command -v cc && command -v make; } > /dev/null || missing+=(build-essential)
python3 -c 'import ensurepip, venv' 2> /dev/null || missing+=(python3-venv)
if $real_node; then
    # The package list is real-node.sh's, which checks for the same at start.
    # shellcheck source=../tests/controlplane/real-node.sh
    source tests/controlplane/real-node.sh
    for pkg in "${RN_PACKAGES[@]}"; do
        dpkg-query -W -f '${Status}' "$pkg" 2> /dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
fi
if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

# version_at_least HAVE WANT: true when HAVE >= WANT (dotted versions).
version_at_least() { [ "$(printf '%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

# need TOOL WANT HAVE HOW: stop with what to do when TOOL is missing or older than WANT.
problems=0
need() {
    if [ -z "$3" ]; then
        echo "missing $1 (version $2 or newer): $4" >&2
        problems=$((problems + 1))
    elif ! version_at_least "$3" "$2"; then
        echo "$1 $3 ($(command -v "$1")) is older than the $2 this project needs: $4" >&2
        problems=$((problems + 1))
    fi
}
have() { # COMMAND ARGS... -> the first version number it prints, empty when it is missing
    if command -v "$1" > /dev/null; then "$@" 2> /dev/null | grep -oE '[0-9]+(\.[0-9]+)+' | head -n 1; fi
}

# The wanted versions are read from the files that set them.
rust_want=$(awk -F'"' '/^rust-version/ {print $2; exit}' Cargo.toml)
go_want=$(awk '$1 == "go" {print $2}' tests/controlplane/*/go.mod | sort -V | tail -n 1)
node_want=$(python3 -c 'import json; print(json.load(open("frontend/package.json"))["engines"]["node"].lstrip(">=~^ "))')
need cargo "$rust_want" "$(have cargo --version)" "install Rust with rustup (https://rustup.rs) or run 'rustup update stable'"
need go "$go_want" "$(have go version)" \
    "install Go from https://go.dev/dl/ (Debian's golang package is too old), or run with GOTOOLCHAIN=go$go_want to let go fetch it"
need node "$node_want" "$(have node --version)" "install the current Node.js LTS (https://nodejs.org/en/download)"
need npm 1 "$(have npm --version)" "npm comes with Node.js"
need python3 3.10 "$(have python3 --version)" "apt-get install python3"
[ "$problems" = 0 ] || exit 1

say "rust components"
rustup component list --installed 2> /dev/null | grep -q '^clippy' || rustup component add clippy
rustup component list --installed 2> /dev/null | grep -q '^rustfmt' || rustup component add rustfmt

say "frontend dependencies (npm ci)"
# npm ci wipes node_modules; skip it when the lock file has not changed since the last install.
stamp=frontend/node_modules/.canvaschat-lock.sha256
want=$(sha256sum frontend/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2> /dev/null)" != "$want" ]; then
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
else
    echo "up to date"
fi

say "local Kubernetes control plane, kubectl, helm, actionlint, promtool, Gateway API and Prometheus Operator CRDs (cached by version)"
bash tests/controlplane/build.sh kubernetes kubectl etcd kwok helm actionlint promtool gateway-api prometheus-operator > /dev/null
if $real_node_builds; then
    say "real node: kubelet, kube-proxy, CoreDNS, the pause image, metrics-server, Traefik, image bases (cached by version)"
    bash "$0" --real-node-builds
fi
