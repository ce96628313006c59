"""On a real node (CANVASCHAT_E2E_REAL_NODE=1: run.sh starts `tests/controlplane/up.sh
--real-node` and imports the images of scripts/build-images.sh): a CanvasChat runs as real
gateway and Redis containers, and a chat passes between the two gateway pods over the pod
network and through the gateway Service's ClusterIP, from this host. Every address is
checked with `ip route get` first: on the node's bridge or loopback, nowhere else.
"""

from __future__ import annotations

import asyncio

from chat_client import chat_between
from conftest import canvaschat, wait_ready
from kube import apply, get
from real_node import READY_TIMEOUT, gateway_pods, marks, routed_locally

pytestmark = marks


def test_chat_between_two_gateway_pods(namespace: str) -> None:
    # canvaschat() points the gateway and Redis at the images run.sh imported.
    apply(canvaschat("chat"), namespace)
    wait_ready(namespace, "chat", timeout=READY_TIMEOUT)

    pods = gateway_pods(namespace)
    assert len(pods) >= 2, f"ready gateway pods: {[p['metadata']['name'] for p in pods]}"
    for pod in pods:
        status = pod["status"]["containerStatuses"][0]
        assert status["containerID"].startswith("containerd://"), status
    port = next(c["containerPort"] for c in pods[0]["spec"]["containers"][0]["ports"] if c["name"] == "http")
    ips = [p["status"]["podIP"] for p in pods[:2]]
    routed_locally(*ips)
    # alice on one pod, bob on the other: the message crosses pods through the real Redis.
    asyncio.run(asyncio.wait_for(chat_between(*(f"ws://{ip}:{port}" for ip in ips)), 60))

    service = get("services", "chat-gateway", namespace)
    assert service is not None
    cluster_ip, service_port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]
    routed_locally(cluster_ip)
    base = f"ws://{cluster_ip}:{service_port}"
    asyncio.run(asyncio.wait_for(chat_between(base, base), 60))
