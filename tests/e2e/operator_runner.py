"""Installs the operator with helm and runs it the way the cluster allows.

Two modes (CANVASCHAT_E2E_OPERATOR):
- `process` (local control plane: kwok fakes pods, so nothing in-cluster really runs): the
  chart is installed with its Deployment scaled to zero and `canvaschat-operator run` runs
  as host processes authenticated with a token of the chart's ServiceAccount, so the
  chart's RBAC is what the test exercises.
- `deployment` (kind or any real cluster): the chart's Deployment runs the operator image.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from images import dockerfile_for, parse_dockerfile, resolve
from kube import child_writes, eventually, kubectl, list_objects

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "canvaschat-operator"
RELEASE = "canvaschat-operator"
RELEASE_NAMESPACE = os.environ.get("CANVASCHAT_E2E_OPERATOR_NAMESPACE", "canvaschat-system")
# A short resync so the suite sees periodic reconciles (the chart's default is 300 s).
RESYNC_SECONDS = int(os.environ.get("CANVASCHAT_E2E_RESYNC_SECONDS", "10"))
# The controller logs each finished reconcile at debug level with the CanvasChat's name and
# namespace: the suite's evidence that a given operator has reconciled a given chat.
RECONCILE_LOG = "canvaschat_operator::controller=debug"


def helm(*args: str, timeout: float = 300) -> str:
    cmd = [os.environ.get("CANVASCHAT_E2E_HELM", "helm"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def release_objects() -> list[dict[str, Any]]:
    """The objects of the installed chart, from helm's rendered manifest."""
    return [doc for doc in yaml.safe_load_all(helm("get", "manifest", RELEASE, "-n", RELEASE_NAMESPACE)) if doc]


def install_chart(extra_args: list[str]) -> None:
    helm(
        "upgrade", "--install", RELEASE, str(CHART),
        "--namespace", RELEASE_NAMESPACE, "--create-namespace",
        "--set", f"resyncSeconds={RESYNC_SECONDS}",
        # helm's --set splits on unescaped commas.
        "--set", f"logLevel=info\\,{RECONCILE_LOG}",
        *extra_args,
        "--wait", "--timeout", "180s",
    )


def uninstall_chart() -> None:
    helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", "--timeout", "120s")


def chart_deployment_name() -> str:
    names = [o["metadata"]["name"] for o in release_objects() if o.get("kind") == "Deployment"]
    assert len(names) == 1, f"the chart should install exactly one Deployment, found {names}"
    return names[0]


def chart_service_account() -> str:
    names = [o["metadata"]["name"] for o in release_objects() if o.get("kind") == "ServiceAccount"]
    assert len(names) == 1, f"the chart should install exactly one ServiceAccount, found {names}"
    return names[0]


