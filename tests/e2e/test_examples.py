"""Every manifest in examples/ applies cleanly and becomes a Ready chat with the documented
children."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import REPO, load_example, wait_ready
from crds import ROUTE_CRD, install_crds
from expectations import assert_children, expected_url
from kube import apply, condition, get, kubectl

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def node_labels_needed(chats: list[dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for chat in chats:
        for component in ("gateway", "redis"):
            scheduling = ((chat.get("spec") or {}).get(component) or {}).get("scheduling") or {}
            labels.update(scheduling.get("nodeSelector") or {})
    return labels


@pytest.fixture
def prerequisites(namespace: str, operator: Any) -> Iterator[Any]:
    """What an example's comments ask the user to prepare: the Redis password Secret, the
    Gateway API CRDs, and nodes carrying the labels its nodeSelectors name (removed again afterwards)."""
    labelled: list[str] = []

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
        for key, value in node_labels_needed(chats).items():
            kubectl("label", "nodes", "--all", "--overwrite", f"{key}={value}")
            labelled.append(key)

    yield prepare
    for key in labelled:
        kubectl("label", "nodes", "--all", f"{key}-")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_becomes_ready(path: Path, namespace: str, prerequisites: Any) -> None:
    docs = load_example(path)
    chats = [d for d in docs if d.get("kind") == "CanvasChat"]
    assert chats, f"{path.name} holds no CanvasChat"
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
