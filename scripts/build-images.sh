#!/usr/bin/env bash
# Builds the gateway, operator and Redis images without a container engine, as OCI archives
# (for a real node: tests/controlplane/up.sh --real-node; `ctr images import` reads them):
#   ghcr.io/canvaschat/canvaschat-gateway:<crate version>   gateway/Dockerfile's final stage
#   ghcr.io/canvaschat/canvaschat-operator:<crate version>  operator/Dockerfile's final stage
#   canvaschat.local/redis:<Debian's redis version>          redis-server and redis-cli
# Each is a Debian bookworm base made by `debootstrap --variant=minbase` (cached in
# ~/.cache/canvaschat/images/base, override with CANVASCHAT_IMAGE_CACHE) plus one layer. The
# gateway and operator layers are laid out from their Dockerfiles (tests/controlplane/
# dockerfile_image.py: same paths, user ids, environment, ports, entrypoint), with the
# release binaries of $CARGO_TARGET_DIR and frontend/dist in place of the build stages. The
# Dockerfiles' base is distroless cc-debian12 (glibc and libgcc of bookworm); this base is
# larger (minbase has a shell and coreutils) but the same Debian release.
#
# Usage: scripts/build-images.sh [--import | --bases]
#   --import  also imports them into the containerd of the real node in $CANVASCHAT_CP_DIR
#   --bases   only makes the cached base root filesystems (needs no binaries)
# Builds the release binaries and frontend/dist first unless CANVASCHAT_IMAGES_SKIP_BUILD=1.
# Writes the archives to $CARGO_TARGET_DIR/images/ and prints one image name per line.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cp_src=$repo/tests/controlplane

import=false bases_only=false
case ${1:-} in
--import) import=true ;;
--bases) bases_only=true ;;
"") ;;
*) echo "usage: $0 [--import | --bases]" >&2; exit 2 ;;
esac
target=${CARGO_TARGET_DIR:-$repo/target}
out=$target/images
cache=${CANVASCHAT_IMAGE_CACHE:-$HOME/.cache/canvaschat/images}
suite=bookworm
# The Debian mirror this machine's apt uses (deb822 .sources or a one-line sources.list
# entry for the suite), unless given.
mirror=${CANVASCHAT_DEBIAN_MIRROR:-$(
    { awk '$1 == "URIs:" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2> /dev/null
        awk -v s="$suite" '$1 == "deb" && $3 == s {print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2> /dev/null
    } | head -n 1 || true
)}
[ -n "$mirror" ] || { echo "build-images: no Debian mirror in apt's sources; set CANVASCHAT_DEBIAN_MIRROR" >&2; exit 1; }
say() { echo "build-images: $* ($(date -u +%H:%M:%S))" >&2; }

[ "$(id -u)" = 0 ] || { echo "build-images: needs root (debootstrap, file ownership)" >&2; exit 1; }
command -v debootstrap > /dev/null || { echo "build-images: debootstrap is missing (scripts/install-deps.sh --real-node)" >&2; exit 1; }

if [ "${CANVASCHAT_IMAGES_SKIP_BUILD:-}" != 1 ] && ! $bases_only; then
    say "release binaries"
    cargo build --release --locked -p canvaschat-gateway -p canvaschat-operator >&2
    say "frontend/dist"
    (cd frontend && npm run build --silent) >&2
fi
if ! $bases_only; then
    for f in "$target/release/canvaschat-gateway" "$target/release/canvaschat-operator" frontend/dist/index.html; do
        [ -e "$f" ] || { echo "build-images: $f is missing" >&2; exit 1; }
    done
fi

