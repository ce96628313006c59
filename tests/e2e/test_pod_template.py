"""The pod templates the operator writes are real: run the gateway Deployment's and the
Redis StatefulSet's containers as local processes, with Service names mapped to loopback,
and pass a chat between two gateway replicas over WebSockets.

This proves the configuration the operator writes is the configuration the gateway reads.
What each container runs is resolved against the image it names (tests/e2e/images.py: the
Dockerfile's ENTRYPOINT and CMD under the template's command and args), so a template or an
image that would start another program fails here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from chat_client import chat_between
from conftest import ARTIFACTS, TARGET
from expectations import container_env
from kube import eventually, get, kubectl
from operator_runner import free_port
from pod_processes import gateway_process, gateways_ready, local_processes, redis_command

CHAT = "real"
# Characters that break a password pasted into a redis:// URL or a shell command line.
PASSWORD = 'p/@:#?%w rd"$x\\'
SECRET = "real-redis-password"
SPEC = {
    "redis": {"passwordSecretRef": {"name": SECRET, "key": "pw"}},
    "gateway": {
        "autoscaling": {"enabled": False},
        "replicas": 2,
        "settings": {"maxMessageBytes": 2048, "rateLimitPerMinute": 50, "logLevel": "debug"},
    },
}
GATEWAY_BIN = Path(os.environ.get("CANVASCHAT_GATEWAY_BIN", TARGET / "release" / "canvaschat-gateway"))
REDIS_SERVER = os.environ.get("CANVASCHAT_REDIS_SERVER", "/usr/bin/redis-server")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    with local_processes(tmp_path, ARTIFACTS, "pod-template") as start:
        yield start


def redis_env(sts: dict[str, Any], namespace: str) -> dict[str, str]:
    """The Redis container's environment (the password from the Secret), with PATH leading
    to the local redis-server."""
    env = container_env(sts["spec"]["template"]["spec"], namespace)
    env["PATH"] = f"{Path(REDIS_SERVER).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return env


def local_redis_url(redis_port: int) -> Callable[[str], str]:
    """The gateways' redis:// URL with the Redis Service moved to the local port."""

    def local(url: str) -> str:
        parts = urlsplit(url)
        assert parts.hostname and parts.hostname.startswith(f"{CHAT}-redis"), f"CANVASCHAT_REDIS_URL {url} names no {CHAT}-redis Service"
        auth = f"{parts.username or ''}:{parts.password}@" if parts.password else ""
        return urlunsplit((parts.scheme, f"{auth}127.0.0.1:{redis_port}", parts.path, parts.query, ""))

    return local


def test_gateway_and_redis_run_from_the_operator_pod_templates(
    namespace: str, ready_chat: Callable[..., Any], processes: Callable[..., subprocess.Popen], tmp_path: Path
) -> None:
    if not GATEWAY_BIN.is_file():
        pytest.fail(f"gateway binary {GATEWAY_BIN} is missing: run `cargo build --release -p canvaschat-gateway`")
    if not shutil.which(REDIS_SERVER):
        pytest.fail(f"{REDIS_SERVER} is missing: apt-get install -y redis-server")
    kubectl("create", "secret", "generic", SECRET, "-n", namespace, f"--from-literal=pw={PASSWORD}")
    ready_chat(CHAT, SPEC)
    sts = get("statefulsets.apps", f"{CHAT}-redis", namespace)
    deployment = get("deployments.apps", f"{CHAT}-gateway", namespace)
    assert sts and deployment

    redis_port = free_port()
    (tmp_path / "redis").mkdir()
    env = redis_env(sts, namespace)
    assert env.get("REDIS_PASSWORD") == PASSWORD, "the Redis container does not get the Secret's password"
    redis = processes("redis", redis_command(sts, namespace, redis_port, tmp_path / "redis"), env)

    def redis_listening() -> bool:
        assert redis.poll() is None, f"redis-server exited {redis.returncode}"
        try:
            socket.create_connection(("127.0.0.1", redis_port), 1).close()
            return True
        except OSError:
            return False

    eventually(redis_listening, timeout=20, what="redis-server listening")
    # Auth is on: a client without the password is refused.
    with socket.create_connection(("127.0.0.1", redis_port), 2) as conn:
        conn.sendall(b"PING\r\n")
        assert conn.recv(64).startswith(b"-NOAUTH"), "Redis answered without a password"
    ps = subprocess.run(["ps", "-o", "args=", "-p", str(redis.pid)], capture_output=True, text=True).stdout
    assert "redis-server" in ps and PASSWORD not in ps, f"the password is on the command line: {ps!r}"

    ready_path = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]

    ports = [free_port(), free_port()]
    gateways = []
    for replica, port in enumerate(ports):
        command, env = gateway_process(deployment, namespace, port, replica, local_redis_url(redis_port), GATEWAY_BIN)
        assert env.get("CANVASCHAT_REDIS_PASSWORD") == PASSWORD, "the gateway does not get the password as its own variable"
        assert PASSWORD not in env["CANVASCHAT_REDIS_URL"]
        gateways.append(processes(f"gateway-{replica}", command, env))

    eventually(lambda: gateways_ready(gateways, ports, ready_path), timeout=30, what="both gateways ready against Redis")
    # 2048 is the spec's maxMessageBytes, below the gateway's own 4096 default: a refusal
    # proves the gateway read the limit from the operator's configuration.
    asyncio.run(asyncio.wait_for(chat_between(*(f"ws://127.0.0.1:{p}" for p in ports), max_message_bytes=2048), 60))
