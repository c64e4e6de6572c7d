"""How the benchmarks build a rule set of N distinct rules and match with the pure engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def matcher(rules: int) -> Callable[[list[Any]], int]:
    """A function matching a list of events against `rules` generated rules; returns matches."""
    raise NotImplementedError(rules)
