#!/usr/bin/env bash
# Stops the control plane that up.sh started in $CANVASCHAT_CP_DIR (default
# /tmp/canvaschat-controlplane) and removes its state. Only processes whose recorded pid
# still runs the cached binary are signalled. --keep-state leaves certificates, etcd data
# and logs in place for inspection. A real node (up.sh --real-node) is stopped first and
# everything it made on the host removed; the state directory is kept when anything of it
# is left (with what, on stderr, and a non-zero status).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CP_SRC_DIR/real-node.sh"

keep_state=false
[ "${1:-}" = "--keep-state" ] && keep_state=true

[ -d "$CP_STATE_DIR/pids" ] || { echo "controlplane: nothing running in $CP_STATE_DIR" >&2; exit 0; }

pid_of() { # COMPONENT -> its pid, only if that pid is still this component's binary
    local pidfile=$CP_STATE_DIR/pids/$1 pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qE "/$1(\.sh)? " && echo "$pid"
}

# stop COMPONENT... : SIGTERM them together, wait up to 15 s, then SIGKILL what is left.
stop() {
    local pids=() component pid entry alive
    for component in "$@"; do
        if pid=$(pid_of "$component"); then
            kill -TERM "$pid" 2> /dev/null || true
            pids+=("$component:$pid")
        fi
        rm -f "$CP_STATE_DIR/pids/$component"
    done
    for _ in $(seq 75); do
        alive=0
        for entry in "${pids[@]}"; do kill -0 "${entry#*:}" 2> /dev/null && alive=1; done
        [ $alive = 0 ] && return 0
        sleep 0.2
    done
    for entry in "${pids[@]}"; do
        if kill -0 "${entry#*:}" 2> /dev/null; then
            echo "controlplane: ${entry%%:*} (pid ${entry#*:}) ignored SIGTERM for 15 s; killing it" >&2
            kill -KILL "${entry#*:}" 2> /dev/null || true
        fi
    done
}

# The node first (while the API server still answers), then the API server's other
# clients, then the API server (it drains while etcd still answers), then etcd.
rn_down
stop kwok kube-scheduler kube-controller-manager metrics-server traefik
stop kube-apiserver
stop etcd

if [ -d "$(rn_dir)" ] && ! rn_clean; then
    echo "controlplane: stopped; state kept in $CP_STATE_DIR" >&2
    exit 1
elif $keep_state; then
    echo "controlplane: stopped; state kept in $CP_STATE_DIR" >&2
else
    rm -rf "$CP_STATE_DIR"
    echo "controlplane: stopped and removed $CP_STATE_DIR" >&2
fi
