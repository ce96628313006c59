#!/usr/bin/env bash
# Waits until every CustomResourceDefinition named is Established (60 s at most), with the
# kubectl on PATH and the current KUBECONFIG: wait-established.sh NAME...
# `kubectl wait --for=condition=Established` fails at once instead of waiting while a CRD just
# created still has `status.conditions: null` (".status.conditions accessor error"); only
# that failure is retried.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 CRD_NAME..." >&2; exit 2; }
deadline=$((SECONDS + 60))
until out=$(kubectl wait --for=condition=Established --timeout="$((deadline > SECONDS ? deadline - SECONDS : 1))s" \
    "${@/#/crd/}" 2>&1); do
    if [[ $out != *"accessor error"* ]] || [ $SECONDS -ge $deadline ]; then
        echo "$out" >&2
        exit 1
    fi
    sleep 0.2
done
