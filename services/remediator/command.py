"""`medic rules ...` and `medic backup ...`: check, test and publish rules; list and restore
backups. Wiring only: the logic lives in rules/ (pure) and backup.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from medic.remediator.backup import BackupStore
from medic.remediator.rules.engine import EtcdState, Snapshot, decide
from medic.remediator.rules.index import RuleSet
from medic.remediator.rules.loader import LoadResult, load_builtin, load_paths
from medic.remediator.rules.model import parse_duration
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.kube import KubeClient
from medic.runtime.settings import RuntimeSettings
from medic.schemas import EtcdCondition, SchemaError, decode_message

rules_app = typer.Typer(help="Check, test and publish remediation rules.", no_args_is_help=True)
backup_app = typer.Typer(
    help="List and restore backups Medic took before writing.", no_args_is_help=True
)
app = rules_app  # check, test, push; mounted as `medic rules` (backups: `medic backup`)
Paths = Annotated[list[Path], typer.Argument(help="Rule files or folders.", exists=True)]


def _report(result: LoadResult) -> int:
    for error in result.errors:
        typer.echo(f"error: {error}", err=True)
    typer.echo(f"{len(result.rules)} rule(s) valid, {len(result.errors)} error(s)")
    return 1 if result.errors else 0


@rules_app.command("check")
def check(paths: Paths) -> None:
    """Validate rule files; exit 1 with file:line field for each error.

    Example: medic rules check rules/
    """
    raise typer.Exit(_report(load_paths(paths)))


@rules_app.command("test")
def test(
    test_file: Annotated[Path, typer.Argument(help="A rules test file (YAML).", exists=True)],
) -> None:
    """Run rules against recorded events and print what would be done; exit 1 on a failed
    expectation (the `promtool test rules` of remediation).

    The file: `rules: [paths]` (default: the built-in pack), `tests:` a list of
    `{name, event: <event JSON/YAML>, subject, etcd: {condition, stableFor}, after: 90s,
    expect: [{rule, verdict}]}`.

    Example: medic rules test tests/rules/s1.yaml
    """
    spec = yaml.safe_load(test_file.read_text()) or {}
    base = test_file.parent
    loaded = load_paths([base / p for p in spec["rules"]]) if spec.get("rules") else load_builtin()
    if _report(loaded):
        raise typer.Exit(1)
    rules = RuleSet.build(loaded.rules)
    failures = 0
    for case in spec.get("tests") or []:
        failures += _run_case(case, rules)
    typer.echo(f"{len(spec.get('tests') or [])} test(s), {failures} failed")
    raise typer.Exit(1 if failures else 0)


def _run_case(case: dict[str, Any], rules: RuleSet) -> int:
    try:
        event: Any = decode_message(json.dumps(case["event"], default=str))
    except SchemaError as exc:
        typer.echo(f"FAIL {case.get('name')}: event invalid: {exc}")
        return 1
    now = event.time + timedelta(seconds=parse_duration(case.get("after", 0)))
    etcd = {}
    if case.get("etcd"):
        stable_for = parse_duration(case["etcd"].get("stableFor", 0))
        etcd[event.cluster] = EtcdState(
            EtcdCondition(case["etcd"].get("condition", "stable")),
            now - timedelta(seconds=stable_for),
            now,
        )
    subject = case.get("subject", f"medic.events.{event.cluster}.{event.subject_suffix()}")
    decisions = decide(event, subject, rules, Snapshot(etcd=etcd), now)
    got = [{"rule": d.name, "verdict": d.verdict.value} for d in decisions]
    for decision in decisions:
        typer.echo(
            f"  {case.get('name')}: {decision.name} -> {decision.verdict.value} {decision.reason}"
        )
    expected = case.get("expect", [])
    if got != expected:
        typer.echo(f"FAIL {case.get('name')}: expected {expected}, got {got}")
        return 1
    typer.echo(f"ok   {case.get('name')}")
    return 0


@rules_app.command("push")
def push(
    rule_file: Annotated[Path, typer.Argument(help="A rule file to publish.", exists=True)],
) -> None:
    """Validate a rule file and publish it to the rules KV bucket; every remediator replica
    picks it up without a restart.

    Example: MEDIC_NATS__URLS=nats://nats:4222 medic rules push team-a.yaml
    """
    if _report(load_paths([rule_file])):
        raise typer.Exit(1)

    async def publish() -> None:
        settings, remediator = RuntimeSettings(), RemediatorSettings()
        bus = await Bus.connect(settings.nats, name="medic-rules-push")
        try:
            kv = await bus.kv(remediator.rules_bucket, history=5)
            key = "rules." + "".join(c if c.isalnum() or c in "-_" else "_" for c in rule_file.name)
            await kv.put(key, rule_file.read_bytes())
            typer.echo(f"published {rule_file} as {key}")
        finally:
            await bus.close()

    asyncio.run(publish())


async def _backups() -> tuple[Bus, BackupStore]:
    settings, remediator = RuntimeSettings(), RemediatorSettings()
    bus = await Bus.connect(settings.nats, name="medic-backup")
    return bus, BackupStore(await bus.kv(remediator.backups_bucket, history=1))


@backup_app.command("list")
def list_backups() -> None:
    """List backups (id, time, object). Example: medic backup list"""

    async def run() -> None:
        bus, store = await _backups()
        try:
            for item in await store.list():
                where = f"{item['kind']} {item['namespace']}/{item['name']}"
                typer.echo(f"{item['id']}  {item['at']}  {where}  ({item['reason']})")
        finally:
            await bus.close()

    asyncio.run(run())


@backup_app.command("restore")
def restore(backup_id: Annotated[str, typer.Argument(help="The backup id.")]) -> None:
    """Write a backed-up object back as it was. Example: medic backup restore 3f2a9c01d4e5b6a7"""

    async def run() -> None:
        settings = RuntimeSettings()
        bus, store = await _backups()
        kube = await KubeClient.connect(settings.kube)
        try:
            restored = await store.restore(backup_id, kube)
            meta = restored.get("metadata", {})
            where = f"{meta.get('namespace')}/{meta.get('name')}"
            version = meta.get("resourceVersion")
            typer.echo(f"restored {backup_id}: {where} at resourceVersion {version}")
        finally:
            await kube.close()
            await bus.close()

    asyncio.run(run())
