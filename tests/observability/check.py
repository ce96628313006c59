"""Checks the chart's Grafana dashboard and PrometheusRule against what the binaries export.

Usage: check.py RENDERED_CHART_YAML METRICS_TEXT... --rules-out FILE

- every metric a dashboard query or an alert reads is one a live /metrics of the gateway or
  the operator exposes (canvaschat_*), or, for the alerts about Kubernetes objects, one of
  the kube-state-metrics series listed below;
- the dashboard shows connections, messages in and out, delivery latency, rejections, Redis
  errors and operator reconciles and their errors; the rule has every expected alert;
- the ConfigMap carries the Grafana sidecar's label and valid dashboard JSON.
Writes the rule groups to --rules-out for promtool. Prints one line per failed check and a
summary; exits non-zero on any failure.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable

import yaml

# Series of kube-state-metrics the alerts read (https://github.com/kubernetes/kube-state-metrics/tree/main/docs/metrics).
KUBE_STATE_METRICS = {
    "kube_deployment_spec_replicas",
    "kube_deployment_status_replicas_available",
    "kube_statefulset_replicas",
    "kube_statefulset_status_replicas_ready",
    "kube_horizontalpodautoscaler_spec_max_replicas",
    "kube_horizontalpodautoscaler_status_current_replicas",
}
DASHBOARD_MUST_SHOW = {
    "canvaschat_connections_active": "connections",
    "canvaschat_messages_received_total": "messages in",
    "canvaschat_messages_delivered_total": "messages out",
    "canvaschat_delivery_latency_seconds_bucket": "delivery latency",
    "canvaschat_rejected_total": "rejections",
    "canvaschat_redis_errors_total": "Redis errors",
    "canvaschat_operator_reconciliations_total": "reconcile rate",
    "canvaschat_operator_reconcile_errors_total": "reconcile errors",
}
ALERTS = {
    "CanvasChatNoReadyGateways",
    "CanvasChatRedisDown",
    "CanvasChatRedisErrors",
    "CanvasChatDeliveryLatencyHigh",
    "CanvasChatReconcileErrors",
    "CanvasChatGatewaysAtMaxReplicas",
}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "inf", "nan"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "summary": ("", "_sum", "_count")}


def exported(text: str) -> set[str]:
    """Series names a Prometheus text exposition offers, families without samples included."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            base = family.removesuffix("_total") if kind == "counter" else family
            names.update(base + suffix for suffix in SUFFIXES.get(kind, ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (not functions, label names or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, Grafana variables)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = m.group(0)
        if word.lower() in PROMQL_WORDS or expr[m.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except AssertionError as e:
            self.failed += 1
            print(f"FAIL {name}: {e}")
        else:
            self.passed += 1


def expect_known(what: str, names: Iterable[str], known: set[str]) -> None:
    unknown = sorted(set(names) - known)
    assert not unknown, f"{what} reads {unknown}, which no binary exports"


def main() -> int:
    args = sys.argv[1:]
    if "--rules-out" not in args or args.index("--rules-out") != len(args) - 2 or len(args) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    rules_out = args[-1]
    rendered, metric_files = args[0], args[1:-2]
    live: set[str] = set()
    for path in metric_files:
        with open(path) as f:
            live |= exported(f.read())
    objects = [o for o in yaml.safe_load_all(open(rendered)) if o]
    results = Results()

    dashboards = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]

    def one_each() -> None:
        assert len(dashboards) == 1, f"{len(dashboards)} ConfigMaps labelled grafana_dashboard=1"
        assert len(rules) == 1, f"{len(rules)} PrometheusRules"
        assert rules[0]["apiVersion"] == "monitoring.coreos.com/v1", rules[0]["apiVersion"]

    results.check("the chart renders one dashboard ConfigMap and one PrometheusRule", one_each)
    if len(dashboards) != 1 or len(rules) != 1:
        print(f"{results.passed} passed, {results.failed} failed")
        return 1

    exprs: list[tuple[str, str]] = []

    def dashboard_json() -> None:
        data = dashboards[0]["data"]
        assert list(data) == ["canvaschat.json"], f"data keys {list(data)}"
        board = json.loads(data["canvaschat.json"])
        assert board.get("uid") and board.get("title"), "dashboard without uid or title"
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                assert target.get("expr"), f"panel {panel['title']!r} has a target without expr"
                assert target["datasource"]["uid"] == "${datasource}", f"panel {panel['title']!r} pins a data source"
                exprs.append((panel["title"], target["expr"]))
        assert exprs, "no queries"

    results.check("dashboard ConfigMap holds valid dashboard JSON", dashboard_json)
    for title, expr in exprs:
        results.check(f"dashboard panel {title!r}: {expr}", lambda expr=expr: expect_known("query", metric_names(expr), live))
    used = set().union(*(metric_names(e) for _, e in exprs)) if exprs else set()
    for name, topic in DASHBOARD_MUST_SHOW.items():
        results.check(f"dashboard shows {topic}", lambda name=name: require(name in used, f"no query reads {name}"))

    groups = rules[0]["spec"]["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}

    def every_alert() -> None:
        missing = ALERTS - set(alerts)
        assert not missing, f"missing alerts {sorted(missing)}"

    results.check("PrometheusRule has every alert", every_alert)
    for name, rule in alerts.items():

        def known(rule: dict = rule) -> None:
            names = metric_names(rule["expr"])
            expect_known("expr", {n for n in names if n.startswith("canvaschat_")}, live)
            others = {n for n in names if not n.startswith("canvaschat_")}
            assert others <= KUBE_STATE_METRICS, f"reads {sorted(others - KUBE_STATE_METRICS)}, neither exported nor kube-state-metrics"
            assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, "no severity label"
            assert rule.get("annotations", {}).get("summary"), "no summary"

        results.check(f"alert {name} reads exported series", known)

    with open(rules_out, "w") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False)
    print(f"{results.passed} passed, {results.failed} failed")
    return 0 if results.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
