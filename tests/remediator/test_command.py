"""`medic rules check` and `medic rules test`: no bus, no cluster, so they run in-process; a test
case's `objects:` are staged in a throw-away Kubernetes API sandbox and the actions plan against
them in dry-run."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from medic import cli
from medic.remediator.command import rules_app
from medic.schemas import ReleaseProblem, encode_message
from medic.testing import objects
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
        "event": json.loads(encode_message(release_event(problem=ReleaseProblem.STALLED))),
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


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules-tests"
RESET_AT = "/metadata/annotations/reconcile.fluxcd.io~1resetAt"


def _staged_case(name: str, status: dict[str, object], expect: list[dict[str, object]]) -> dict:
    return {
        "name": name,
        "event": json.loads(
            encode_message(release_event("podinfo", "apps", problem=ReleaseProblem.STALLED))
        ),
        "etcd": {"condition": "stable", "stableFor": "60s"},
        "objects": [objects.helmrelease("podinfo", "apps", status=status)],
        "expect": expect,
    }


def test_the_example_stages_objects_and_prints_the_planned_changes() -> None:
    result = CliRunner().invoke(cli.app, ["rules", "test", str(EXAMPLES / "s1-retry.yaml")])
    assert result.exit_code == 0, result.output
    assert "act => planned" in result.output
    assert f"would change {RESET_AT}: null -> " in result.output
    assert "act => skipped already-fixed: already-ready" in result.output
    assert "3 test(s), 0 failed" in result.output


def test_a_planned_change_that_does_not_match_fails_the_run(tmp_path: Path) -> None:
    failed = objects.etcd_failed_status("podinfo", "apps")
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    rule = "flux-retry-after-transient-etcd-error"
    planned = {"rule": rule, "outcome": "planned", "changes": [{}, {"path": RESET_AT}]}
    spec = {
        "tests": [
            _staged_case("planned-as-expected", failed, [planned]),
            _staged_case("already-ready-but-expected-planned", ready, [planned]),
            _staged_case("two-changes-expected-one", failed, [{**planned, "changes": [{}]}]),
        ]
    }
    path = tmp_path / "staged.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(cli.app, ["rules", "test", str(path)])
    assert result.exit_code == 1
    assert "ok   planned-as-expected" in result.output
    assert "FAIL already-ready-but-expected-planned" in result.output
    assert "FAIL two-changes-expected-one" in result.output
    assert "3 test(s), 2 failed" in result.output


def test_objects_the_sandbox_cannot_hold_fail_the_case_naming_them(tmp_path: Path) -> None:
    case = _staged_case("unknown-kind", {}, [])
    case["objects"] = [
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    ]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"tests": [case]}))
    result = CliRunner().invoke(cli.app, ["rules", "test", str(path)])
    assert result.exit_code == 1
    assert "FAIL unknown-kind: objects[0] (example.com/v1 Widget)" in result.output


def test_without_a_sandbox_a_case_with_objects_fails_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "staged.yaml"
    path.write_text(yaml.safe_dump({"tests": [_staged_case("needs-sandbox", {}, [])]}))
    result = CliRunner().invoke(rules_app, ["test", str(path)])  # no stage passed in
    assert result.exit_code == 1
    assert "FAIL needs-sandbox: `objects:` needs a Kubernetes API sandbox" in result.output
