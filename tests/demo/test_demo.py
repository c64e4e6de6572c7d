"""`medic demo` as a newcomer runs it: every scenario reaches its outcome, exit 0, a JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medic.demo.scenarios import S2_DRIFT, S3_CLEAR, all_scenarios, as_dry_run, s3
from medic.demo.stack import Timings, rules_yaml, tuned_rules
from medic.remediator.rules.loader import load_builtin, load_text
from medic.schemas import Outcome

pytestmark = [pytest.mark.e2e, pytest.mark.etcd, pytest.mark.timeout(180)]


def test_tuned_rules_keep_the_builtin_pack_and_only_shorten_its_waits() -> None:
    timings = Timings()
    builtin = {rule.name: rule for rule in load_builtin().rules}
    loaded = load_text(rules_yaml(tuned_rules(timings)), "tuned.yaml")
    assert not loaded.errors
    tuned = {rule.name: rule for rule in loaded.rules}
    assert tuned.keys() == builtin.keys()
    for name, rule in tuned.items():
        shipped = builtin[name].spec
        assert rule.spec.match == shipped.match
        assert rule.spec.action == shipped.action
        assert rule.spec.limits.max_attempts == shipped.limits.max_attempts
        assert rule.spec.for_ <= shipped.for_
        assert rule.spec.verify.timeout <= timings.verify_timeout
    s1 = tuned["flux-retry-after-transient-etcd-error"].spec
    assert s1.preconditions.etcd_stable_for == timings.etcd_stable_for


def test_medic_demo_plays_every_scenario_to_its_outcome(tmp_path: Path) -> None:
    report = tmp_path / "demo.json"
    done = subprocess.run(
        [sys.executable, "-m", "medic.cli", "demo", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "every scenario reached its expected outcome" in done.stdout
    for stage in ("detected", "applied", "verified", "notified"):
        assert f" {stage} " in done.stdout
    data = json.loads(report.read_text())
    assert data["ok"] is True
    assert not data["not_run"]
    keys = {s["key"] for s in data["scenarios"]}
    assert {"S1", "S2", "S2-drift", "S3", "S4", "S4-heals", "S5", "healthy"} <= keys
    assert all(s["ok"] for s in data["scenarios"])
    assert data["timeline"]
    assert "Traceback" not in done.stderr


def test_dry_run_plans_every_fix_and_keeps_a_diagnosis_escalation() -> None:
    expected = {s.key: s.expect for s in map(as_dry_run, all_scenarios())}
    assert expected["S2-drift"] == ((S2_DRIFT, Outcome.ESCALATED),)
    assert expected["S3"] == ((S3_CLEAR, Outcome.PLANNED),)
    assert as_dry_run(s3(rbac_fixed=False)).expect == ((S3_CLEAR, Outcome.ESCALATED),)
    fixes = [e for key, e in expected.items() if key != "S2-drift"]
    assert all(outcome is Outcome.PLANNED for expect in fixes for _rule, outcome in expect)


def test_medic_demo_dry_run_reaches_every_outcome_and_writes_nothing(tmp_path: Path) -> None:
    report = tmp_path / "demo.json"
    done = subprocess.run(
        [sys.executable, "-m", "medic.cli", "demo", "--dry-run", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads(report.read_text())
    observed = {s["key"]: s["observed"] for s in data["scenarios"]}
    assert observed["S2-drift"] == "escalated"
    assert observed["S1"] == observed["S3"] == observed["S5"] == "planned"
    assert "Traceback" not in done.stderr
