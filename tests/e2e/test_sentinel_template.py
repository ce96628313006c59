"""Sentinel mode's pod template is real: render a sentinel-mode CanvasChat with the operator,
run each Redis pod's two containers (Redis and Sentinel) as local processes from the
rendered commands and environment, with the pods' DNS names mapped to loopback ports, then
SIGKILL the master: the Sentinels promote a replica, the data survives, and the old master,
restarted from the same template, rejoins as a replica of the new one.

Gateways are not part of this test yet (see the report of issue 12): it checks the Redis and
Sentinel side of the template.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from conftest import ARTIFACTS, TARGET
from kube import eventually
from operator_runner import free_port

OPERATOR_BIN = Path(os.environ.get("CANVASCHAT_OPERATOR_BIN", TARGET / "release" / "canvaschat-operator"))
REDIS_SERVER = os.environ.get("CANVASCHAT_REDIS_SERVER", "/usr/bin/redis-server")
REDIS_CLI = str(Path(REDIS_SERVER).parent / "redis-cli")
PASSWORD = 'p/@:#?%w rd"$x\\'
CHAT = """apiVersion: canvaschat.io/v1alpha1
kind: CanvasChat
metadata: {name: ha, namespace: chat}
spec:
  redis: {mode: sentinel}
"""


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    started: list[tuple[subprocess.Popen, Any]] = []

    def start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (ARTIFACTS / f"sentinel-template-{name}.log").open("wb")
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


def rendered_statefulset(tmp_path: Path) -> dict[str, Any]:
    spec = tmp_path / "chat.yaml"
    spec.write_text(CHAT)
    out = subprocess.run([str(OPERATOR_BIN), "render", "-f", str(spec)], capture_output=True, text=True, check=True, timeout=60).stdout
    return next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "StatefulSet")


def test_sentinel_template_fails_over_when_the_master_is_killed(processes: Callable[..., subprocess.Popen], tmp_path: Path) -> None:
    if not OPERATOR_BIN.is_file():
        pytest.fail(f"operator binary {OPERATOR_BIN} is missing: run `cargo build --release -p canvaschat-operator`")
    if not shutil.which(REDIS_SERVER):
        pytest.fail(f"{REDIS_SERVER} is missing: apt-get install -y redis-server")
    sts = rendered_statefulset(tmp_path)
    pod = sts["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"redis", "sentinel"}, f"sentinel mode pod runs {sorted(containers)}"
    pods = sts["spec"]["replicas"]
    assert pods == 3
    redis_ports = [free_port() for _ in range(pods)]
    sentinel_ports = [free_port() for _ in range(pods)]

    def env(k: int) -> dict[str, str]:
        # Values as the kubelet would give them, with pod names mapped to loopback ports.
        e = {v["name"]: v["value"] for v in containers["sentinel"]["env"] if "value" in v}
        for v in containers["sentinel"]["env"]:
            assert "value" in v or v["name"] in {"REDIS_PASSWORD", "REDISCLI_AUTH", "POD_NAME"}, f"unexpected env {v}"
        (tmp_path / f"sentinel-{k}").mkdir(exist_ok=True)
        (tmp_path / f"data-{k}").mkdir(exist_ok=True)
        e.update(
            REDIS_PASSWORD=PASSWORD,
            REDISCLI_AUTH=PASSWORD,
            PATH=f"{Path(REDIS_SERVER).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            ANNOUNCE_HOST="127.0.0.1",
            ANNOUNCE_PORT=str(redis_ports[k]),
            INITIAL_MASTER=f"127.0.0.1 {redis_ports[0]}",
            SENTINELS=" ".join(f"127.0.0.1:{p}" for p in sentinel_ports),
            SENTINEL_PORT=str(sentinel_ports[k]),
            SENTINEL_DIR=str(tmp_path / f"sentinel-{k}"),
        )
        return e

    def redis_args(k: int) -> list[str]:
        args = list(containers["redis"]["command"])
        assert args[:2] == ["sh", "-c"] and args[3] == "redis-server"
        options = args[4:]
        for option, value in (("--port", str(redis_ports[k])), ("--dir", str(tmp_path / f"data-{k}"))):
            options[options.index(option) + 1] = value
        return [*args[:4], *options, "--bind", "127.0.0.1", "--save", ""]

    def cli(port: int, *args: str) -> str:
        return subprocess.run(
            [REDIS_CLI, "-p", str(port), "--raw", *args], env={"REDISCLI_AUTH": PASSWORD}, capture_output=True, text=True, timeout=5
        ).stdout

    def master_port(sentinel: int) -> int | None:
        reply = cli(sentinel, "sentinel", "get-master-addr-by-name", "canvaschat").split()
        return int(reply[1]) if len(reply) == 2 and reply[1].isdigit() else None

    redis = {}
    for k in range(pods):
        redis[k] = processes(f"redis-{k}", redis_args(k), env(k))
        processes(f"sentinel-{k}", list(containers["sentinel"]["command"]), env(k))

    for k in (1, 2):
        eventually(lambda k=k: "master_link_status:up" in cli(redis_ports[k], "info", "replication"), timeout=30, what=f"replica {k} in sync")
    for s in sentinel_ports:
        eventually(lambda s=s: master_port(s) == redis_ports[0], timeout=30, what="every Sentinel knows pod 0 as master")
        eventually(lambda s=s: cli(s, "sentinel", "replicas", "canvaschat").split().count("name") == 2, timeout=30, what="Sentinels know both replicas")
    assert cli(redis_ports[0], "config", "get", "maxmemory-policy").split() == ["maxmemory-policy", "noeviction"]
    # No password, no access: neither Redis nor a Sentinel answers without it.
    for port in (redis_ports[0], sentinel_ports[0]):
        refused = subprocess.run([REDIS_CLI, "-p", str(port), "ping"], env={}, capture_output=True, text=True, timeout=5).stdout
        assert "NOAUTH" in refused, f"port {port} answered without a password: {refused}"
    assert cli(redis_ports[0], "set", "k", "before-failover").strip() == "OK"
    eventually(lambda: cli(redis_ports[1], "get", "k").strip() == "before-failover", timeout=10, what="write replicated")

    killed = time.monotonic()
    redis[0].kill()
    new_master = eventually(
        lambda: (m := master_port(sentinel_ports[1])) not in (None, redis_ports[0]) and m, timeout=30, what="a replica promoted"
    )
    eventually(lambda: "role:master" in cli(new_master, "info", "replication"), timeout=10, what="promoted replica is master")
    failover = time.monotonic() - killed
    print(f"failover: master SIGKILLed, replica promoted after {failover:.1f} s")
    assert failover < 20, f"failover took {failover:.1f} s"
    assert cli(new_master, "get", "k").strip() == "before-failover"
    assert cli(new_master, "set", "k", "after-failover").strip() == "OK"

    # The old master restarts from the same template and follows the new master.
    processes("redis-0-restarted", redis_args(0), env(0))
    eventually(lambda: "master_link_status:up" in cli(redis_ports[0], "info", "replication"), timeout=30, what="old master rejoins")
    assert f"master_port:{new_master}" in cli(redis_ports[0], "info", "replication")
    eventually(lambda: cli(redis_ports[0], "get", "k").strip() == "after-failover", timeout=10, what="old master catches up")
