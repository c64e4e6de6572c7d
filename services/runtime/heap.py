"""The garbage collector set for a long-running event pipeline (issue 15).

CPython's cyclic collector runs its youngest generation every 700 net allocations and, now and
then, scans every object alive. A Medic process allocates a few hundred objects per message
and keeps a large heap from start-up (modules, clients, a thousand compiled rules): with the
defaults the collector took about a quarter of the remediator's CPU (4.9 s of 20,000 events,
`bench/scale.py` 15b, 2026-12-04). Almost nothing Medic allocates per message forms a cycle, and
reference counting frees it at once, so collecting rarely costs no memory to speak of, and what
start-up built is moved out of the collector's sight for good.
"""

from __future__ import annotations

import gc
from typing import Final

# Youngest generation every 50,000 net allocations (default 700); the older ones every 20 and 10
# collections of the one below (defaults 10 and 10).
THRESHOLDS: Final = (50_000, 20, 10)


def settle() -> None:
    """Once start-up is done: collect what it left, freeze the rest (never scanned again), and
    collect rarely from now on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
