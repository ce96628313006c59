"""Sentinel mode's pod templates are real: render a sentinel-mode CanvasChat with the operator,
run each Redis pod's two containers (Redis and Sentinel) and two gateway replicas as local
processes from the rendered commands and environment (pod and Service names mapped to
loopback ports), chat steadily between the gateways, then SIGKILL the master: the Sentinels
promote a replica, the gateways follow it with no restart, chat and presence work again
within seconds, every acked message reaches the other user or is recovered on reconnect (or
the reconnect says `recovered: false`), `/ready` is 503 while there is no master and 200
after, and the old master, restarted from the same template, rejoins as a replica.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import websockets
import yaml

from conftest import ARTIFACTS, TARGET
from kube import eventually
from operator_runner import free_port
from images import resolve
from pod_processes import gateway_process, gateways_ready, http_get, local_processes, redis_command

OPERATOR_BIN = Path(os.environ.get("CANVASCHAT_OPERATOR_BIN", TARGET / "release" / "canvaschat-operator"))
GATEWAY_BIN = Path(os.environ.get("CANVASCHAT_GATEWAY_BIN", TARGET / "release" / "canvaschat-gateway"))
REDIS_SERVER = os.environ.get("CANVASCHAT_REDIS_SERVER", "/usr/bin/redis-server")
REDIS_CLI = str(Path(REDIS_SERVER).parent / "redis-cli")
PASSWORD = 'p/@:#?%w rd"$x\\'
NAMESPACE = "chat"
# Presence refreshed every second and gone 3 s after the last refresh, so "still present after
# a TTL on the new master" is quick to check; a rate limit the steady chat stays under.
CHAT = f"""apiVersion: canvaschat.io/v1alpha1
kind: CanvasChat
metadata: {{name: ha, namespace: {NAMESPACE}}}
spec:
  redis: {{mode: sentinel}}
  gateway:
    replicas: 2
    autoscaling: {{enabled: false}}
    settings: {{presenceHeartbeatSeconds: 1, presenceTtlSeconds: 3, rateLimitPerMinute: 6000}}
"""
PRESENCE_TTL = 3.0
# How long chat may be unavailable after the master dies (Sentinel's down-after is 5 s in
# the template) before the test fails.
FAILOVER_LIMIT = 30.0


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    with local_processes(tmp_path, ARTIFACTS, "sentinel-template") as start:
        yield start


def rendered(tmp_path: Path) -> list[dict[str, Any]]:
    spec = tmp_path / "chat.yaml"
    spec.write_text(CHAT)
    out = subprocess.run([str(OPERATOR_BIN), "render", "-f", str(spec)], capture_output=True, text=True, check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"rendered {len(found)} {kind}s"
    return found[0]


def local_sentinel_url(url: str, pods: int, sentinel_ports: list[int]) -> str:
    """The gateways' Sentinel URL with every Sentinel, named by its pod's stable DNS name,
    moved to its local port (same order, same path and master name)."""
    scheme, _, rest = url.partition("://")
    assert scheme == "redis-sentinel", f"the gateways are not pointed at Sentinels: {url}"
    hosts, _, tail = rest.partition("/")
    assert "@" not in hosts, "the password is in CANVASCHAT_REDIS_URL"
    expected = [f"ha-redis-{k}.ha-redis-headless.{NAMESPACE}.svc:26379" for k in range(pods)]
    assert hosts.split(",") == expected, f"the URL lists {hosts}, not every pod's Sentinel"
    return f"redis-sentinel://{','.join(f'127.0.0.1:{p}' for p in sentinel_ports)}/{tail}"


# The chat side: WebSocket users per the wire protocol (docs/gateway.md).


async def recv(ws: Any, timeout: float) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def join(base: str, uid: str, channel: str, since: tuple[int, str] | None = None) -> tuple[Any, dict, dict]:
    """Connects and reads user_sync and history, retrying while the gateway cannot greet
    (Redis away: the upgrade succeeds, then the connection closes with 1013)."""
    url = f"{base}/api/chat?uid={uid}&channel={channel}"
    if since:
        url += f"&since={since[0]}&epoch={since[1]}"
    deadline = time.monotonic() + FAILOVER_LIMIT
    while True:
        try:
            ws = await websockets.connect(url)
        except OSError:
            ws = None
        if ws is not None:
            try:
                sync = await recv(ws, 10)
                assert sync["type"] == "user_sync", sync
                history = await recv(ws, 10)
                assert history["type"] == "history" and history["epoch"] == sync["epoch"], history
                return ws, sync, history
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1013, f"{uid}: closed with {closed.rcvd}"
        assert time.monotonic() < deadline, f"{uid} could not connect within {FAILOVER_LIMIT} s"
        await asyncio.sleep(0.1)


@dataclass
class Acked:
    payload: str
    offset: int
    epoch: str
    at: float


@dataclass
class Sender:
    """alice: chats one message after another, each resent with the same client_msg_id after
    `unavailable` (as the frontend does) until acked."""

    ws: Any
    acked: list[Acked] = field(default_factory=list)
    unavailable: int = 0

    async def send(self, payload: str) -> None:
        deadline = time.monotonic() + FAILOVER_LIMIT
        frame = {"type": "chat", "payload": payload, "position": {"x": 1, "y": 2}, "client_msg_id": payload}
        while True:
            assert time.monotonic() < deadline, f"{payload} was never acked"
            await self.ws.send(json.dumps(frame))
            while True:
                reply = await recv(self.ws, FAILOVER_LIMIT)
                if reply["type"] == "ack" and reply["client_msg_id"] == payload:
                    self.acked.append(Acked(payload, reply["offset"], reply["epoch"], time.monotonic()))
                    return
                if reply["type"] == "error":
                    assert reply["code"] == "unavailable", reply
                    self.unavailable += 1
                    await asyncio.sleep(0.1)
                    break

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.send(f"m{len(self.acked)}")
            await asyncio.sleep(0.05)


@dataclass
class Reader:
    """bob: every chat frame his connection delivers, with when it arrived. His connection
    must stay open through the failover."""

    ws: Any
    chats: list[dict[str, Any]] = field(default_factory=list)

    async def run(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame["type"] == "chat":
                frame["seen_at"] = time.monotonic()
                self.chats.append(frame)

    def payloads(self) -> set[str]:
        return {c["payload"] for c in self.chats}


async def watch_ready(ports: list[int], path: str, log: list[tuple[float, int, int]], stop: asyncio.Event) -> None:
    """Polls every gateway's readiness until stopped: (time, port, status)."""
    while not stop.is_set():
        for port in ports:
            status, _ = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}{path}")
            log.append((time.monotonic(), port, status))
        await asyncio.sleep(0.2)


