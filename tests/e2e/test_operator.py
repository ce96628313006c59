"""The operator process itself: a restart rewrites nothing, and with two replicas only the
leader reconciles until it dies and the other takes over."""

from __future__ import annotations

import json
import signal
import subprocess
from typing import Any, Callable

from conftest import wait_ready
from crds import host
from expectations import assert_children
from kube import child_writes, delete, eventually, get, kubectl
from operator_runner import (
    RELEASE_NAMESPACE,
    chart_deployment_name,
    chart_service_account,
    leases,
    settled,
    wait_reconciled,
)

CHAT = "chat"


def spec() -> dict[str, Any]:
    return {"ingress": {"enabled": True, "host": host()}}


def test_restart_rewrites_no_child(operator: Any, namespace: str, ready_chat: Callable[..., Any]) -> None:
    ready_chat(CHAT, spec())
    before = settled(operator, namespace, CHAT)
    assert len(before) >= 8, f"children found: {sorted(before)}"
    (old_leader,) = leases().values()
    operator.restart()
    # Evidence that the new operator (the new process or pod now holding the lease) has
    # reconciled this chat twice, at start and once more, before anything is compared.
    eventually(lambda: list(leases().values()) not in ([], [old_leader]), timeout=90, what=f"a new lease holder after {old_leader}")
    wait_reconciled(operator, namespace, CHAT, 2, since=0)
    after = child_writes(namespace, CHAT)
    assert sorted(after) == sorted(before), f"children before {sorted(before)}, after {sorted(after)}"
    rewritten = sorted(k for k in after if after[k][1] != before[k][1])
    assert not rewritten, f"the restarted operator rewrote {rewritten}"
    # A resourceVersion may only move because another manager (e.g. the HPA controller
    # writing status) wrote the object.
    unexplained = sorted(k for k in after if after[k][0] != before[k][0] and after[k][2] == before[k][2])
    assert not unexplained, f"resourceVersion changed with no other writer: {unexplained}"
    wait_ready(namespace, CHAT)


def test_only_the_leader_reconciles_and_the_other_takes_over(
    operator: Any, namespace: str, ready_chat: Callable[..., Any]
) -> None:
    ready_chat(CHAT, spec())
    if operator.mode == "process":
        leader_handover_between_processes(operator, namespace)
    else:
        leader_handover_between_pods(operator, namespace)


def leader_handover_between_processes(operator: Any, namespace: str) -> None:
    """Two host processes: the leader's reconcile counter moves, the standby's does not;
    SIGKILL the leader and the standby takes the lease once it expires and repairs drift."""
    second = operator.start()
    first = next(p for p in operator.running() if p is not second)
    leaders = [p.name for p in (first, second) if p.is_leader()]
    assert leaders == [first.name], f"processes reporting leadership: {leaders} (want only {first.name})"
    holders = leases()
    assert len(holders) == 1, f"want exactly one held Lease, have {holders}"

    # The standby is past its start and waiting for the lease.
    eventually(lambda: "waiting for the leader lease" in second.log_tail(200), timeout=30, what=f"{second.name} waiting for the lease")

    # Cause work and see who does it: only the leader reconciles.
    base = {p.name: p.reconciles() for p in (first, second)}
    done = first.reconciled(namespace, CHAT)
    delete("services", f"{CHAT}-gateway", namespace)
    eventually(lambda: get("services", f"{CHAT}-gateway", namespace), timeout=60, what="Service recreated")
    eventually(lambda: first.reconciled(namespace, CHAT) >= done + 2, timeout=60, what=f"{first.name} reconciling after the deletion")
    did = {p.name: p.reconciles() - base[p.name] for p in (first, second)}
    assert did[first.name] > 0 and did[second.name] == 0, f"reconciliations per process since the edit: {did}"
    assert second.reconciles() == 0 and second.reconciled(namespace, CHAT) == 0, f"{second.name} reconciled while standing by"

    # Kill the leader without letting it release the lease: the standby must wait for the
    # lease to expire, take it and repair what changed meanwhile.
    first.stop(signal.SIGKILL)
    delete("services", f"{CHAT}-gateway", namespace)
    eventually(second.is_leader, timeout=90, what=f"{second.name} taking over the lease")
    eventually(
        lambda: get("services", f"{CHAT}-gateway", namespace),
        timeout=60,
        what=f"{second.name} recreating the Service",
    )
    # The Service is recreated mid-reconcile; the reconcile's "finished" log line follows it.
    eventually(
        lambda: second.reconciled(namespace, CHAT) > 0,
        timeout=60,
        what=f"{second.name} finishing a reconcile of {CHAT} after taking over",
    )
    assert_children(wait_ready(namespace, CHAT))


def leader_handover_between_pods(operator: Any, namespace: str) -> None:
    """Two operator pods: one holds the Lease; delete it and the other takes over."""
    operator.scale(2)
    try:
        holders = eventually(leases, timeout=60, what="a held Lease")
        assert len(holders) == 1, f"want exactly one held Lease, have {holders}"
        (lease_name, holder), = holders.items()
        pods = operator.pods()
        assert holder in pods, f"lease holder {holder!r} is not one of the operator pods {pods}"
        for standby in (p for p in pods if p != holder):
            log = kubectl("logs", standby, "-n", RELEASE_NAMESPACE)
            assert "acquired the leader lease" not in log, f"standby {standby} reconciles too:\n{log}"
        delete("pods", holder, RELEASE_NAMESPACE, wait=False)
        eventually(
            lambda: leases().get(lease_name) not in (None, holder),
            timeout=120,
            what="the other replica taking over the lease",
        )
        new_leader = operator.leader()
        assert new_leader != holder
        done = operator.reconciled(namespace, CHAT)
        delete("services", f"{CHAT}-gateway", namespace)
        eventually(lambda: get("services", f"{CHAT}-gateway", namespace), timeout=60, what="Service recreated by the new leader")
        # The new leader's own log shows it did the repair.
        wait_reconciled(operator, namespace, CHAT, 1, since=done)
    finally:
        operator.scale(1)


def test_operator_runs_as_the_chart_service_account(operator: Any) -> None:
    """The operator has only the chart's RBAC: it authenticates as the chart's
    ServiceAccount, which may manage CanvasChats but not, say, delete nodes."""
    service_account = f"system:serviceaccount:{RELEASE_NAMESPACE}:{chart_service_account()}"
    if operator.mode == "process":
        as_operator = ["--kubeconfig", str(operator.kubeconfig)]
        who = json.loads(kubectl(*as_operator, "auth", "whoami", "-o", "json"))
        assert who["status"]["userInfo"]["username"] == service_account, who
    else:
        as_operator = ["--as", service_account]
        pod_spec = json.loads(
            kubectl("get", "deployment", chart_deployment_name(), "-n", RELEASE_NAMESPACE, "-o", "json")
        )["spec"]["template"]["spec"]
        assert pod_spec["serviceAccountName"] == chart_service_account(), pod_spec
    assert kubectl(*as_operator, "auth", "can-i", "patch", "canvaschats.canvaschat.io", "--subresource=status", "-A").strip() == "yes"
    assert kubectl(*as_operator, "auth", "can-i", "create", "deployments.apps", "-A").strip() == "yes"
    denied = subprocess.run(
        ["kubectl", *as_operator, "auth", "can-i", "delete", "nodes"], capture_output=True, text=True
    )
    assert denied.stdout.strip() == "no", denied.stdout + denied.stderr
