"""The operator keeps children as the spec says: hand edits and deletions are reverted,
spec changes roll out, disabled features are removed, pause stops it, deletion collects
everything."""

from __future__ import annotations

from typing import Any, Callable

from conftest import READY_TIMEOUT, get_chat, wait_ready
from crds import host
from expectations import assert_children, current_config_map, expected_children
from kube import CHILD_KINDS, condition, delete, eventually, get, list_objects, patch
from operator_runner import wait_reconciled

CHAT = "chat"


def full_spec() -> dict[str, Any]:
    return {
        "gateway": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}},
        "ingress": {"enabled": True, "host": host()},
    }


def template_hash(namespace: str) -> dict[str, str]:
    deployment = get("deployments.apps", f"{CHAT}-gateway", namespace)
    assert deployment is not None
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    hashes = {k: v for k, v in annotations.items() if "hash" in k or "checksum" in k}
    assert hashes, f"no config hash on the pod template: {annotations}"
    return hashes


def test_deleted_and_edited_children_are_put_back(namespace: str, ready_chat: Callable[..., Any]) -> None:
    chat = ready_chat(CHAT, full_spec())
    before = assert_children(chat)

    delete("services", f"{CHAT}-gateway", namespace)
    patch("deployments.apps", f"{CHAT}-gateway", namespace, {
        "spec": {"template": {"spec": {"containers": [{"name": before[f"deployments.apps/{CHAT}-gateway"]["spec"]["template"]["spec"]["containers"][0]["name"], "image": "example.invalid/hacked:1"}]}}},
    }, kind="strategic")
    # The gateway ConfigMap is immutable: deleting it is the drift left to a user.
    config_map = current_config_map(chat)
    assert config_map, "the gateway Deployment names no N-config-<hash> ConfigMap"
    delete("configmaps", config_map, namespace)
    patch("networkpolicies.networking.k8s.io", f"{CHAT}-redis", namespace, {"spec": {"ingress": [{}]}})

    def restored() -> bool:
        old_uid = before[f"services/{CHAT}-gateway"]["metadata"]["uid"]
        svc = get("services", f"{CHAT}-gateway", namespace)
        assert svc is not None, "gateway Service not recreated yet"
        assert svc["metadata"]["uid"] != old_uid
        assert get("configmaps", config_map, namespace) is not None, "ConfigMap not recreated yet"
        policy = get("networkpolicies.networking.k8s.io", f"{CHAT}-redis", namespace)
        assert policy and policy["spec"]["ingress"][0].get("from"), "NetworkPolicy edit not reverted"
        assert_children(get_chat(namespace, CHAT))
        return True

    eventually(restored, timeout=60, what="deleted Service and ConfigMap recreated and edits reverted")


def test_spec_change_rolls_out_the_gateway(namespace: str, ready_chat: Callable[..., Any]) -> None:
    ready_chat(CHAT, full_spec())
    hash_before = template_hash(namespace)
    patch("canvaschats.canvaschat.io", CHAT, namespace, {"spec": {"gateway": {"settings": {"rateLimitPerMinute": 42}}}})
    chat = wait_ready(namespace, CHAT)
    assert_children(chat)
    assert template_hash(namespace) != hash_before, "gateway config changed but the pod template hash did not"

    def new_replicaset() -> bool:
        sets = list_objects("replicasets.apps", namespace, f"app.kubernetes.io/instance={CHAT}")
        assert len(sets) >= 2, f"want a second ReplicaSet after the rollout, have {[s['metadata']['name'] for s in sets]}"
        return True

    eventually(new_replicaset, timeout=30, what="rollout to a new ReplicaSet")


