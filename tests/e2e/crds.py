"""The optional CRDs the operator manages children of (Gateway API, Prometheus Operator):
installing the real ones from tests/controlplane/build.sh, and per-test host names."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from conftest import REPO
from kube import KubectlError, kubectl

ROUTE_CRD = "httproutes.gateway.networking.k8s.io"
MONITOR_CRD = "podmonitors.monitoring.coreos.com"


def crds_dir(component: str) -> Path:
    out = subprocess.run(
        [str(REPO / "tests/controlplane/build.sh"), component], check=True, capture_output=True, text=True
    ).stdout.strip().splitlines()[-1]
    # The set links to the component's cache; kubectl reads a linked directory as a file.
    return (Path(out).parent / "crds" / component).resolve()


def served(crd: str) -> bool:
    try:
        kubectl("get", "crd", crd)
        return True
    except KubectlError:
        return False


def install_crds(component: str, crd: str) -> bool:
    """Installs the CRDs unless served; returns whether it installed them."""
    installed = not served(crd)
    if installed:
        kubectl("apply", "--server-side", "-f", str(crds_dir(component)), timeout=120)
    subprocess.run([str(REPO / "tests/controlplane/wait-established.sh"), crd], check=True, timeout=90)
    return installed


def host() -> str:
    """A host name of this test alone (clusters may share routes across namespaces)."""
    return f"chat-{uuid.uuid4().hex[:8]}.example.test"
