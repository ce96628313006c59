"""Running the containers of the operator's pod templates as local processes (shared by the
pod-template tests): logged child processes stopped at the end of a test, the Redis
container's command and the gateway container's process resolved as Kubernetes would start
them (tests/e2e/images.py) and moved to this host, and the gateways' readiness.

ConfigMaps and Secrets the templates name come from the cluster, or from `lookup` (see
expectations.container_env) when the objects were only rendered."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from conftest import REPO
from expectations import container_env
from images import dockerfile_for, parse_dockerfile, resolve
from kube import get

Lookup = Callable[[str, str, str], dict[str, Any] | None]


@contextmanager
def local_processes(cwd: Path, logs: Path, prefix: str) -> Iterator[Callable[..., subprocess.Popen]]:
    """A starter of child processes, each logging to `logs/prefix-NAME.log`; every one still
    running at the end is terminated (killed after 15 s), last started first."""
    started: list[tuple[subprocess.Popen, Any]] = []

    def start(name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (logs / f"{prefix}-{name}.log").open("wb")
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started.append((proc, log))
        return proc

    try:
        yield start
    finally:
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


def redis_command(sts: dict[str, Any], namespace: str, port: int, data_dir: Path, lookup: Lookup = get) -> list[str]:
    """The Redis container's command: `sh -c SCRIPT redis-server OPTIONS...`, where the
    script feeds the password to redis-server on stdin. It runs as the runtime would start it
    (redis is not our image, so the template must say what runs), with the same options on a
    private loopback port and directory, without snapshots."""
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["name"] == "redis", f"the Redis pod's first container is {container['name']}"
    args = resolve(container, pod.get("securityContext") or {}, container_env(pod, namespace, lookup=lookup)).argv
    assert args[:2] == ["sh", "-c"] and args[3] == "redis-server", f"unexpected Redis command: {args}"
    assert "requirepass" in args[2] and "redis-server -" in args[2], f"the start script sets no password: {args[2]}"
    options = args[4:]
    for option, value in (("--port", str(port)), ("--dir", str(data_dir)), ("--bind", "127.0.0.1"), ("--save", "")):
        options = with_option(options, option, value)
    return [*args[:4], *options]


def gateway_process(
    deployment: dict[str, Any],
    namespace: str,
    listen_port: int,
    replica: int,
    redis_url: Callable[[str], str],
    binary: Path,
    lookup: Lookup = get,
) -> tuple[list[str], dict[str, str]]:
    """The gateway container's process for one replica, resolved against gateway/Dockerfile
    as the kubelet and runtime would start it, then moved to this host: the image's binary
    and static files by their local builds, CANVASCHAT_REDIS_URL through `redis_url` (Service
    or pod names to loopback ports), the listeners on loopback ports."""
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    dockerfile = dockerfile_for(container["image"])
    assert dockerfile is not None, f"the gateway container runs {container['image']}, not an image of ours"
    image = parse_dockerfile(dockerfile)
    env = container_env(pod, namespace, lookup=lookup)
    for var in container.get("env") or []:
        field = ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if field:  # downward API: what the kubelet would fill in for this replica
            env[var["name"]] = {
                "metadata.name": f"{deployment['metadata']['name']}-local-{replica}",
                "metadata.namespace": namespace,
                "status.podIP": "127.0.0.1",
            }.get(field, f"local-{replica}")
    process = resolve(container, pod.get("securityContext") or {}, env)
    in_image = image.files.get(binary.name)
    assert in_image, f"{dockerfile} copies no {binary.name} into the image: {image.files}"
    assert process.argv[0] == in_image, f"the gateway container runs {process.argv}, not {in_image} ({dockerfile})"
    argv = [str(binary), *process.argv[1:]]

    env = dict(process.env)
    url = env.get("CANVASCHAT_REDIS_URL")
    assert url, f"the gateway pod template sets no CANVASCHAT_REDIS_URL: {sorted(env)}"
    env["CANVASCHAT_REDIS_URL"] = redis_url(url)
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


def gateways_ready(gateways: list[subprocess.Popen], ports: list[int], ready_path: str) -> bool:
    """True when every gateway answers its readiness path with 200 and both Redis checks ok;
    False while one is not listening yet; fails (for `eventually` to retry) while one is
    listening but not ready, and when one exited."""
    for proc, port in zip(gateways, ports, strict=True):
        assert proc.poll() is None, f"gateway on {port} exited {proc.returncode}"
        try:
            status, body = http_get(f"http://127.0.0.1:{port}{ready_path}")
        except urllib.error.URLError:
            return False  # not listening yet
        assert status == 200, f"{ready_path} on {port}: {status} {body}"
        assert json.loads(body)["checks"] == {"redis": "ok", "pubsub": "ok"}, body
    return True
