"""Two WebSocket users passing a chat, per the wire protocol in design.md.

Used by the pod-template test (two local gateway replicas) and, as a script, by the kind
workflow to chat through an HTTPRoute and an Ingress:  python chat_client.py URL_A [URL_B]
where a URL is the gateway's base, e.g. ws://127.0.0.1:8080 (URL_B defaults to URL_A).
With CHAT_CONNECT=HOST:PORT the clients connect there and send the URLs' host names as the
Host header (a route's host name reached through a port-forward).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import websockets


async def recv_type(ws: Any, wanted: str, timeout: float = 10) -> dict[str, Any]:
    """The next frame of the wanted type; other frames (presence updates) are skipped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = []
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no {wanted!r} frame within {timeout}s; saw {seen}")
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        except TimeoutError:
            continue
        if frame.get("type") == wanted:
            return frame
        seen.append(frame)


async def chat_between(
    base_a: str, base_b: str, max_message_bytes: int | None = None, connect_to: tuple[str, int] | None = None
) -> None:
    """alice on base_a and bob on base_b see each other and exchange messages both ways
    (over TCP to connect_to, when given, instead of the URLs' hosts)."""
    channel = f"e2e-{uuid.uuid4().hex[:8]}"
    address = {"host": connect_to[0], "port": connect_to[1]} if connect_to else {}
    async with websockets.connect(f"{base_a}/api/chat?uid=alice&channel={channel}", **address) as alice:
        sync = await recv_type(alice, "user_sync")
        assert "alice" in sync["users"], sync
        async with websockets.connect(f"{base_b}/api/chat?uid=bob&channel={channel}", **address) as bob:
            sync = await recv_type(bob, "user_sync")
            assert {"alice", "bob"} <= set(sync["users"]), f"bob's user_sync: {sync}"
            joined = await recv_type(alice, "user_joined")
            assert joined["user_id"] == "bob", joined

            hello = {"type": "chat", "payload": "hello from A", "position": {"x": 12.5, "y": -3}, "client_msg_id": "m1"}
            await alice.send(json.dumps(hello))
            ack = await recv_type(alice, "ack")
            assert ack["client_msg_id"] == "m1", ack
            got = await recv_type(bob, "chat")
            assert (got["user_id"], got["payload"], got["position"]) == ("alice", "hello from A", {"x": 12.5, "y": -3}), got
            assert got["message_id"] == ack["message_id"], (got, ack)

            await bob.send(json.dumps({"type": "chat", "payload": "and back from B", "position": {"x": 1, "y": 2}}))
            got = await recv_type(alice, "chat")
            assert (got["user_id"], got["payload"]) == ("bob", "and back from B"), got

        left = await recv_type(alice, "user_left")
        assert left["user_id"] == "bob", left

        if max_message_bytes is not None:
            # Just over the configured limit: refused with too_large, or the connection is
            # closed as abuse (1009 message too big / 1008 policy violation).
            big = {"type": "chat", "payload": "x" * max_message_bytes, "position": {"x": 0, "y": 0}}
            await alice.send(json.dumps(big))
            try:
                err = await recv_type(alice, "error")
                assert err["code"] == "too_large", err
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code in (1008, 1009), f"closed with {closed.rcvd}"


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    base_a = sys.argv[1].rstrip("/")
    base_b = (sys.argv[2] if len(sys.argv) == 3 else base_a).rstrip("/")
    connect = os.environ.get("CHAT_CONNECT")
    connect_to = (connect.rsplit(":", 1)[0], int(connect.rsplit(":", 1)[1])) if connect else None
    asyncio.run(asyncio.wait_for(chat_between(base_a, base_b, connect_to=connect_to), float(os.environ.get("CHAT_TIMEOUT", "60"))))
    print(f"chat passed between {base_a} and {base_b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
