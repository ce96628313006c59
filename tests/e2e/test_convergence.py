"""How fast CanvasChats converge, measured with a watch (not polling; convergence.py, shared
with bench/run.sh): from their creation to the Ready=True status of the current generation for
one chat, and for CANVASCHAT_E2E_CONVERGENCE_CHATS (default 100) created at once by 8 parallel
`kubectl create` processes (as a GitOps tool applies them), to the status saying every child of
the current generation is applied (observedGeneration = generation) and to Ready (the local
control plane's fake node takes 400 pods, so all of them can be).

The targets on the local control plane, asserted: one chat Ready within 1 s, 100 chats applied
within 15 s (CANVASCHAT_E2E_CONVERGENCE_ONE_SECONDS / _MANY_SECONDS change them for a slower
machine); all Ready has a loose ceiling. The figures are printed and written to the artifacts
(convergence.json) before the assertions, with the API server's own account of the requests
it served per chat, by verb and resource.

One chat's figure on kube 1.37 can be bounded by the controller-manager, not the operator: the
PVC protection controller's `Unused` status condition (PersistentVolumeClaimUnusedSinceTime,
beta and on in 1.37) races the PV controller's first write to the new Redis claim; when the
PV controller's write loses (409 Conflict), it provisions only at its next resync (15 s), and
until then the Redis pod is unschedulable (kubernetes/kubernetes#140833 skips that condition
for unbound claims; the local control plane turns the gate off).

Opt-in (it creates many objects): CANVASCHAT_E2E_CONVERGENCE=1 tests/e2e/run.sh -k convergence
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import ARTIFACTS, canvaschat
from convergence import measure

CHATS = int(os.environ.get("CANVASCHAT_E2E_CONVERGENCE_CHATS", "100"))
ONE_TARGET_SECONDS = float(os.environ.get("CANVASCHAT_E2E_CONVERGENCE_ONE_SECONDS", "1"))
MANY_TARGET_SECONDS = float(os.environ.get("CANVASCHAT_E2E_CONVERGENCE_MANY_SECONDS", "15"))

pytestmark = pytest.mark.skipif(
    os.environ.get("CANVASCHAT_E2E_CONVERGENCE") != "1",
    reason="set CANVASCHAT_E2E_CONVERGENCE=1 to measure convergence",
)


def test_convergence_of_one_and_many_chats(namespace: str) -> None:
    result = measure(namespace, CHATS, manifest=canvaschat)
    (ARTIFACTS / "convergence.json").write_text(json.dumps(result) + "\n")
    print(f"convergence: {result}")
    one, many = result["one_chat_ready_seconds"], result["all_applied_seconds"]
    assert one < ONE_TARGET_SECONDS, f"one chat took {one:.2f}s to be Ready (target {ONE_TARGET_SECONDS}s): {result}"
    assert many < MANY_TARGET_SECONDS, (
        f"{CHATS} chats took {many:.2f}s to be applied (target {MANY_TARGET_SECONDS}s): {result}"
    )
