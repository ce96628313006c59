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
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from chat_client import chat_between
from conftest import ARTIFACTS, REPO, TARGET
from expectations import container_env
from images import dockerfile_for, parse_dockerfile, resolve
from kube import eventually, get, kubectl
from operator_runner import free_port

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
    started: list[tuple[subprocess.Popen, Any]] = []

    def start(name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (ARTIFACTS / f"pod-template-{name}.log").open("wb")
        proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started.append((proc, log))
        return proc

    yield start
    for proc, log in reversed(started):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


def with_option(args: list[str], option: str, value: str) -> list[str]:
    """args with `option value` replaced in place (redis-server applies some options, such
    as --dir, as it reads them, so a later duplicate is too late), or appended."""
    out = list(args)
    if option in out:
        out[out.index(option) + 1] = value
    else:
        out += [option, value]
    return out


def redis_command(sts: dict[str, Any], namespace: str, port: int, data_dir: Path) -> list[str]:
    """The Redis container's command: `sh -c SCRIPT redis-server OPTIONS...`, where the
    script feeds the password to redis-server on stdin. It runs as the runtime would start it
    (redis is not our image, so the template must say what runs), with the same options on a
    private loopback port and directory, without snapshots."""
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = resolve(container, pod.get("securityContext") or {}, container_env(pod, namespace)).argv
    assert args[:2] == ["sh", "-c"] and args[3] == "redis-server", f"unexpected Redis command: {args}"
    assert "requirepass" in args[2] and "redis-server -" in args[2], f"the start script sets no password: {args[2]}"
    options = args[4:]
    for option, value in (("--port", str(port)), ("--dir", str(data_dir)), ("--bind", "127.0.0.1"), ("--save", "")):
        options = with_option(options, option, value)
    return [*args[:4], *options]


def redis_env(sts: dict[str, Any], namespace: str) -> dict[str, str]:
    """The Redis container's environment (the password from the Secret), with PATH leading
    to the local redis-server."""
    env = container_env(sts["spec"]["template"]["spec"], namespace)
    env["PATH"] = f"{Path(REDIS_SERVER).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return env


def gateway_process(deployment: dict[str, Any], namespace: str, redis_port: int, listen_port: int, replica: int) -> tuple[list[str], dict[str, str]]:
    """The gateway container's process for one replica, resolved against gateway/Dockerfile
    as the kubelet and runtime would start it, then moved to this host: the image's binary
    and static files by their local builds, Redis and the listeners on loopback ports."""
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    dockerfile = dockerfile_for(container["image"])
    assert dockerfile is not None, f"the gateway container runs {container['image']}, not an image of ours"
    image = parse_dockerfile(dockerfile)
    env = container_env(pod, namespace)
    for var in container.get("env") or []:
        field = ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if field:  # downward API: what the kubelet would fill in for this replica
            env[var["name"]] = {
                "metadata.name": f"{CHAT}-gateway-local-{replica}",
                "metadata.namespace": namespace,
                "status.podIP": "127.0.0.1",
            }.get(field, f"local-{replica}")
    process = resolve(container, pod.get("securityContext") or {}, env)
    in_image = image.files.get(GATEWAY_BIN.name)
    assert in_image, f"{dockerfile} copies no {GATEWAY_BIN.name} into the image: {image.files}"
    assert process.argv[0] == in_image, f"the gateway container runs {process.argv}, not {in_image} ({dockerfile})"
    argv = [str(GATEWAY_BIN), *process.argv[1:]]

    env = dict(process.env)
    redis_url = env.get("CANVASCHAT_REDIS_URL")
    assert redis_url, f"the gateway pod template sets no CANVASCHAT_REDIS_URL: {sorted(env)}"
    parts = urlsplit(redis_url)
    assert parts.hostname and parts.hostname.startswith(f"{CHAT}-redis"), f"CANVASCHAT_REDIS_URL {redis_url} names no {CHAT}-redis Service"
    auth = f"{parts.username or ''}:{parts.password}@" if parts.password else ""
    env["CANVASCHAT_REDIS_URL"] = urlunsplit((parts.scheme, f"{auth}127.0.0.1:{redis_port}", parts.path, parts.query, ""))
    env["CANVASCHAT_LISTEN"] = f"127.0.0.1:{listen_port}"
    env["CANVASCHAT_ADMIN_LISTEN"] = "127.0.0.1:0"  # replicas share this host: no fixed admin port
    # The image's static files are the frontend build.
    if env.get("CANVASCHAT_STATIC_DIR") == image.files.get("dist"):
        env.pop("CANVASCHAT_STATIC_DIR")
        static = REPO / "frontend" / "dist"
        if static.is_dir():
            env["CANVASCHAT_STATIC_DIR"] = str(static)
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    return argv, env


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


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
        command, env = gateway_process(deployment, namespace, redis_port, port, replica)
        assert env.get("CANVASCHAT_REDIS_PASSWORD") == PASSWORD, "the gateway does not get the password as its own variable"
        assert PASSWORD not in env["CANVASCHAT_REDIS_URL"]
        gateways.append(processes(f"gateway-{replica}", command, env))

    def ready() -> bool:
        for proc, port in zip(gateways, ports, strict=True):
            assert proc.poll() is None, f"gateway on {port} exited {proc.returncode}"
            try:
                status, body = http_get(f"http://127.0.0.1:{port}{ready_path}")
            except urllib.error.URLError:
                return False  # not listening yet
            assert status == 200, f"{ready_path} on {port}: {status} {body}"
            assert json.loads(body)["checks"] == {"redis": "ok", "pubsub": "ok"}, body
        return True

    eventually(ready, timeout=30, what="both gateways ready against Redis")
    # 2048 is the spec's maxMessageBytes, below the gateway's own 4096 default: a refusal
    # proves the gateway read the limit from the operator's configuration.
    asyncio.run(asyncio.wait_for(chat_between(*(f"ws://127.0.0.1:{p}" for p in ports), max_message_bytes=2048), 60))
