"""Run Medic's benchmarks (issue 8) and print `name | medic | baseline | ratio | target | met?`.

    .venv/bin/python -m bench.run [--only pipeline,latency,watcher,notifier,inflight] [--quick]
    .venv/bin/python -m bench.run --only watcher-real,latency-real   # on the real API server
    .venv/bin/python -m bench.run --only burst,throughput,replicas   # issue 15 (burst: real)
    .venv/bin/python bench/run.py ...

The rows on the real API server (issue 12 item 6: a real etcd + kube-apiserver built from Go
modules, bench.realcluster) take minutes more and run only when named with --only.

Each benchmark starts its own nats-server / sandbox / receiver on loopback and measures its
baseline first and the Medic figure second, in the same run. JSON goes to bench/results/.
The rule-matching micro-benchmark runs under pytest-benchmark:
    .venv/bin/pytest bench/test_rule_matching.py --benchmark-only
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` importable from the root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Row, not_measured, silence_logs, table, write_json

from bench import (
    burst,
    inflight,
    latency,
    latency_real,
    notifier,
    pipeline,
    scale,
    watcher_real,
    watcher_scale,
)

FULL: dict[str, dict[str, Any]] = {
    "pipeline": {"count": 20_000, "rule_counts": (10, 1_000, 10_000), "repeats": 3},
    "latency": {"problems": 1_000},
    "watcher": {"objects": 10_000, "changes_per_second": 50, "steady_seconds": 10.0},
    "notifier": {"count": 2_000},
    "watcher-real": {"objects": 10_000, "repeats": 2},
    "latency-real": {"problems": 1_000},
    "inflight": {"in_flight": (1, 100), "fixes": 20},
    "burst": {"problems": 2_000, "within": 10.0},
    "throughput": {"count": 20_000, "rules": 1_000},
    "replicas": {"count": 10_000, "rules": 1_000},
}
QUICK: dict[str, dict[str, Any]] = {
    "pipeline": {"count": 3_000, "rule_counts": (10, 1_000, 10_000), "repeats": 1},
    "latency": {"problems": 200},
    "watcher": {"objects": 1_000, "changes_per_second": 50, "steady_seconds": 3.0},
    "notifier": {"count": 300, "repeats": 1},
    "watcher-real": {"objects": 500},
    "latency-real": {"problems": 100},
    "inflight": {"in_flight": (1, 100), "fixes": 5},
    "burst": {"problems": 100, "within": 2.0},
    "throughput": {"count": 2_000, "rules": 1_000},
    "replicas": {"count": 1_000, "rules": 100},
}
RUNNERS: dict[str, Callable[..., Awaitable[list[Row]]]] = {
    "pipeline": pipeline.run,
    "latency": latency.run,
    "watcher": watcher_scale.run,
    "notifier": notifier.run,
    "watcher-real": watcher_real.run,
    "latency-real": latency_real.run,
    "inflight": inflight.run,
    "burst": burst.run,
    "throughput": scale.throughput,
    "replicas": scale.replicas,
}
DEFAULT = ("pipeline", "latency", "watcher", "notifier")  # the real-server rows only by --only


async def main(only: list[str], quick: bool) -> list[Row]:
    sizes = QUICK if quick else FULL
    rows: list[Row] = []
    for name in only:
        started = time.perf_counter()
        print(f"... {name}", file=sys.stderr, flush=True)
        try:
            rows.extend(await RUNNERS[name](**sizes[name]))
        except Exception as exc:
            traceback.print_exc()
            rows.append(not_measured(name, f"benchmark failed: {exc!r}"))
        print(f"... {name} took {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    return rows


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT),
        help=f"comma-separated benchmarks: {', '.join(RUNNERS)} (default: {', '.join(DEFAULT)})",
    )
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in RUNNERS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {sorted(RUNNERS)}")
    silence_logs()
    rows = asyncio.run(main(only, args.quick))
    print(table(rows))
    path = write_json(rows, {"only": only, "quick": args.quick})
    print(f"\nJSON: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
