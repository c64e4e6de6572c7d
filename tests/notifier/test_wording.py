"""Text a person reads: what an SRE writes by hand, checked on real results of S1-S5.

`fixtures/results/*.json` are results the remediator published in `medic demo` runs (normal,
dry-run, and with RBAC still broken / etcd-druid not answering); `*-derived.json` were edited
by hand to show a failed attempt quoting an unreachable etcd member. `fixtures/*.txt` is how
each reads on the console and in Slack: review those files to review the wording. After a
deliberate change of wording, regenerate them with `MEDIC_UPDATE_FIXTURES=1 pytest <this file>`.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest

from medic.notifier.channels.base import Rendered
from medic.notifier.channels.console import ConsoleChannel, ConsoleOptions
from medic.notifier.render import render_result, step_line
from medic.notifier.templates import TemplateSet
from medic.notifier.wording import change_line, duration, error_text, value_text
from medic.schemas import Change, RemediationResult

FIXTURES = Path(__file__).parent / "fixtures"
RESULTS = sorted((FIXTURES / "results").glob("*.json"))
# What a person should never have to read: JSON-Pointer escapes, Python reprs, raw seconds,
# the HTTP client's own error wording.
UNREADABLE = [
    re.compile(p)
    for p in (
        r"~1",
        r"\bNone\b",
        r"\{'",
        r"\['",
        r"'\}",
        r"(?<!=)\bTrue\b",
        r"_seconds",
        r"ssl:default",
    )
]


def load(path: Path) -> RemediationResult:
    return RemediationResult.model_validate_json(path.read_text())


async def as_people_read_it(rendered: Rendered) -> str:
    out = io.StringIO()
    await ConsoleChannel("console", ConsoleOptions(), out=out).send(rendered)
    slack = [rendered.title]
    for block in rendered.blocks:
        if block["type"] == "section":
            slack += [f["text"] for f in block.get("fields", [])]
            slack += [block["text"]["text"]] if "text" in block else []
        elif block["type"] == "context":
            slack += [e["text"] for e in block["elements"]]
    return f"{out.getvalue()}\n--- slack (blocks) ---\n" + "\n".join(slack) + "\n"


@pytest.mark.parametrize("path", RESULTS, ids=[p.stem for p in RESULTS])
async def test_every_scenario_message_matches_its_reviewed_fixture(path: Path) -> None:
    text = await as_people_read_it(render_result(load(path), TemplateSet()))
    expected = FIXTURES / f"{path.stem}.txt"
    if os.environ.get("MEDIC_UPDATE_FIXTURES"):
        expected.write_text(text)
    assert expected.exists(), f"no fixture {expected.name}: run with MEDIC_UPDATE_FIXTURES=1"
    assert text == expected.read_text()


async def test_an_escalation_with_its_failed_attempt_folded_in_matches_its_fixture() -> None:
    failed = load(FIXTURES / "results" / "S5-stuck-failed.json")
    escalated = load(FIXTURES / "results" / "S5-stuck-escalated.json")
    rendered = render_result(escalated, TemplateSet(), earlier=[step_line(failed)])
    text = await as_people_read_it(rendered)
    expected = FIXTURES / "S5-stuck-escalated-folded.txt"
    if os.environ.get("MEDIC_UPDATE_FIXTURES"):
        expected.write_text(text)
    assert text == expected.read_text()
    assert "Before: attempt 1/1 failed: not verified in time" in text


@pytest.mark.parametrize("path", RESULTS, ids=[p.stem for p in RESULTS])
async def test_no_channel_text_shows_escapes_reprs_or_raw_numbers(path: Path) -> None:
    text = await as_people_read_it(render_result(load(path), TemplateSet()))
    found = [p.pattern for p in UNREADABLE if p.search(text)]
    assert not found, f"{found} in:\n{text}"


def test_a_change_reads_as_the_annotation_it_set() -> None:
    change = Change(
        path="/metadata/annotations/reconcile.fluxcd.io~1requestedAt",
        after="2026-12-01T21:54:23Z",
    )
    line = change_line(change)
    assert f"{line.what}: {line.before} -> {line.after}" == (
        "annotation reconcile.fluxcd.io/requestedAt: (unset) -> 2026-12-01T21:54:23Z"
    )
    assert change_line(Change(path="/spec/options/forceSyncGeneration", before=0, after=1)) == (
        "spec.options.forceSyncGeneration",
        "0",
        "1",
    )


def test_durations_read_like_a_clock() -> None:
    assert duration(903.295755) == "15m03s"
    assert duration(2.221839) == "2.2s"
    assert duration(42.4) == "42s"
    assert duration(7530) == "2h05m"
    assert duration(3 * 86400 + 4 * 3600) == "3d04h"
    assert value_text(903.295755, key="age_seconds") == "15m03s"


def test_client_errors_name_who_was_unreachable() -> None:
    raw = (
        "Cannot connect to host 127.0.0.1:54655 ssl:default"
        " [Connect call failed ('127.0.0.1', 54655)]"
    )
    assert error_text(raw, about_etcd=True) == "etcd member 127.0.0.1:54655 unreachable"
    assert value_text(raw, key="etcd_member") == "etcd member 127.0.0.1:54655 unreachable"
    assert error_text(f"probe: {raw}") == "probe: 127.0.0.1:54655 unreachable"
    timeout = "Connection timeout to host https://10.0.0.7:2379/health"
    assert error_text(timeout, about_etcd=True) == (
        "etcd member https://10.0.0.7:2379/health did not answer in time"
    )


def test_nested_values_read_as_words_not_reprs() -> None:
    assert value_text({"get": True, "update": False}) == "get: yes, update: no"
    assert value_text(None) == "(unset)"
    assert value_text(["a", "b"]) == "a, b"
    patch = {"spec": {"driftDetection": {"ignore": [{"paths": ["/spec/replicas"]}]}}}
    assert json.loads(value_text(patch)) == patch  # deep: JSON, ready to paste