# base NAME [PACKAGE...] -> a cached minbase root filesystem with PACKAGE... installed. Keyed
# by the suite and packages (a new key is a new debootstrap; old ones are dropped after two
# unused weeks). A lock makes parallel callers wait for one debootstrap.
base() {
    local name=$1 key dir work
    shift
    key=$(printf '%s\n' "$suite" "$mirror" "$@" | sha256sum | cut -c1-12)
    dir=$cache/base/$suite-$name-$key
    if [ ! -f "$dir/complete" ]; then
        mkdir -p "$cache/base"
        exec {lock}> "$cache/base/.lock"
        flock "$lock"
        if [ ! -f "$dir/complete" ]; then
            say "debootstrap --variant=minbase $suite ($name${*:+: $*})"
            work=$(mktemp -d "$dir.partial.XXXXXX")
            # shellcheck disable=SC2064 # the directory of this run, fixed now
            trap "umount -R '$work/rootfs/proc' '$work/rootfs/sys' 2> /dev/null; rm -rf '$work'" EXIT
            local include=(ca-certificates "$@")
            debootstrap --variant=minbase --include="$(IFS=,; echo "${include[*]}")" \
                "$suite" "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 ||
                { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
            # What a container runtime provides, and what an image need not carry.
            rm -rf "$work/rootfs/dev"/* "$work/rootfs/proc"/* "$work/rootfs/sys"/* \
                "$work/rootfs/var/cache/apt/archives"/*.deb "$work/rootfs/var/lib/apt/lists"/* \
                "$work/rootfs/var/log"/*
            touch "$work/complete"
            rm -rf "$dir"
            mv "$work" "$dir"
            trap - EXIT
            find "$cache/base" -mindepth 1 -maxdepth 1 -type d ! -path "$dir" -mtime +14 -exec rm -rf {} +
        fi
        exec {lock}>&-
    fi
    touch "$dir"
    echo "$dir/rootfs"
}

version_of() { cargo pkgid -p "$1" | sed 's/.*@//'; }

mkdir -p "$out"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
minbase=$(base minbase)
redis_base=$(base redis redis-server)
if $bases_only; then
    say "bases: $minbase $redis_base"
    exit 0
fi
base_env=(--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)

names=()
# image COMPONENT: the component's Dockerfile final stage on the minbase root filesystem.
image() {
    local name layer args
    name=ghcr.io/canvaschat/canvaschat-$1:$(version_of "canvaschat-$1")
    layer=$scratch/$1
    mkdir -p "$layer"
    local maps=("build:/canvaschat-$1=$target/release/canvaschat-$1")
    [ "$1" = gateway ] && maps+=("frontend:/src/frontend/dist=$repo/frontend/dist")
    args=$(python3 "$cp_src/dockerfile_image.py" "$1/Dockerfile" "$layer" "${maps[@]}")
    mapfile -t args < <(python3 -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])))' "$args")
    python3 "$cp_src/oci_image.py" --name "$name" --out "$out/$1.tar" "${base_env[@]}" "${args[@]}" \
        "$minbase" "$layer" > /dev/null
    names+=("$name")
    say "$name -> $out/$1.tar ($(du -m "$out/$1.tar" | cut -f1) MB)"
}
image gateway
image operator

# Redis: Debian's redis-server on its own base; the operator's pod spec gives the command,
# user (999:1000) and volume, so the image sets only what the official image's users rely on.
# shellcheck disable=SC2016 # a dpkg-query format, not the shell's
redis_version=$(chroot "$redis_base" dpkg-query -W -f '${Version}' redis-server | sed 's/^[0-9]*://; s/[-+].*//')
name=canvaschat.local/redis:$redis_version
mkdir -p "$scratch/redis/data"
chown 999:1000 "$scratch/redis/data"
python3 "$cp_src/oci_image.py" --name "$name" --out "$out/redis.tar" "${base_env[@]}" \
    --entrypoint '["redis-server"]' --workdir /data --port 6379/tcp "$redis_base" "$scratch/redis" > /dev/null
names+=("$name")
say "$name -> $out/redis.tar ($(du -m "$out/redis.tar" | cut -f1) MB)"

if $import; then
    # shellcheck source=../tests/controlplane/lib.sh
    source "$cp_src/lib.sh"
    # shellcheck source=../tests/controlplane/real-node.sh
    source "$cp_src/real-node.sh"
    for f in gateway operator redis; do rn_ctr images import "$out/$f.tar" > /dev/null; done
    say "imported into the real node in $CP_STATE_DIR"
fi
printf '%s\n' "${names[@]}"
