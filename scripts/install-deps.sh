#!/usr/bin/env bash
# Installs what the test suites need on a fresh Debian machine; a no-op for what is there.
# Needs root (or sudo) for apt-get; everything else goes to $HOME/.cache/canvaschat.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1
  fi
}

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for tool in cargo go node npm python3 kubectl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: install it first (see README.md)" >&2; exit 1; }
done

say "rust components"
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt

say "frontend dependencies (npm ci)"
# npm ci wipes node_modules; skip it when the lock file has not changed since the last install.
stamp=frontend/node_modules/.canvaschat-lock.sha256
want=$(sha256sum frontend/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
else
  echo "up to date"
fi

say "local Kubernetes control plane binaries (cached by version)"
bash tests/controlplane/build.sh
