#!/usr/bin/env bash
# Runs beside a real node (up.sh --real-node): the controller-manager's test-only hostPath
# provisioner makes each volume directory root-owned with mode 0750, so pods of non-root
# users (Redis runs as 999) cannot write their volume; hostPath volumes get no fsGroup.
# This opens each new one to 0777, as kind's local-path-provisioner makes them. Only
# directories under /tmp/hostpath_pv/, where that provisioner puts them, are touched.
# Usage: hostpath-modes.sh KUBECTL KUBECONFIG
set -uo pipefail
while true; do
    "$1" --kubeconfig "$2" get pv --watch -o jsonpath='{.spec.hostPath.path}{"\n"}' |
        while read -r path; do
            case $path in
            /tmp/hostpath_pv/*) if [ -d "$path" ]; then chmod 0777 "$path"; fi ;;
            esac
        done
    # The watch ends when the API server closes it; start it again.
    sleep 1
done
