"""How the latency benchmark drives sandbox + watcher + remediator (kept apart: APIs move)."""

from __future__ import annotations

import importlib.util

from bench.common import Row

NEEDS = {
    "medic.sandbox": "sandbox",
    "medic.watcher.service": "watcher service",
    "medic.remediator.service": "remediator service",
}


def missing() -> list[str]:
    gone = []
    for module, label in NEEDS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if module == "medic.sandbox" and found:
            import medic.sandbox

            found = hasattr(medic.sandbox, "KubeSandbox")
        if not found:
            gone.append(label)
    return gone


def unavailable() -> str | None:
    gone = missing()
    if gone:
        return f"not landed yet: {', '.join(gone)}"
    return "components landed but the latency adapter is not written yet"


async def measure(problems: int, name_p50: str, name_p99: str) -> list[Row]:
    raise NotImplementedError(problems, name_p50, name_p99)
