"""Gateway API HTTPRoute and Prometheus Operator PodMonitor children: the operator works on a
cluster without their CRDs (a clear condition, no crash), and once the real CRDs are installed
owns HTTPRoute N and PodMonitor N-gateway, reports the route's conditions, and deletes both
when their fields go. test_crds_absent.py checks a cluster without them (it runs first)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import canvaschat, get_chat
from crds import MONITOR_CRD, ROUTE_CRD, host, install_crds
from kube import apply, condition, eventually, get, kubectl, patch


def route_spec(hostname: str) -> dict[str, Any]:
    return {"httpRoute": {"parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "http"}], "hostnames": [hostname]}}


@pytest.fixture(scope="module")
def gateway_api(operator: Any) -> None:
    """The real Gateway API and Prometheus Operator CRDs; the operator restarted so it
    discovers and watches them (the watch starts with the process)."""
    install_crds("gateway-api", ROUTE_CRD)
    install_crds("prometheus-operator", MONITOR_CRD)
    operator.restart()


def test_http_route_created_reported_and_removed(namespace: str, gateway_api: None) -> None:
    hostname = host()
    apply(canvaschat("chat", route_spec(hostname)), namespace)

    def route() -> dict[str, Any]:
        obj = get(ROUTE_CRD, "chat", namespace)
        assert obj is not None, "no HTTPRoute chat"
        return obj

    obj = eventually(route, timeout=60, what="HTTPRoute chat")
    spec = obj["spec"]
    assert [(p["name"], p.get("namespace"), p.get("sectionName")) for p in spec["parentRefs"]] == [("public", "infra", "http")]
    assert spec["hostnames"] == [hostname]
    rule = spec["rules"][0]
    assert [(b["name"], b["port"]) for b in rule["backendRefs"]] == [("chat-gateway", 80)]
    service = get("service", "chat-gateway", namespace)
    assert service is not None and service["spec"]["ports"][0]["port"] == 80
    assert rule["matches"][0]["path"] == {"type": "PathPrefix", "value": "/"}
    owners = obj["metadata"].get("ownerReferences") or []
    assert any(o["kind"] == "CanvasChat" and o["name"] == "chat" and o.get("controller") for o in owners), owners

    def pending() -> bool:
        chat = get_chat(namespace, "chat")
        cond = condition(chat, "RouteAccepted")
        assert cond and cond["status"] == "False" and cond["reason"] == "Pending", f"RouteAccepted is {cond}"
        assert chat["status"].get("url") == f"http://{hostname}", chat["status"].get("url")
        return True

    eventually(pending, timeout=60, what="RouteAccepted Pending before any Gateway answered")

    # What a Gateway controller writes once it accepted the route and resolved its backend.
    generation = obj["metadata"]["generation"]
    parent_status = {"status": {"parents": [{
        "parentRef": {"name": "public", "namespace": "infra", "sectionName": "http"},
        "controllerName": "example.test/gateway-controller",
        "conditions": [
            {"type": t, "status": "True", "reason": t, "message": "", "observedGeneration": generation,
             "lastTransitionTime": "2026-01-01T00:00:00Z"}
            for t in ("Accepted", "ResolvedRefs")
        ],
    }]}}
    kubectl("patch", ROUTE_CRD, "chat", "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(parent_status))

    def accepted() -> bool:
        cond = condition(get_chat(namespace, "chat"), "RouteAccepted")
        assert cond and cond["status"] == "True" and cond["reason"] == "Accepted", f"RouteAccepted is {cond}"
        return True

    eventually(accepted, timeout=60, what="RouteAccepted True from the route's status")

    # Drift on the route is reverted.
    patch(ROUTE_CRD, "chat", namespace, {"spec": {"hostnames": [host()]}})
    eventually(lambda: route()["spec"]["hostnames"] == [hostname], timeout=60, what="route hostnames restored")

    kubectl("patch", "canvaschat", "chat", "-n", namespace, "--type=json", "-p", '[{"op": "remove", "path": "/spec/httpRoute"}]')

    def removed() -> bool:
        assert get(ROUTE_CRD, "chat", namespace) is None, "HTTPRoute chat still exists"
        chat = get_chat(namespace, "chat")
        assert condition(chat, "RouteAccepted") is None, "RouteAccepted stays without httpRoute"
        assert chat["status"].get("url") == f"http://chat-gateway.{namespace}.svc"
        return True

    eventually(removed, timeout=60, what="HTTPRoute deleted with spec.httpRoute")


def test_pod_monitor_follows_spec_monitoring(namespace: str, gateway_api: None) -> None:
    apply(canvaschat("chat", {"monitoring": {"podMonitor": True}}), namespace)

    def monitor() -> dict[str, Any]:
        obj = get(MONITOR_CRD, "chat-gateway", namespace)
        assert obj is not None, "no PodMonitor chat-gateway"
        return obj

    obj = eventually(monitor, timeout=60, what="PodMonitor chat-gateway")
    endpoint = obj["spec"]["podMetricsEndpoints"][0]
    deployment = eventually(lambda: get("deployment", "chat-gateway", namespace), timeout=60, what="gateway Deployment")
    template = deployment["spec"]["template"]
    ports = {p.get("name") for c in template["spec"]["containers"] for p in c.get("ports", [])}
    assert endpoint["port"] in ports, f"PodMonitor port {endpoint['port']} is not a gateway container port {ports}"
    assert endpoint["path"] == "/metrics"
    selector = obj["spec"]["selector"]["matchLabels"]
    labels = template["metadata"]["labels"]
    assert selector and all(labels.get(k) == v for k, v in selector.items()), (selector, labels)

    patch("canvaschat", "chat", namespace, {"spec": {"monitoring": {"podMonitor": False}}})
    eventually(lambda: get(MONITOR_CRD, "chat-gateway", namespace) is None, timeout=60, what="PodMonitor deleted")
