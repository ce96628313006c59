"""spec.auth on a real API server: JWT chats are accepted and wait for their key Secret with a
condition that names it, the Deployment mounts the key read-only, a new key rolls the gateway,
invalid auth specs are refused with their message; and the gateway Deployment's pod template,
run as a local process with the Secret volume materialised, accepts a token minted with the
mounted key, refuses another with 4401, and holds the origin allow-list the operator derived
from the Ingress host.

The gateway runs with its embedded broker (CANVASCHAT_REDIS_URL emptied): Redis from the
templates is test_pod_template.py's subject, this file is about authentication.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import websockets

from chat_client import recv_type
from conftest import ARTIFACTS, TARGET, canvaschat, get_chat, wait_ready
from kube import KubectlError, apply, condition, eventually, get, kubectl, patch
from operator_runner import free_port
from pod_processes import gateway_process, http_get, local_processes

CHAT = "authchat"
SECRET = "chat-jwt"
HOST = "auth.example.test"
KEY_HASH = "canvaschat.io/auth-secret-hash"
SPEC: dict[str, Any] = {
    "auth": {"mode": "jwt", "hmacSecretRef": {"name": SECRET, "key": "secret"}, "tokenUrl": "/auth/token"},
    "ingress": {"enabled": True, "host": HOST},
    "gateway": {"autoscaling": {"enabled": False}, "replicas": 1},
}
GATEWAY_BIN = Path(os.environ.get("CANVASCHAT_GATEWAY_BIN", TARGET / "release" / "canvaschat-gateway"))


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    with local_processes(tmp_path, ARTIFACTS, "auth") as start:
        yield start


def pod_template(namespace: str) -> dict[str, Any]:
    deployment = get("deployments.apps", f"{CHAT}-gateway", namespace)
    assert deployment, f"{CHAT}-gateway does not exist"
    return deployment["spec"]["template"]


def key_hash(namespace: str) -> str:
    annotations = pod_template(namespace)["metadata"].get("annotations") or {}
    assert KEY_HASH in annotations, f"the gateway pod template carries no {KEY_HASH}: {annotations}"
    return annotations[KEY_HASH]


def materialise_secret_volumes(template: dict[str, Any], namespace: str, root: Path) -> dict[str, Path]:
    """Writes the files the kubelet would project from each Secret volume the gateway
    container mounts under root; returns mount path -> local directory."""
    pod = template["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    out = {}
    for mount in pod["containers"][0].get("volumeMounts") or []:
        source = volumes[mount["name"]].get("secret")
        if not source:
            continue
        secret = get("secrets", source["secretName"], namespace)
        assert secret, f"Secret {source['secretName']} of volume {mount['name']} is missing"
        local = root / mount["mountPath"].strip("/")
        local.mkdir(parents=True)
        items = source.get("items") or [{"key": k, "path": k} for k in secret["data"]]
        for item in items:
            (local / item["path"]).write_bytes(base64.b64decode(secret["data"][item["key"]]))
        out[mount["mountPath"]] = local
    return out


def mint(secret_file: Path, sub: str) -> str:
    """A token from `canvaschat-gateway token`, signed with the key in secret_file."""
    env = {**os.environ, "CANVASCHAT_JWT_HMAC_SECRET_FILE": str(secret_file)}
    out = subprocess.run(
        [str(GATEWAY_BIN), "token", "--sub", sub, "--ttl", "600"], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, f"canvaschat-gateway token failed: {out.stderr}"
    return out.stdout.strip()


async def signed_in(url: str, token: str, origin: str) -> dict[str, Any]:
    async with websockets.connect(url, origin=origin) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        return await recv_type(ws, "user_sync")


async def refused_with(url: str, token: str) -> tuple[dict[str, Any], int | None]:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed:
            pass
        return frame, ws.close_code


async def origin_refused(url: str, origin: str) -> int:
    try:
        async with websockets.connect(url, origin=origin):
            return 101
    except websockets.InvalidStatus as err:
        return err.response.status_code


def test_jwt_chat_waits_for_its_key_mounts_it_and_rolls_on_a_new_one(
    namespace: str, processes: Callable[..., subprocess.Popen], tmp_path: Path
) -> None:
    if not GATEWAY_BIN.is_file():
        pytest.fail(f"gateway binary {GATEWAY_BIN} is missing: run `cargo build --release -p canvaschat-gateway`")
    # Accepted without its Secret, the chat says what is missing instead of starting pods
    # that could not read the key.
    apply(canvaschat(CHAT, SPEC), namespace)

    def secret_missing() -> bool:
        degraded = condition(get_chat(namespace, CHAT), "Degraded")
        assert degraded and degraded["reason"] == "SecretMissing", f"Degraded is {degraded}"
        assert SECRET in degraded["message"] and "spec.auth.hmacSecretRef" in degraded["message"], degraded
        return True

    eventually(secret_missing, timeout=60, what="Degraded SecretMissing naming the key Secret")
    assert get("deployments.apps", f"{CHAT}-gateway", namespace) is None, "a gateway without its key was applied"
    # The Secret watch brings the chat up once the Secret exists.
    key = secrets.token_hex(32)
    kubectl("create", "secret", "generic", SECRET, "-n", namespace, f"--from-literal=secret={key}")
    wait_ready(namespace, CHAT)

    template = pod_template(namespace)
    pod = template["spec"]
    container = pod["containers"][0]
    volume = next(v for v in pod["volumes"] if (v.get("secret") or {}).get("secretName") == SECRET)
    assert volume["secret"]["items"] == [{"key": "secret", "path": "hmac-secret"}], volume
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert mount.get("readOnly") is True, mount
    config_map = next(s["configMapRef"]["name"] for s in container["envFrom"] if s.get("configMapRef"))
    env = (get("configmaps", config_map, namespace) or {}).get("data") or {}
    assert env.get("CANVASCHAT_AUTH") == "jwt", env
    assert env.get("CANVASCHAT_JWT_HMAC_SECRET_FILE") == f"{mount['mountPath']}/hmac-secret", env
    assert env.get("CANVASCHAT_ALLOWED_ORIGINS") == f"https://{HOST},http://{HOST}", env
    assert env.get("CANVASCHAT_TRUSTED_PROXY_HOPS") == "1", env
    assert key not in json.dumps(get("deployments.apps", f"{CHAT}-gateway", namespace)), "the key is in the Deployment"

    # The pod template as a local process, the Secret volume written where the template says.
    mounts = materialise_secret_volumes(template, namespace, tmp_path / "volumes")
    port = free_port()
    command, env = gateway_process(
        get("deployments.apps", f"{CHAT}-gateway", namespace) or {}, namespace, port, 0, lambda _url: "", GATEWAY_BIN
    )
    for var, value in env.items():
        for path, local in mounts.items():
            if value.startswith(f"{path}/"):
                env[var] = str(local) + value[len(path) :]
    key_file = Path(env["CANVASCHAT_JWT_HMAC_SECRET_FILE"])
    assert key_file.read_text() == key, "the mounted file does not hold the Secret's key"
    gateway = processes("gateway", command, env)

    def config() -> dict[str, Any]:
        assert gateway.poll() is None, f"the gateway exited {gateway.returncode} (see {ARTIFACTS}/auth-gateway.log)"
        try:
            status, body = http_get(f"http://127.0.0.1:{port}/config.json")
        except OSError:
            return {}
        assert status == 200, body
        return json.loads(body)

    assert eventually(config, timeout=30, what="the gateway serving /config.json") == {
        "auth": "jwt",
        "tokenUrl": "/auth/token",
    }
    url = f"ws://127.0.0.1:{port}/api/chat?uid=mallory&channel=lobby"
    sync = asyncio.run(signed_in(url, mint(key_file, "alice"), f"https://{HOST}"))
    assert sync["users"] == ["alice"], f"the user is the token's sub, not the uid parameter: {sync}"
    other_key = tmp_path / "other-key"
    other_key.write_text(secrets.token_hex(32))
    frame, code = asyncio.run(refused_with(url, mint(other_key, "alice")))
    assert frame.get("type") == "error" and frame.get("code") == "unauthorized", frame
    assert code == 4401, f"a token signed with another key closed with {code}"
    assert asyncio.run(origin_refused(url, "https://elsewhere.example.test")) != 101, "another site's page was let in"

    # New key, same Secret: the pod template's hash changes, so the gateway rolls.
    before = key_hash(namespace)
    generation = get("deployments.apps", f"{CHAT}-gateway", namespace)["metadata"]["generation"]
    new_key = base64.b64encode(secrets.token_hex(32).encode()).decode()
    patch("secrets", SECRET, namespace, {"data": {"secret": new_key}})
    eventually(lambda: key_hash(namespace) != before, timeout=60, what="a new auth-secret-hash on the pod template")
    assert get("deployments.apps", f"{CHAT}-gateway", namespace)["metadata"]["generation"] > generation
    # Another key in the same Secret is not the chat's: no rollout for it. The spec change
    # after it (the PDB only) makes sure a reconcile has seen it before the hash is compared.
    after = key_hash(namespace)
    patch("secrets", SECRET, namespace, {"data": {"unrelated": base64.b64encode(b"x").decode()}})
    patch("canvaschats.canvaschat.io", CHAT, namespace, {"spec": {"gateway": {"podDisruptionBudget": {"maxUnavailable": 2}}}})
    wait_ready(namespace, CHAT)
    assert key_hash(namespace) == after


INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "two-keys",
        {"mode": "jwt", "hmacSecretRef": {"name": "a", "key": "k"}, "jwksUrl": "https://idp.example.test/jwks"},
        "needs exactly one key source",
    ),
    ("jwt-without-key", {"mode": "jwt", "audience": "chat"}, "needs exactly one key source"),
    ("key-without-jwt", {"hmacSecretRef": {"name": "a", "key": "k"}}, "apply only with mode: jwt"),
    ("plain-http-jwks", {"mode": "jwt", "jwksUrl": "http://idp.example.test/jwks"}, "spec.auth.jwksUrl"),
    ("key-ref-without-key", {"mode": "jwt", "hmacSecretRef": {"name": "a"}}, "spec.auth.hmacSecretRef.key"),
]


@pytest.mark.parametrize("auth,message", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_auth_is_refused(namespace: str, auth: dict[str, Any], message: str) -> None:
    with pytest.raises(KubectlError) as refused:
        apply(canvaschat("bad-auth", {"auth": auth}), namespace)
    assert message in refused.value.stderr, f"refusal does not say {message!r}: {refused.value.stderr}"
    assert get("canvaschats.canvaschat.io", "bad-auth", namespace) is None


def test_any_origin_is_explicit_and_alone(namespace: str) -> None:
    with pytest.raises(KubectlError) as refused:
        apply(canvaschat("bad-origins", {"gateway": {"settings": {"allowedOrigins": ["*", "https://a.example.test"]}}}), namespace)
    assert '"*" (any origin) must be the only entry' in refused.value.stderr, refused.value.stderr
    apply(canvaschat("any-origin", {"gateway": {"settings": {"allowedOrigins": ["*"]}}}), namespace)
    assert get("canvaschats.canvaschat.io", "any-origin", namespace) is not None