def chart_container(pod_name: str) -> tuple[list[str], dict[str, str]]:
    """The operator container's arguments and environment from the chart's Deployment,
    resolved against operator/Dockerfile as the kubelet and runtime would start it in a pod
    called pod_name (downward-API values filled in); the arguments follow the program."""
    deployment = next(o for o in release_objects() if o.get("kind") == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        field_path = ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if field_path:
            env[var["name"]] = {
                "metadata.name": pod_name,
                "metadata.namespace": RELEASE_NAMESPACE,
                "spec.serviceAccountName": chart_service_account(),
                "spec.nodeName": "localhost",
                "status.podIP": "127.0.0.1",
            }.get(field_path, pod_name)
    dockerfile = dockerfile_for(container["image"])
    assert dockerfile is not None, f"the chart's operator container runs {container['image']}, not an image of ours"
    process = resolve(container, pod.get("securityContext") or {}, env)
    in_image = parse_dockerfile(dockerfile).files.get("canvaschat-operator")
    assert in_image and process.argv[0] == in_image, f"the chart's operator container runs {process.argv}, not {in_image} ({dockerfile})"
    # The metrics address is chosen per process; drop the chart's.
    args: list[str] = []
    skip = False
    for arg in process.argv[1:]:
        if skip:
            skip = False
        elif arg == "--metrics-addr":
            skip = True
        elif not arg.startswith("--metrics-addr="):
            args.append(arg)
    env = dict(process.env)
    env.pop("CANVASCHAT_METRICS_ADDR", None)
    return args, env


def reconciled_in(log: str, namespace: str, name: str) -> int:
    """How many finished reconciles of CanvasChat namespace/name an operator log shows
    (JSON lines, or text lines `... reconciled name=N namespace=NS`)."""
    count = 0
    for line in log.splitlines():
        if "reconciled" not in line:
            continue
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            fields = event.get("fields", event)
            count += (fields.get("message"), fields.get("name"), fields.get("namespace")) == ("reconciled", name, namespace)
        else:
            count += bool(re.search(rf"\breconciled name={re.escape(name)} namespace={re.escape(namespace)}(\s|$)", line))
    return count


def wait_reconciled(operator: Any, namespace: str, name: str, times: int, since: int | None = None) -> int:
    """Waits until the current leader has finished `times` reconciles of namespace/name since
    its count was `since` (default: now), so at least times - 1 started after that; returns
    the count. Each takes at most one resync."""
    start = operator.reconciled(namespace, name) if since is None else since
    return eventually(
        lambda: (n := operator.reconciled(namespace, name)) >= start + times and n,
        timeout=RESYNC_SECONDS * 1.2 * times + 60,
        what=f"{times} reconciles of {namespace}/{name} by the leading operator (count was {start})",
    )


def settled(operator: Any, namespace: str, name: str) -> dict[str, tuple[str, str, str]]:
    """The chat's child_writes once two reconciles of it in a row (one started after the
    first look) have written nothing: the operator has finished with it."""

    def quiet() -> dict[str, tuple[str, str, str]]:
        before = child_writes(namespace, name)
        wait_reconciled(operator, namespace, name, 2)
        after = child_writes(namespace, name)
        changed = sorted(k for k in after if k not in before or after[k][1] != before[k][1])
        assert not changed, f"the operator is still writing {changed}"
        return after

    return eventually(quiet, timeout=RESYNC_SECONDS * 10 + 120, what=f"the operator done with {namespace}/{name}")


def leases() -> dict[str, str]:
    """holderIdentity of every held Lease in the operator's namespace, by Lease name."""
    return {
        lease["metadata"]["name"]: lease["spec"]["holderIdentity"]
        for lease in list_objects("leases.coordination.k8s.io", RELEASE_NAMESPACE)
        if (lease.get("spec") or {}).get("holderIdentity")
    }


def service_account_kubeconfig(path: Path, service_account: str) -> Path:
    """A kubeconfig for the chart's ServiceAccount: same server and CA, a bound token."""
    admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cluster = admin["clusters"][0]["cluster"]
    token = kubectl(
        "create", "token", service_account, "-n", RELEASE_NAMESPACE, "--duration", "24h"
    ).strip()
    ca = cluster.get("certificate-authority-data")
    if ca is None and cluster.get("certificate-authority"):
        ca = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": cluster["server"], "certificate-authority-data": ca}}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": service_account}}],
        "current-context": "e2e",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class OperatorProcess:
    name: str
    proc: subprocess.Popen
    metrics_addr: str
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.metrics_addr}{path}", timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def ready(self) -> bool:
        assert self.alive(), f"operator {self.name} exited {self.proc.returncode}; log: {self.log_tail()}"
        try:
            return self.http("/readyz")[0] == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def reconciles(self) -> float:
        """Total reconciliations this process has run, from its /metrics."""
        total = 0.0
        for line in self.http("/metrics")[1].splitlines():
            if line.startswith("#"):
                continue
            metric = line.split("{", 1)[0].split(" ", 1)[0]
            if "reconcil" in metric and metric.endswith("_total") and "error" not in metric and "fail" not in metric:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def reconciled(self, namespace: str, name: str) -> int:
        """Finished reconciles of namespace/name by this process, from its log."""
        return reconciled_in(self.log_path.read_text(errors="replace"), namespace, name)

    def is_leader(self) -> bool:
        """Whether this process says (canvaschat_operator_leader) it holds the lease."""
        for line in self.http("/metrics")[1].splitlines():
            if line.startswith("canvaschat_operator_leader "):
                return float(line.split()[1]) == 1
        raise AssertionError(f"{self.name} exports no canvaschat_operator_leader gauge")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class ProcessOperator:
    """The operator as host processes with the chart's ServiceAccount token."""

    binary: Path
    artifacts: Path
    processes: list[OperatorProcess] = field(default_factory=list)
    kubeconfig: Path | None = None
    started: int = 0

    mode = "process"

    def install(self) -> None:
        if not self.binary.is_file():
            raise RuntimeError(
                f"operator binary {self.binary} is missing: "
                "run `cargo build --release -p canvaschat-operator` or set CANVASCHAT_OPERATOR_BIN"
            )
        # Nothing in this cluster executes containers: the in-cluster copy stays at zero.
        install_chart([*shlex.split(os.environ.get("CANVASCHAT_E2E_HELM_ARGS", "")), "--set", "replicaCount=0"])
        self.kubeconfig = service_account_kubeconfig(
            self.artifacts / "operator.kubeconfig", chart_service_account()
        )
        self.start()

    def start(self, env_overrides: dict[str, str] | None = None) -> OperatorProcess:
        """One more operator process, configured exactly as the chart's Deployment
        configures its container (args and env), except for the metrics address and
        `env_overrides` (what a changed chart value would set)."""
        assert self.kubeconfig is not None
        self.started += 1
        name = f"operator-{self.started}"
        metrics_addr = f"127.0.0.1:{free_port()}"
        log_path = self.artifacts / f"{name}.log"
        chart_args, chart_env = chart_container(name)
        args = [str(self.binary), *chart_args, "--metrics-addr", metrics_addr]
        env = {
            **chart_env,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "KUBECONFIG": str(self.kubeconfig),
            "RUST_LOG": f"{os.environ['RUST_LOG']},{RECONCILE_LOG}" if os.environ.get("RUST_LOG") else chart_env.get("RUST_LOG", "info"),
            **(env_overrides or {}),
        }
        with log_path.open("wb") as log:
            proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        op = OperatorProcess(name, proc, metrics_addr, log_path)
        self.processes.append(op)
        eventually(op.ready, timeout=60, what=f"{name} /readyz")
        return op

    def running(self) -> list[OperatorProcess]:
        return [p for p in self.processes if p.alive()]

    def leader(self) -> OperatorProcess:
        """The running process holding the lease (it says so on its /metrics)."""
        leaders = [p for p in self.running() if p.is_leader()]
        assert len(leaders) == 1, f"processes reporting leadership: {[p.name for p in leaders]}"
        return leaders[0]

    def reconciled(self, namespace: str, name: str) -> int:
        """Finished reconciles of namespace/name by the current leader."""
        return self.leader().reconciled(namespace, name)

    def restart(self, env_overrides: dict[str, str] | None = None) -> None:
        for op in self.running():
            op.stop()
        self.start(env_overrides)

    def upgrade_gateway_image(self, image: str | None) -> None:
        """An operator upgrade as far as chats are concerned: a new default gateway image
        (None: back to the chart's)."""
        self.restart({"CANVASCHAT_GATEWAY_IMAGE": image} if image else None)

    def uninstall(self) -> None:
        for op in self.running():
            op.stop()
        uninstall_chart()

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.log_tail(200)}" for p in self.processes)


