"""The benchmark harness runs end to end with tiny counts, so it cannot rot between full runs.

Figures from these runs mean nothing; the tests check that every benchmark produces its rows
(measured, or 'not measured' with a reason) and that the table and JSON are written.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bench(module: str) -> ModuleType:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"bench.{module}")


async def test_pipeline_benchmark_measures_consumer_against_raw_fetch_and_ack() -> None:
    rows = await bench("pipeline").run(count=200, rule_counts=(10, 100), repeats=1)
    first = rows[0]
    assert first.name.startswith("1a")
    assert first.medic is not None
    assert first.baseline is not None
    assert first.ratio is not None
    assert len(rows) >= 3  # the remediator rows: measured or 'not measured' with a reason
    assert all(row.medic is not None or row.note for row in rows)


async def test_notifier_benchmark_measures_raw_posts_to_the_receiver() -> None:
    rows = await bench("notifier").run(count=50, repeats=1)
    assert [row.name[:2] for row in rows] == ["4a", "4b"]
    assert all(row.baseline is not None for row in rows)
    assert all(row.medic is not None or row.note for row in rows)


async def test_latency_benchmark_runs_or_says_why_not() -> None:
    rows = await bench("latency").run(problems=20)
    assert len(rows) == 2
    assert all(row.medic is not None or row.note for row in rows)


async def test_inflight_benchmark_measures_against_none_in_flight() -> None:
    rows = await bench("inflight").run(in_flight=(1,), fixes=2)
    assert [row.name[:1] for row in rows] == ["6"]
    assert all(row.medic is not None and row.baseline is not None for row in rows)


async def test_watcher_scale_benchmark_runs_or_says_why_not() -> None:
    rows = await bench("watcher_scale").run(objects=50, changes_per_second=20, steady_seconds=0.5)
    assert len(rows) == 3
    assert all(row.medic is not None or row.note for row in rows)


async def test_throughput_benchmark_reads_back_one_final_result_per_event_and_rule() -> None:
    rows = await bench("scale").throughput(count=200, rules=10)
    assert [row.name[:3] for row in rows] == ["15b"]
    assert rows[0].medic is not None
    assert rows[0].baseline is not None
    assert rows[0].extra["pairs"] == 2 * 200  # two runs of the remediator, each its own rules
    assert rows[0].extra["pairs_with_more_than_one"] == 0
    assert len(rows[0].extra["raw_runs"]) == 3


async def test_replicas_benchmark_runs_one_then_two_processes_on_one_durable() -> None:
    rows = await bench("scale").replicas(count=100, rules=10, pairs=2)
    assert [row.name[:3] for row in rows] == ["15c"]
    assert len(rows[0].extra["pair_ratios"]) == 2
    one, two = rows[0].extra["one"], rows[0].extra["two"]
    assert one["pairs"] == two["pairs"] == 100
    assert len(two["cores_used"]) == 2
    assert sum(two["results_by_actor"].values()) == 100


@pytest.fixture(scope="module")
def audited_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real control plane with the benchmarks' audit log, for both real-server smoke runs."""
    why = bench("realcluster").unavailable()
    if why is not None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"real control plane unavailable in CI: {why}", pytrace=False)
        pytest.skip(why)
    with bench("realcluster").audited_plane(tmp_path_factory.mktemp("bench-real")) as real:
        yield real


@pytest.mark.realcluster
async def test_watcher_real_benchmark_measures_sync_and_rss_against_plain_lists(
    audited_plane: Any,
) -> None:
    rows = await bench("watcher_real").run(objects=20, real=audited_plane)
    assert [row.name[:2] for row in rows] == ["3r", "3r"]
    assert all(row.medic is not None and row.baseline is not None for row in rows)
    assert rows[0].extra["baseline_items"] == 40
    assert rows[0].extra["baseline_pages"] == 2
    assert rows[0].extra["baseline_lists"] == rows[0].extra["watcher_lists"]  # the same lists


@pytest.mark.realcluster
async def test_burst_benchmark_sees_each_release_retried_once_and_verified(
    audited_plane: Any,
) -> None:
    rows = await bench("burst").run(problems=10, within=1.0, real=audited_plane)
    assert [row.name[:3] for row in rows] == ["15a"] * 6
    assert rows[0].extra["acted"] == 10
    assert rows[0].extra["succeeded"] == 10
    once = next(row for row in rows if "once" in row.name)
    assert once.medic == 10


@pytest.mark.realcluster
async def test_latency_real_benchmark_sees_every_remediator_patch(audited_plane: Any) -> None:
    rows = await bench("latency_real").run(problems=10, real=audited_plane)
    assert [row.name[:2] for row in rows] == ["2r", "2r"]
    assert rows[0].extra["acted"] == 10
    assert rows[0].extra["baseline_seen"] == 10


def test_table_and_json_show_ratio_and_not_measured_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = bench("common")
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    rows = [
        common.Row("a", medic=50.0, baseline=100.0, unit="ev/s", target=">= 0.5x", met=True),
        common.not_measured("b", "component not landed"),
    ]
    text = common.table(rows)
    assert "0.50" in text
    assert "not measured: component not landed" in text
    written = json.loads(common.write_json(rows, {}).read_text())
    assert written["rows"][0]["ratio"] == 0.5
    assert written["rows"][1]["medic"] is None
