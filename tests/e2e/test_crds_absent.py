"""The operator on a cluster without the Gateway API CRDs: a CanvasChat asking for an HTTPRoute
gets a clear condition, everything else is applied and the operator keeps running. Named to
run before test_examples.py and test_routing.py, which install the CRDs; skipped when the
cluster already has them."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import canvaschat, get_chat
from crds import ROUTE_CRD, host, served
from kube import apply, condition, eventually, get


def route_spec(hostname: str) -> dict[str, Any]:
    return {"httpRoute": {"parentRefs": [{"name": "public", "namespace": "infra"}], "hostnames": [hostname]}}


def test_http_route_without_gateway_api_crds_is_a_clear_condition(namespace: str, operator: Any) -> None:
    if served(ROUTE_CRD):
        pytest.skip("this cluster has the Gateway API CRDs")
    apply(canvaschat("chat", route_spec(host())), namespace)

    def degraded() -> dict[str, Any]:
        chat = get_chat(namespace, "chat")
        cond = condition(chat, "Degraded")
        assert cond and cond["status"] == "True" and "NotServed" in cond["reason"], f"Degraded is {cond}"
        assert "Gateway API" in cond["message"], cond["message"]
        route = condition(chat, "RouteAccepted")
        assert route and route["status"] == "False" and route["reason"] == "GatewayAPIMissing", f"RouteAccepted is {route}"
        return chat

    eventually(degraded, timeout=60, what="Degraded NotServed and RouteAccepted GatewayAPIMissing")
    # Everything else is still applied, and the operator keeps serving.
    assert get("deployment", "chat-gateway", namespace) is not None
    for op in getattr(operator, "running", lambda: [])():
        assert op.alive() and op.ready(), op.log_tail()
