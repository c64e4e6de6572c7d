"""Turn a result (or a burst of them) into a `Rendered` message: templates + Block Kit + JSON.

Rendering is pure: no I/O, no clock. The template context is plain JSON (the result as
published, plus the same facts worded for people), so users' templates see data, not objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medic.notifier import wording
from medic.notifier.blocks import COLORS, DIGEST_COLOR, EMOJI, digest_blocks, result_blocks
from medic.notifier.channels.base import Rendered
from medic.notifier.templates import TemplateSet
from medic.schemas import Outcome, RemediationResult, ResultDigest, message_json, stable_id


def result_context(result: RemediationResult) -> dict[str, Any]:
    """The template context: the result as published (`event`, `data`) for users' templates,
    and the same facts already worded for people (`why`, `*_lines`, `how`), which the packaged
    templates and the Slack blocks use (`medic.notifier.wording`)."""
    data = result.data
    event = message_json(result)  # the published contract, as machine channels get it
    evidence = {k: v for k, v in data.evidence.items() if v not in (None, "", [], {})}
    about_etcd = result.subject == "etcd" or "etcd" in data.rule
    return {
        "event": event,
        "data": event["data"],
        "cluster": result.cluster,
        "outcome": data.outcome.value,
        "outcome_emoji": EMOJI[data.outcome],
        "object_display": data.object.display() if data.object else data.problem_key,
        "problem_key": data.problem_key,
        "dry_run": data.dry_run,
        "evidence": evidence,
        "why": wording.error_text(data.reason, about_etcd=about_etcd),
        "how": ", ".join(_how(result)),
        "attempt_text": _attempt(result),
        "evidence_lines": list(wording.evidence_lines(data.evidence)),
        "diagnosis_lines": wording.fact_lines(data.diagnosis),
        "change_lines": [wording.change_line(c)._asdict() for c in data.changes],
    }


def _attempt(result: RemediationResult) -> str:
    data = result.data
    if not data.attempt:
        return ""
    if data.max_attempts:
        return f"attempt {data.attempt}/{data.max_attempts}"
    return f"attempt {data.attempt}"


def _how(result: RemediationResult) -> list[str]:
    parts = [f"rule {result.data.rule}", f"action {result.data.action}"]
    attempt = _attempt(result)
    return [*parts, attempt] if attempt else parts


def event_payload(result: RemediationResult) -> dict[str, Any]:
    """What machine channels (the webhook) receive: the result exactly as on the bus, valid
    against the published `schemas/remediation-result.json`."""
    return message_json(result)


def step_line(result: RemediationResult) -> str:
    """A step as the outcome that follows it mentions it: `attempt 1/1 failed: not verified`."""
    context = result_context(result)
    what = " ".join(p for p in (context["attempt_text"], context["outcome"]) if p)
    return f"{what}: {context['why']}" if context["why"] else what


def render_result(
    result: RemediationResult, templates: TemplateSet, earlier: Sequence[str] = ()
) -> Rendered:
    """`earlier`: the steps folded into this message (`medic.notifier.folding`)."""
    context = {**result_context(result), "earlier": list(earlier)}
    title = templates.render("title", context)
    text = templates.render("text", {**context, "title": title})
    return Rendered(
        title=title,
        text=text,
        color=COLORS[result.data.outcome],
        blocks=result_blocks(title, context),
        payload=event_payload(result),
        message_id=result.id,
        problem_key=result.data.problem_key,
        # A failed attempt is a step folded into the thread; an escalation people must see.
        broadcast=result.data.outcome is Outcome.ESCALATED,
    )


def render_digest(
    channel: str, results: Sequence[RemediationResult], window: float, templates: TemplateSet
) -> Rendered:
    items = [result_context(r) for r in results]
    context = {
        "results": items,
        "channel": channel,
        "window": round(window, 1),
        "window_text": wording.duration(window),
    }
    text = templates.render("digest", context)
    title = f"Medic digest: {len(results)} results"
    return Rendered(
        title=title,
        text=text,
        color=DIGEST_COLOR,
        blocks=digest_blocks(title, text),
        payload=message_json(ResultDigest(channel=channel, window=window, results=list(results))),
        message_id=stable_id("digest", channel, *sorted(r.id for r in results)),
        problem_key="digest",
        is_digest=True,
    )
