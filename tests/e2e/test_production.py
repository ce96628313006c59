"""Production behaviour of the operator: names at the limit work, idle resyncs make no API request,
stored objects carry no server-side defaults so operator upgrades reach existing chats,
Secret rotation rolls the pods, an immutable StatefulSet change is handled, and the ClusterIP
Service N-redis of earlier operators is recreated headless."""

from __future__ import annotations

import base64
import json
from typing import Any, Callable, Iterator

import pytest
import yaml

from conftest import get_chat, wait_ready
from expectations import assert_children
from kube import apiserver_requests, condition, eventually, get, kubectl, list_objects, patch
from crds import host
from operator_runner import RELEASE_NAMESPACE, chart_service_account, settled, wait_reconciled

# Longest name the CRD accepts (crds/src/validation.rs MAX_NAME_LEN).
LONGEST_NAME = "n" * 46
# Kinds the operator writes; APPLY requests on them are the operator's.
OPERATOR_RESOURCES = (
    "canvaschats", "configmaps", "secrets", "services", "statefulsets", "deployments",
    "networkpolicies", "ingresses", "horizontalpodautoscalers", "poddisruptionbudgets",
)
DEFAULTED_FIELDS = ("image", "resources", "securityContext", "podSecurityContext")
# API Priority and Fairness schemas that sort the operator's requests on the API server, so
# its metrics count them apart from every other client's: watches, leader-election Lease
# renewals, and every other request of any verb (what a reconcile could make).
OPERATOR_FLOWS = {
    "e2e-operator-watch": {"verbs": ["watch"], "apiGroups": ["*"], "resources": ["*"]},
    "e2e-operator-lease": {"verbs": ["*"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"]},
    "e2e-operator-other": {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
}


def operator_applies() -> float:
    """APPLY requests the API server served on the kinds the operator writes."""
    total = 0.0
    for line in kubectl("get", "--raw", "/metrics", timeout=60).splitlines():
        if not line.startswith("apiserver_request_total{") or 'verb="APPLY"' not in line:
            continue
        if any(f'resource="{r}"' in line for r in OPERATOR_RESOURCES):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def operator_flows(operator: Any) -> Iterator[None]:
    """FlowSchemas matching the operator's ServiceAccount, one per kind of request."""
    subject = {"kind": "ServiceAccount", "serviceAccount": {"name": chart_service_account(), "namespace": RELEASE_NAMESPACE}}
    schemas = []
    for precedence, (name, rule) in enumerate(OPERATOR_FLOWS.items(), start=100):
        rules: dict[str, Any] = {"subjects": [subject], "resourceRules": [{**rule, "clusterScope": True, "namespaces": ["*"]}]}
        if name == "e2e-operator-other":
            rules["nonResourceRules"] = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
        schemas.append({
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {
                "matchingPrecedence": precedence,
                "priorityLevelConfiguration": {"name": "workload-low"},
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [rules],
            },
        })
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(schemas))
    yield
    kubectl("delete", "flowschemas.flowcontrol.apiserver.k8s.io", *OPERATOR_FLOWS, "--ignore-not-found")


def operator_requests() -> dict[str, float]:
    """Requests the API server dispatched per operator FlowSchema (of any verb)."""
    counts = dict.fromkeys(OPERATOR_FLOWS, 0.0)
    for line in kubectl("get", "--raw", "/metrics", timeout=60).splitlines():
        if line.startswith("apiserver_flowcontrol_dispatched_requests_total{"):
            for name in OPERATOR_FLOWS:
                if f'flow_schema="{name}"' in line:
                    counts[name] += float(line.rsplit(" ", 1)[1])
    return counts


def pod_template(resource: str, name: str, namespace: str) -> dict[str, Any]:
    obj = get(resource, name, namespace)
    assert obj is not None, f"{resource}/{name} is missing"
    return obj["spec"]["template"]


def test_longest_accepted_name_gets_redis_and_gateway_pods(namespace: str, ready_chat: Callable[..., Any]) -> None:
    chat = ready_chat(LONGEST_NAME, {"gateway": {"autoscaling": {"enabled": False}, "replicas": 1}})
    assert_children(chat)
    pods = list_objects("pods", namespace, f"app.kubernetes.io/instance={LONGEST_NAME}")
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
    assert components == {"gateway", "redis"}, f"pods {[p['metadata']['name'] for p in pods]}"
    redis_pod = next(p for p in pods if p["metadata"]["labels"]["app.kubernetes.io/component"] == "redis")
    revision = redis_pod["metadata"]["labels"]["controller-revision-hash"]
    assert revision.startswith(f"{LONGEST_NAME}-redis-") and len(revision) <= 63, revision


def no_namespace_terminating() -> bool:
    """Earlier tests' namespaces are deleted without waiting; while one terminates, the
    operator may still (rightly) react to its children disappearing."""
    terminating = [
        n["metadata"]["name"]
        for n in json.loads(kubectl("get", "namespaces", "-o", "json"))["items"]
        if n.get("status", {}).get("phase") == "Terminating"
    ]
    assert not terminating, f"namespaces still terminating: {terminating}"
    return True


@pytest.mark.usefixtures("operator_flows")
def test_idle_resync_makes_no_api_request(operator: Any, namespace: str, ready_chat: Callable[..., Any]) -> None:
    eventually(no_namespace_terminating, timeout=120, what="earlier test namespaces gone")
    ready_chat("idle", {"ingress": {"enabled": True, "host": host()}})
    assert operator_requests()["e2e-operator-other"] > 0, "the FlowSchemas did not attribute the operator's requests"
    # The creation's follow-up reconciles (child status updates) are over.
    settled(operator, namespace, "idle")
    wait_ready(namespace, "idle")
    before = operator_applies()
    requests_before = operator_requests()
    done = operator.reconciled(namespace, "idle")
    # The idle window: two more reconciles of the chat, the later one started after the window
    # opened; with nothing changing, those are resyncs.
    wait_reconciled(operator, namespace, "idle", 2, since=done)
    after = operator_applies()
    requests = {k: v - requests_before[k] for k, v in operator_requests().items()}
    assert after - before == 0, f"{after - before:.0f} APPLY requests during an idle window of two reconciles"
    print(f"operator requests during the idle window, by FlowSchema: {requests}")
    assert requests["e2e-operator-other"] == 0, (
        f"{requests['e2e-operator-other']:.0f} API requests (other than watches and Lease renewals) during an idle "
        "window of two reconciles"
    )
    total = apiserver_requests("APPLY")
    assert total >= after, "apiserver_request_total reports fewer APPLY requests than on our kinds"


def test_stored_chat_has_no_server_side_defaults_and_upgrades_roll_it(
    operator: Any, namespace: str, ready_chat: Callable[..., Any]
) -> None:
    # No image pinned: this chat follows the operator's default gateway image.
    kubectl("apply", "-n", namespace, "-f", "-", input=(
        "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: follow}\nspec: {}\n"
    ))
    stored = get_chat(namespace, "follow")
    assert stored["spec"] == {}, f"the API server stored defaults: {stored['spec']}"
    eventually(lambda: get("deployments.apps", "follow-gateway", namespace), timeout=60, what="gateway Deployment")
    image_before = pod_template("deployments.apps", "follow-gateway", namespace)["spec"]["containers"][0]["image"]
    upgraded = image_before.rsplit(":", 1)[0] + ":9.9.9-e2e"
    try:
        operator.upgrade_gateway_image(upgraded)

        def rolled() -> bool:
            template = pod_template("deployments.apps", "follow-gateway", namespace)
            assert template["spec"]["containers"][0]["image"] == upgraded, template["spec"]["containers"][0]["image"]
            return True

        eventually(rolled, timeout=60, what="the upgraded operator rolling the chat to its gateway image")
        assert get_chat(namespace, "follow")["spec"] == {}, "the operator wrote defaults into the spec"
    finally:
        operator.upgrade_gateway_image(None)


def test_secret_rotation_rolls_gateway_and_redis(namespace: str, ready_chat: Callable[..., Any]) -> None:
    ready_chat("rotate")
    secret = get("secrets", "rotate-redis-auth", namespace)
    assert secret is not None, "no generated Redis password Secret"
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) >= 32, "the generated password is too short"

    def hashes() -> tuple[str, str]:
        gateway = pod_template("deployments.apps", "rotate-gateway", namespace)["metadata"]["annotations"]
        redis = pod_template("statefulsets.apps", "rotate-redis", namespace)["metadata"]["annotations"]
        return gateway["canvaschat.io/secret-hash"], redis["canvaschat.io/secret-hash"]

    before = hashes()
    rotated = base64.b64encode(b"rotated-" + password.encode()).decode()
    patch("secrets", "rotate-redis-auth", namespace, {"data": {"password": rotated}})

    def rolled() -> bool:
        now = hashes()
        assert now[0] != before[0] and now[1] != before[1], f"secret hashes {before} -> {now}"
        return True

    eventually(rolled, timeout=60, what="both pod templates rolled after the Secret changed")
    wait_ready(namespace, "rotate")
    # The operator never rewrites the password it generated.
    assert get("secrets", "rotate-redis-auth", namespace)["data"]["password"] == rotated


def test_statefulset_immutable_change_is_recreated_keeping_pods_and_claims(
    namespace: str, ready_chat: Callable[..., Any]
) -> None:
    ready_chat("sts")
    sts = get("statefulsets.apps", "sts-redis", namespace)
    assert sts is not None
    claims = {c["metadata"]["name"]: c["metadata"]["uid"] for c in list_objects("persistentvolumeclaims", namespace)}
    assert claims, "no Redis volume claim"
    # spec.redis.storage was absent, so the CRD's transition rule does not apply; the volume
    # claim template of the StatefulSet cannot change in place.
    patch("canvaschats.canvaschat.io", "sts", namespace, {"spec": {"redis": {"storage": {"size": "2Gi"}}}})

    def recreated() -> bool:
        new = get("statefulsets.apps", "sts-redis", namespace)
        assert new is not None, "StatefulSet not recreated yet"
        assert new["metadata"]["uid"] != sts["metadata"]["uid"], "StatefulSet not recreated yet"
        size = new["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        assert size == "2Gi", size
        return True

    eventually(recreated, timeout=90, what="the StatefulSet recreated with the new claim template")
    chat = wait_ready(namespace, "sts")
    assert condition(chat, "Degraded")["status"] == "False", condition(chat, "Degraded")
    after = {c["metadata"]["name"]: c["metadata"]["uid"] for c in list_objects("persistentvolumeclaims", namespace)}
    assert after == claims, f"volume claims changed: {claims} -> {after}"
    events = kubectl("get", "events", "-n", namespace, "--field-selector", "reason=RecreatingStatefulSet", "-o", "name")
    assert events.strip(), "no RecreatingStatefulSet event"


def test_cluster_ip_redis_service_of_an_earlier_operator_is_recreated_headless(
    namespace: str, ready_chat: Callable[..., Any]
) -> None:
    ready_chat("svc")
    untouched = {n: get("services", n, namespace)["metadata"]["uid"] for n in ("svc-redis-headless", "svc-gateway")}
    # What operators before the headless N-redis left: a ClusterIP Service of the same name,
    # labels, owner and port. Paused, so the operator leaves the swap alone.
    patch("canvaschats.canvaschat.io", "svc", namespace, {"spec": {"paused": True}})
    eventually(lambda: condition(get_chat(namespace, "svc"), "Paused")["status"] == "True", timeout=30, what="Paused=True")
    headless = get("services", "svc-redis", namespace)
    assert headless is not None and headless["spec"]["clusterIP"] == "None", headless
    meta = {k: headless["metadata"][k] for k in ("name", "labels", "ownerReferences")}
    old = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"type": "ClusterIP", "selector": headless["spec"]["selector"], "ports": headless["spec"]["ports"]},
    }
    kubectl("delete", "service", "svc-redis", "-n", namespace, "--wait=true")
    created = json.loads(kubectl("create", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(old)))
    assert created["spec"]["clusterIP"] not in (None, "None"), created["spec"]

    patch("canvaschats.canvaschat.io", "svc", namespace, {"spec": {"paused": False}})

    def recreated() -> dict[str, Any]:
        svc = get("services", "svc-redis", namespace)
        assert svc is not None, "svc-redis not recreated yet"
        assert svc["metadata"]["uid"] != created["metadata"]["uid"], "svc-redis is still the ClusterIP Service"
        return svc

    svc = eventually(recreated, timeout=60, what="svc-redis recreated")
    assert svc["spec"]["clusterIP"] == "None", svc["spec"]
    assert [p["port"] for p in svc["spec"]["ports"]] == [6379], svc["spec"]["ports"]
    wait_ready(namespace, "svc")
    events = json.loads(
        kubectl("get", "events", "-n", namespace, "--field-selector", "reason=RecreatingService", "-o", "json")
    )["items"]
    notes = [e["message"] for e in events]
    assert len(notes) == 1 and "svc-redis" in notes[0] and "headless" in notes[0], notes
    now = {n: get("services", n, namespace)["metadata"]["uid"] for n in untouched}
    assert now == untouched, f"other Services were recreated too: {untouched} -> {now}"
