#!/usr/bin/env bash
# Regenerates traefik/go.mod (and traefik/ext/) for another Traefik v3 release. Traefik's
# go.mod replaces github.com/traefik/traefik/dynamic/ext with a local directory that its
# module zip does not contain (a nested module), so the wrapper carries a copy of that
# directory, taken from a Traefik git checkout at the release's tag, and repeats Traefik's
# other replace and exclude directives (which apply only in the main module).
# Usage: tests/controlplane/gen-traefik-mod.sh v3.X.Y TRAEFIK_GIT_DIR [REF (default: the version)]
set -euo pipefail
version=${1:?usage: $0 v3.X.Y TRAEFIK_GIT_DIR [REF]}
git_dir=${2:?usage: $0 v3.X.Y TRAEFIK_GIT_DIR [REF]}
ref=${3:-$version}
[[ $version =~ ^v3\.[0-9]+\.[0-9]+$ ]] || { echo "not a v3.X.Y version: $version" >&2; exit 1; }
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/traefik" && pwd)
ext_path=pkg/config/dynamic/ext

upstream_mod=$(cd "$dir" && go mod download -json "github.com/traefik/traefik/v3@$version" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
go_directive=$(awk '$1 == "go" {print $2; exit}' "$upstream_mod")
# The one local replacement must be the directory copied below; anything else is new.
locals=$(grep -E '=>[[:space:]]*\./' "$upstream_mod" || true)
[ "$locals" = "replace github.com/traefik/traefik/dynamic/ext => ./$ext_path" ] ||
    { echo "unexpected local replacements in Traefik's go.mod: $locals" >&2; exit 1; }

rm -rf "$dir/ext"
mkdir -p "$dir/ext"
git -C "$git_dir" archive "$ref" "$ext_path" | tar -x -C "$dir/ext" --strip-components=4

{
    echo "// Wrapper module: builds Traefik $version (kubernetesIngress and kubernetesGateway providers"
    echo "// for up.sh --real-node). Its local replacement ./$ext_path is carried in ext/"
    echo "// (from Traefik's git tag $ref); its other replace and exclude directives are repeated here."
    echo "// Regenerate with ../gen-traefik-mod.sh."
    echo "module canvaschat.io/tests/controlplane/traefik"
    echo
    echo "go $go_directive"
    echo
    echo "require github.com/traefik/traefik/v3 $version"
    echo
    echo "tool github.com/traefik/traefik/v3/cmd/traefik"
    echo
    echo "replace github.com/traefik/traefik/dynamic/ext => ./ext"
    # Every other replace (single-line or in a block) and exclude directive, verbatim.
    awk '/^(replace|exclude) \($/ {b = 1; print; next} b {print; if ($0 ~ /^\)/) b = 0; next}
        /^(replace|exclude) / && !/=> *\.\// {print}' "$upstream_mod" | sed '/^[[:space:]]*\/\//d'
} > "$dir/go.mod"
rm -f "$dir/go.sum"
(cd "$dir" && go mod tidy)
echo "traefik/go.mod now builds $version; run build.sh traefik" >&2
