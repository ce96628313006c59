#!/usr/bin/env bash
# Starts Traefik v3 (build.sh traefik) as a host process beside a control plane started with
# up.sh --real-node (same CANVASCHAT_CP_DIR): the Ingress controller of IngressClass
# "traefik" (kubernetesIngress provider) and the Gateway API controller of GatewayClass
# "traefik" (kubernetesGateway provider) with one Gateway, default/canvaschat, whose HTTP
# listener is Traefik's one entrypoint on 127.0.0.1. Traefik forwards to the pods' IPs on the
# node's bridge (checked with `ip route get`). The Gateway API CRDs (build.sh gateway-api)
# are installed when missing. Writes $CP_STATE_DIR/traefik.env:
#   TRAEFIK_WEB=127.0.0.1:PORT          where Ingresses and HTTPRoutes are served (by Host)
#   TRAEFIK_GATEWAY=default/canvaschat  the Gateway an HTTPRoute names as its parent
# Test-only: it reads the cluster with the admin kubeconfig; its version check and usage
# statistics are off, so nothing leaves this machine. down.sh stops it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$CP_SRC_DIR/real-node.sh"

log() { echo "traefik: $*" >&2; }
export KUBECONFIG=$CP_STATE_DIR/admin.kubeconfig
[ -d "$(rn_dir)" ] || { log "no real node in $CP_STATE_DIR (start it with up.sh --real-node)"; exit 1; }

bin_dir=$("$CP_SRC_DIR/build.sh" kubectl traefik gateway-api | tail -n 1)
export PATH=$bin_dir:$PATH

if ! kubectl get crd httproutes.gateway.networking.k8s.io > /dev/null 2>&1; then
    kubectl apply --server-side -f "$(readlink -f "$(dirname "$bin_dir")/crds/gateway-api")" > /dev/null
fi
"$CP_SRC_DIR/wait-established.sh" gateways.gateway.networking.k8s.io \
    httproutes.gateway.networking.k8s.io gatewayclasses.gateway.networking.k8s.io > /dev/null

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
web=$(free_port)
ping=$(free_port)
rn_routes_local 127.0.0.1 "$RN_GATEWAY"

# Traefik binds a Gateway listener to the entrypoint of the same port.
kubectl apply -f - > /dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: traefik}
spec: {controller: traefik.io/ingress-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: traefik}
spec: {controllerName: traefik.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: canvaschat, namespace: default}
spec:
  gatewayClassName: traefik
  listeners:
    - name: web
      protocol: HTTP
      port: $web
      allowedRoutes: {namespaces: {from: All}}
EOF

setsid "$bin_dir/traefik" \
    --global.checkNewVersion=false --global.sendAnonymousUsage=false \
    --entryPoints.web.address="127.0.0.1:$web" --entryPoints.ping.address="127.0.0.1:$ping" \
    --ping=true --ping.entryPoint=ping --log.level=INFO --log.noColor=true \
    --providers.kubernetesIngress=true --providers.kubernetesIngress.ingressEndpoint.ip=127.0.0.1 \
    --providers.kubernetesGateway=true --providers.kubernetesGateway.statusAddress.ip=127.0.0.1 \
    > "$CP_STATE_DIR/logs/traefik.log" 2>&1 < /dev/null &
echo $! > "$CP_STATE_DIR/pids/traefik"

deadline=$((SECONDS + 60))
until curl -fs --max-time 2 "http://127.0.0.1:$ping/ping" > /dev/null; do
    kill -0 "$(cat "$CP_STATE_DIR/pids/traefik")" 2> /dev/null ||
        { log "exited: $(tail -n 20 "$CP_STATE_DIR/logs/traefik.log")"; exit 1; }
    [ $SECONDS -lt $deadline ] || { log "no /ping answer after 60 s"; exit 1; }
    sleep 0.2
done
kubectl wait --for=condition=Programmed --timeout=60s gateway/canvaschat -n default > /dev/null ||
    { log "the Gateway default/canvaschat was not programmed: $(tail -n 20 "$CP_STATE_DIR/logs/traefik.log")"; exit 1; }
printf 'TRAEFIK_WEB=127.0.0.1:%s\nTRAEFIK_GATEWAY=default/canvaschat\n' "$web" > "$CP_STATE_DIR/traefik.env"
log "serving Ingresses (class traefik) and HTTPRoutes (Gateway default/canvaschat) on 127.0.0.1:$web"
