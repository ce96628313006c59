"""Gateway pods going away under a steady conversation on a real node: a rolling update (a
settings change) and the deletion of a pod. alice sends one chat after another through the
gateway Service's ClusterIP (kube-proxy on the node's bridge), resending the same
client_msg_id until it is acked; bob reads. Each reconnects with the design's recovery
(`since`/`epoch` of the last chat it holds) when its connection closes. No acknowledged
message may be lost: every one reaches bob live or in a recovered history, none twice. And
the HPA scales the gateway on the CPU figures of metrics-server under a bounded load, after
which rebalancing moves connections to the new pod."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import websockets

from conftest import ARTIFACTS, canvaschat, wait_ready
from kube import apply, eventually, get, kubectl, patch
from real_node import READY_TIMEOUT, connections, gateway_pods, join, marks, recv, routed_locally

pytestmark = marks
# Steady chat must stay under the rate limit (one user sends ten a second).
STEADY = {"replicas": 2, "autoscaling": {"enabled": False}, "settings": {"rateLimitPerMinute": 6000}}
# How long a user may be without a connection while pods come and go.
RECONNECT_WITHIN = 60.0


@dataclass
class User:
    """One user's session through base, surviving closed connections: it rejoins from the
    last chat it holds, keeps every chat it got (live or recovered) and what each rejoin said."""

    base: str
    uid: str
    channel: str
    ws: Any = None
    chats: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    last: tuple[int, str] | None = None
    rejoins: list[dict[str, Any]] = field(default_factory=list)

    async def connect(self) -> None:
        url = f"{self.base}/api/chat?uid={self.uid}&channel={self.channel}"
        since, first = self.last, self.ws is None
        started = time.monotonic()
        self.ws, sync, history = await join(url, since=since, timeout=RECONNECT_WITHIN)
        if not first:
            self.rejoins.append({
                "after": round(time.monotonic() - started, 2), "since": since is not None,
                "recovered": history["recovered"], "messages": len(history["messages"]),
            })
        for message in history["messages"]:
            self.seen(message)

    def seen(self, frame: dict[str, Any]) -> None:
        if frame["message_id"] in self.chats:
            self.duplicates.append(frame["payload"])
        self.chats[frame["message_id"]] = frame
        if self.last is None or frame["epoch"] != self.last[1] or frame["offset"] > self.last[0]:
            self.last = (frame["offset"], frame["epoch"])

    def payloads(self) -> set[str]:
        return {c["payload"] for c in self.chats.values() if c["user_id"] != self.uid}

    async def step(self) -> None:
        """Takes the next frame if one comes within 0.5 s; rejoins if the connection closed."""
        try:
            frame = await recv(self.ws, 0.5)
        except TimeoutError:
            return
        except websockets.ConnectionClosed:
            await self.connect()
            return
        if frame["type"] == "chat":
            self.seen(frame)

    async def read(self, stop: asyncio.Event) -> None:
        """bob: reads until stopped, rejoining whenever the connection closes."""
        while not stop.is_set():
            await self.step()


@dataclass
class Sender:
    """alice: sends m0, m1, ... ten a second, each until acked: after a closed connection or an
    `unavailable` error the same client_msg_id again (the gateway acks a repeat with the first
    message's id and offset, and does not publish it twice)."""

    user: User
    acked: dict[str, int] = field(default_factory=dict)
    resent: int = 0

    async def send(self, payload: str) -> None:
        frame = json.dumps({"type": "chat", "payload": payload, "position": {"x": 1, "y": 1}, "client_msg_id": payload})
        deadline = time.monotonic() + RECONNECT_WITHIN
        while True:
            assert time.monotonic() < deadline, f"{payload} was not acked within {RECONNECT_WITHIN} s"
            try:
                await self.user.ws.send(frame)
                while True:
                    reply = await recv(self.user.ws, 10)
                    if reply["type"] == "ack" and reply["client_msg_id"] == payload:
                        self.acked[payload] = reply["offset"]
                        return
                    if reply["type"] == "error":
                        assert reply["code"] == "unavailable", reply
                        await asyncio.sleep(0.2)
                        break
            except (websockets.ConnectionClosed, TimeoutError):
                await self.user.connect()
            self.resent += 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.send(f"m{len(self.acked)}")
            await asyncio.sleep(0.1)


async def conversation_through(
    base: str, disrupt: Callable[[], Awaitable[Callable[[], bool]]], what: str, everyone_rejoins: bool
) -> str:
    """Steady chat from alice to bob; `disrupt` starts the disruption and returns a check of
    when it is over. Returns a one-line report; fails on any lost or repeated acknowledged
    message, and when nobody (or, with everyone_rejoins, not both) had to reconnect."""
    channel = f"steady-{uuid.uuid4().hex[:8]}"
    alice, bob = User(base, "alice", channel), User(base, "bob", channel)
    await alice.connect()
    await bob.connect()
    sender = Sender(alice)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(sender.run(stop), name="alice"), asyncio.create_task(bob.read(stop), name="bob")]

    async def until(check: Callable[[], bool], why: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            for task in tasks:
                if task.done():
                    task.result()
                    raise AssertionError(f"{task.get_name()} stopped while waiting for {why}")
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {why}"
            await asyncio.sleep(0.1)

    try:
        await until(lambda: len(sender.acked) >= 20 and "m19" in bob.payloads(), "steady chat", 30)
        started = time.monotonic()
        over = await disrupt()
        await until(over, what, READY_TIMEOUT)
        took = time.monotonic() - started
        after = len(sender.acked)
        await until(lambda: len(sender.acked) >= after + 20, f"steady chat after {what}", RECONNECT_WITHIN)
    finally:
        stop.set()
    for task in tasks:
        await task
    acked = set(sender.acked)
    # The last acks' deliveries are on their way.
    deadline = time.monotonic() + 10
    while not acked <= bob.payloads() and time.monotonic() < deadline:
        await bob.step()
    lost = sorted(acked - bob.payloads(), key=lambda p: int(p[1:]))
    for user in (alice, bob):
        await user.ws.close()
    report = (
        f"{what}: {took:.1f} s; {len(acked)} acked chats, {sender.resent} resends; "
        f"alice rejoined {alice.rejoins}; bob rejoined {bob.rejoins}"
    )
    print(report)
    with (ARTIFACTS / "real-node-disruption.txt").open("a") as out:
        out.write(report + "\n")
    assert not lost, f"acknowledged chats bob never got ({len(lost)}): {lost[:20]}; {report}"
    assert not bob.duplicates, f"chats bob got twice: {bob.duplicates[:20]}"
    # Within the history window and with Redis untouched, every rejoin recovers all it missed.
    assert all(r["since"] and r["recovered"] for r in bob.rejoins), f"bob's rejoins: {bob.rejoins}"
    rejoined = [bool(alice.rejoins), bool(bob.rejoins)]
    assert all(rejoined) if everyone_rejoins else any(rejoined), f"not disrupted as meant (rejoined {rejoined}): {report}"
    return report


def steady_chat(namespace: str) -> str:
    apply(canvaschat("chat", {"gateway": STEADY}), namespace)
    wait_ready(namespace, "chat", timeout=READY_TIMEOUT)
    eventually(lambda: len(gateway_pods(namespace)) == 2, timeout=READY_TIMEOUT, what="2 ready gateway pods")
    service = get("services", "chat-gateway", namespace)
    assert service is not None
    cluster_ip, port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]
    routed_locally(cluster_ip, *(p["status"]["podIP"] for p in gateway_pods(namespace)))
    return f"ws://{cluster_ip}:{port}"


