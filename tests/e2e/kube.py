"""Small helpers over kubectl: the suite talks to the cluster exactly as a user would."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any, Callable, Iterable, TypeVar

import yaml

T = TypeVar("T")

# Every kind the operator owns for a CanvasChat named N. The Ingress is only present when
# spec.ingress.enabled, the HPA only with autoscaling, the PDB only with a disruption
# budget, the Secret N-redis-auth only without spec.redis.passwordSecretRef; callers filter
# with expected_children().
CHILD_KINDS = (
    "configmaps",
    "secrets",
    "networkpolicies.networking.k8s.io",
    "statefulsets.apps",
    "services",
    "deployments.apps",
    "horizontalpodautoscalers.autoscaling",
    "poddisruptionbudgets.policy",
    "ingresses.networking.k8s.io",
)


class KubectlError(RuntimeError):
    def __init__(self, args: Iterable[str], returncode: int, stderr: str):
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"kubectl {' '.join(args)} exited {returncode}: {stderr.strip()}")


def kubectl(*args: str, input: str | None = None, timeout: float = 60) -> str:
    """Runs kubectl with the current KUBECONFIG; returns stdout or raises KubectlError."""
    proc = subprocess.run(
        ["kubectl", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise KubectlError(args, proc.returncode, proc.stderr)
    return proc.stdout


def get(resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    """The object as JSON, or None when it does not exist."""
    ns = ["-n", namespace] if namespace else []
    try:
        return json.loads(kubectl("get", resource, name, *ns, "-o", "json", "--show-managed-fields"))
    except KubectlError as err:
        if "NotFound" in err.stderr or "not found" in err.stderr:
            return None
        raise


def list_objects(resource: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
    sel = ["-l", selector] if selector else []
    return json.loads(kubectl("get", resource, "-n", namespace, *sel, "-o", "json", "--show-managed-fields"))["items"]


def apply(manifest: Any, namespace: str | None = None) -> str:
    """kubectl apply of one object or a list of objects (dicts) or YAML text."""
    text = manifest if isinstance(manifest, str) else yaml.safe_dump_all(
        manifest if isinstance(manifest, list) else [manifest]
    )
    ns = ["-n", namespace] if namespace else []
    return kubectl("apply", *ns, "-f", "-", input=text)


def patch(resource: str, name: str, namespace: str, body: dict[str, Any], kind: str = "merge") -> None:
    kubectl("patch", resource, name, "-n", namespace, "--type", kind, "-p", json.dumps(body))


def delete(resource: str, name: str, namespace: str, wait: bool = False) -> None:
    kubectl(
        "delete", resource, name, "-n", namespace, "--ignore-not-found", f"--wait={str(wait).lower()}"
    )


def eventually(check: Callable[[], T], timeout: float = 60, interval: float = 0.5, what: str = "") -> T:
    """Retries check() until it returns a truthy value without raising AssertionError.

    Returns that value; on timeout raises AssertionError carrying the last failure, so a
    failing test says what it was waiting for and what it last saw.
    """
    deadline = time.monotonic() + timeout
    last: str = "never returned a truthy value"
    while True:
        try:
            value = check()
            if value:
                return value
            last = f"returned {value!r}"
        except AssertionError as err:
            last = str(err)
        except KubectlError as err:
            last = str(err)
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check.__name__}: {last}")
        time.sleep(interval)


def apiserver_requests(verb: str) -> float:
    """apiserver_request_total for `verb` (e.g. APPLY), summed over every resource, from the
    API server's own metrics."""
    total = 0.0
    for line in kubectl("get", "--raw", "/metrics", timeout=60).splitlines():
        if line.startswith("apiserver_request_total{") and f'verb="{verb}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def child_writes(namespace: str, instance: str) -> dict[str, tuple[str, str, str]]:
    """For every object labelled as a child of the CanvasChat `instance`: its
    resourceVersion, what the operator's field manager last wrote, and what every other
    manager last wrote (managedFields entries: manager, operation, time, fields).

    Controllers such as the HPA controller update children's status on their own; the
    managedFields entries tell the operator's writes apart from theirs.
    """
    writes = {}
    for resource in CHILD_KINDS:
        for obj in list_objects(resource, namespace, f"app.kubernetes.io/instance={instance}"):
            entries = obj["metadata"].get("managedFields") or []
            mine = [json.dumps(e, sort_keys=True) for e in entries if e.get("manager") == "canvaschat-operator"]
            others = [json.dumps(e, sort_keys=True) for e in entries if e.get("manager") != "canvaschat-operator"]
            writes[f"{obj['kind']}/{obj['metadata']['name']}"] = (
                obj["metadata"]["resourceVersion"], "\n".join(mine), "\n".join(others)
            )
    return writes
