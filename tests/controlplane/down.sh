#!/usr/bin/env bash
# Stops the control plane that up.sh started in $CANVASCHAT_CP_DIR (default
# /tmp/canvaschat-controlplane) and removes its state. Only processes whose recorded pid
# still runs the cached binary are signalled. --keep-state leaves certificates, etcd data
# and logs in place for inspection.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

keep_state=false
[ "${1:-}" = "--keep-state" ] && keep_state=true

[ -d "$CP_STATE_DIR/pids" ] || { echo "controlplane: nothing running in $CP_STATE_DIR" >&2; exit 0; }

pid_of() { # COMPONENT -> its pid, only if that pid is still this component's binary
    local pidfile=$CP_STATE_DIR/pids/$1 pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "/$1 " && echo "$pid"
}

for ((i = ${#CP_COMPONENTS[@]} - 1; i >= 0; i--)); do
    component=${CP_COMPONENTS[$i]}
    pid=$(pid_of "$component") || { rm -f "$CP_STATE_DIR/pids/$component"; continue; }
    kill -TERM "$pid" 2> /dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2> /dev/null; then
        echo "controlplane: $component (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
        kill -KILL "$pid" 2> /dev/null || true
    fi
    rm -f "$CP_STATE_DIR/pids/$component"
done

if $keep_state; then
    echo "controlplane: stopped; state kept in $CP_STATE_DIR" >&2
else
    rm -rf "$CP_STATE_DIR"
    echo "controlplane: stopped and removed $CP_STATE_DIR" >&2
fi