async def failover_under_chat(bases: list[str], ports: list[int], ready_path: str, kill_master: Callable[[], float]) -> None:
    channel = "ha"
    alice_ws, _, _ = await join(bases[0], "alice", channel)
    bob_ws, sync, _ = await join(bases[1], "bob", channel)
    assert {"alice", "bob"} <= set(sync["users"]), sync
    alice, bob = Sender(alice_ws), Reader(bob_ws)
    reading = asyncio.create_task(bob.run())
    stop_chat, stop_ready = asyncio.Event(), asyncio.Event()
    ready_log: list[tuple[float, int, int]] = []
    watching = asyncio.create_task(watch_ready(ports, ready_path, ready_log, stop_ready))
    chatting = asyncio.create_task(alice.run(stop_chat))

    async def until(check: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            for task in (reading, chatting):
                if task.done():
                    task.result()  # raises what ended it
                    raise AssertionError(f"{task.get_name()} ended while waiting for {what}")
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
            await asyncio.sleep(0.05)

    await until(lambda: len(alice.acked) >= 10 and alice.acked[9].payload in bob.payloads(), "steady chat", 30)
    before = alice.acked[-1]
    unavailable_before = alice.unavailable
    killed = kill_master()

    # A client that reconnects during the failover, resuming from the last ack it holds.
    # (Closed at once, so the replicas keep equal connection counts and the template's
    # rebalancing closes nobody.)
    carol_ws, carol_sync, carol_history = await join(bases[1], "carol", channel, since=(before.offset, before.epoch))
    await carol_ws.close()
    await until(lambda: any(a.at > killed for a in alice.acked), "the first ack after the kill", FAILOVER_LIMIT)
    first_ack = next(a for a in alice.acked if a.at > killed)
    after = len(alice.acked)
    await until(lambda: len(alice.acked) >= after + 10, "steady chat after the failover", FAILOVER_LIMIT)
    await until(lambda: first_ack.payload in bob.payloads(), "the first chat after the kill reaching bob", 10)
    first_delivery = next(c["seen_at"] for c in bob.chats if c["payload"] == first_ack.payload)

    # Presence on the new master: a newcomer sees alice and bob; and after more than a TTL
    # counted from the first ack on the new master, with heartbeats, everyone is still there.
    dave_ws, dave_sync, _ = await join(bases[0], "dave", channel)
    assert {"alice", "bob", "dave"} <= set(dave_sync["users"]), dave_sync
    await until(lambda: time.monotonic() > first_ack.at + PRESENCE_TTL + 1, "a presence TTL on the new master", 10)
    erin_ws, erin_sync, _ = await join(bases[1], "erin", channel)
    assert {"alice", "bob", "dave", "erin"} <= set(erin_sync["users"]), f"presence lost after the failover: {erin_sync}"

    # /ready told the truth: 503 on every gateway while there was no master, 200 after.
    def ready_now() -> bool:
        latest = {port: status for _, port, status in ready_log}
        return all(latest.get(p) == 200 for p in ports)

    await until(ready_now, "/ready 200 on both gateways after the failover", 10)
    stop_ready.set()
    stop_chat.set()
    await watching
    await chatting
    for port in ports:
        statuses = [s for t, p, s in ready_log if p == port and killed < t < first_ack.at]
        assert 503 in statuses, f"gateway {port}: /ready never said 503 without a master: {statuses}"

    # Every acked message reaches bob (still connected), or a reconnect from the last chat he
    # saw before the kill recovers it, or says it may have been lost.
    acked = {a.payload for a in alice.acked}
    deadline = time.monotonic() + 10  # the last acks' deliveries are on their way
    while not acked <= bob.payloads() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not reading.done(), f"bob's connection ended during the failover: {reading}"
    missing = sorted(acked - bob.payloads(), key=lambda p: int(p[1:]))
    ids = [c["message_id"] for c in bob.chats]
    assert len(ids) == len(set(ids)), "a chat was delivered twice"
    last: dict[str, int] = {}
    for c in bob.chats:
        assert c["offset"] > last.get(c["epoch"], 0), f"offset went back in epoch {c['epoch']}: {c}"
        last[c["epoch"]] = c["offset"]
    recovered_missing: bool | None = None
    if missing:
        seen_before = [c for c in bob.chats if c["seen_at"] < killed]
        resume = seen_before[-1]
        bob2, _, history = await join(bases[1], "bob", channel, since=(resume["offset"], resume["epoch"]))
        recovered_missing = history["recovered"]
        if recovered_missing:
            got = {m["payload"] for m in history["messages"]}
            assert set(missing) <= got, f"recovered: true but {sorted(set(missing) - got)} are not in the history"
        await bob2.close()

    # Carol recovered exactly what she missed, or was told she may have missed some.
    if carol_history["recovered"]:
        assert carol_sync["epoch"] == before.epoch, carol_sync
        offsets = [m["offset"] for m in carol_history["messages"]]
        assert offsets == list(range(before.offset + 1, carol_sync["offset"] + 1)), offsets
    epochs = sorted({a.epoch for a in alice.acked})

    for ws in (alice_ws, bob_ws, dave_ws, erin_ws):
        await ws.close()
    reading.cancel()
    not_ready = [t for t, _, s in ready_log if s != 200 and t > killed]
    report = (
        f"FAILOVER (rendered templates, down-after 5 s): {first_ack.at - killed:.2f} s from SIGKILL of the master to the first acked chat, "
        f"{first_delivery - killed:.2f} s to its delivery on the other gateway; "
        f"/ready not 200 for {max(not_ready) - min(not_ready):.1f} s; {alice.unavailable - unavailable_before} sends got `unavailable`; "
        f"carol reconnecting during the failover: recovered={carol_history['recovered']}; "
        f"acked chats bob missed live: {len(missing)} (recovered on reconnect: {recovered_missing}); epochs {len(epochs)}"
    )
    print(report)
    with (ARTIFACTS / "sentinel-template-failover.txt").open("a") as out:
        out.write(report + "\n")
    assert first_ack.at - killed < FAILOVER_LIMIT


def test_sentinel_template_fails_over_under_chat(processes: Callable[..., subprocess.Popen], tmp_path: Path) -> None:
    for binary, build in ((OPERATOR_BIN, "canvaschat-operator"), (GATEWAY_BIN, "canvaschat-gateway")):
        if not binary.is_file():
            pytest.fail(f"{binary} is missing: run `cargo build --release -p {build}`")
    if not shutil.which(REDIS_SERVER):
        pytest.fail(f"{REDIS_SERVER} is missing: apt-get install -y redis-server")
    objects = rendered(tmp_path)
    sts = only(objects, "StatefulSet")
    deployment = only(objects, "Deployment")
    pod = sts["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"redis", "sentinel"}, f"sentinel mode pod runs {sorted(containers)}"
    pods = sts["spec"]["replicas"]
    assert pods == 3
    redis_ports = [free_port() for _ in range(pods)]
    sentinel_ports = [free_port() for _ in range(pods)]

    # The password Secret: the one the Redis container reads (generated by the operator at
    # run time, so not rendered), holding PASSWORD.
    password_ref = next(v for v in containers["redis"]["env"] if v["name"] == "REDIS_PASSWORD")["valueFrom"]["secretKeyRef"]
    secret = {"data": {password_ref["key"]: base64.b64encode(PASSWORD.encode()).decode()}}

    def lookup(resource: str, name: str, namespace: str) -> dict[str, Any] | None:
        assert namespace == NAMESPACE
        if resource == "secrets" and name == password_ref["name"]:
            return secret
        kind = {"configmaps": "ConfigMap", "secrets": "Secret"}[resource]
        return next((o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name), None)

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
        return redis_command(sts, NAMESPACE, redis_ports[k], tmp_path / f"data-{k}", lookup)

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
        processes(f"sentinel-{k}", resolve(containers["sentinel"], pod.get("securityContext") or {}, env(k)).argv, env(k))

    for k in (1, 2):
        eventually(lambda k=k: "master_link_status:up" in cli(redis_ports[k], "info", "replication"), timeout=30, what=f"replica {k} in sync")
    for s in sentinel_ports:
        eventually(lambda s=s: master_port(s) == redis_ports[0], timeout=30, what="every Sentinel knows pod 0 as master")
        eventually(lambda s=s: cli(s, "sentinel", "replicas", "canvaschat").split().count("name") == 2, timeout=30, what="Sentinels know both replicas")
        eventually(lambda s=s: cli(s, "sentinel", "sentinels", "canvaschat").split().count("name") == 2, timeout=30, what="Sentinels know each other")
    assert cli(redis_ports[0], "config", "get", "maxmemory-policy").split() == ["maxmemory-policy", "noeviction"]
    # No password, no access: neither Redis nor a Sentinel answers without it.
    for port in (redis_ports[0], sentinel_ports[0]):
        refused = subprocess.run([REDIS_CLI, "-p", str(port), "ping"], env={}, capture_output=True, text=True, timeout=5).stdout
        assert "NOAUTH" in refused, f"port {port} answered without a password: {refused}"
    assert cli(redis_ports[0], "set", "k", "before-failover").strip() == "OK"
    eventually(lambda: cli(redis_ports[1], "get", "k").strip() == "before-failover", timeout=10, what="write replicated")

    # Two gateway replicas from the rendered Deployment and ConfigMap.
    ready_path = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
    ports = [free_port(), free_port()]
    gateways = []
    for replica, port in enumerate(ports):
        command, genv = gateway_process(
            deployment, NAMESPACE, port, replica, lambda url: local_sentinel_url(url, pods, sentinel_ports), GATEWAY_BIN, lookup
        )
        assert genv.get("CANVASCHAT_REDIS_PASSWORD") == PASSWORD, "the gateway does not get the Redis password as its own variable"
        gateways.append(processes(f"gateway-{replica}", command, genv))
    eventually(lambda: gateways_ready(gateways, ports, ready_path), timeout=30, what="both gateways ready behind the Sentinels")

    def kill_master() -> float:
        killed = time.monotonic()
        redis[0].kill()
        return killed

    bases = [f"ws://127.0.0.1:{p}" for p in ports]
    asyncio.run(asyncio.wait_for(failover_under_chat(bases, ports, ready_path, kill_master), 180))
    for proc, port in zip(gateways, ports, strict=True):
        assert proc.poll() is None, f"gateway on {port} exited {proc.returncode} during the failover"

    new_master = master_port(sentinel_ports[1])
    assert new_master in redis_ports[1:], f"Sentinels name {new_master} as master"
    assert "role:master" in cli(new_master, "info", "replication")
    assert cli(new_master, "get", "k").strip() == "before-failover"

    # The old master restarts from the same template and follows the new master.
    processes("redis-0-restarted", redis_args(0), env(0))
    eventually(lambda: "master_link_status:up" in cli(redis_ports[0], "info", "replication"), timeout=30, what="old master rejoins")
    assert f"master_port:{new_master}" in cli(redis_ports[0], "info", "replication")
    assert cli(new_master, "set", "k", "after-failover").strip() == "OK"
    eventually(lambda: cli(redis_ports[0], "get", "k").strip() == "after-failover", timeout=10, what="old master catches up")
