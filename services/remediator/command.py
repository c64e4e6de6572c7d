"""`medic rules ...` and `medic backup ...`: check, test and publish rules; list and restore
backups. Wiring only: the logic lives in rules/ (pure), rehearsal.py (`rules test`) and
backup.py. The Kubernetes API sandbox that `rules test` stages objects in is passed in by the
CLI (`rules_commands(stage=...)`): the remediator never imports medic.sandbox.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
import yaml

from medic.remediator.actions import default_registry, reference
from medic.remediator.backup import BackupStore
from medic.remediator.rehearsal import Rehearsal, Stage
from medic.remediator.rules.index import RuleSet
from medic.remediator.rules.loader import LoadResult, load_builtin, load_paths, yaml_error
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.cli_help import CommandApp
from medic.runtime.embedded_nats import running_url
from medic.runtime.errors import BusError
from medic.runtime.kube import KubeClient
from medic.runtime.settings import RuntimeSettings

backup_app = CommandApp(
    help="""List and restore backups Medic took before writing.

    Examples:
      medic backup list
      medic backup restore 3f2a9c01d4e5b6a7
    """,
    no_args_is_help=True,
)
Paths = Annotated[
    list[Path], typer.Argument(metavar="PATH", help="Rule files or folders.", exists=True)
]
TestFile = Annotated[
    Path, typer.Argument(metavar="FILE", help="A rules test file (YAML).", exists=True)
]


def _report(result: LoadResult) -> int:
    for error in result.errors:
        typer.echo(f"error: {error}", err=True)
    typer.echo(f"{len(result.rules)} rule(s) valid, {len(result.errors)} error(s)")
    return 1 if result.errors else 0


def check(paths: Paths) -> None:
    """Validate rule files (also each action's name and params); exit 1 with file:line field
    for each error.

    Examples:
      medic rules check rules/
      medic rules check team-a.yaml team-b.yaml
    """
    raise typer.Exit(_report(load_paths(paths, default_registry().params_models())))


def run_test_file(test_file: Path, stage: Stage | None) -> int:
    """The exit code of `medic rules test FILE`: 0 when every expectation held."""
    text = test_file.read_text()
    try:
        spec = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        typer.echo(f"error: {yaml_error(exc, text, str(test_file))}", err=True)
        return 1
    if not isinstance(spec, dict):
        typer.echo(
            f"error: {test_file}:1: a rules test file is a mapping (rules:, tests:)", err=True
        )
        return 1
    base = test_file.parent
    registry = default_registry()
    actions = registry.params_models()
    loaded = (
        load_paths([base / p for p in spec["rules"]], actions)
        if spec.get("rules")
        else load_builtin(actions)
    )
    if _report(loaded):
        return 1
    cases = spec.get("tests") or []
    rehearsal = Rehearsal(RuleSet.build(loaded.rules), registry, stage, typer.echo)
    failures = asyncio.run(rehearsal.run(cases))
    typer.echo(f"{len(cases)} test(s), {failures} failed")
    return 1 if failures else 0


def push(
    rule_file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A rule file to publish.", exists=True)
    ],
) -> None:
    """Validate a rule file and publish it to the rules KV bucket; every remediator replica
    picks it up without a restart.

    Example: MEDIC_NATS__URLS=nats://nats:4222 medic rules push team-a.yaml
    """
    if _report(load_paths([rule_file], default_registry().params_models())):
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


def actions(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Markdown, as in docs/actions.md.")
    ] = False,
) -> None:
    """List the actions a rule can name: each one's params (type, default, description), the
    RBAC it needs and an example; generated from the actions' own declarations.

    Examples:
      medic rules actions
      medic rules actions --markdown > docs/actions.md
    """
    registry = default_registry()
    typer.echo(reference.markdown(registry) if markdown else reference.text(registry), nl=False)


def rules_commands(stage: Stage | None = None) -> typer.Typer:
    """`medic rules check|test|push|actions`; `stage` stages a test case's `objects:` in an API
    server (the CLI passes the sandbox's; without one, such cases fail with a message)."""
    rules = CommandApp(
        help="""Check, test and publish remediation rules.

        Examples:
          medic rules check rules/
          medic rules test examples/rules-tests/s1-retry.yaml
          medic rules actions
          MEDIC_NATS__URLS=nats://nats:4222 medic rules push team-a.yaml
        """,
        no_args_is_help=True,
    )
    rules.command("check")(check)

    @rules.command("test")
    def test(test_file: TestFile) -> None:
        """Run rules against recorded events and print what would be done; exit 1 on a failed
        expectation (the `promtool test rules` of remediation).

        The file: `rules: [paths]` (default: the built-in pack), `tests:` a list of
        `{name, event: <event JSON/YAML>, subject, etcd: {condition, stableFor}, after: 90s,
        objects: [<Kubernetes objects>], expect: [{rule, verdict, outcome, changes}]}`. With
        `objects`, they are staged in a throw-away Kubernetes API sandbox and each acting rule's
        action plans against them in dry-run: the output lists the changes it would make.

        Example: medic rules test examples/rules-tests/s1-retry.yaml
        """
        raise typer.Exit(run_test_file(test_file, stage))

    rules.command("push")(push)
    rules.command("actions")(actions)
    return rules


rules_app = rules_commands()  # without staging; `medic rules` is mounted by medic.cli with it
app = rules_app


DataDir = Annotated[
    Path,
    typer.Option(help="A `medic run --data-dir`: its embedded NATS is used when none is set."),
]


async def _backups(data_dir: Path) -> tuple[Bus, BackupStore]:
    """The backups bucket on the configured NATS, else on the embedded NATS of a `medic run` on
    `data_dir`; unreachable: one line saying what to set."""
    settings, remediator = RuntimeSettings(), RemediatorSettings()
    embedded = None if settings.nats.urls else running_url(data_dir / "nats")
    if embedded is not None:
        nats = settings.nats.model_copy(update={"urls": [embedded]})
        settings = settings.model_copy(update={"nats": nats})
    try:
        bus = await Bus.connect(settings.nats, name="medic-backup")
    except BusError as exc:
        typer.echo(
            f"medic backup: {exc}; set MEDIC_NATS__URLS to Medic's NATS, or run it while the "
            "`medic run` whose embedded NATS holds the backups runs (--data-dir)",
            err=True,
        )
        raise typer.Exit(2) from None
    return bus, BackupStore(await bus.kv(remediator.backups_bucket, history=1))


@backup_app.command("list")
def list_backups(data_dir: DataDir = Path(".medic")) -> None:
    """List backups (id, time, object).

    Example: medic backup list
    """

    async def run() -> None:
        bus, store = await _backups(data_dir)
        try:
            for item in await store.list():
                where = f"{item['kind']} {item['namespace']}/{item['name']}"
                typer.echo(f"{item['id']}  {item['at']}  {where}  ({item['reason']})")
        finally:
            await bus.close()

    asyncio.run(run())


@backup_app.command("restore")
def restore(
    backup_id: Annotated[str, typer.Argument(metavar="ID", help="The backup id.")],
    data_dir: DataDir = Path(".medic"),
) -> None:
    """Write a backed-up object back as it was.

    Example: medic backup restore 3f2a9c01d4e5b6a7
    """

    async def run() -> None:
        settings = RuntimeSettings()
        bus, store = await _backups(data_dir)
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
