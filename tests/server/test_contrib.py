"""The Grafana dashboard and the Prometheus rules in contrib/ name only metrics that /metrics
exports, so that a renamed metric cannot leave a blank panel or an alert that never fires."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.events import Event
from reconciler.metrics import Metrics
from reconciler.model import EventType, Observation, OrderKey, Outcome

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
DASHBOARD = CONTRIB / "grafana-dashboard.json"
RULES = CONTRIB / "prometheus-rules.yml"

METRIC = re.compile(r"\breconciler_[a-z_]+")
SUFFIX = re.compile(r"_(bucket|sum|count|total|created)$")
# What issue 15 asks the rules to catch.
ALERTS = {
    "ReconcilerSourceFailing",
    "ReconcilerNoSuccessfulCheck",
    "ReconcilerOutboxBacklogGrowing",
    "ReconcilerDeadLetters",
    "ReconcilerSinkDisabled",
    "ReconcilerStuckOrders",
    "ReconcilerStoreFailing",
}


def fed_metrics() -> Metrics:
    """Return Metrics after one observation of every kind the daemon feeds it."""
    metrics = Metrics()
    key = OrderKey("ccv", "default", "O-1")
    metrics.observe_checks(
        "ccv",
        "default",
        [
            Observation(key, Outcome.OK, "Processing"),
            Observation(key, Outcome.FAILED, None, reason="timeout"),
        ],
    )
    metrics.observe_events([Event("id", EventType.STUCK, 0.0, "ccv", "default", "O-1", "info", {})])
    metrics.observe_notification("ccv", "accepted")
    metrics.observe_notification_latency("ccv", 0.1)
    metrics.observe_unauthorized("invalid")
    metrics.set_followed({("ccv", "default", "Processing"): 1}, accounts={("ccv", "default")})
    metrics.set_last_success("ccv", "default", 1.0)
    metrics.set_rest_until("ccv", "default", 2.0)
    metrics.set_outbox_backlog({"log": 1})
    metrics.set_dead_letters({"log": 1})
    metrics.set_sinks_disabled({"log": True})
    metrics.observe_pass("ccv", "default", "poll", 0.1)
    metrics.set_source("ccv", "default", failing=False, poll_interval_s=300)
    metrics.set_stuck({("ccv", "default"): 1})
    metrics.set_store("full")
    return metrics


def exported_series(metrics: Metrics) -> dict[str, set[str]]:
    """Return the family name of each metric /metrics renders, and its series names."""
    body, _ = metrics.render()
    return {
        family.name: {sample.name for sample in family.samples}
        for family in text_string_to_metric_families(body.decode())
    }


def unknown_names(exprs: list[str], exported: dict[str, set[str]]) -> set[str]:
    """Return the reconciler metric names in PromQL expressions that /metrics does not export
    (a counter's family name is no series either: PromQL must say `_total`)."""
    series = set().union(*exported.values())
    return {name for expr in exprs for name in METRIC.findall(expr) if name not in series}


def family(name: str) -> str:
    """Return the family of a series name (`reconciler_checks_total` -> `reconciler_checks`)."""
    return SUFFIX.sub("", name)


def dashboard_exprs(node: Any) -> Iterator[str]:
    """Yield every query in a dashboard: panel targets and template variables."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "definition", "query") and isinstance(v, str):
                yield v
            else:
                yield from dashboard_exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from dashboard_exprs(v)


def rule_exprs(text: str) -> dict[str, str]:
    """Return alert name -> expr from a rules file in the YAML subset contrib/ uses: `- alert:`
    lines, and `expr:` with its value on the line or as a `|` block indented below it."""
    rules: dict[str, str] = {}
    lines = text.splitlines()
    name = None
    for i, line in enumerate(lines):
        if m := re.match(r"\s*- (alert|record): *(\S+)\s*$", line):
            name = m[2]
            assert name not in rules, f"{name} is defined twice"
            continue
        m = re.match(r"( *)expr: *(.*?)\s*$", line)
        if m is None:
            continue
        assert name is not None, f"line {i + 1}: expr outside a rule"
        indent, value = len(m[1]), m[2]
        if value in ("|", "|-", ">", ">-"):
            block = []
            for below in lines[i + 1 :]:
                if below.strip() and len(below) - len(below.lstrip()) <= indent:
                    break
                block.append(below.strip())
            value = " ".join(b for b in block if b)
        rules[name] = value.strip("\"'")
    return rules


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    return exported_series(fed_metrics())


def test_every_metric_is_fed_here(exported: dict[str, set[str]]) -> None:
    # A metric added to Metrics but not fed above would have no series and could not be checked.
    empty = {name for name, samples in exported.items() if not samples}
    assert not empty, f"feed these in fed_metrics(): {sorted(empty)}"


def test_dashboard_names_only_exported_metrics(exported: dict[str, set[str]]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(dashboard_exprs(dashboard["panels"])) + list(
        dashboard_exprs(dashboard["templating"])
    )
    assert not unknown_names(exprs, exported)
    named = {family(n) for e in exprs for n in METRIC.findall(e)}
    # The panels issue 15 asks for: freshness, checks and failures, events, outbox and dead
    # letters, notification latency, pass duration.
    assert {
        "reconciler_last_success_timestamp_seconds",
        "reconciler_checks",
        "reconciler_check_failures",
        "reconciler_events",
        "reconciler_outbox_backlog",
        "reconciler_dead_letters",
        "reconciler_notification_latency_seconds",
        "reconciler_pass_duration_seconds",
    } <= named


def test_dashboard_is_importable(exported: dict[str, set[str]]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    # Import gives it an id; the datasource is chosen in a variable, so none is hard-wired.
    assert "id" not in dashboard and dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_rules_name_only_exported_metrics_and_cover_the_alerts(
    exported: dict[str, set[str]],
) -> None:
    text = RULES.read_text()
    assert text.startswith("#") and "\ngroups:\n" in text
    rules = rule_exprs(text)
    assert set(rules) >= ALERTS
    assert all(rules.values())
    assert not unknown_names(list(rules.values()), exported)
    no_success = rules["ReconcilerNoSuccessfulCheck"]
    assert no_success == (
        "time() - reconciler_last_success_timestamp_seconds > 3 * reconciler_poll_interval_seconds"
    )


def test_a_renamed_metric_is_caught(exported: dict[str, set[str]]) -> None:
    rules = rule_exprs(
        RULES.read_text().replace("reconciler_dead_letters", "reconciler_dead_letter")
    )
    assert unknown_names(list(rules.values()), exported) == {"reconciler_dead_letter"}
    # A counter needs its _total in PromQL; the bare family name selects nothing.
    assert unknown_names(["rate(reconciler_checks[5m])"], exported) == {"reconciler_checks"}
    renamed = fed_metrics()
    renamed.registry.unregister(renamed.stuck)
    assert unknown_names(["reconciler_stuck_orders > 0"], exported_series(renamed)) == {
        "reconciler_stuck_orders"
    }


def test_rule_reader_reads_plain_and_block_exprs() -> None:
    text = (
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n"
        "        for: 5m\n      - alert: B\n        expr: |\n          x\n\n            > 1\n"
        "        labels:\n          severity: page\n"
    )
    assert rule_exprs(text) == {"A": "up == 0", "B": "x > 1"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) not installed")
def test_promtool_accepts_the_rules_and_their_unit_tests() -> None:
    # What the alerts mean (when each fires, and when not) is tested in promtool's own terms.
    for command in (
        ["promtool", "check", "rules", RULES.name],
        ["promtool", "test", "rules", "prometheus-rules.test.yml"],
    ):
        done = subprocess.run(command, cwd=CONTRIB, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
