"""One backoff policy for every retry in Medic: exponential with full jitter, capped.

Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads replicas that
failed together, so they do not retry together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 0.2
    cap: float = 30.0
    factor: float = 2.0

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before retry number `attempt` (1-based)."""
        return min(self.cap, self.base * self.factor ** max(0, attempt - 1))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        draw = (rng or _RNG).uniform(0.0, 1.0)
        return self.ceiling(attempt) * draw


_RNG = random.Random()  # noqa: S311 - jitter, not cryptography
