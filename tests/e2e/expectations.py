"""What the operator must have created for a CanvasChat, checked against design.md."""

from __future__ import annotations

import base64
import copy
from typing import Any, Callable

from kube import get

# The documented defaults (crds/src/defaults.rs; the gateway image is the operator's
# CANVASCHAT_GATEWAY_IMAGE, the chart's default for appVersion 0.1.0), so a partial spec
# can be compared with what the children carry.
DEFAULTS: dict[str, Any] = {
    "paused": False,
    "gateway": {
        "image": "ghcr.io/canvaschat/canvaschat-gateway:0.1.0",
        "replicas": 2,
        "settings": {
            "maxMessageBytes": 4096,
            "rateLimitPerMinute": 100,
            "presenceHeartbeatSeconds": 60,
            "presenceTtlSeconds": 300,
            "logLevel": "info",
            "allowedOrigins": [],
            "shutdownGraceSeconds": 25,
            "maxConnections": 10000,
        },
        "autoscaling": {
            "enabled": True,
            "minReplicas": 2,
            "maxReplicas": 10,
            "targetCPUUtilizationPercentage": 70,
            "targetMemoryUtilizationPercentage": 80,
        },
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
    },
    "redis": {
        "mode": "standalone",
        "image": "redis:7.4-alpine",
        "appendOnly": True,
        "storage": {"enabled": True, "size": "1Gi"},
    },
    "ingress": {"enabled": False},
}

SETTINGS_ENV = {
    "maxMessageBytes": "CANVASCHAT_MAX_MESSAGE_BYTES",
    "rateLimitPerMinute": "CANVASCHAT_RATE_LIMIT_PER_MINUTE",
    "presenceHeartbeatSeconds": "CANVASCHAT_PRESENCE_HEARTBEAT_SECONDS",
    "presenceTtlSeconds": "CANVASCHAT_PRESENCE_TTL_SECONDS",
    "shutdownGraceSeconds": "CANVASCHAT_SHUTDOWN_GRACE_SECONDS",
    "maxConnections": "CANVASCHAT_MAX_CONNECTIONS",
}


def expected_origins(spec: dict[str, Any]) -> list[str]:
    """CANVASCHAT_ALLOWED_ORIGINS as a list: the spec's, else https (and http where no TLS is
    known to be in front) for the Ingress host and every non-wildcard HTTPRoute host name."""
    explicit = spec["gateway"]["settings"]["allowedOrigins"]
    if explicit:
        return list(explicit)
    origins: list[str] = []
    ingress = spec["ingress"]
    hosts: list[tuple[str, bool]] = []
    if ingress["enabled"] and ingress.get("host"):
        hosts.append((ingress["host"], not ingress.get("tlsSecretName")))
    hosts += [(h, True) for h in (spec.get("httpRoute") or {}).get("hostnames", []) if not h.startswith("*.")]
    for host, plain in hosts:
        for origin in [f"https://{host}"] + ([f"http://{host}"] if plain else []):
            if origin not in origins:
                origins.append(origin)
    return origins


def merged(defaults: Any, spec: Any) -> Any:
    if isinstance(defaults, dict) and isinstance(spec, dict):
        out = copy.deepcopy(defaults)
        for key, value in spec.items():
            out[key] = merged(defaults.get(key), value) if key in defaults else value
        return out
    return copy.deepcopy(spec if spec is not None else defaults)


def effective_spec(chat: dict[str, Any]) -> dict[str, Any]:
    return merged(DEFAULTS, chat.get("spec") or {})


def expected_children(chat: dict[str, Any]) -> dict[str, str]:
    """kubectl resource name by object name, for every child this spec calls for."""
    name = chat["metadata"]["name"]
    spec = effective_spec(chat)
    children = {
        f"{name}-redis": "statefulsets.apps",
        f"{name}-redis-headless": "services",
        f"{name}-gateway": "deployments.apps",
    }
    services = {f"{name}-redis": "services", f"{name}-gateway": "services"}
    out = [(n, r) for n, r in children.items()] + [(n, r) for n, r in services.items()]
    out.append((f"{name}-redis", "networkpolicies.networking.k8s.io"))
    if spec["redis"]["mode"] == "sentinel":
        out.append((f"{name}-redis-sentinel", "services"))
        out.append((f"{name}-redis", "poddisruptionbudgets.policy"))
    if not spec["redis"].get("passwordSecretRef"):
        out.append((f"{name}-redis-auth", "secrets"))
    config_map = current_config_map(chat)
    if config_map:
        out.append((config_map, "configmaps"))
    if spec["gateway"]["autoscaling"]["enabled"]:
        out.append((f"{name}-gateway", "horizontalpodautoscalers.autoscaling"))
    if spec["gateway"]["podDisruptionBudget"]["enabled"]:
        out.append((f"{name}-gateway", "poddisruptionbudgets.policy"))
    if spec["ingress"]["enabled"]:
        out.append((name, "ingresses.networking.k8s.io"))
    if spec.get("httpRoute"):
        out.append((name, "httproutes.gateway.networking.k8s.io"))
    return {f"{resource}/{obj}": resource for obj, resource in out}


