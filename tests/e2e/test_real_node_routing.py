"""On a real node, through a real Ingress controller and Gateway API implementation (Traefik,
tests/controlplane/traefik.sh, on 127.0.0.1): a chat passes between users on the two gateway
pods through `spec.ingress` (IngressClass traefik) and through `spec.httpRoute` (parentRef the
Gateway Traefik programs), with the Python WebSocket client and with Chromium
(browser_chat.mjs, the frontend's own page). The browser resolves the chat's host name to
Traefik's entrypoint (--host-resolver-rules), so the Host header and the page's Origin are
the chat's own, as behind a public load balancer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from typing import Any

import pytest

from chat_client import recv_type
from conftest import REPO, canvaschat, get_chat, wait_ready
from crds import ROUTE_CRD, host
from kube import apply, condition, eventually, get
from real_node import READY_TIMEOUT, connections, gateway_pods, join, marks, routed_locally, traefik

pytestmark = marks
BROWSER_SCRIPT = REPO / "tests" / "e2e" / "browser_chat.mjs"


@pytest.fixture
def routed_chat(namespace: str) -> dict[str, Any]:
    """A chat of two gateway pods with an Ingress and an HTTPRoute, both accepted by Traefik
    and serving the page; every address Traefik forwards to checked as local."""
    (web_host, web_port), gw_namespace, gw_name = traefik()
    hosts = {"ingress": host(), "route": host()}
    spec = {
        "gateway": {"replicas": 2, "autoscaling": {"enabled": False}},
        "ingress": {"enabled": True, "className": "traefik", "host": hosts["ingress"]},
        "httpRoute": {"parentRefs": [{"name": gw_name, "namespace": gw_namespace}], "hostnames": [hosts["route"]]},
    }
    apply(canvaschat("chat", spec), namespace)
    wait_ready(namespace, "chat", timeout=READY_TIMEOUT)

    def accepted() -> bool:
        cond = condition(get_chat(namespace, "chat"), "RouteAccepted")
        assert cond and cond["status"] == "True", f"RouteAccepted is {cond}"
        route = get(ROUTE_CRD, "chat", namespace)
        assert route is not None
        parents = route.get("status", {}).get("parents") or []
        assert any(p["controllerName"] == "traefik.io/gateway-controller" for p in parents), parents
        return True

    eventually(accepted, timeout=60, what="the HTTPRoute accepted by Traefik")
    eventually(lambda: len(gateway_pods(namespace)) == 2, timeout=READY_TIMEOUT, what="2 ready gateway pods")
    ips = [p["status"]["podIP"] for p in gateway_pods(namespace)]
    routed_locally(web_host, *ips)

    def served(name: str) -> bool:
        out = subprocess.run(
            ["curl", "-fsS", "--max-time", "5", "-H", f"Host: {name}", f"http://{web_host}:{web_port}/"],
            capture_output=True, text=True,
        )
        assert out.returncode == 0 and "<html" in out.stdout.lower(), f"{name}: {out.stderr or out.stdout[:200]}"
        return True

    for name in hosts.values():
        eventually(lambda name=name: served(name), timeout=60, what=f"Traefik serving the chat page for {name}")
    return {"hosts": hosts, "web": (web_host, web_port), "pod_ips": ips}


async def chat_across_pods(name: str, web: tuple[str, int], pod_ips: list[str]) -> None:
    """alice and bob join through Traefik; bob reconnects until he is on the other pod than
    alice (each pod's connection gauge says where they are); then they chat both ways."""
    channel = f"route-{uuid.uuid4().hex[:8]}"
    base = f"ws://{name}/api/chat?channel={channel}&uid="
    assert [connections(ip) for ip in pod_ips] == [0, 0], "gateway pods hold connections before the test"
    alice, _, _ = await join(base + "alice", web)
    bob = None
    for _attempt in range(10):
        bob, sync, _ = await join(base + "bob", web)
        counts = [connections(ip) for ip in pod_ips]
        if counts == [1, 1]:
            break
        await bob.close()
        await asyncio.sleep(0.2)
        bob = None
    assert bob is not None, f"10 joins through {name} all landed on alice's pod (connections per pod {counts})"
    assert {"alice", "bob"} <= set(sync["users"]), f"bob's user_sync across pods: {sync}"
    hello = {"type": "chat", "payload": f"hello via {name}", "position": {"x": 3, "y": 4}, "client_msg_id": "m1"}
    await alice.send(json.dumps(hello))
    ack = await recv_type(alice, "ack")
    got = await recv_type(bob, "chat")
    assert (got["user_id"], got["payload"], got["message_id"]) == ("alice", hello["payload"], ack["message_id"]), got
    await bob.send(json.dumps({"type": "chat", "payload": "back", "position": {"x": 1, "y": 1}}))
    got = await recv_type(alice, "chat")
    assert (got["user_id"], got["payload"]) == ("bob", "back"), got
    await bob.close()
    await alice.close()


def test_python_clients_chat_across_pods(routed_chat: dict[str, Any]) -> None:
    for name in routed_chat["hosts"].values():
        asyncio.run(asyncio.wait_for(chat_across_pods(name, routed_chat["web"], routed_chat["pod_ips"]), 120))


def test_chromium_chats_across_pods(routed_chat: dict[str, Any]) -> None:
    web_host, web_port = routed_chat["web"]
    node_modules = REPO / "frontend" / "node_modules" / "playwright-core"
    assert node_modules.is_dir(), "frontend/node_modules is missing (scripts/install-deps.sh runs npm ci)"
    for name in routed_chat["hosts"].values():
        out = subprocess.run(
            ["node", str(BROWSER_SCRIPT), name, f"{web_host}:{web_port}", *routed_chat["pod_ips"]],
            capture_output=True, text=True, timeout=180,
        )
        assert out.returncode == 0, f"browser chat through {name} failed:\n{out.stdout}\n{out.stderr}"
        assert f"chat passed between pods through {name}" in out.stdout, out.stdout
