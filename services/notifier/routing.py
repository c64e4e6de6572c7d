"""Which channels get which result: a pure function of the result and the channel configs.

Convention for `ResultData.notify` (the channel names a rule asked for):
- non-empty: exactly those channels (unknown names are reported, not guessed), each still
  applying its own filters, so a channel that only wants `critical` stays quiet;
- empty: every enabled channel with `default: true` whose filters match.
Never notified: `skipped` with reason `resolved-within-grace` (the problem fixed itself). Other
`skipped` results are quiet unless a channel opts in (`include_skipped` or `outcomes: [skipped]`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from medic.notifier.settings import ChannelConfig
from medic.schemas import Outcome, RemediationResult

RESOLVED_WITHIN_GRACE: Final = "resolved-within-grace"


@dataclass(frozen=True, slots=True)
class Route:
    channels: tuple[str, ...]
    unknown: tuple[str, ...] = field(default=())


def route(result: RemediationResult, channels: Sequence[ChannelConfig]) -> Route:
    data = result.data
    if data.outcome is Outcome.SKIPPED and data.reason == RESOLVED_WITHIN_GRACE:
        return Route(())
    enabled = {c.name: c for c in channels if c.enabled}
    if data.notify:
        candidates = [enabled[n] for n in dict.fromkeys(data.notify) if n in enabled]
        known = {c.name for c in channels}
        unknown = tuple(n for n in dict.fromkeys(data.notify) if n not in known)
    else:
        candidates = [c for c in enabled.values() if c.default]
        unknown = ()
    namespace = (data.object.namespace or "") if data.object else ""
    chosen = tuple(
        c.name
        for c in candidates
        if c.filters.matches(
            outcome=data.outcome,
            severity=data.severity,
            cluster=result.cluster,
            namespace=namespace,
        )
    )
    return Route(chosen, unknown)
