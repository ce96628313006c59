"""The suite's promises that only a real node can check: every example becomes Ready with real
containers whose probes pass (test_examples.py's checks, then the pods themselves), the
gateway runs as its non-root user on a read-only root filesystem (asked of the running
container), and a Redis password full of URL delimiters works end to end."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chat_client import chat_between
from conftest import canvaschat, wait_ready
from kube import KubectlError, apply, kubectl, list_objects
from real_node import READY_TIMEOUT, gateway_pods, is_ready, marks, routed_locally
import test_examples
from test_examples import EXAMPLES, prerequisites

pytestmark = marks
__all__ = ["prerequisites"]  # the fixture test_examples' check needs, found by pytest here
GATEWAY_UID = "10001"


def assert_real_pods(namespace: str) -> None:
    """Every pod of the namespace runs real containers (containerd), all Ready; every
    container with probes declared has passed its readiness probe."""
    pods = list_objects("pods", namespace)
    assert pods, f"no pods in {namespace}"
    for pod in pods:
        name = pod["metadata"]["name"]
        assert pod["status"].get("phase") == "Running" and is_ready(pod), f"{name}: {pod['status']}"
        statuses = {s["name"]: s for s in pod["status"].get("containerStatuses") or []}
        for container in pod["spec"]["containers"]:
            status = statuses[container["name"]]
            assert status["containerID"].startswith("containerd://"), f"{name}/{container['name']}: {status}"
            assert status["ready"] and "running" in status["state"], f"{name}/{container['name']}: {status}"
        gateway = next((c for c in pod["spec"]["containers"] if c["name"] == "gateway"), None)
        if gateway:
            assert gateway.get("readinessProbe") and gateway.get("livenessProbe"), f"{name}: gateway without probes"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_real_pods(path: Path, namespace: str, prerequisites: Any) -> None:
    test_examples.test_example_becomes_ready(path, namespace, prerequisites)
    assert_real_pods(namespace)


def exec_in(namespace: str, pod: str, *command: str) -> str:
    return kubectl("exec", "-n", namespace, pod, "-c", "gateway", "--", *command)


def test_gateway_runs_as_its_user_on_a_read_only_root(namespace: str) -> None:
    apply(canvaschat("chat"), namespace)
    wait_ready(namespace, "chat", timeout=READY_TIMEOUT)
    pods = gateway_pods(namespace)
    assert pods, "no ready gateway pod"
    for pod in pods:
        name = pod["metadata"]["name"]
        # The gateway process itself (pid 1 of the container), as the kernel sees it.
        status = dict(line.split(":", 1) for line in exec_in(namespace, name, "cat", "/proc/1/status").splitlines())
        assert status["Name"].strip() == "canvaschat-gate", status["Name"]
        assert status["Uid"].split() == [GATEWAY_UID] * 4, f"{name}: Uid {status['Uid']}"
        assert status["NoNewPrivs"].strip() == "1", f"{name}: NoNewPrivs {status['NoNewPrivs']}"
        mounts = exec_in(namespace, name, "cat", "/proc/1/mountinfo").splitlines()
        root = [m.split() for m in mounts if m.split()[4] == "/"]
        assert root and "ro" in root[-1][5].split(","), f"{name}: root mount {root}"
        with pytest.raises(KubectlError) as refused:
            exec_in(namespace, name, "sh", "-c", ": > /usr/local/bin/written")
        assert "Read-only file system" in refused.value.stderr, refused.value.stderr


# Every character that ends a part of a redis:// URL, and the escape character.
PASSWORD = "p/@:#?%25 w&rd"


def test_redis_password_with_url_delimiters(namespace: str) -> None:
    kubectl("create", "secret", "generic", "chat-redis-password", "-n", namespace, f"--from-literal=password={PASSWORD}")
    apply(canvaschat("chat", {"redis": {"passwordSecretRef": {"name": "chat-redis-password"}}}), namespace)
    wait_ready(namespace, "chat", timeout=READY_TIMEOUT)

    redis = list_objects("pods", namespace, "app.kubernetes.io/component=redis")
    assert len(redis) == 1, [p["metadata"]["name"] for p in redis]
    pod = redis[0]["metadata"]["name"]

    def ping(password: str | None) -> str:
        # The container's environment holds REDISCLI_AUTH (for its probes): replaced or removed.
        auth = ["-u", "REDISCLI_AUTH"] if password is None else [f"REDISCLI_AUTH={password}"]
        out = subprocess.run(
            ["kubectl", "exec", "-n", namespace, pod, "-c", "redis", "--", "env", *auth, "redis-cli", "ping"],
            capture_output=True, text=True, timeout=60,
        )
        return (out.stdout + out.stderr).strip()

    # Redis itself demands exactly that password.
    assert "NOAUTH" in ping(None), ping(None)
    assert "WRONGPASS" in ping(PASSWORD[:-1]), ping(PASSWORD[:-1])
    assert ping(PASSWORD) == "PONG", ping(PASSWORD)

    # The gateways use it: a chat crosses the two pods through Redis.
    pods = gateway_pods(namespace)
    assert len(pods) >= 2, [p["metadata"]["name"] for p in pods]
    ips = [p["status"]["podIP"] for p in pods[:2]]
    routed_locally(*ips)
    port = next(c["containerPort"] for c in pods[0]["spec"]["containers"][0]["ports"] if c["name"] == "http")
    asyncio.run(asyncio.wait_for(chat_between(*(f"ws://{ip}:{port}" for ip in ips)), 60))