def rolled_out(namespace: str, old: set[str]) -> Callable[[], bool]:
    def check() -> bool:
        pods = kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=gateway", "-o", "name")
        names = {p.removeprefix("pod/") for p in pods.split()}
        ready = {p["metadata"]["name"] for p in gateway_pods(namespace)}
        return not names & old and len(ready) == 2

    return check


def test_rolling_update_loses_no_acked_message(namespace: str) -> None:
    base = steady_chat(namespace)
    old = {p["metadata"]["name"] for p in gateway_pods(namespace)}

    async def roll() -> Callable[[], bool]:
        await asyncio.to_thread(
            patch, "canvaschats.canvaschat.io", "chat", namespace,
            {"spec": {"gateway": {"settings": {"maxMessageBytes": 8192}}}},
        )
        return rolled_out(namespace, old)

    asyncio.run(asyncio.wait_for(conversation_through(base, roll, "the rolling update", everyone_rejoins=True), 2 * READY_TIMEOUT))


def test_deleted_gateway_pod_loses_no_acked_message(namespace: str) -> None:
    base = steady_chat(namespace)

    async def delete() -> Callable[[], bool]:
        pods = gateway_pods(namespace)
        busy = [p for p in pods if connections(p["status"]["podIP"]) > 0]
        assert busy, "no gateway pod holds a connection"
        victim = busy[0]["metadata"]["name"]
        await asyncio.to_thread(kubectl, "delete", "pod", victim, "-n", namespace, "--wait=false")
        return rolled_out(namespace, {victim})

    asyncio.run(asyncio.wait_for(conversation_through(base, delete, "a gateway pod deleted", everyone_rejoins=False), 2 * READY_TIMEOUT))


