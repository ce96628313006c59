#!/bin/sh
# Prepares a Debian Rust build stage running on the build machine to compile for Docker's
# TARGETARCH (amd64 or arm64) without emulation: the cross C toolchain (ring compiles C),
# the Rust target, and /etc/cargo-cross.env setting CARGO_BUILD_TARGET, the linker and CC
# (and jemalloc's page size for arm64).
# Usage (in a Dockerfile): RUN scripts/rust-cross.sh "$TARGETARCH"
set -eu
case "${1:-}" in
amd64) triple=x86_64-unknown-linux-gnu gnu=x86-64-linux-gnu ;;
arm64) triple=aarch64-unknown-linux-gnu gnu=aarch64-linux-gnu ;;
*)
    echo "rust-cross.sh: unsupported TARGETARCH '${1:-}' (amd64 or arm64)" >&2
    exit 1
    ;;
esac
env_file=/etc/cargo-cross.env
echo "export CARGO_BUILD_TARGET=$triple" > "$env_file"
# jemalloc (the gateway's allocator) fixes the page size at build time, and a cross build
# assumes 4 KiB: arm64 kernels with 16 or 64 KiB pages would refuse to start the binary.
# 64 KiB pages also work on 4 KiB kernels.
if [ "$1" = arm64 ]; then echo "export JEMALLOC_SYS_WITH_LG_PAGE=16" >> "$env_file"; fi
if [ "$(uname -m)" != "${triple%%-*}" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "gcc-$gnu" "libc6-dev-$1-cross" > /dev/null
    rm -rf /var/lib/apt/lists/*
    upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    {
        echo "export CARGO_TARGET_${upper}_LINKER=$gnu-gcc"
        echo "export CC_$(echo "$triple" | tr - _)=$gnu-gcc"
    } >> "$env_file"
fi
rustup target add "$triple"
