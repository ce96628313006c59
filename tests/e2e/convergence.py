"""How fast CanvasChats converge, measured with a watch (not polling). Shared by
tests/e2e/test_convergence.py and the operator part of bench/run.sh; standard library only, so
the bench runs it with any python3:

    python3 tests/e2e/convergence.py --namespace NS --chats 100   # KUBECONFIG, kubectl on PATH

prints one JSON object (see `measure`). It creates a paused marker chat (to know the watch is
established), then one chat and waits for it to be Ready, then CHATS chats at once, and waits
for all of them to be applied (status.observedGeneration = generation: every child of the
current generation written) and Ready.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

# Parallel `kubectl create` processes for the many chats: a GitOps tool applies with bounded
# parallelism too (Argo CD's default is 10 kubectl processes per application sync).
CREATE_WORKERS = 8
# Rows of the API server's request breakdown kept in the result.
TOP_REQUESTS = 60

Manifest = Callable[[str, dict[str, Any] | None], dict[str, Any]]


def kubectl(*args: str, input: str | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def minimal_chat(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "canvaschat.io/v1alpha1",
        "kind": "CanvasChat",
        "metadata": {"name": name},
        "spec": spec or {},
    }


class ReadyWatch:
    """`kubectl get canvaschats --watch`: records when each chat's status first reports its
    current generation applied, and Ready=True for it."""

    def __init__(self, namespace: str) -> None:
        self.applied_at: dict[str, float] = {}
        self.ready_at: dict[str, float] = {}
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["kubectl", "get", "canvaschats.canvaschat.io", "-n", namespace, "--watch", "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self) -> None:
        assert self.proc.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for line in self.proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    obj, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break
                buffer = buffer.lstrip()[end:]
                self.observe(obj)

    def observe(self, obj: dict[str, Any]) -> None:
        now = time.monotonic()
        name = obj["metadata"]["name"]
        with self.lock:
            self.seen.add(name)
        status = obj.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        if status.get("observedGeneration") != obj["metadata"].get("generation"):
            return
        with self.lock:
            self.applied_at.setdefault(name, now)
            if ready:
                self.ready_at.setdefault(name, now)

    def wait(self, seen: dict[str, float] | set[str], names: list[str], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(n in seen for n in names):
                    return
            time.sleep(0.05)
        with self.lock:
            missing = [n for n in names if n not in seen]
        raise AssertionError(f"{len(missing)} of {len(names)} chats not {what} after {timeout:.0f}s: {missing[:5]}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def create(namespace: str, chats: list[dict[str, Any]], workers: int = 1) -> None:
    """`kubectl create` (one POST per chat; `apply` would GET each first) in `workers` parallel
    processes, each creating its share one after the other."""
    shares = [chats[i::workers] for i in range(workers) if chats[i::workers]]

    def run(share: list[dict[str, Any]]) -> None:
        kubectl("create", "-n", namespace, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": share}))

    with ThreadPoolExecutor(len(shares)) as pool:
        for done in [pool.submit(run, share) for share in shares]:
            done.result()


METRIC = re.compile(r"^(apiserver_request_total|apiserver_request_duration_seconds_sum)\{(.*)\} (\S+)$")


def api_requests() -> dict[str, float]:
    """The API server's request counters, by `verb resource[/subresource]`, and the seconds
    spent on the requests that bound the applies (see `bounds`)."""
    totals: dict[str, float] = {}
    for line in kubectl("get", "--raw", "/metrics", timeout=60).splitlines():
        match = METRIC.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        if labels.get("verb") in {"WATCH", "CONNECT"}:
            continue
        key = f"{labels.get('verb')} {labels.get('resource')}"
        if labels.get("subresource"):
            key += "/" + labels["subresource"]
        if match.group(1) == "apiserver_request_duration_seconds_sum":
            key = "seconds " + key
        totals[key] = totals.get(key, 0.0) + float(match.group(3))
    return totals


def measure(
    namespace: str,
    chats: int,
    manifest: Manifest = minimal_chat,
    workers: int = CREATE_WORKERS,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Figures in seconds from the start of the creation: one chat Ready; CHATS chats created,
    all applied, all Ready; and what the API server served meanwhile (requests per chat by
    verb and resource, the busiest first)."""
    watch = ReadyWatch(namespace)
    names = [f"many-{i:03d}" for i in range(chats)]
    try:
        # The watch is established once it reports an object created after it started: a
        # paused chat, which the operator gives no children.
        create(namespace, [manifest("watch-marker", {"paused": True})])
        watch.wait(watch.seen, ["watch-marker"], 30, "seen by the watch")
        start = time.monotonic()
        create(namespace, [manifest("one", None)])
        watch.wait(watch.ready_at, ["one"], timeout, "Ready")
        one = watch.ready_at["one"] - start

        before = api_requests()
        start = time.monotonic()
        create(namespace, [manifest(n, None) for n in names], workers)
        created = time.monotonic() - start
        watch.wait(watch.applied_at, names, timeout, "applied")
        many = max(watch.applied_at[n] for n in names) - start
        with watch.lock:
            ready_by_then = sum(1 for n in names if n in watch.ready_at)
        applied_requests = api_requests()
        watch.wait(watch.ready_at, names, timeout, "Ready")
        many_ready = max(watch.ready_at[n] for n in names) - start
        after = api_requests()
    finally:
        watch.stop()

    def per_chat(until: dict[str, float]) -> dict[str, float]:
        spent = {k: until.get(k, 0.0) - before.get(k, 0.0) for k in until if not k.startswith("seconds ")}
        busiest = sorted(((v, k) for k, v in spent.items() if v > 0), reverse=True)[:TOP_REQUESTS]
        return {k: round(v / chats, 2) for v, k in busiest}

    def spent(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    requests = sum(v for k, v in after.items() if not k.startswith("seconds ")) - sum(
        v for k, v in before.items() if not k.startswith("seconds ")
    )
    applied_by = sum(v for k, v in applied_requests.items() if not k.startswith("seconds ")) - sum(
        v for k, v in before.items() if not k.startswith("seconds ")
    )
    allocations = spent("POST ipaddresses")
    return {
        "one_chat_ready_seconds": round(one, 2),
        "chats": chats,
        "create_workers": workers,
        "created_seconds": round(created, 2),
        "all_applied_seconds": round(many, 2),
        "ready_by_then": ready_by_then,
        "all_ready_seconds": round(many_ready, 2),
        "api_requests_per_chat_until_applied": round(applied_by / chats, 1),
        "api_requests_per_chat_until_ready": round(requests / chats, 1),
        "clusterip_allocations": int(allocations),
        "clusterip_allocation_seconds": round(spent("seconds POST ipaddresses"), 2),
        "service_apply_mean_ms": round(1000 * spent("seconds APPLY services") / max(spent("APPLY services"), 1), 1),
        "requests_per_chat_until_ready": per_chat(after),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespace", required=True, help="an existing namespace to create the chats in")
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--workers", type=int, default=CREATE_WORKERS)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    print(json.dumps(measure(args.namespace, args.chats, workers=args.workers, timeout=args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
