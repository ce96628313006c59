"""Sentinel mode on a real API server: the CRD accepts a sentinel-mode CanvasChat, the
operator creates its children (3 Redis pods' StatefulSet with a Sentinel beside each,
Service N-redis-sentinel, PodDisruptionBudget N-redis, gateways on the Sentinel URL), and
CEL refuses switching an existing chat's mode in either direction and bad pod counts.
"""

from __future__ import annotations

import pytest

from conftest import canvaschat
from kube import KubectlError, apply, eventually, get


def test_sentinel_mode_chat_gets_its_children(namespace: str) -> None:
    apply(canvaschat("ha", {"redis": {"mode": "sentinel"}}), namespace)

    def children() -> bool:
        sts = get("statefulsets.apps", "ha-redis", namespace)
        assert sts, "no StatefulSet ha-redis"
        assert sts["spec"]["replicas"] == 3
        names = [c["name"] for c in sts["spec"]["template"]["spec"]["containers"]]
        assert names == ["redis", "sentinel"], names
        sentinel = get("services", "ha-redis-sentinel", namespace)
        assert sentinel and sentinel["spec"]["ports"][0]["port"] == 26379
        pdb = get("poddisruptionbudgets.policy", "ha-redis", namespace)
        assert pdb and pdb["spec"]["maxUnavailable"] == 1
        deployment = get("deployments.apps", "ha-gateway", namespace)
        assert deployment, "no gateway Deployment"
        config = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"]
        url = (get("configmaps", config, namespace) or {}).get("data", {}).get("CANVASCHAT_REDIS_URL", "")
        assert url.startswith(f"redis-sentinel://ha-redis-0.ha-redis-headless.{namespace}.svc:26379,"), url
        assert url.endswith("/0?sentinelServiceName=canvaschat"), url
        return True

    eventually(children, timeout=60, what="sentinel-mode children")


@pytest.mark.parametrize(("first", "then"), [({}, {"redis": {"mode": "sentinel"}}), ({"redis": {"mode": "sentinel"}}, {"redis": {"mode": "standalone"}})])
def test_mode_cannot_change(namespace: str, first: dict, then: dict) -> None:
    apply(canvaschat("fixed", first), namespace)
    with pytest.raises(KubectlError) as refused:
        apply(canvaschat("fixed", then), namespace)
    assert "spec.redis.mode cannot change" in str(refused.value)


@pytest.mark.parametrize("redis", [{"mode": "sentinel", "replicas": 4}, {"mode": "sentinel", "replicas": 1}, {"replicas": 3}])
def test_bad_redis_pod_counts_are_refused(namespace: str, redis: dict) -> None:
    with pytest.raises(KubectlError) as refused:
        apply(canvaschat("bad-count", {"redis": redis}), namespace)
    assert "redis.replicas must be 1 in standalone mode" in str(refused.value)