@dataclass
class DeploymentOperator:
    """The operator as the chart's Deployment (kind, real clusters)."""

    artifacts: Path
    mode = "deployment"

    def install(self) -> None:
        install_chart(shlex.split(os.environ.get("CANVASCHAT_E2E_HELM_ARGS", "")))
        self.wait_rolled_out()

    def wait_rolled_out(self) -> None:
        kubectl(
            "rollout", "status", "deployment", chart_deployment_name(), "-n", RELEASE_NAMESPACE,
            "--timeout=180s", timeout=200,
        )

    def pods(self) -> list[str]:
        deployment = json.loads(kubectl("get", "deployment", chart_deployment_name(), "-n", RELEASE_NAMESPACE, "-o", "json"))
        selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
        return [
            p["metadata"]["name"]
            for p in list_objects("pods", RELEASE_NAMESPACE, selector)
            if not p["metadata"].get("deletionTimestamp")
        ]

    def restart(self) -> None:
        kubectl("rollout", "restart", "deployment", chart_deployment_name(), "-n", RELEASE_NAMESPACE)
        self.wait_rolled_out()

    def leader(self) -> str:
        """The operator pod holding the lease (a pod of the current rollout)."""
        holders = list(leases().values())
        assert len(holders) == 1, f"want exactly one held Lease, have {holders}"
        pods = self.pods()
        assert holders[0] in pods, f"lease holder {holders[0]!r} is not a running operator pod {pods}"
        return holders[0]

    def reconciled(self, namespace: str, name: str) -> int:
        """Finished reconciles of namespace/name by the current leader pod, from its log."""
        return reconciled_in(kubectl("logs", self.leader(), "-n", RELEASE_NAMESPACE, timeout=60), namespace, name)

    def upgrade_gateway_image(self, image: str | None) -> None:
        """`helm upgrade` with a new gateway image value (None: back to the chart's)."""
        if image:
            repository, tag = image.rsplit(":", 1)
            values = ["--set", f"gatewayImage.repository={repository}", "--set", f"gatewayImage.tag={tag}"]
        else:
            values = ["--reset-values"]
        install_chart([*shlex.split(os.environ.get("CANVASCHAT_E2E_HELM_ARGS", "")), *values])
        self.wait_rolled_out()

    def scale(self, replicas: int) -> None:
        kubectl("scale", "deployment", chart_deployment_name(), "-n", RELEASE_NAMESPACE, f"--replicas={replicas}")
        self.wait_rolled_out()

    def uninstall(self) -> None:
        uninstall_chart()

    def logs(self) -> str:
        try:
            return kubectl(
                "logs", f"deployment/{chart_deployment_name()}", "-n", RELEASE_NAMESPACE,
                "--all-containers", "--tail=200",
            )
        except Exception as err:  # diagnostics only
            return f"(no logs: {err})"
