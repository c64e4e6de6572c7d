"""`medic demo`: the five scenarios, live, on an embedded NATS, the sandbox and a real etcd."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from medic.demo import play
from medic.demo import report as reports
from medic.demo.observer import Entry, Observer
from medic.demo.scenarios import Scenario, all_scenarios, as_dry_run
from medic.demo.stack import Stack
from medic.notifier import service as notifier
from medic.remediator import service as remediator
from medic.runtime import logging as medic_logging
from medic.runtime.cli_help import CommandApp
from medic.runtime.health import wait_ready
from medic.runtime.lifecycle import run_services
from medic.runtime.settings import CONFIG_ENV, RuntimeSettings
from medic.watcher import service as watcher

SERVICES = (watcher.build, remediator.build, notifier.build)

app = CommandApp()

STAGE_WIDTH = 11


def printer(entry: Entry) -> None:
    where = entry.scenario or "cluster"
    typer.echo(f"{entry.at:6.1f}s  {entry.stage:<{STAGE_WIDTH}} {where:<9} {entry.text}")


async def run_demo(
    scenarios: list[Scenario], timeout: float, data_dir: Path | None, *, dry_run: bool
) -> reports.Report:
    async with Stack.start(data_dir, dry_run=dry_run, log_level="warning") as stack:
        os.environ[CONFIG_ENV] = str(stack.config_path)
        settings = RuntimeSettings.load()
        assert isinstance(settings, RuntimeSettings)
        observer = Observer(scenarios, on_entry=printer)
        await observer.start(stack.nats.url)
        chosen, not_run = play.playable(stack, scenarios)
        for key, why in not_run.items():
            typer.echo(f"{key}: not played: {why}", err=True)
        stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                services = tg.create_task(run_services(settings, "medic-demo", SERVICES, stop))
                await wait_ready(settings.health.port)
                observer.note("cluster", "", "watcher, remediator and notifier are ready")
                play.stage(stack, chosen, observer)
                await play.disturb(stack, chosen, observer)
                quiet_window = stack.timings.fleet_grace + 3.0
                await play.wait_settled(observer, chosen, quiet_window, timeout)
                await asyncio.sleep(0.5)  # the last notifications of a verified result
                stop.set()
                await services
        finally:
            await observer.stop()
        return reports.build(observer, stack.store, chosen, not_run)


@app.command()
def demo(
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the run as JSON to this file.")
    ] = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option("--scenario", "-s", metavar="KEY", help="Play only these (e.g. S1)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every outcome.")] = 90.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan only: nothing is written.")
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="Keep NATS, sandbox and etcd data here (default: temp).")
    ] = None,
) -> None:
    """Play the five failure scenarios on an embedded NATS, the Kubernetes API sandbox and a real
    three-member etcd, and show what Medic does: detected -> decided -> applied -> verified.

    Notifications go to the console unless channels are configured (MEDIC_NOTIFIER_CHANNELS).
    Exits 0 when every scenario reached its expected outcome.

    Examples:
      medic demo
      medic demo --report demo.json
      medic demo -s S3 -s S4
      medic demo --dry-run
    """
    medic_logging.configure("console", "warning")
    known = [as_dry_run(s) for s in all_scenarios()] if dry_run else all_scenarios()
    chosen = [s for s in known if not scenario or s.key in scenario]
    if not chosen:
        typer.echo(f"no scenario named {scenario}; known: {[s.key for s in known]}", err=True)
        raise typer.Exit(2)
    if dry_run:
        typer.echo(
            "dry-run: nothing is written; every fix is `planned`, a diagnosis-only rule"
            " (S2-drift) still escalates with its diagnosis; the cluster stays untouched"
        )
    result = asyncio.run(run_demo(chosen, timeout, data_dir, dry_run=dry_run))
    typer.echo("")
    typer.echo(reports.table(result))
    typer.echo("")
    verdict = "every scenario reached its expected outcome" if result.ok else "NOT every scenario"
    typer.echo(f"{verdict} ({result.duration_s:.1f}s)")
    if report is not None:
        report.write_text(json.dumps(result.as_dict(), indent=2, default=str))
        typer.echo(f"report written to {report}")
    sys.stdout.flush()
    raise typer.Exit(0 if result.ok else 1)
