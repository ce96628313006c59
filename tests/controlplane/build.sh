#!/usr/bin/env bash
# Builds test tools from the Go module proxy, each pinned by its wrapper module next to this
# file and cached under $HOME/.cache/canvaschat/controlplane/<component>/<version>-<hash>/
# (override the root with CANVASCHAT_CP_CACHE):
#   kubernetes  kube-apiserver, kube-controller-manager, kube-scheduler
#   kubectl     kubectl of the same release (same wrapper module)
#   node        kubelet and kube-proxy of the same release (same wrapper module), for
#               up.sh --real-node
#   etcd, kwok (with its stage file), helm, actionlint, promtool, kind
#   coredns     CoreDNS, the cluster DNS of up.sh --real-node
#   metrics-server   the resource metrics API of up.sh --real-node (metrics-server.sh)
#   traefik     Traefik v3 (Ingress and Gateway API), for a real node
#   pause       the sandbox image of a real node (OCI archive), in images/ next to the
#               printed bin directory
#   gateway-api, prometheus-operator   their CRDs (no binaries), in crds/<component>/ next to
#               the printed bin directory
# Usage: build.sh [COMPONENT...] (default: kubernetes kubectl etcd kwok helm). A no-op for
# components already cached. Each component's build holds its own lock, so parallel callers
# wait for one build of it instead of racing; callers whose components are cached never wait.
# Prints, on its last line, a bin directory holding every requested binary (put it first on
# PATH).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

