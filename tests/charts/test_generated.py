"""The chart's generated files (charts/medic/files) match what the code declares now."""

from __future__ import annotations

from pathlib import Path

import yaml

from medic.chart import generate
from medic.chart.rbac import builtin_rule_actions, document, grants
from medic.remediator.actions import default_registry as actions
from medic.testing.chart import CHART
from medic.watcher.sources import default_registry as sources

ROOT = Path(__file__).resolve().parents[2]


def test_generated_rbac_and_dashboard_are_current() -> None:
    assert generate.stale(CHART, ROOT) == [], "run: python -m medic.chart.generate"


def test_rbac_file_holds_every_plugins_declaration_split_into_reads_and_writes() -> None:
    shipped = yaml.safe_load((CHART / "files" / "rbac.yaml").read_text())
    assert shipped == document()
    for plugin in sources(entry_points=False):
        assert grants(shipped["sources"][plugin.name]) == grants(plugin.rbac)
    for action in actions(entry_points=False):
        split = shipped["actions"][action.name]
        assert grants(split["reads"]) | grants(split["writes"]) == grants(action.rbac)
        assert not grants(split["reads"]) & grants(split["writes"])
    assert shipped["builtinRuleActions"] == builtin_rule_actions()


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    assert generate.main(["--root", str(ROOT), "--chart", str(chart), "--check"]) == 1
    assert generate.main(["--root", str(ROOT), "--chart", str(chart)]) == 0
    assert generate.main(["--root", str(ROOT), "--chart", str(chart), "--check"]) == 0
