"""Invalid CanvasChats are refused by the API server (schema and CEL rules), with a
message that names the problem, and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import canvaschat
from kube import KubectlError, apply, get

CASES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "min-above-max",
        "bad-scaling",
        {"gateway": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}},
        "must be less than or equal to maxReplicas",
    ),
    (
        "ttl-not-above-heartbeat",
        "bad-presence",
        {"gateway": {"settings": {"presenceHeartbeatSeconds": 60, "presenceTtlSeconds": 30}}},
        "must be greater than presenceHeartbeatSeconds",
    ),
    (
        "tls-without-host",
        "bad-tls",
        {"ingress": {"enabled": True, "tlsSecretName": "chat-tls"}},
        "host is required when tlsSecretName is set",
    ),
    (
        "wrong-type",
        "bad-type",
        {"gateway": {"replicas": "two"}},
        "spec.gateway.replicas",
    ),
    (
        "out-of-range",
        "bad-range",
        {"gateway": {"settings": {"maxMessageBytes": -1}}},
        "spec.gateway.settings.maxMessageBytes",
    ),
    (
        "bad-enum",
        "bad-enum",
        {"gateway": {"settings": {"logLevel": "loud"}}},
        "spec.gateway.settings.logLevel",
    ),
    (
        "bad-storage-size",
        "bad-size",
        {"redis": {"storage": {"size": "lots"}}},
        "spec.redis.storage.size",
    ),
    (
        "unknown-field",
        "bad-field",
        {"gateway": {"replica": 3}},
        'unknown field "spec.gateway.replica"',
    ),
    (
        "name-too-long",
        "a" * 47,
        {},
        "at most 46 characters",
    ),
    (
        "privileged-gateway",
        "bad-privileged",
        {"gateway": {"securityContext": {"privileged": True}}},
        "securityContext may not set privileged",
    ),
    (
        "added-capabilities",
        "bad-caps",
        {"redis": {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}},
        "securityContext may not set privileged",
    ),
    (
        "root-pod",
        "bad-root",
        {"gateway": {"podSecurityContext": {"runAsUser": 0}}},
        "podSecurityContext may not set runAsUser 0",
    ),
]


@pytest.mark.parametrize("name,spec,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_spec_is_refused(namespace: str, name: str, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(KubectlError) as refused:
        apply(canvaschat(name, spec), namespace)
    assert message in refused.value.stderr, f"refusal does not say {message!r}: {refused.value.stderr}"
    assert get("canvaschats.canvaschat.io", name, namespace) is None


def test_empty_spec_is_accepted(namespace: str) -> None:
    apply(canvaschat("empty", {}), namespace)
    assert get("canvaschats.canvaschat.io", "empty", namespace) is not None