components=("$@")
[ ${#components[@]} -gt 0 ] || components=("${CP_DEFAULT_COMPONENTS[@]}")

step() { echo "controlplane: $* ($(date -u +%H:%M:%S))" >&2; }

# recipe_sum -> a hash of the current component's build flags and packages (not of its
# wrapper module), recorded with each build.
recipe_sum() { printf '%s\n' "${C_PKGS[@]}" "$C_OUT" "$C_TAGS" "$C_LDFLAGS" | sha256sum | cut -c1-12; }

# adopt NAME WORK: reuses (hard-links) the binaries of another cache directory when the Go
# build info embedded in each proves it was built from the pinned modules of this wrapper
# module, and either the version it prints or the recorded recipe proves the same flags.
# Candidates: other directories of this component of the same version (e.g. after the
# wrapper module gained requirements for another component, which changes no module this
# one uses) and the directories of earlier versions of this script, which held every
# component in one <kube version>-<hash>/bin.
adopt() {
    local legacy pkg bin recipe
    recipe=$(recipe_sum)
    for legacy in "$CP_CACHE_ROOT/$1/$C_VERSION"-*/ "$CP_CACHE_ROOT/$KUBE_VERSION"-*/; do
        [ -f "$legacy/complete" ] || continue
        if [ -f "$legacy/recipe" ]; then
            [ "$(cat "$legacy/recipe")" = "$recipe" ] || continue
        elif [ ${#C_PROBE[@]} = 0 ]; then
            continue
        fi
        for pkg in "${C_PKGS[@]}"; do
            bin=${C_OUT:-${pkg##*/}}
            if ! [ -x "$legacy/bin/$bin" ] || ! python3 "$CP_SRC_DIR/buildinfo_matches.py" \
                "$legacy/bin/$bin" "$CP_SRC_DIR/$C_DIR" "$pkg" "$C_TAGS" "${C_PROBE[@]}"; then
                continue 2
            fi
        done
        for pkg in "${C_PKGS[@]}"; do
            bin=${C_OUT:-${pkg##*/}}
            cp -l "$legacy/bin/$bin" "$2/bin/$bin" 2> /dev/null || cp "$legacy/bin/$bin" "$2/bin/$bin"
        done
        step "$1: reusing the identical binaries of $legacy"
        return 0
    done
    return 1
}

# build NAME: builds one component into its cache directory unless it is there already.
build() {
    local dir work
    dir=$(component_dir "$1")
    [ -f "$dir/complete" ] && return 0
    component "$1"
    command -v go > /dev/null || { echo "controlplane: go is not installed (scripts/install-deps.sh)" >&2; return 1; }
    # Build into a scratch directory and rename at the end, so an interrupted build never
    # leaves a half-filled cache that looks complete.
    mkdir -p "$(dirname "$dir")"
    work=$(mktemp -d "$dir.partial.XXXXXX")
    # shellcheck disable=SC2064 # the directory of this build, fixed now
    trap "rm -rf '$work'" EXIT
    mkdir -p "$work/bin"
    if [ ${#C_CRDS[@]} -gt 0 ]; then
        local module_dir
        module_dir=$(cd "$CP_SRC_DIR/$C_DIR" && go mod download -json "${C_CRDS[0]}" |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
        mkdir -p "$work/crds"
        cp "$module_dir/${C_CRDS[1]}"/*.yaml "$work/crds/"
        chmod 644 "$work/crds"/*.yaml
        step "$1 $C_VERSION: $(find "$work/crds" -name '*.yaml' | wc -l) CRD files"
    elif [ "$1" = pause ]; then
        step "building the pause image of $C_VERSION"
        pause_image "$work"
    elif ! adopt "$1" "$work"; then
        step "building $1 $C_VERSION${2:+ ($2)}"
        local out=$work/bin/
        [ -n "$C_OUT" ] && out=$work/bin/$C_OUT
        # One invocation per component so its commands share compilation.
        (cd "$CP_SRC_DIR/$C_DIR" && CGO_ENABLED=0 nice -n 10 go build -trimpath ${C_TAGS:+-tags "$C_TAGS"} \
            -ldflags "$C_LDFLAGS" -o "$out" "${C_PKGS[@]}")
    fi
    if [ "$1" = kwok ]; then kwok_stages "$work"; fi
    recipe_sum > "$work/recipe"
    touch "$work/complete"
    rm -rf "$dir"
    mv "$work" "$dir"
    trap - EXIT
    step "$1 cached in $dir"
    # Other versions of this component that no run used for two weeks are dropped, so the
    # cache holds what is in use rather than every version ever built.
    find "$CP_CACHE_ROOT/$1" -mindepth 1 -maxdepth 1 -type d ! -path "$dir" ! -newer "$dir" \
        -mtime +14 -exec rm -rf {} + 2> /dev/null || true
}

mkdir -p "$CP_CACHE_ROOT"
dirs=()
missing=()
for name in "${components[@]}"; do
    dir=$(component_dir "$name")
    dirs+=("$dir")
    if [ -f "$dir/complete" ]; then touch "$dir"; else missing+=("$name"); fi
done
for name in "${missing[@]}"; do
    # One lock per component: a caller waits only for another build of the same component,
    # never for a background build of others (scripts/test.sh builds the real node's
    # components behind the first suites).
    exec {lock}> "$CP_CACHE_ROOT/.build-$name.lock"
    if ! flock -n "$lock"; then
        step "waiting for another build of $name to finish (lock $CP_CACHE_ROOT/.build-$name.lock)"
        flock "$lock"
    fi
    hint=""
    case $name in kubernetes | node) hint="a cold build takes 10-25 minutes" ;; esac
    build "$name" "$hint"
    exec {lock}>&-
done

# One bin directory per set of component versions, of links to the cached binaries, made
# aside and renamed into place so a concurrent caller never sees half of it.
set_dir=$CP_CACHE_ROOT/sets/$(printf '%s\n' "${dirs[@]}" | sha256sum | cut -c1-12)
if [ ! -f "$set_dir/complete" ]; then
    mkdir -p "$CP_CACHE_ROOT/sets"
    new=$(mktemp -d "$set_dir.partial.XXXXXX")
    mkdir "$new/bin"
    for i in "${!dirs[@]}"; do
        dir=${dirs[$i]}
        for f in "$dir"/bin/*; do
            if [ -e "$f" ]; then ln -s "$f" "$new/bin/"; fi
        done
        if [ -f "$dir/kwok-stages.yaml" ]; then ln -s "$dir/kwok-stages.yaml" "$new/"; fi
        if [ -d "$dir/images" ]; then
            mkdir -p "$new/images"
            for f in "$dir"/images/*; do ln -s "$f" "$new/images/"; done
        fi
        if [ -d "$dir/crds" ]; then
            mkdir -p "$new/crds"
            ln -s "$dir/crds" "$new/crds/${components[$i]}"
        fi
    done
    touch "$new/complete"
    chmod 755 "$new"
    rm -rf "$set_dir"
    mv -T "$new" "$set_dir" 2> /dev/null || rm -rf "$new"
fi
echo "$set_dir/bin"