def test_disabling_autoscaling_and_ingress_deletes_them(namespace: str, ready_chat: Callable[..., Any]) -> None:
    ready_chat(CHAT, full_spec())
    assert get("horizontalpodautoscalers.autoscaling", f"{CHAT}-gateway", namespace) is not None
    assert get("ingresses.networking.k8s.io", CHAT, namespace) is not None
    patch("canvaschats.canvaschat.io", CHAT, namespace, {
        "spec": {"gateway": {"replicas": 3, "autoscaling": {"enabled": False}}, "ingress": {"enabled": False}},
    })

    def removed() -> bool:
        assert get("horizontalpodautoscalers.autoscaling", f"{CHAT}-gateway", namespace) is None, "HPA still exists"
        assert get("ingresses.networking.k8s.io", CHAT, namespace) is None, "Ingress still exists"
        return True

    eventually(removed, timeout=60, what="HPA and Ingress deleted")
    chat = wait_ready(namespace, CHAT)
    assert_children(chat)  # includes gateway replicas == 3 now that autoscaling is off
    assert chat["status"]["url"] == f"http://{CHAT}-gateway.{namespace}.svc"


def test_pause_stops_changes_and_unpause_resumes(operator: Any, namespace: str, ready_chat: Callable[..., Any]) -> None:
    applied = ready_chat(CHAT, full_spec())["metadata"]["generation"]
    hash_before = template_hash(namespace)
    patch("canvaschats.canvaschat.io", CHAT, namespace, {"spec": {"paused": True}})

    def paused_condition() -> dict[str, Any]:
        chat = get_chat(namespace, CHAT)
        cond = condition(chat, "Paused")
        assert cond and cond["status"] == "True", f"Paused condition {cond}"
        return chat

    eventually(paused_condition, timeout=30, what="Paused=True")
    done = operator.reconciled(namespace, CHAT)
    patch("canvaschats.canvaschat.io", CHAT, namespace, {"spec": {"gateway": {"settings": {"rateLimitPerMinute": 7}}}})
    delete("services", f"{CHAT}-gateway", namespace)
    # Two more finished reconciles: at least one started after both edits and saw them.
    wait_reconciled(operator, namespace, CHAT, 2, since=done)
    assert get("services", f"{CHAT}-gateway", namespace) is None, "a paused chat's deleted Service came back"
    assert template_hash(namespace) == hash_before, "a paused chat's gateway was changed"
    # GitOps tools compare observedGeneration with generation: the edit must not look applied.
    chat = paused_condition()
    assert chat["metadata"]["generation"] > applied
    assert chat["status"]["observedGeneration"] == applied, (
        f"observedGeneration {chat['status']['observedGeneration']} moved while paused (applied {applied})"
    )
    assert condition(chat, "Ready")["status"] == "False", condition(chat, "Ready")

    patch("canvaschats.canvaschat.io", CHAT, namespace, {"spec": {"paused": False}})
    chat = wait_ready(namespace, CHAT)

    def resumed() -> bool:
        assert_children(get_chat(namespace, CHAT))
        assert template_hash(namespace) != hash_before
        return True

    eventually(resumed, timeout=60, what="changes applied after unpausing")
    assert chat["spec"]["gateway"]["settings"]["rateLimitPerMinute"] == 7
    assert condition(chat, "Paused")["status"] == "False"


def test_deleting_the_chat_collects_every_child(namespace: str, ready_chat: Callable[..., Any]) -> None:
    chat = ready_chat(CHAT, full_spec())
    assert len(expected_children(chat)) >= 8
    delete("canvaschats.canvaschat.io", CHAT, namespace, wait=True)

    def collected() -> bool:
        left = [
            f"{o['kind']}/{o['metadata']['name']}"
            for resource in (*CHILD_KINDS, "persistentvolumeclaims", "pods", "replicasets.apps")
            for o in list_objects(resource, namespace, f"app.kubernetes.io/instance={CHAT}")
        ]
        assert not left, f"still present: {left}"
        return True

    # Real gateway pods drain for shutdownGraceSeconds before they go.
    eventually(collected, timeout=max(90.0, READY_TIMEOUT), what="garbage collection of every child")
