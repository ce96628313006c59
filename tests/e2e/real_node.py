"""What the real-node tests share (CANVASCHAT_E2E_REAL_NODE=1: run.sh starts
`tests/controlplane/up.sh --real-node`, Traefik and metrics-server, and imports the images of
scripts/build-images.sh). Every address a test sends to is checked with `ip route get` first:
on the node's bridge or loopback, nowhere else."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import urllib.request
from typing import Any

import pytest
import websockets

from kube import list_objects

REAL_NODE = os.environ.get("CANVASCHAT_E2E_REAL_NODE") == "1"
# Applied to every real-node test module: run.sh selects them with `-m real_node`, and they
# skip anywhere else.
marks = [
    pytest.mark.real_node,
    pytest.mark.skipif(not REAL_NODE, reason="needs a real node (CANVASCHAT_E2E_REAL_NODE=1)"),
]
# The node's bridge (tests/controlplane/real-node.sh) and loopback; elsewhere (kind) the
# caller names the devices its cluster's addresses are routed to.
LOCAL_DEVICES = tuple(os.environ.get("CANVASCHAT_E2E_LOCAL_DEVICES", "ccbr0,lo").split(","))
# Real containers start in seconds, but the first Redis volume and probes take longer.
READY_TIMEOUT = float(os.environ.get("CANVASCHAT_E2E_READY_TIMEOUT", "300"))
METRICS_PORT = 9090


def routed_locally(*addresses: str) -> None:
    for address in addresses:
        route = subprocess.run(["ip", "-4", "route", "get", address], capture_output=True, text=True, check=True).stdout
        words = route.split()
        assert "dev" in words and words[words.index("dev") + 1] in LOCAL_DEVICES, f"{address} is routed off the node: {route}"


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def gateway_pods(namespace: str, ready_only: bool = True) -> list[dict[str, Any]]:
    pods = list_objects("pods", namespace, "app.kubernetes.io/component=gateway")
    return [p for p in pods if is_ready(p) and not p["metadata"].get("deletionTimestamp")] if ready_only else pods


def traefik() -> tuple[tuple[str, int], str, str]:
    """Traefik's entrypoint (host, port) and the Gateway (namespace, name) it programs."""
    host, _, port = os.environ["CANVASCHAT_E2E_TRAEFIK_WEB"].rpartition(":")
    gw_namespace, _, gw_name = os.environ["CANVASCHAT_E2E_TRAEFIK_GATEWAY"].partition("/")
    return (host, int(port)), gw_namespace, gw_name


def metrics(pod_ip: str) -> str:
    routed_locally(pod_ip)
    with urllib.request.urlopen(f"http://{pod_ip}:{METRICS_PORT}/metrics", timeout=5) as resp:
        return resp.read().decode()


def connections(pod_ip: str) -> int:
    found = re.search(r"^canvaschat_connections_active (\d+)", metrics(pod_ip), re.M)
    assert found, f"no canvaschat_connections_active on {pod_ip}"
    return int(found.group(1))


async def recv(ws: Any, timeout: float) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def join(
    url: str, connect_to: tuple[str, int] | None = None, since: tuple[int, str] | None = None, timeout: float = 30
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Connects (retrying while nothing serves the URL yet: a route being programmed, a pod
    going away) and reads user_sync and the history frame after it."""
    if since:
        url += f"&since={since[0]}&epoch={since[1]}"
    address = {"host": connect_to[0], "port": connect_to[1]} if connect_to else {}
    deadline = time.monotonic() + timeout
    while True:
        try:
            ws = await websockets.connect(url, open_timeout=5, **address)
            try:
                sync = await recv(ws, 10)
                assert sync["type"] == "user_sync", sync
                history = await recv(ws, 10)
                assert history["type"] == "history", history
                return ws, sync, history
            except (websockets.ConnectionClosed, TimeoutError):
                await ws.close()
                raise
        except (OSError, TimeoutError, websockets.InvalidStatus, websockets.InvalidHandshake, websockets.ConnectionClosed) as err:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not join {url} within {timeout} s: {err!r}") from err
        await asyncio.sleep(0.2)