def hpa_events(namespace: str) -> str:
    return kubectl(
        "get", "events", "-n", namespace,
        "--field-selector", "involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=chat-gateway",
        "-o", "jsonpath={range .items[*]}{.reason}: {.message}{'\\n'}{end}",
    )


def test_hpa_scales_on_cpu_and_connections_move_to_the_new_pod(namespace: str) -> None:
    # A small CPU request, so a bounded load (20 users, 100 chats a second in all) is well
    # above the 50 % target; memory stays far below its target.
    spec = {
        "replicas": 1,
        "resources": {"requests": {"cpu": "20m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "autoscaling": {
            "enabled": True, "minReplicas": 1, "maxReplicas": 2,
            "targetCPUUtilizationPercentage": 50, "targetMemoryUtilizationPercentage": 90,
        },
        "settings": {"rateLimitPerMinute": 6000},
    }
    apply(canvaschat("chat", {"gateway": spec}), namespace)
    wait_ready(namespace, "chat", timeout=READY_TIMEOUT)
    first = gateway_pods(namespace)
    assert len(first) == 1, [p["metadata"]["name"] for p in first]
    service = get("services", "chat-gateway", namespace)
    assert service is not None
    cluster_ip, port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]
    routed_locally(cluster_ip, first[0]["status"]["podIP"])
    base = f"ws://{cluster_ip}:{port}"

    async def load() -> tuple[int, int]:
        channel = f"load-{uuid.uuid4().hex[:8]}"
        users = [User(base, f"u{i}", channel) for i in range(20)]
        for user in users:
            await user.connect()
        stop = asyncio.Event()

        async def chatter(user: User) -> None:
            sent = 0
            while not stop.is_set():
                try:
                    await user.ws.send(json.dumps({"type": "chat", "payload": f"{user.uid}-{sent}", "position": {"x": 0, "y": 0}}))
                    sent += 1
                    await asyncio.sleep(0.2)
                except websockets.ConnectionClosed:
                    # Rebalanced (4000) or the pod went: rejoin through the Service.
                    await user.connect()

        async def drain(user: User) -> None:
            while not stop.is_set():
                try:
                    await recv(user.ws, 0.5)
                except (TimeoutError, websockets.ConnectionClosed):
                    await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(chatter(u)) for u in users] + [asyncio.create_task(drain(u)) for u in users]
        try:
            deadline = time.monotonic() + 240
            while True:
                pods = gateway_pods(namespace)
                new = [p for p in pods if p["metadata"]["name"] != first[0]["metadata"]["name"]]
                if new:
                    routed_locally(new[0]["status"]["podIP"])
                    moved = connections(new[0]["status"]["podIP"])
                    if moved > 0:
                        return moved, connections(first[0]["status"]["podIP"])
                for task in tasks:
                    if task.done():
                        task.result()
                assert time.monotonic() < deadline, (
                    f"no connection on a second gateway pod after 240 s of load; pods {[p['metadata']['name'] for p in pods]}; "
                    f"HPA events:\n{hpa_events(namespace)}"
                )
                await asyncio.sleep(1)
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for user in users:
                await user.ws.close()

    moved, stayed = asyncio.run(load())
    events = hpa_events(namespace)
    assert re.search(r"New size: 2; reason: cpu resource utilization \(percentage of request\) above target", events), events
    report = f"HPA: scaled to 2 on CPU; {moved} connections moved to the new pod, {stayed} stayed"
    print(report)
    with (ARTIFACTS / "real-node-disruption.txt").open("a") as out:
        out.write(report + "\n")
