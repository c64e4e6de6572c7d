"""Slack Block Kit for a result: what broke, the evidence, what Medic did, the outcome.

Blocks go inside a legacy attachment because only attachments carry a colour bar; the
attachment's `fallback` and the message's `text` hold the plain text for notifications and
clients that do not render blocks (Slack docs: "Secondary message attachments").
"""

from __future__ import annotations

from typing import Any, Final

from medic.schemas import Outcome

COLORS: Final = {
    Outcome.SUCCEEDED: "#2eb886",
    Outcome.APPLIED: "#439fe0",
    Outcome.PLANNED: "#439fe0",
    Outcome.NO_OP: "#9e9e9e",
    Outcome.SKIPPED: "#9e9e9e",
    Outcome.FAILED: "#a30200",
    Outcome.ESCALATED: "#e01e5a",
}
EMOJI: Final = {
    Outcome.SUCCEEDED: ":white_check_mark:",
    Outcome.APPLIED: ":wrench:",
    Outcome.PLANNED: ":memo:",
    Outcome.NO_OP: ":zzz:",
    Outcome.SKIPPED: ":fast_forward:",
    Outcome.FAILED: ":x:",
    Outcome.ESCALATED: ":rotating_light:",
}
DIGEST_COLOR: Final = "#daa038"
_TEXT_LIMIT: Final = 2900  # section text limit is 3000 characters


def _clip(text: str, limit: int = _TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(label: str, value: object) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _clip(f"*{label}*\n{value}", 1900)}


def result_blocks(title: str, context: dict[str, Any]) -> list[dict[str, Any]]:
    data = context["data"]
    obj = data.get("object") or {}
    what = [
        _field("Cluster", context["cluster"]),
        _field("Object", f"{obj.get('namespace') or '-'}/{obj.get('name', '-')}"),
        _field("Kind", obj.get("kind", "-")),
        _field("Outcome", f"{context['outcome_emoji']} {data['outcome']}"),
        _field("Action", f"{data['action']} (rule {data['rule']})"),
        _field("Severity", data["severity"]),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(title, 150)}},
        {"type": "section", "fields": what},
    ]
    if context["why"]:
        blocks.append(_section(f"*Why*: {context['why']}"))
    if context.get("earlier"):
        lines = "\n".join(f"• {line}" for line in context["earlier"])
        blocks.append(_section(f"*Before this*\n{lines}"))
    blocks.extend(_listing("Evidence", context["evidence_lines"]))
    blocks.extend(_listing("Diagnosis", context["diagnosis_lines"]))
    if context["change_lines"]:
        lines = "\n".join(
            f"• {c['what']}: `{c['before']}` → `{c['after']}`" for c in context["change_lines"]
        )
        blocks.append(_section(f"*What Medic changed*\n{lines}"))
    footer = " · ".join(p for p in (context["problem_key"], context["attempt_text"]) if p)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(footer, 300)}]})
    return blocks


def _listing(heading: str, lines: list[tuple[str, str]]) -> list[dict[str, Any]]:
    if not lines:
        return []
    body = "\n".join(f"• *{key}*: {value}" for key, value in lines)
    return [_section(f"*{heading}*\n{body}")]


def digest_blocks(title: str, text: str) -> list[dict[str, Any]]:
    return [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(title, 150)}},
        _section(text),
    ]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text)}}
