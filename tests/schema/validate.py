"""Schema checks of everything the operator and its chart produce, without a cluster.

- every object `canvaschat-operator render` prints for each file in examples/ and
  tests/schema/good/ (specs the examples do not show, e.g. spec.auth) is valid for
  Kubernetes 1.33 and 1.37 (kubernetes-validate, strict: unknown fields are errors);
- the generated CRD is a valid CustomResourceDefinition, and its openAPIV3Schema accepts every
  CanvasChat in examples/ and refuses every tests/schema/bad/schema-*.yaml;
- tests/schema/bad/cel-*.yaml pass the structural schema (only a CEL rule catches them; the
  e2e suite checks those against a real API server) and `render` refuses every bad file;
- `helm lint` passes and every object `helm template` renders is valid Kubernetes;
- rendered objects of CRD kinds (HTTPRoute, PodMonitor) are valid against the real CRDs in the
  files of CANVASCHAT_SCHEMA_CRD_FILES (colon-separated; run.sh fetches them).

Usage: validate.py OPERATOR_BINARY REPO_ROOT [HELM_BINARY]
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSIONS = ("1.33.0", "1.37.0")
# Kinds from CRDs that kubernetes-validate has no schema for.
NOT_BUILTIN = {"ServiceMonitor"}


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # report every failure, keep going
            self.failed += 1
            print(f"FAIL {name}: {e}")
        else:
            self.passed += 1
            print(f"ok   {name}")


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def structural_to_jsonschema(node: Any) -> Any:
    """An OpenAPI v3 structural schema as JSON Schema, closed like kubectl's strict field
    validation: objects with properties refuse unknown ones."""
    if isinstance(node, list):
        return [structural_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: structural_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    """(apiVersion, kind) -> validator of every served version of the CRDs in
    CANVASCHAT_SCHEMA_CRD_FILES."""
    out: dict[tuple[str, str], jsonschema.Draft7Validator] = {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    # Upstream CRDs hold a bare `=` (YAML's value tag) in an enum; it is the string "=".
    loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
    for path in filter(None, os.environ.get("CANVASCHAT_SCHEMA_CRD_FILES", "").split(":")):
        for crd in yaml.load_all(Path(path).read_text(), Loader=loader):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served"):
                    continue
                schema = structural_to_jsonschema(version["schema"]["openAPIV3Schema"])
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                out[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return out


CRD_VALIDATORS = crd_validators()


def k8s_valid(doc: dict[str, Any]) -> None:
    validator = CRD_VALIDATORS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if validator is not None:
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            raise AssertionError("; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors))
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def main() -> int:
    operator, repo = sys.argv[1], Path(sys.argv[2])
    helm = sys.argv[3] if len(sys.argv) > 3 else None
    results = Results()

    crd_out = run([operator, "crd"])
    if crd_out.returncode != 0:
        print(f"FAIL canvaschat-operator crd: {crd_out.stderr}")
        print("0 passed, 1 failed")
        return 1
    crd = yaml.safe_load(crd_out.stdout)
    results.check("CRD is a valid CustomResourceDefinition", lambda: k8s_valid(crd))
    schema = structural_to_jsonschema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    for key in ("apiVersion", "kind"):
        schema["properties"][key] = {"type": "string"}
    jsonschema.Draft7Validator.check_schema(schema)
    crd_validator = jsonschema.Draft7Validator(schema)

    def crd_accepts(doc: dict[str, Any]) -> None:
        errors = sorted(crd_validator.iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            raise AssertionError("; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors))

    def crd_refuses(doc: dict[str, Any]) -> None:
        if not list(crd_validator.iter_errors(doc)):
            raise AssertionError("the CRD schema accepted it")

    examples = sorted((repo / "examples").glob("*.yaml"))
    if not examples:
        results.check("examples/ holds CanvasChats", lambda: (_ for _ in ()).throw(AssertionError("none found")))
    for example in examples + sorted((repo / "tests/schema/good").glob("*.yaml")):
        rel = example.relative_to(repo)
        for i, doc in enumerate(load_all(example.read_text()), 1):
            results.check(f"{rel} doc {i}: CRD schema accepts it", lambda doc=doc: crd_accepts(doc))
        rendered = run([operator, "render", "-f", str(example)])
        results.check(
            f"{rel}: render succeeds",
            lambda r=rendered: None if r.returncode == 0 else (_ for _ in ()).throw(AssertionError(r.stderr.strip())),
        )
        if rendered.returncode != 0:
            continue
        for obj in load_all(rendered.stdout):
            what = f"{rel}: {obj.get('kind')} {obj.get('metadata', {}).get('name')} valid for Kubernetes {'/'.join(K8S_VERSIONS)}"
            results.check(what, lambda obj=obj: k8s_valid(obj))

    for bad in sorted((repo / "tests/schema/bad").glob("*.yaml")):
        rel = bad.relative_to(repo)
        doc = load_all(bad.read_text())[0]
        if bad.name.startswith("schema-"):
            results.check(f"{rel}: CRD schema refuses it", lambda doc=doc: crd_refuses(doc))
        else:
            results.check(f"{rel}: structural schema accepts it (CEL territory)", lambda doc=doc: crd_accepts(doc))

        def render_refuses(path: Path = bad) -> None:
            r = run([operator, "render", "-f", str(path)])
            if r.returncode == 0:
                raise AssertionError("render accepted it")
            if "error:" not in r.stderr:
                raise AssertionError(f"unclear message: {r.stderr!r}")

        results.check(f"{rel}: render refuses it", render_refuses)

    if helm:
        chart = str(repo / "charts/canvaschat-operator")

        def lint() -> None:
            r = run([helm, "lint", chart])
            if r.returncode != 0:
                raise AssertionError(r.stdout + r.stderr)

        results.check("helm lint", lint)
        for label, extra in (
            ("defaults", []),
            ("one namespace, ServiceMonitor, 2 replicas", ["--set", "watchNamespace=chat", "--set", "serviceMonitor.enabled=true", "--set", "replicaCount=2"]),
            ("no leader election", ["--set", "leaderElection.enabled=false"]),
        ):
            r = run([helm, "template", "canvaschat", chart, "--namespace", "canvaschat-system", "--include-crds", *extra])
            results.check(
                f"helm template ({label})",
                lambda r=r: None if r.returncode == 0 else (_ for _ in ()).throw(AssertionError(r.stderr.strip())),
            )
            if r.returncode != 0:
                continue
            for obj in load_all(r.stdout):
                if obj.get("kind") in NOT_BUILTIN:
                    continue
                what = f"chart ({label}): {obj.get('kind')} {obj.get('metadata', {}).get('name')} valid"
                results.check(what, lambda obj=copy.deepcopy(obj): k8s_valid(obj))

    print(f"{results.passed} passed, {results.failed} failed")
    return 0 if results.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
