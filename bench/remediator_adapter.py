"""How the pipeline benchmark drives `medic.remediator` (kept apart so the API can move)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from medic.runtime.bus import Bus
from medic.schemas import Message


def unavailable() -> str | None:
    if importlib.util.find_spec("medic.remediator.service") is None:
        return "remediator service not landed (services/remediator/service.py)"
    return "remediator landed but the benchmark adapter is not written yet"


async def pipeline_rate(bus: Bus, base: Path, events: list[Message], rules: int) -> float:
    raise NotImplementedError(bus, base, events, rules)