def current_config_map(chat: dict[str, Any]) -> str | None:
    """The content-hashed ConfigMap N-config-<hash> the gateway Deployment reads, if any."""
    name = chat["metadata"]["name"]
    deployment = get("deployments.apps", f"{name}-gateway", chat["metadata"]["namespace"])
    if deployment is None:
        return None
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for source in container.get("envFrom") or []:
            ref = (source.get("configMapRef") or {}).get("name", "")
            if ref.startswith(f"{name}-config-"):
                return ref
    return None


def fetch_children(chat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every expected child, asserting each exists."""
    namespace = chat["metadata"]["namespace"]
    found = {}
    for key, resource in expected_children(chat).items():
        obj = get(resource, key.split("/", 1)[1], namespace)
        assert obj is not None, f"{key} does not exist in {namespace}"
        found[key] = obj
    return found


def container_env(
    pod_spec: dict[str, Any],
    namespace: str,
    container: str | None = None,
    lookup: Callable[[str, str, str], dict[str, Any] | None] = get,
) -> dict[str, str]:
    """A container's effective environment: envFrom ConfigMaps first, then env (values only).
    ConfigMaps and Secrets come from the cluster, or from `lookup(resource, name, namespace)`
    (e.g. over the objects `canvaschat-operator render` printed)."""
    containers = pod_spec["containers"]
    c = next((c for c in containers if c["name"] == container), containers[0]) if container else containers[0]
    env: dict[str, str] = {}
    for source in c.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref:
            cm = lookup("configmaps", ref["name"], namespace)
            assert cm is not None, f"envFrom ConfigMap {ref['name']} is missing"
            prefix = source.get("prefix", "")
            env.update({prefix + k: v for k, v in (cm.get("data") or {}).items()})
    for var in c.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif (var.get("valueFrom") or {}).get("configMapKeyRef"):
            ref = var["valueFrom"]["configMapKeyRef"]
            cm = lookup("configmaps", ref["name"], namespace)
            assert cm is not None, f"ConfigMap {ref['name']} named by env {var['name']} is missing"
            env[var["name"]] = cm["data"][ref["key"]]
        elif (var.get("valueFrom") or {}).get("secretKeyRef"):
            ref = var["valueFrom"]["secretKeyRef"]
            secret = lookup("secrets", ref["name"], namespace)
            assert secret is not None, f"Secret {ref['name']} named by env {var['name']} is missing"
            env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env


def assert_children(chat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Asserts every child exists with the documented name, labels, owner and spec."""
    name = chat["metadata"]["name"]
    namespace = chat["metadata"]["namespace"]
    uid = chat["metadata"]["uid"]
    spec = effective_spec(chat)
    children = fetch_children(chat)

    for key, obj in children.items():
        labels = obj["metadata"].get("labels") or {}
        for label, value in {
            "app.kubernetes.io/name": "canvaschat",
            "app.kubernetes.io/instance": name,
            "app.kubernetes.io/managed-by": "canvaschat-operator",
        }.items():
            assert labels.get(label) == value, f"{key}: label {label}={labels.get(label)!r}, want {value!r}"
        assert labels.get("app.kubernetes.io/component") in ("gateway", "redis"), (
            f"{key}: app.kubernetes.io/component={labels.get('app.kubernetes.io/component')!r}"
        )
        owners = [o for o in obj["metadata"].get("ownerReferences") or [] if o.get("controller")]
        assert len(owners) == 1, f"{key}: want one controller ownerReference, got {obj['metadata'].get('ownerReferences')}"
        owner = owners[0]
        assert (owner["apiVersion"], owner["kind"], owner["name"], owner["uid"]) == (
            "canvaschat.io/v1alpha1", "CanvasChat", name, uid
        ), f"{key}: controller owner is {owner}"
        managers = {m.get("manager") for m in obj["metadata"].get("managedFields") or []}
        assert "canvaschat-operator" in managers, f"{key}: field managers {managers}, want canvaschat-operator"

    gw = spec["gateway"]
    deployment = children[f"deployments.apps/{name}-gateway"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == gw["image"], f"gateway image {container['image']}, want {gw['image']}"
    probes = {
        (container.get(p) or {}).get("httpGet", {}).get("path")
        for p in ("livenessProbe", "readinessProbe", "startupProbe")
    }
    assert {"/health", "/ready"} <= probes, f"gateway probes use paths {probes}, want /health and /ready"
    assert any(p.get("containerPort") == 8080 and p.get("name") == "http" for p in container.get("ports") or []), (
        f"gateway ports {container.get('ports')}, want 8080 named http"
    )
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    assert any("hash" in k or "checksum" in k for k in annotations), (
        f"gateway pod template annotations {annotations} carry no config hash"
    )
    if gw["autoscaling"]["enabled"]:
        hpa = children[f"horizontalpodautoscalers.autoscaling/{name}-gateway"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"{name}-gateway"
        assert hpa["spec"]["minReplicas"] == gw["autoscaling"]["minReplicas"]
        assert hpa["spec"]["maxReplicas"] == gw["autoscaling"]["maxReplicas"]
        targets = {
            m["resource"]["name"]: m["resource"]["target"].get("averageUtilization")
            for m in hpa["spec"].get("metrics") or []
            if m.get("type") == "Resource"
        }
        assert targets.get("cpu") == gw["autoscaling"]["targetCPUUtilizationPercentage"], f"HPA targets {targets}"
        assert targets.get("memory") == gw["autoscaling"]["targetMemoryUtilizationPercentage"], f"HPA targets {targets}"
    else:
        assert deployment["spec"]["replicas"] == gw["replicas"], (
            f"gateway replicas {deployment['spec'].get('replicas')}, want {gw['replicas']}"
        )
    if gw["podDisruptionBudget"]["enabled"]:
        pdb = children[f"poddisruptionbudgets.policy/{name}-gateway"]
        assert pdb["spec"].get("maxUnavailable") == gw["podDisruptionBudget"]["maxUnavailable"]

    env = container_env(pod, namespace)
    for field, var in SETTINGS_ENV.items():
        assert env.get(var) == str(gw["settings"][field]), f"gateway {var}={env.get(var)!r}, want {gw['settings'][field]}"
    origins = ",".join(expected_origins(spec))
    assert env.get("CANVASCHAT_ALLOWED_ORIGINS", "") == origins, (
        f"CANVASCHAT_ALLOWED_ORIGINS={env.get('CANVASCHAT_ALLOWED_ORIGINS')!r}, want {origins!r}"
    )
    proxied = spec["ingress"]["enabled"] or bool(spec.get("httpRoute"))
    assert env.get("CANVASCHAT_TRUSTED_PROXY_HOPS") == ("1" if proxied else None), (
        f"CANVASCHAT_TRUSTED_PROXY_HOPS={env.get('CANVASCHAT_TRUSTED_PROXY_HOPS')!r} with an Ingress or route: {proxied}"
    )
    auth = spec.get("auth") or {}
    assert env.get("CANVASCHAT_AUTH") == auth.get("mode", "anonymous"), f"CANVASCHAT_AUTH={env.get('CANVASCHAT_AUTH')!r}"
    redis_url = env.get("CANVASCHAT_REDIS_URL", "")
    redis = spec["redis"]
    sentinel = redis["mode"] == "sentinel"
    pods = redis.get("replicas", 3 if sentinel else 1)
    if sentinel:
        assert redis_url.startswith(f"redis-sentinel://{name}-redis-0.{name}-redis-headless.") and redis_url.count(":26379") == pods, (
            f"CANVASCHAT_REDIS_URL={redis_url!r} does not list the {pods} Sentinels of {name}-redis"
        )
    else:
        assert f"{name}-redis" in redis_url and redis_url.startswith("redis://"), (
            f"CANVASCHAT_REDIS_URL={redis_url!r} does not point at the {name}-redis Service"
        )

    sts = children[f"statefulsets.apps/{name}-redis"]
    assert sts["spec"]["replicas"] == pods
    assert sts["spec"]["serviceName"] == f"{name}-redis-headless"
    redis_container = sts["spec"]["template"]["spec"]["containers"][0]
    assert redis_container["image"] == redis["image"]
    cmdline = " ".join(redis_container.get("command", []) + redis_container.get("args", []))
    assert "requirepass" not in cmdline.replace('requirepass "$hex"', ""), (
        f"the Redis password must not be on the command line: {cmdline!r}"
    )
    assert "--protected-mode yes" in cmdline, f"protected mode is off: {cmdline!r}"
    redis_env = {v["name"] for v in redis_container.get("env") or [] if (v.get("valueFrom") or {}).get("secretKeyRef")}
    assert {"REDIS_PASSWORD", "REDISCLI_AUTH"} <= redis_env, f"Redis password env {redis_env}"
    gateway_secret_env = {v["name"] for v in container.get("env") or [] if (v.get("valueFrom") or {}).get("secretKeyRef")}
    assert "CANVASCHAT_REDIS_PASSWORD" in gateway_secret_env, f"gateway password env {gateway_secret_env}"
    for template in (deployment["spec"]["template"], sts["spec"]["template"]):
        assert "canvaschat.io/secret-hash" in (template["metadata"].get("annotations") or {}), (
            "a pod template carries no hash of the Redis password Secret"
        )
    want_aof = "yes" if redis["appendOnly"] else "no"
    assert f"appendonly {want_aof}" in cmdline or f"--appendonly {want_aof}" in cmdline, (
        f"redis command line {cmdline!r} does not set appendonly {want_aof}"
    )
    claims = sts["spec"].get("volumeClaimTemplates") or []
    if redis["storage"]["enabled"]:
        assert len(claims) == 1, f"redis volumeClaimTemplates {claims}"
        assert claims[0]["spec"]["resources"]["requests"]["storage"] == redis["storage"]["size"]
        if redis["storage"].get("storageClassName"):
            assert claims[0]["spec"].get("storageClassName") == redis["storage"]["storageClassName"]
    else:
        assert not claims, f"storage disabled but claims {claims}"

    # Both Redis Services are headless (N-redis resolves to the ready Redis pod); the gateway's
    # has a ClusterIP.
    headless = children[f"services/{name}-redis-headless"]
    assert headless["spec"].get("clusterIP") == "None"
    client = children[f"services/{name}-redis"]
    assert client["spec"].get("clusterIP") == "None", f"{name}-redis should be headless: {client['spec']}"
    assert not client["spec"].get("publishNotReadyAddresses"), f"{name}-redis should list ready pods only"
    assert [p["port"] for p in client["spec"]["ports"]] == [6379], f"{name}-redis ports {client['spec']['ports']}"
    gateway = children[f"services/{name}-gateway"]
    assert gateway["spec"].get("clusterIP") not in (None, "None"), f"{name}-gateway should be a ClusterIP Service"
    assert any(p.get("targetPort") in (8080, "http") for p in gateway["spec"]["ports"]), (
        f"{name}-gateway ports {gateway['spec']['ports']} do not reach the gateway's http port"
    )

    ingress_spec = spec["ingress"]
    if ingress_spec["enabled"]:
        ingress = children[f"ingresses.networking.k8s.io/{name}"]
        assert ingress["spec"].get("ingressClassName") == ingress_spec.get("className")
        rules = ingress["spec"]["rules"]
        assert len(rules) == 1
        if ingress_spec.get("host"):
            assert rules[0].get("host") == ingress_spec["host"]
        paths = {p["path"]: p["backend"]["service"]["name"] for p in rules[0]["http"]["paths"]}
        assert paths.get("/api") == f"{name}-gateway" and paths.get("/") == f"{name}-gateway", f"ingress paths {paths}"
        annotations = ingress["metadata"].get("annotations") or {}
        # Controller-neutral: the user's annotations and the operator's desired hash, nothing else.
        extra = set(annotations) - set(ingress_spec.get("annotations") or {}) - {"canvaschat.io/desired-hash"}
        assert not extra, f"the operator added ingress annotations {extra}"
        for key, value in (ingress_spec.get("annotations") or {}).items():
            assert annotations.get(key) == value, f"ingress annotation {key}={annotations.get(key)!r}, want {value!r}"
        if ingress_spec.get("tlsSecretName"):
            assert ingress["spec"]["tls"][0]["secretName"] == ingress_spec["tlsSecretName"]
    return children


def expected_url(chat: dict[str, Any]) -> str:
    spec = effective_spec(chat)
    hostnames = (spec.get("httpRoute") or {}).get("hostnames") or []
    if hostnames:
        return f"http://{hostnames[0]}"
    ingress = spec["ingress"]
    if ingress["enabled"] and ingress.get("host"):
        scheme = "https" if ingress.get("tlsSecretName") else "http"
        return f"{scheme}://{ingress['host']}"
    return f"http://{chat['metadata']['name']}-gateway.{chat['metadata']['namespace']}.svc"
