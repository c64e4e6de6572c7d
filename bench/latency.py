"""Benchmark 2: detection to action latency, p50/p99 over N problems, no grace periods.

From a change written to the sandbox (a HelmRelease turning Ready=False with a transient etcd
error) to the remediator's patch arriving at the sandbox (the request log's timestamp), with the
watcher and the remediator running against a real nats-server. Baseline: the sandbox's own
write-to-watch-event latency (a plain watch on the same API server sees the same write).
Target: p99 under 100 ms on loopback.
"""

from __future__ import annotations

from bench.common import Row, not_measured

NAME_P50 = "2 detection->action p50 (ms)"
NAME_P99 = "2 detection->action p99 (ms)"


async def run(problems: int = 1_000) -> list[Row]:
    from bench import latency_adapter

    why = latency_adapter.unavailable()
    if why is not None:
        return [
            not_measured(NAME_P50, why, "(reported)"),
            not_measured(NAME_P99, why, "p99 < 100 ms"),
        ]
    return await latency_adapter.measure(problems, NAME_P50, NAME_P99)
