"""Fixtures: the cluster in KUBECONFIG, the operator installed from the chart, and a fresh
namespace per test."""

from __future__ import annotations

import copy
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from kube import condition, eventually, get, kubectl
from operator_runner import DeploymentOperator, ProcessOperator

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CANVASCHAT_E2E_ARTIFACTS", REPO / "tests" / "artifacts" / "e2e"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "canvaschat" / "target"))

# How long a CanvasChat may take to become Ready: seconds with kwok, image pulls on kind.
READY_TIMEOUT = float(os.environ.get("CANVASCHAT_E2E_READY_TIMEOUT", "120"))


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get("KUBECONFIG"):
        raise pytest.UsageError("KUBECONFIG must name the cluster to test (tests/e2e/run.sh starts one)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    config.addinivalue_line("markers", "real_node: needs a real node (run.sh with CANVASCHAT_E2E_REAL_NODE=1)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keeps the test's own outcome on the item, so fixtures can dump state on failure."""
    report = yield
    if report.when == "call":
        item.report_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture(scope="session")
def operator() -> Iterator[Any]:
    """The operator, installed once for the session with `helm install` and removed after."""
    mode = os.environ.get("CANVASCHAT_E2E_OPERATOR", "process")
    if mode == "process":
        binary = Path(os.environ.get("CANVASCHAT_OPERATOR_BIN", TARGET / "release" / "canvaschat-operator"))
        op: Any = ProcessOperator(binary=binary, artifacts=ARTIFACTS)
    elif mode == "deployment":
        op = DeploymentOperator(artifacts=ARTIFACTS)
    else:
        raise pytest.UsageError(f"CANVASCHAT_E2E_OPERATOR must be process or deployment, not {mode!r}")
    op.install()
    yield op
    (ARTIFACTS / "operator-logs.txt").write_text(op.logs())
    op.uninstall()


@pytest.fixture
def namespace(request: pytest.FixtureRequest, operator: Any) -> Iterator[str]:
    """A namespace of its own for each test, deleted afterwards (without waiting)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{slug}-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    yield name
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        dump = kubectl("get", "all,cm,ingress,hpa,pdb,pvc,canvaschats,events", "-n", name, "-o", "wide")
        (ARTIFACTS / f"{name}.txt").write_text(dump)
    kubectl("delete", "namespace", name, "--wait=false")


def canvaschat(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A CanvasChat manifest; the gateway image can be overridden for clusters that need a
    locally loaded image (kind: CANVASCHAT_E2E_GATEWAY_IMAGE=canvaschat/gateway:dev)."""
    obj = {
        "apiVersion": "canvaschat.io/v1alpha1",
        "kind": "CanvasChat",
        "metadata": {"name": name},
        "spec": copy.deepcopy(spec or {}),
    }
    return with_test_images(obj)


def with_test_images(obj: dict[str, Any]) -> dict[str, Any]:
    image = os.environ.get("CANVASCHAT_E2E_GATEWAY_IMAGE")
    if image and obj.get("kind") == "CanvasChat":
        gateway = obj.setdefault("spec", {}).setdefault("gateway", {})
        gateway["image"] = image
        gateway["imagePullPolicy"] = os.environ.get("CANVASCHAT_E2E_GATEWAY_PULL_POLICY", "Never")
    # A real node pulls nothing: its Redis image is the one run.sh imported.
    redis_image = os.environ.get("CANVASCHAT_E2E_REDIS_IMAGE")
    if redis_image and obj.get("kind") == "CanvasChat":
        redis = obj.setdefault("spec", {}).setdefault("redis", {})
        redis["image"] = redis_image
        redis["imagePullPolicy"] = "Never"
    return obj


def load_example(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        doc.get("metadata", {}).pop("namespace", None)
        with_test_images(doc)
    return docs


def get_chat(namespace: str, name: str) -> dict[str, Any]:
    chat = get("canvaschats.canvaschat.io", name, namespace)
    assert chat is not None, f"CanvasChat {namespace}/{name} does not exist"
    return chat


def wait_ready(namespace: str, name: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    """Waits for Ready=True on the current generation; returns the CanvasChat."""

    def ready() -> dict[str, Any]:
        chat = get_chat(namespace, name)
        status = chat.get("status") or {}
        cond = condition(chat, "Ready")
        assert cond and cond.get("status") == "True", f"Ready condition is {cond}; status {json.dumps(status)}"
        assert status.get("observedGeneration") == chat["metadata"]["generation"], (
            f"observedGeneration {status.get('observedGeneration')} != generation {chat['metadata']['generation']}"
        )
        return chat

    return eventually(ready, timeout=timeout, what=f"CanvasChat {namespace}/{name} Ready=True")


@pytest.fixture
def ready_chat(namespace: str) -> Callable[..., dict[str, Any]]:
    """Creates a CanvasChat in the test namespace and waits for it to be Ready."""

    def create(name: str = "chat", spec: dict[str, Any] | None = None) -> dict[str, Any]:
        from kube import apply

        apply(canvaschat(name, spec), namespace)
        return wait_ready(namespace, name)

    return create
