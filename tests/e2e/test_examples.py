"""Every manifest in examples/ applies cleanly and becomes a Ready chat with the documented
children."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import REPO, load_example, wait_ready
from crds import ROUTE_CRD, host, install_crds
from expectations import assert_children, expected_url
from kube import apply, condition, eventually, get, kubectl, list_objects

# kwok (the local control plane's fake kubelet) runs the pods of nodes carrying this annotation.
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def node_labels_needed(chats: list[dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for chat in chats:
        for component in ("gateway", "redis"):
            scheduling = ((chat.get("spec") or {}).get(component) or {}).get("scheduling") or {}
            labels.update(scheduling.get("nodeSelector") or {})
    return labels


def with_own_hosts(chat: dict[str, Any]) -> None:
    """The example's host names replaced by names of this test alone: a cluster's Ingresses
    and routes of a namespace still being deleted may hold the example's."""
    spec = chat.get("spec") or {}
    ingress = spec.get("ingress") or {}
    if ingress.get("host"):
        ingress["host"] = host()
    route = spec.get("httpRoute") or {}
    if route.get("hostnames"):
        route["hostnames"] = [host() for _ in route["hostnames"]]


def nodes() -> list[dict[str, Any]]:
    return json.loads(kubectl("get", "nodes", "-o", "json"))["items"]


def ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions") or [])


def fake_node(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A node of this test alone, run by kwok, carrying `labels`."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": dict([KWOK_ANNOTATION]),
            "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok",
                **labels,
            },
        },
        "status": {"capacity": (capacity := {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"}), "allocatable": capacity},
    }


@pytest.fixture
def prerequisites(namespace: str, operator: Any) -> Iterator[Any]:
    """What an example's comments ask the user to prepare: the Redis password Secret, the
    Gateway API CRDs, and a node carrying the labels its nodeSelectors name. The suite never
    labels the cluster's nodes: when none carries them, it adds a kwok node of its own
    (removed afterwards) where kwok runs, and skips the example elsewhere."""
    created: list[str] = []

    def prepare(chats: list[dict[str, Any]], docs: list[dict[str, Any]]) -> None:
        provided = {(d.get("kind"), d["metadata"]["name"]) for d in docs}
        for chat in chats:
            ref = ((chat.get("spec") or {}).get("redis") or {}).get("passwordSecretRef")
            if ref and ("Secret", ref["name"]) not in provided and get("secrets", ref["name"], namespace) is None:
                kubectl(
                    "create", "secret", "generic", ref["name"], "-n", namespace,
                    f"--from-literal={ref.get('key', 'password')}={secrets.token_hex(24)}",
                )
        if any((chat.get("spec") or {}).get("httpRoute") for chat in chats):
            # A cluster with Gateway API (no Gateway controller needed for Ready); an operator
            # started before the CRDs finds them within its retries, a restarted one at once.
            if install_crds("gateway-api", ROUTE_CRD):
                operator.restart()
        labels = node_labels_needed(chats)
        everything = nodes()
        if labels and not any(ready(n) and labels.items() <= (n["metadata"].get("labels") or {}).items() for n in everything):
            annotation = KWOK_ANNOTATION
            if not any(ready(n) and (n["metadata"].get("annotations") or {}).get(annotation[0]) == annotation[1] for n in everything):
                wanted = ",".join(f"{k}={v}" for k, v in labels.items())
                pytest.skip(f"no node carries {wanted} and no kwok runs fake nodes here: label a node {wanted} to test this example")
            name = f"e2e-{namespace}"[:63]
            apply(fake_node(name, labels))
            created.append(name)
            eventually(lambda: ready(json.loads(kubectl("get", "node", name, "-o", "json"))), timeout=60, what=f"kwok node {name} Ready")

    yield prepare
    if created:
        # The chats' pods go while kwok still runs the node, so the namespace is not left terminating.
        kubectl("delete", "canvaschats.canvaschat.io", "--all", "-n", namespace, "--wait=true", timeout=120)
        eventually(lambda: not list_objects("pods", namespace), timeout=120, what=f"pods of {namespace} gone")
    for name in created:
        kubectl("delete", "node", name, "--wait=false")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_becomes_ready(path: Path, namespace: str, prerequisites: Any) -> None:
    docs = load_example(path)
    chats = [d for d in docs if d.get("kind") == "CanvasChat"]
    assert chats, f"{path.name} holds no CanvasChat"
    for chat in chats:
        with_own_hosts(chat)
    prerequisites(chats, docs)
    apply(docs, namespace)
    for doc in chats:
        chat = wait_ready(namespace, doc["metadata"]["name"])
        assert_children(chat)
        status = chat["status"]
        assert status.get("url") == expected_url(chat), f"status.url {status.get('url')!r}"
        assert status.get("redisReady") is True, f"status {status}"
        assert status.get("readyReplicas", 0) >= 1, f"status {status}"
        for cond_type in ("Ready", "Progressing", "Degraded"):
            cond = condition(chat, cond_type)
            assert cond and cond.get("reason") and "message" in cond, f"{cond_type} condition {cond}"
        assert condition(chat, "Degraded")["status"] == "False"
        printed = kubectl("get", "canvaschats.canvaschat.io", doc["metadata"]["name"], "-n", namespace)
        assert status["url"] in printed and "True" in printed, f"printer columns:\n{printed}"


def test_examples_exist() -> None:
    assert EXAMPLES, "examples/ holds no manifests"
