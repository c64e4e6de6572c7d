"""How the watcher-scale benchmark drives sandbox + watcher (kept apart: APIs move)."""

from __future__ import annotations

import importlib.util

from bench.common import Row


def unavailable() -> str | None:
    gone = []
    try:
        import medic.sandbox

        if not hasattr(medic.sandbox, "KubeSandbox"):
            gone.append("sandbox")
    except ImportError:
        gone.append("sandbox")
    if importlib.util.find_spec("medic.watcher.service") is None:
        gone.append("watcher service")
    if gone:
        return f"not landed yet: {', '.join(gone)}"
    return "components landed but the watcher-scale adapter is not written yet"


async def measure(objects: int, changes_per_second: int, steady_seconds: float) -> list[Row]:
    raise NotImplementedError(objects, changes_per_second, steady_seconds)
