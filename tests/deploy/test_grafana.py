"""The Grafana dashboard (deploy/grafana/medic-dashboard.json): valid JSON, unique panel ids, the
data source an input, and every metric a PromQL expression names is one the services export."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "medic-dashboard.json"
SERVICE_MODULES = (
    "medic.runtime.consumer",
    "medic.watcher.service",
    "medic.remediator.service",
    "medic.notifier.service",
)
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels") or [])


def expressions(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            found.append(query["query"] if isinstance(query, dict) else query)
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: label matchers, strings, ranges, grouping
    clauses and function calls removed, what is left that looks like a name is a metric."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings ("$cluster", "failed|escalated")
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\blabel_values\(\s*([a-zA-Z_:][\w:]*)\s*,[^)]*\)", r" \1 ", text)
    names = set(re.findall(r"\b([a-zA-Z_:][\w:]*)\b(?!\s*\()", text))
    return {n for n in names if n.lower() not in PROMQL_WORDS and not n.startswith("$")}


def exported_names() -> set[str]:
    for module in SERVICE_MODULES:
        importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def test_dashboard_is_valid_json_with_unique_panel_ids() -> None:
    dashboard = load()
    ids = [p["id"] for p in panels(dashboard["panels"])]
    assert ids, "no panels"
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    assert dashboard["uid"]
    assert dashboard["schemaVersion"] >= 36  # the Grafana 10 dashboard model


def test_every_panel_reads_the_prometheus_input() -> None:
    dashboard = load()
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    for panel in panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert 'cluster=~"$cluster"' in target["expr"], panel["title"]


def test_every_metric_in_a_query_is_exported_by_a_service() -> None:
    exported = exported_names()
    used = {name: expr for expr in expressions(load()) for name in metric_names(expr)}
    assert used, "no metric found in any expression"
    unknown = {name: expr for name, expr in used.items() if name not in exported}
    assert not unknown, f"metrics no service exports: {unknown}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'histogram_quantile(0.95, sum by (le, consumer) (rate(x_bucket{a=~"b"}[5m])))',
            {"x_bucket"},
        ),
        ("sum(rate(a_total[1m])) / sum(rate(b_count[1m]))", {"a_total", "b_count"}),
        ("label_values(medic_bus_messages_total, cluster)", {"medic_bus_messages_total"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
