"""Which rules are in force: the built-in pack, and files that tune a built-in by its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from medic.remediator.service import load_rules
from medic.remediator.settings import RemediatorSettings

FASTER_S4 = """\
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: fleet-force-sync-missing-values}
spec:
  match: {types: [medic.release], problems: [values_missing], kinds: [BundleDeployment]}
  for: 10s
  action: {name: force-reconcile}
"""


def test_builtin_pack_is_loaded_by_default() -> None:
    loaded = load_rules(RemediatorSettings(actor="test"))
    assert not loaded.errors
    assert "fleet-force-sync-missing-values" in {rule.name for rule in loaded.rules}


def test_a_rule_file_replaces_the_builtin_of_the_same_name(tmp_path: Path) -> None:
    (tmp_path / "s4.yaml").write_text(FASTER_S4)
    builtin = load_rules(RemediatorSettings(actor="test"))
    tuned = load_rules(RemediatorSettings(actor="test", rules=[tmp_path]))
    names = [rule.name for rule in tuned.rules]
    assert len(names) == len(set(names)) == len(builtin.rules)
    s4 = next(rule for rule in tuned.rules if rule.name == "fleet-force-sync-missing-values")
    assert s4.spec.for_ == 10.0


def test_without_the_builtin_pack_only_the_files_count(tmp_path: Path) -> None:
    (tmp_path / "s4.yaml").write_text(FASTER_S4)
    loaded = load_rules(RemediatorSettings(actor="test", rules=[tmp_path], builtin_rules=False))
    assert [rule.name for rule in loaded.rules] == ["fleet-force-sync-missing-values"]


def test_rule_paths_from_the_environment_are_comma_separated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b.yaml").write_text(FASTER_S4)
    monkeypatch.setenv("MEDIC_REMEDIATOR_RULES", f"{tmp_path / 'a'},{tmp_path / 'b.yaml'}")
    settings = RemediatorSettings.load()
    assert isinstance(settings, RemediatorSettings)
    assert settings.rules == [tmp_path / "a", tmp_path / "b.yaml"]
    monkeypatch.setenv("MEDIC_REMEDIATOR_RULES", str(tmp_path / "b.yaml"))
    single = RemediatorSettings.load()
    assert isinstance(single, RemediatorSettings)
    assert single.rules == [tmp_path / "b.yaml"]


def test_a_file_with_a_bad_regex_is_reported_and_the_other_rules_are_in_force(
    tmp_path: Path,
) -> None:
    (tmp_path / "leader.yaml").write_text(
        "apiVersion: medic.dev/v1alpha1\nkind: RemediationRule\nmetadata: {name: leader}\n"
        'spec:\n  match: {message: "(leader"}\n  action: {name: retry}\n'
    )
    (tmp_path / "s4.yaml").write_text(FASTER_S4)
    loaded = load_rules(RemediatorSettings(actor="test", rules=[tmp_path], builtin_rules=False))
    assert [rule.name for rule in loaded.rules] == ["fleet-force-sync-missing-values"]
    [error] = loaded.errors
    assert str(error).startswith(f"{tmp_path / 'leader.yaml'}:5: field 'spec.match.message'")


def test_a_rule_with_params_its_action_refuses_is_not_in_force(tmp_path: Path) -> None:
    (tmp_path / "label.yaml").write_text(
        FASTER_S4.replace("fleet-force-sync-missing-values", "team-label").replace(
            "{name: force-reconcile}", "{name: label, params: {labels: {team: a}}}"
        )
    )
    (tmp_path / "s4.yaml").write_text(FASTER_S4)
    loaded = load_rules(RemediatorSettings(actor="test", rules=[tmp_path], builtin_rules=False))
    assert [rule.name for rule in loaded.rules] == ["fleet-force-sync-missing-values"]
    assert [(e.field, e.line) for e in loaded.errors] == [
        ("spec.action.params.values", 7),
        ("spec.action.params.labels", 7),
    ]
