"""Templates (packaged, overridable, sandboxed) and Block Kit rendering."""

from __future__ import annotations

import io

import pytest

from medic.notifier.blocks import COLORS
from medic.notifier.channels.console import ConsoleChannel, ConsoleOptions
from medic.notifier.render import render_digest, render_result
from medic.notifier.templates import TemplateError, TemplateSet
from medic.schemas import Outcome
from medic.testing.notifier import make_result


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_has_a_colour_title_and_fallback_text(outcome: Outcome) -> None:
    rendered = render_result(make_result(outcome=outcome), TemplateSet())
    assert rendered.color == COLORS[outcome]
    assert outcome.value.upper() in rendered.title
    assert rendered.text.startswith(rendered.title)
    assert "HelmRelease apps/podinfo" in rendered.text
    assert "leader changed" in rendered.text
    assert rendered.payload["data"]["outcome"] == outcome.value


def test_user_template_overrides_the_packaged_one(tmp_path) -> None:
    (tmp_path / "title.j2").write_text("from dir {{ cluster }}")
    from_dir = render_result(make_result(), TemplateSet(template_dir=tmp_path))
    assert from_dir.title == "from dir test"
    channel_override = TemplateSet({"title": "{{ data.rule }} on {{ object_display }}"}, tmp_path)
    rendered = render_result(make_result(), channel_override)
    assert rendered.title == "retry-transient-etcd on HelmRelease apps/podinfo"


def test_templates_are_sandboxed() -> None:
    evil = TemplateSet({"title": "{{ ''.__class__.__mro__[1].__subclasses__() }}"})
    with pytest.raises(TemplateError, match="title"):
        render_result(make_result(), evil)


def test_a_broken_template_fails_at_start_up() -> None:
    with pytest.raises(TemplateError, match="text"):
        TemplateSet({"text": "{% for x in %}"})


def test_digest_lists_every_result() -> None:
    results = [make_result(f"app-{i}", Outcome.FAILED) for i in range(5)]
    rendered = render_digest("ops", results, 30.0, TemplateSet())
    assert rendered.is_digest
    assert "5 results" in rendered.text
    assert all(f"app-{i}" in rendered.text for i in range(5))
    assert len(rendered.payload["results"]) == 5


async def test_console_channel_writes_readable_text() -> None:
    out = io.StringIO()
    channel = ConsoleChannel("console", ConsoleOptions(), out=out)
    await channel.send(render_result(make_result(outcome=Outcome.ESCALATED), TemplateSet()))
    assert "[console]" in out.getvalue()
    assert "ESCALATED" in out.getvalue()
    assert ":rotating_light:" not in out.getvalue()  # Slack shortcodes shown as symbols
    assert "\N{POLICE CARS REVOLVING LIGHT}" in out.getvalue()


def test_escalation_tells_everything_it_knows() -> None:
    result = make_result(
        outcome=Outcome.ESCALATED,
        reason="retry limit reached",
        diagnosis={"last_error": "etcdserver: request timed out", "attempts": 3},
    )
    rendered = render_result(result, TemplateSet())
    assert rendered.broadcast
    assert "Diagnosis last_error: etcdserver: request timed out" in rendered.text
    assert "Why: retry limit reached" in rendered.text
    sections = " ".join(b.get("text", {}).get("text", "") for b in rendered.blocks)
    assert "Diagnosis" in sections
    assert "retry limit reached" in sections
