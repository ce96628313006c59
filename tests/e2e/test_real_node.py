"""On a real node (CANVASCHAT_E2E_REAL_NODE=1: run.sh starts `tests/controlplane/up.sh
--real-node` and imports the images of scripts/build-images.sh): a CanvasChat runs as real
gateway and Redis containers, and a chat passes between the two gateway pods over the pod
network and through the gateway Service's ClusterIP, from this host. Every address is
checked with `ip route get` first: on the node's bridge or loopback, nowhere else.
"""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest
from chat_client import chat_between
from conftest import canvaschat, wait_ready
from kube import apply, get, list_objects

pytestmark = pytest.mark.skipif(
    os.environ.get("CANVASCHAT_E2E_REAL_NODE") != "1", reason="needs a real node (CANVASCHAT_E2E_REAL_NODE=1)"
)
# The node's bridge (tests/controlplane/real-node.sh).
LOCAL_DEVICES = ("ccbr0", "lo")


def routed_locally(address: str) -> None:
    route = subprocess.run(["ip", "-4", "route", "get", address], capture_output=True, text=True, check=True).stdout
    words = route.split()
    assert "dev" in words and words[words.index("dev") + 1] in LOCAL_DEVICES, f"{address} is routed off the node: {route}"


def test_chat_between_two_gateway_pods(namespace: str) -> None:
    redis_image = os.environ["CANVASCHAT_E2E_REDIS_IMAGE"]
    spec = {"redis": {"image": redis_image, "imagePullPolicy": "Never"}, "gateway": {"imagePullPolicy": "Never"}}
    apply(canvaschat("chat", spec), namespace)
    # Real containers start in seconds, but the first Redis volume and probes take longer.
    wait_ready(namespace, "chat", timeout=float(os.environ.get("CANVASCHAT_E2E_READY_TIMEOUT", "300")))

    pods = [
        p
        for p in list_objects("pods", namespace, "app.kubernetes.io/component=gateway")
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]
    assert len(pods) >= 2, f"ready gateway pods: {[p['metadata']['name'] for p in pods]}"
    for pod in pods:
        status = pod["status"]["containerStatuses"][0]
        assert status["containerID"].startswith("containerd://"), status
    port = next(c["containerPort"] for c in pods[0]["spec"]["containers"][0]["ports"] if c["name"] == "http")
    ips = [p["status"]["podIP"] for p in pods[:2]]
    for ip in ips:
        routed_locally(ip)
    # alice on one pod, bob on the other: the message crosses pods through the real Redis.
    asyncio.run(asyncio.wait_for(chat_between(*(f"ws://{ip}:{port}" for ip in ips)), 60))

    service = get("services", "chat-gateway", namespace)
    assert service is not None
    cluster_ip, service_port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]
    routed_locally(cluster_ip)
    base = f"ws://{cluster_ip}:{service_port}"
    asyncio.run(asyncio.wait_for(chat_between(base, base), 60))
