"""Every manifest in examples/ applies cleanly and becomes a Ready chat with the documented
children."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, load_example, wait_ready
from expectations import assert_children, expected_url
from kube import apply, condition

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_becomes_ready(path: Path, namespace: str) -> None:
    docs = load_example(path)
    chats = [d for d in docs if d.get("kind") == "CanvasChat"]
    assert chats, f"{path.name} holds no CanvasChat"
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


def test_examples_exist() -> None:
    assert EXAMPLES, "examples/ holds no manifests"
