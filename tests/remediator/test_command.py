"""`medic rules check` and `medic rules test`: pure (no bus, no cluster), so they run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from medic.remediator.command import rules_app
from medic.schemas import encode_message
from medic.testing.factories import release_event

GOOD = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: team-annotate}
spec:
  match: {types: [medic.release], kinds: [HelmRelease]}
  action: {name: notify-only}
"""

BAD = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata:
  name: broken
spec:
  action: {name: retry}
  limits:
    maxAttempts: -1
"""


def test_check_accepts_good_rules_and_names_file_line_field_of_bad_ones(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    runner = CliRunner()
    ok = runner.invoke(rules_app, ["check", str(tmp_path / "good.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "1 rule(s) valid, 0 error(s)" in ok.output

    (tmp_path / "bad.yaml").write_text(BAD)
    bad = runner.invoke(rules_app, ["check", str(tmp_path)])
    assert bad.exit_code == 1
    assert f"{tmp_path / 'bad.yaml'}:8:" in bad.output
    assert "spec.limits.maxAttempts" in bad.output
    assert "1 rule(s) valid, 1 error(s)" in bad.output


def _case(name: str, etcd_stable_for: str, verdict: str) -> dict[str, object]:
    return {
        "name": name,
        "event": json.loads(encode_message(release_event())),
        "etcd": {"condition": "stable", "stableFor": etcd_stable_for},
        "expect": [{"rule": "flux-retry-after-transient-etcd-error", "verdict": verdict}],
    }


def test_test_runs_recorded_events_against_the_builtin_pack(tmp_path: Path) -> None:
    spec = {"tests": [_case("settled", "60s", "act"), _case("settling", "5s", "wait")]}
    passing = tmp_path / "s1.yaml"
    passing.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(rules_app, ["test", str(passing)])
    assert result.exit_code == 0, result.output
    assert "ok   settled" in result.output
    assert "2 test(s), 0 failed" in result.output

    spec = {"tests": [_case("wrong-expectation", "5s", "act")]}
    failing = tmp_path / "s1-wrong.yaml"
    failing.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(rules_app, ["test", str(failing)])
    assert result.exit_code == 1
    assert "FAIL wrong-expectation" in result.output
