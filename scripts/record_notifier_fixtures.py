"""Record tests/notifier/fixtures/results/*.json from real `medic demo` runs.

The remediator's own results, as it published them while the demo played S1-S5: a normal run,
a dry-run, and one with etcd-druid not answering (S5's failed attempt and escalation) and the
S3 RBAC still broken. Run after a change to what an action writes, then regenerate the rendered
texts with `MEDIC_UPDATE_FIXTURES=1 .venv/bin/pytest tests/notifier/test_wording.py` and review
the diff. `*-derived.json` fixtures are edited by hand and not touched here.

    .venv/bin/python scripts/record_notifier_fixtures.py [S2-migrate S4 ...]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from medic.cli import factories
from medic.demo import play, scenarios
from medic.demo.cluster import EtcdDruid
from medic.demo.observer import Observer
from medic.demo.stack import Controllers, Stack
from medic.runtime.health import wait_ready
from medic.runtime.lifecycle import run_services
from medic.runtime.settings import CONFIG_ENV, RuntimeSettings
from medic.schemas import RemediationResult

OUT = Path(__file__).resolve().parent.parent / "tests" / "notifier" / "fixtures" / "results"
SERVICES = ("watcher", "remediator", "notifier")


async def played(
    chosen: list[scenarios.Scenario], *, dry_run: bool, controllers: Controllers | None
) -> list[RemediationResult]:
    async with Stack.start(
        None, dry_run=dry_run, log_level="warning", controllers=controllers
    ) as stack:
        os.environ[CONFIG_ENV] = str(stack.config_path)
        settings = RuntimeSettings.load()
        observer = Observer(chosen)
        await observer.start(stack.nats.url)
        playable, _ = play.playable(stack, chosen)
        stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                services = tg.create_task(
                    run_services(settings, "medic-fixtures", factories(list(SERVICES)), stop)
                )
                await wait_ready(settings.health.port)
                play.stage(stack, playable, observer)
                await play.disturb(stack, playable, observer)
                await play.wait_settled(observer, playable, stack.timings.fleet_grace + 3.0, 90.0)
                stop.set()
                await services
        finally:
            await observer.stop()
        return [result for story in observer.stories.values() for _, result in story.results]


def write(name: str, result: RemediationResult) -> None:
    path = OUT / f"{name}.json"
    path.write_text(
        json.dumps(json.loads(result.model_dump_json(by_alias=True, exclude_none=True)), indent=2)
        + "\n"
    )
    print(f"wrote {path.relative_to(OUT.parent.parent.parent.parent)}")


def pick(results: list[RemediationResult], rule: str, outcome: str) -> RemediationResult | None:
    return next(
        (r for r in results if r.data.rule == rule and r.data.outcome.value == outcome), None
    )


WANTED = {  # fixture -> (run, rule, outcome)
    "S1-succeeded": ("normal", "flux-retry-after-transient-etcd-error", "succeeded"),
    "S2-migrate-succeeded": ("normal", "flux-migrate-old-api-version", "succeeded"),
    "S2-reconcile-succeeded": ("normal", "flux-force-reconcile-stale-status", "succeeded"),
    "S2-drift-escalated": ("normal", "flux-report-drift-loop", "escalated"),
    "S3-succeeded": ("normal", "helm-clear-stuck-pending-release", "succeeded"),
    "S4-succeeded": ("normal", "fleet-force-sync-missing-values", "succeeded"),
    "S5-succeeded": ("normal", "gardener-reapply-stuck-operation", "succeeded"),
    "S1-planned": ("dry-run", "flux-retry-after-transient-etcd-error", "planned"),
    "S2-planned": ("dry-run", "flux-migrate-old-api-version", "planned"),
    "S3-planned": ("dry-run", "helm-clear-stuck-pending-release", "planned"),
    "S4-planned": ("dry-run", "fleet-force-sync-missing-values", "planned"),
    "S5-planned": ("dry-run", "gardener-reapply-stuck-operation", "planned"),
    "S3-rbac-escalated": ("broken", "helm-clear-stuck-pending-release", "escalated"),
    "S5-stuck-failed": ("broken", "gardener-reapply-stuck-operation", "failed"),
    "S5-stuck-escalated": ("broken", "gardener-reapply-stuck-operation", "escalated"),
}


async def main(only: list[str]) -> int:
    wanted = {k: v for k, v in WANTED.items() if not only or k in only}
    runs = {run for run, _, _ in wanted.values()}
    everything = [s for s in scenarios.all_scenarios() if s.key != "healthy"]
    results: dict[str, list[RemediationResult]] = {}
    if "normal" in runs:
        results["normal"] = await played(everything, dry_run=False, controllers=None)
    if "dry-run" in runs:
        results["dry-run"] = await played(
            [scenarios.as_dry_run(s) for s in everything], dry_run=True, controllers=None
        )
    if "broken" in runs:
        broken = [scenarios.s3(rbac_fixed=False), scenarios.s5()]
        results["broken"] = await played(
            broken, dry_run=False, controllers=Controllers(druid=EtcdDruid(healthy=False))
        )
    missing = []
    for name, (run, rule, outcome) in wanted.items():
        found = pick(results[run], rule, outcome)
        if found is None:
            missing.append(name)
        else:
            write(name, found)
    for name in missing:
        print(f"not seen: {name}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
