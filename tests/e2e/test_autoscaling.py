"""Autoscaling on WebSocket connections and the gateway's rebalancing settings, on a real API
server: `spec.gateway.autoscaling.connectionsPerPod` adds a `Pods` metric on
canvaschat_connections_active to the autoscaling/v2 HPA the API server accepts (and removing
it leaves CPU and memory only), and `spec.gateway.settings.rebalance*` reach the gateway's
environment and roll its pods. Out-of-range values are refused by the API server.

What this cannot show: the HPA controller reading the metric's value. That needs a custom
metrics adapter (prometheus-adapter or KEDA) serving custom.metrics.k8s.io, which this suite
does not run; the controller-manager's attempt to read the metric is checked instead."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from conftest import canvaschat, get_chat
from expectations import container_env
from kube import KubectlError, apply, eventually, get, kubectl, patch

CHAT = "chat"
METRIC = "canvaschat_connections_active"


def hpa(namespace: str) -> dict[str, Any]:
    obj = get("horizontalpodautoscalers.v2.autoscaling", f"{CHAT}-gateway", namespace)
    assert obj is not None, f"no HorizontalPodAutoscaler {CHAT}-gateway"
    return obj


def metric_kinds(obj: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(type, name, target type, target) of every metric of an HPA."""
    out = []
    for m in obj["spec"].get("metrics") or []:
        if m["type"] == "Resource":
            t = m["resource"]["target"]
            out.append(("Resource", m["resource"]["name"], t["type"], str(t.get("averageUtilization"))))
        elif m["type"] == "Pods":
            t = m["pods"]["target"]
            out.append(("Pods", m["pods"]["metric"]["name"], t["type"], str(t.get("averageValue"))))
        else:
            out.append((m["type"], "", "", ""))
    return out


CPU_MEMORY = [("Resource", "cpu", "Utilization", "70"), ("Resource", "memory", "Utilization", "80")]


def test_connections_per_pod_adds_a_pods_metric_the_api_server_accepts(
    namespace: str, ready_chat: Callable[..., Any]
) -> None:
    ready_chat(CHAT, {"gateway": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6, "connectionsPerPod": 750}}})
    obj = hpa(namespace)
    assert obj["apiVersion"] == "autoscaling/v2"
    assert metric_kinds(obj) == [*CPU_MEMORY, ("Pods", METRIC, "AverageValue", "750")], metric_kinds(obj)
    assert (obj["spec"]["minReplicas"], obj["spec"]["maxReplicas"]) == (2, 6)
    # The scale-down behaviour stays the gentle default: one step per minute after 300 s.
    down = obj["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] == 300
    assert {p["periodSeconds"] for p in down["policies"]} == {60}

    # The controller-manager's HPA controller takes the metric up: with no custom metrics
    # adapter it reports it cannot get it, naming the metric (a Warning event, as on a cluster
    # without prometheus-adapter); on a cluster whose adapter serves it, its value is in status.
    def tried_the_metric() -> bool:
        current = hpa(namespace).get("status", {}).get("currentMetrics") or []
        if any(m.get("type") == "Pods" and m["pods"]["metric"]["name"] == METRIC for m in current):
            return True
        events = kubectl(
            "get", "events", "-n", namespace,
            "--field-selector", f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={CHAT}-gateway",
            "-o", "jsonpath={range .items[*]}{.reason}: {.message}{'\\n'}{end}",
        )
        assert "FailedGetPodsMetric" in events and METRIC in events, f"HPA events so far:\n{events}"
        return True

    eventually(tried_the_metric, timeout=90, interval=2, what=f"the HPA controller to ask for {METRIC}")

    # Changing the target updates it; removing the field leaves CPU and memory only.
    patch("canvaschats.canvaschat.io", CHAT, namespace, {"spec": {"gateway": {"autoscaling": {"connectionsPerPod": 1500}}}})

    def retargeted() -> bool:
        kinds = metric_kinds(hpa(namespace))
        assert kinds == [*CPU_MEMORY, ("Pods", METRIC, "AverageValue", "1500")], kinds
        return True

    eventually(retargeted, timeout=60, what="the HPA's connections target 1500")
    patch("canvaschats.canvaschat.io", CHAT, namespace, {"spec": {"gateway": {"autoscaling": {"connectionsPerPod": None}}}})

    def cpu_memory_only() -> bool:
        kinds = metric_kinds(hpa(namespace))
        assert kinds == CPU_MEMORY, kinds
        return True

    eventually(cpu_memory_only, timeout=60, what="the HPA back on CPU and memory only")


def gateway_env(namespace: str) -> tuple[dict[str, str], dict[str, str]]:
    """The gateway container's effective environment and the pod template's annotations."""
    deployment = get("deployments.apps", f"{CHAT}-gateway", namespace)
    assert deployment is not None, f"no Deployment {CHAT}-gateway"
    template = deployment["spec"]["template"]
    return container_env(template["spec"], namespace), template["metadata"].get("annotations") or {}


def rebalance_env(env: dict[str, str]) -> tuple[str | None, str | None, str | None]:
    return tuple(env.get(f"CANVASCHAT_REBALANCE{suffix}") for suffix in ("", "_TOLERANCE", "_RATE"))  # type: ignore[return-value]


def test_rebalance_settings_reach_the_gateway_env(namespace: str, ready_chat: Callable[..., Any]) -> None:
    ready_chat(CHAT)
    env, annotations = gateway_env(namespace)
    assert rebalance_env(env) == ("true", "0.2", "5"), rebalance_env(env)
    before = annotations.get("canvaschat.io/config-hash")
    assert before, f"pod template annotations {annotations}"

    settings = {"rebalance": False, "rebalanceTolerance": 0.5, "rebalanceRate": 25}
    patch("canvaschats.canvaschat.io", CHAT, namespace, {"spec": {"gateway": {"settings": settings}}})

    def changed() -> bool:
        env, annotations = gateway_env(namespace)
        assert rebalance_env(env) == ("false", "0.5", "25"), rebalance_env(env)
        assert annotations.get("canvaschat.io/config-hash") != before, "the pod template's config hash did not change"
        return True

    eventually(changed, timeout=60, what="the new rebalance settings in the gateway's environment")
    assert get_chat(namespace, CHAT)["spec"]["gateway"]["settings"]["rebalanceTolerance"] == 0.5


@pytest.mark.parametrize(
    ("field", "gateway"),
    [
        ("spec.gateway.settings.rebalanceTolerance", {"settings": {"rebalanceTolerance": 0.01}}),
        ("spec.gateway.settings.rebalanceTolerance", {"settings": {"rebalanceTolerance": 10.5}}),
        ("spec.gateway.settings.rebalanceRate", {"settings": {"rebalanceRate": 0}}),
        ("spec.gateway.settings.rebalanceRate", {"settings": {"rebalanceRate": 10001}}),
        ("spec.gateway.settings.rebalance", {"settings": {"rebalance": "sometimes"}}),
        ("spec.gateway.autoscaling.connectionsPerPod", {"autoscaling": {"connectionsPerPod": 0}}),
    ],
)
def test_out_of_range_values_are_refused(namespace: str, field: str, gateway: dict[str, Any]) -> None:
    with pytest.raises(KubectlError) as refused:
        apply(canvaschat("bad", {"gateway": gateway}), namespace)
    assert field in refused.value.stderr, refused.value.stderr
    assert get("canvaschats.canvaschat.io", "bad", namespace) is None
