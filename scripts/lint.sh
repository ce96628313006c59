#!/usr/bin/env bash
# Lints what we write, as suites of scripts/test.sh:
#   lint.sh shell      shellcheck on every tracked shell script (.shellcheckrc)
#   lint.sh workflows  actionlint on .github/workflows, with shellcheck for their run: scripts
#   lint.sh python     ruff on the Python test code (ruff.toml)
#   lint.sh frontend   ESLint with typescript-eslint and the React hooks rules (frontend/eslint.config.js)
# Tools: shellcheck from Debian (scripts/install-deps.sh), actionlint built by
# tests/controlplane/build.sh, ruff pinned in scripts/lint-requirements.txt in a venv under
# $HOME/.cache/canvaschat; ESLint from frontend/package-lock.json (npm ci in install-deps.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "lint: $*" >&2; }

shell_scripts() { # tracked files named *.sh or starting with a bash/sh shebang
    local f
    git ls-files -z | while IFS= read -r -d '' f; do
        [ -f "$f" ] || continue
        if [[ $f == *.sh ]] || head -n 1 "$f" | grep -qE '^#!.*(/|env )(ba)?sh\b'; then
            printf '%s\0' "$f"
        fi
    done
}

case ${1:-} in
shell)
    command -v shellcheck > /dev/null || { say "shellcheck is missing (apt-get install shellcheck)"; exit 1; }
    mapfile -d '' files < <(shell_scripts)
    [ ${#files[@]} -gt 0 ] || { say "no shell scripts found (not a git checkout?)"; exit 1; }
    # Errors and warnings fail; info and style notes are advice.
    shellcheck -x --severity=warning "${files[@]}"
    say "shellcheck: ${#files[@]} scripts clean"
    ;;
workflows)
    command -v shellcheck > /dev/null || { say "shellcheck is missing (apt-get install shellcheck)"; exit 1; }
    bin=$(tests/controlplane/build.sh actionlint | tail -n 1)
    "$bin/actionlint" -shellcheck "$(command -v shellcheck)"
    say "actionlint: $(find .github/workflows -name '*.yml' | wc -l) workflows clean"
    ;;
python)
    venv=${CANVASCHAT_LINT_VENV:-$HOME/.cache/canvaschat/venv-lint}
    want=$(sha256sum scripts/lint-requirements.txt | cut -c1-16)
    if [ "$(cat "$venv/.requirements" 2> /dev/null)" != "$want" ]; then
        say "preparing $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/lint-requirements.txt
        echo "$want" > "$venv/.requirements"
    fi
    mapfile -t files < <(git ls-files '*.py')
    "$venv/bin/ruff" check --no-cache --output-format concise "${files[@]}"
    ;;
frontend)
    [ -x frontend/node_modules/.bin/eslint ] || { say "ESLint is missing (cd frontend && npm ci)"; exit 1; }
    (cd frontend && npm run lint --silent)
    say "eslint: frontend clean"
    ;;
*)
    echo "usage: $0 shell|workflows|python|frontend" >&2
    exit 2
    ;;
esac
