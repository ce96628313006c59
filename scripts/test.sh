#!/usr/bin/env bash
# The one test command (`make test`): installs what is missing, then runs every suite —
# lint (Rust, shell scripts, workflows, Python, frontend), Rust unit and integration tests (real
# redis-server), the frontend unit tests, the rendered-manifest schema checks, the chart's
# dashboard and alerts against the binaries' live metrics, the browser end-to-end tests (real
# Chromium, Redis and two gateways), the operator end-to-end suite on a real local control
# plane, and its real-node selection on that control plane with a real node.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canvaschat/target}"
export CARGO_TERM_COLOR=never

bash scripts/install-deps.sh --real-node-packages || { echo "installing dependencies failed"; exit 1; }
# kubectl of the control plane's release and helm, first on PATH for every suite.
tools=$(bash tests/controlplane/build.sh | tail -n 1) || { echo "building the test tools failed"; exit 1; }
export PATH=$tools:$PATH
# The real node's own builds (kubelet, CoreDNS, metrics-server, Traefik, image bases: most of
# a cold run's compiling) run behind the suites that do not need them, at the lowest CPU
# priority so those suites keep their share; the real-node suite waits for them. Nothing is
# built when they are cached.
mkdir -p tests/artifacts
real_node_builds_log=$PWD/tests/artifacts/real-node-builds.log
nice -n 19 bash scripts/install-deps.sh --real-node-builds > "$real_node_builds_log" 2>&1 &
real_node_builds=$!

passed=0
failed=0
failures=()
suite() {
  local name=$1; shift
  printf '\n== %s\n' "$name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); echo "-- $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "-- $name: FAILED ($((SECONDS - start)) s)"
  fi
}

suite "rustfmt" cargo fmt --all --check
suite "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
suite "shellcheck" bash scripts/lint.sh shell
suite "actionlint" bash scripts/lint.sh workflows
suite "ruff" bash scripts/lint.sh python
suite "eslint" bash scripts/lint.sh frontend
suite "rust tests" cargo test --workspace --locked
# The suites below run the binaries the tests above built.
suite "build binaries" cargo build --workspace --bins --locked
export CANVASCHAT_GATEWAY_BIN="$CARGO_TARGET_DIR/debug/canvaschat-gateway"
export CANVASCHAT_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/canvaschat-operator"
suite "frontend unit tests" bash -c 'cd frontend && npm test --silent'
suite "frontend e2e (chromium)" bash -c 'cd frontend && npm run e2e --silent'
suite "manifest schemas" bash tests/schema/run.sh
suite "dashboard and alerts" bash tests/observability/run.sh
suite "operator e2e (control plane)" bash tests/e2e/run.sh
# The real-node selection on a control plane with a real kubelet, containerd and Traefik
# (needs root; its own state directory and artifacts beside the kwok run's).
real_node_suite() {
  local start=$SECONDS
  if ! wait "$real_node_builds"; then
    echo "building the real node's components failed ($real_node_builds_log):"
    tail -n 30 "$real_node_builds_log"
    return 1
  fi
  echo "waited $((SECONDS - start)) s for the real node's builds"
  env CANVASCHAT_E2E_REAL_NODE=1 CANVASCHAT_CP_DIR=/tmp/canvaschat-e2e-real-node \
    CANVASCHAT_E2E_ARTIFACTS="$PWD/tests/artifacts/e2e-real-node" bash tests/e2e/run.sh
}
suite "operator e2e (real node)" real_node_suite

echo
[ ${#failures[@]} -eq 0 ] || echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
