"""How a result's data reads to a person: what an SRE would write by hand, not a data dump.

- changes: `annotation reconcile.fluxcd.io/requestedAt: (unset) -> 2026-12-01T21:54:23Z`
  (RFC 6901 paths decoded, `None` is `(unset)`);
- durations: `age_seconds: 903.29` is `age: 15m03s`; timestamps lose their microseconds;
- nested values: `get: yes, list: no`, never a Python repr; deep structures as compact JSON
  (a suggested patch is meant to be pasted);
- client error texts: `Cannot connect to host 127.0.0.1:54655 ssl:default [...]` is
  `etcd member 127.0.0.1:54655 unreachable`.

Only for text people read (console, Slack). Machine channels get the result as it is on the bus
(`render.event_payload`). Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

from medic.schemas import Change
from medic.upstream import aiohttp_client

UNSET: Final = "(unset)"
_TIMESTAMP: Final = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)$")
_ETCD_WORDS: Final = ("etcd", "member", "endpoint")
_SECONDS_IN: Final = (("d", 86400), ("h", 3600), ("m", 60))


class ChangeLine(NamedTuple):
    what: str  # `annotation reconcile.fluxcd.io/requestedAt`, `spec.options.forceSyncGeneration`
    before: str
    after: str


def duration(seconds: float) -> str:
    """`15m03s`, `2h05m`, `3d04h`, `42s`; under ten seconds with one decimal (`2.2s`)."""
    if seconds < 10:  # short waits read better with a decimal
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def error_text(text: str, *, about_etcd: bool = False) -> str:
    """Client error texts summarised: who could not be reached, not the exception's wording."""
    who = "etcd member " if about_etcd else ""

    def connect(match: re.Match[str]) -> str:
        where = f"{match['host']}:{match['port']}"
        if any(name in match["why"] for name in aiohttp_client.CERTIFICATE_ERRORS):
            return f"{who}{where}: TLS certificate not accepted"
        return f"{who}{where} unreachable"

    text = aiohttp_client.CANNOT_CONNECT.sub(connect, text)
    return aiohttp_client.CONNECTION_TIMEOUT.sub(
        lambda m: f"{who}{m['url']} did not answer in time", text
    )


def timestamp(text: str) -> str:
    """`2026-12-02T01:08:05.746047Z` -> `2026-12-02T01:08:05Z` (other strings unchanged)."""
    if not _TIMESTAMP.match(text):
        return text
    moment = datetime.fromisoformat(text).replace(microsecond=0)
    if moment.utcoffset() == timedelta(0):
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.isoformat()


def _scalar(value: object, *, about_etcd: bool) -> str:
    if value is None:
        return UNSET
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return timestamp(error_text(value, about_etcd=about_etcd))
    return str(value)


def _is_flat(value: object) -> bool:
    """A scalar, or a list of scalars."""
    if isinstance(value, list):
        return all(not isinstance(v, dict | list) for v in value)
    return not isinstance(value, dict)


def value_text(value: object, *, key: str = "") -> str:
    """One value as a person reads it; `key` tells durations and etcd members apart."""
    about_etcd = any(word in key.lower() for word in _ETCD_WORDS)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if key.endswith("seconds"):
            return duration(float(value))
        if key.endswith("_ms"):
            return duration(float(value) / 1000)
    if isinstance(value, dict | list):
        return _container(value, about_etcd=about_etcd)
    return _scalar(value, about_etcd=about_etcd)


def _container(value: dict[str, Any] | list[Any], *, about_etcd: bool) -> str:
    """Flat lists and mappings as words; a list of flat mappings one per `;`; deeper as JSON."""
    if not value:
        return "(none)"
    if isinstance(value, list) and _is_flat(value):
        return ", ".join(_scalar(v, about_etcd=about_etcd) for v in value)
    items = value if isinstance(value, list) else [value]
    flat = all(isinstance(i, dict) and all(_is_flat(v) for v in i.values()) for i in items)
    if not flat:
        return json.dumps(value, separators=(", ", ": "), default=str)
    return "; ".join(
        ", ".join(f"{k}: {_flat(v, about_etcd=about_etcd)}" for k, v in item.items())
        for item in items
    )


def _flat(value: object, *, about_etcd: bool) -> str:
    if isinstance(value, list):
        return " ".join(_scalar(v, about_etcd=about_etcd) for v in value)
    return _scalar(value, about_etcd=about_etcd)


def label(key: str) -> str:
    """`age_seconds` -> `age`, `duration_ms` -> `duration`: the unit moves into the value."""
    for suffix in ("_seconds", "_ms"):
        if key.endswith(suffix):
            return key.removesuffix(suffix)
    return key


def pointer_path(path: str) -> str:
    """An RFC 6901 path as a person names the field (`annotation a.b/c`, `spec.options.x`)."""
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in path.lstrip("/").split("/")]
    if len(tokens) == 3 and tokens[0] == "metadata":  # /metadata/<map>/<key>
        kind = {"annotations": "annotation", "labels": "label"}.get(tokens[1])
        if kind:
            return f"{kind} {tokens[2]}"
    return ".".join(tokens)


def change_line(change: Change) -> ChangeLine:
    what = pointer_path(change.path)
    return ChangeLine(what, value_text(change.before, key=what), value_text(change.after, key=what))


def condition_text(condition: Mapping[str, Any]) -> str:
    """`Ready=False (DependencyNotReady): dependency 'backend' is not ready, since <time>`."""
    text = f"{condition.get('type')}={condition.get('status')}"
    if condition.get("reason"):
        text += f" ({condition['reason']})"
    if condition.get("message"):
        text += f": {error_text(str(condition['message']))}"
    since = condition.get("last_transition_time") or condition.get("lastTransitionTime")
    if since:
        text += f", since {timestamp(str(since))}"
    return text


def evidence_lines(evidence: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(label, text) per fact; empty values dropped, a condition's own reason/message once."""
    condition = evidence.get("condition")
    quoted = condition if isinstance(condition, dict) else {}
    for key, value in evidence.items():
        if value in (None, "", [], {}):
            continue
        if key == "condition" and quoted:
            yield "condition", condition_text(quoted)
        elif key in {"reason", "message"} and value == quoted.get(key):
            continue
        elif key in {"annotations", "labels"} and isinstance(value, dict):
            for name, text in value.items():
                yield f"{key.removesuffix('s')} {name}", value_text(text, key=name)
        elif key == "fields" and isinstance(value, dict):
            for name, text in value.items():
                yield label(name), value_text(text, key=name)
        else:
            yield label(key), value_text(value, key=key)


def fact_lines(facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A diagnosis (or any other mapping) as (label, text) lines."""
    return [(label(k), value_text(v, key=k)) for k, v in facts.items()]
