"""The `medic` command: one small function per subcommand; wiring only, no domain logic.

Services are looked up by name in `SERVICES` (each module exposes `async def build(ctx)`), so a
container runs one of them (`medic watcher`) and a laptop runs all of them (`medic run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import json
import os
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from medic.runtime import logging as medic_logging
from medic.runtime.cli_help import CommandApp
from medic.runtime.embedded_nats import EmbeddedNats, StoreInUseError
from medic.runtime.health import HealthPortInUseError, ensure_port_free, port_in_use
from medic.runtime.lifecycle import Service, ServiceFactory, Summarised, run_services
from medic.runtime.settings import CONFIG_ENV, RuntimeSettings, SettingsError

SERVICES: Final = {
    "watcher": "medic.watcher.service",
    "remediator": "medic.remediator.service",
    "notifier": "medic.notifier.service",
}

app = CommandApp(
    name="medic",
    help="""Medic: event-driven remediation of Kubernetes release failures.

    Examples:
      medic demo
      medic run --kubeconfig ~/.kube/config
      medic rules check rules/
      medic COMMAND --help
    """,
    no_args_is_help=True,
)


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"medic {importlib.metadata.version('medic')}")
        raise typer.Exit


@app.callback()
def medic(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass  # options of `medic` itself; the subcommands do the work


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help=f"YAML settings file (same as {CONFIG_ENV}).", exists=True),
]
KubeconfigOption = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig",
        help="Kubeconfig of the cluster to watch and repair (MEDIC_KUBE__KUBECONFIG).",
    ),
]


def load_settings(config: Path | None, **overrides: object) -> RuntimeSettings:
    """Settings from env (+file); a wrong value ends the command naming the variable."""
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)
    try:
        settings = RuntimeSettings.load()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    assert isinstance(settings, RuntimeSettings)
    if overrides:
        kube = settings.kube.model_copy(update=overrides)
        settings = settings.model_copy(update={"kube": kube})
    medic_logging.configure(settings.log_format, settings.log_level)
    return settings


def factories(names: Sequence[str]) -> list[ServiceFactory]:
    found: list[ServiceFactory] = []
    for name in names:
        module = importlib.import_module(SERVICES[name])
        found.append(module.build)
    return found


def serve(main: Coroutine[Any, Any, None]) -> None:
    """Run a service process; a busy health port is one line and exit 2, not a traceback."""
    try:
        asyncio.run(main)
    except (HealthPortInUseError, ExceptionGroup) as exc:
        busy = port_in_use(exc)
        if busy is None:
            raise
        typer.echo(str(busy), err=True)
        raise typer.Exit(2) from None


def run_one(name: str, config: Path | None, kubeconfig: Path | None) -> None:
    overrides = {"kubeconfig": kubeconfig} if kubeconfig else {}
    settings = load_settings(config, **overrides)
    serve(run_services(settings, f"medic-{name}", factories([name])))


@app.command()
def watcher(config: ConfigOption = None, kubeconfig: KubeconfigOption = None) -> None:
    """Run the watcher: Kubernetes objects and etcd health -> events on NATS.

    Example: MEDIC_NATS__URLS=nats://nats:4222 MEDIC_CLUSTER=prod medic watcher
    """
    run_one("watcher", config, kubeconfig)


@app.command()
def remediator(config: ConfigOption = None, kubeconfig: KubeconfigOption = None) -> None:
    """Run the remediator: events -> rules -> verified actions -> results on NATS.

    Example: MEDIC_NATS__URLS=nats://nats:4222 medic remediator --kubeconfig ~/.kube/config
    """
    run_one("remediator", config, kubeconfig)


@app.command()
def notifier(config: ConfigOption = None) -> None:
    """Run the notifier: results on NATS -> Slack and signed webhooks.

    Example: MEDIC_NATS__URLS=nats://nats:4222 medic notifier --config medic.yaml
    """
    run_one("notifier", config, None)


@contextlib.asynccontextmanager
async def embedded_defaults(
    settings: RuntimeSettings, data_dir: Path
) -> AsyncIterator[RuntimeSettings]:
    """Start what is not configured: nats-server when no URL, the sandbox when no kubeconfig."""
    async with contextlib.AsyncExitStack() as stack:
        if not settings.nats.urls:
            server = EmbeddedNats(data_dir=data_dir / "nats")
            await server.start()
            stack.push_async_callback(server.stop)
            nats = settings.nats.model_copy(update={"urls": [server.url]})
            settings = settings.model_copy(update={"nats": nats})
            typer.echo(f"embedded NATS (JetStream) at {server.url}", err=True)
        if settings.kube.kubeconfig is None and not settings.kube.in_cluster:
            from medic.sandbox import serve_embedded

            kubeconfig = await stack.enter_async_context(serve_embedded(data_dir / "sandbox"))
            kube = settings.kube.model_copy(update={"kubeconfig": kubeconfig})
            settings = settings.model_copy(update={"kube": kube})
            typer.echo(f"Kubernetes API sandbox; kubeconfig at {kubeconfig}", err=True)
        yield settings


def print_summary(services: Sequence[Service]) -> None:
    """What `medic run` will do: each service's own summary (rules, sources, channels)."""
    for service in services:
        if isinstance(service, Summarised):
            for line in service.summary():
                typer.echo(line, err=True)


CONSOLE_CHANNEL: Final = {"name": "console", "type": "console"}


def console_unless_configured() -> None:
    """On a terminal, `medic run` with no channel configured notifies on the console."""
    from medic.notifier.settings import NotifierSettings

    try:
        notifier = NotifierSettings.load()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    assert isinstance(notifier, NotifierSettings)
    if notifier.channels or not sys.stdout.isatty():
        return
    os.environ["MEDIC_NOTIFIER_CHANNELS"] = json.dumps([CONSOLE_CHANNEL])
    typer.echo(
        "notifications go to the console: no channel is configured and this is a terminal"
        " (MEDIC_NOTIFIER_CHANNELS for Slack or a webhook)",
        err=True,
    )


async def run_all(settings: RuntimeSettings, data_dir: Path) -> None:
    ensure_port_free(settings.health.host, settings.health.port)
    async with embedded_defaults(settings, data_dir) as effective:
        await run_services(effective, "medic", factories(list(SERVICES)), on_started=print_summary)


@app.command()
def run(
    config: ConfigOption = None,
    kubeconfig: KubeconfigOption = None,
    data_dir: Annotated[
        Path, typer.Option(help="Where the embedded NATS and sandbox keep their data.")
    ] = Path(".medic"),
) -> None:
    """Run watcher, remediator and notifier in one process.

    At start it prints what it will do: the rules in force (built-in and custom), what each
    source watches and which channels deliver; on a terminal with no channel configured
    (MEDIC_NOTIFIER_CHANNELS) it notifies on the console.

    With no NATS URL (MEDIC_NATS__URLS) it starts an embedded nats-server with JetStream; with no
    kubeconfig it serves the Kubernetes API sandbox, so a laptop needs nothing else. The plain
    KUBECONFIG variable is deliberately not read: pointing Medic at a cluster is explicit.

    Examples:
      medic run
      medic run --kubeconfig ~/.kube/config
      MEDIC_NATS__URLS=nats://127.0.0.1:4222 medic run
    """
    overrides = {"kubeconfig": kubeconfig} if kubeconfig else {}
    settings = load_settings(config, **overrides)
    console_unless_configured()
    try:
        serve(run_all(settings, data_dir))
    except StoreInUseError as exc:  # another `medic run` on this --data-dir: one line, no trace
        typer.echo(f"medic run: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command("schemas")
def export_schemas(
    directory: Annotated[Path | None, typer.Argument(help="Output folder.")] = None,
) -> None:
    """Write the JSON Schema of every bus message (and rule files) to a folder.

    Example: medic schemas ./schemas
    """
    from medic.schemas import export

    for path in export.write(directory or export.HERE, extra=export_extra()):
        typer.echo(str(path))


def export_extra() -> dict[str, type]:
    """Schemas owned by services (the rule file format, with each installed action's params)
    exported next to the event schemas."""
    extra: dict[str, type] = {}
    with contextlib.suppress(ImportError):
        actions = importlib.import_module("medic.remediator.actions")
        reference = importlib.import_module("medic.remediator.actions.reference")
        extra["remediation-rule"] = reference.rule_schema(actions.default_registry())
    return extra


def _mount() -> None:
    """Sub-commands owned by the services (their logic stays in their packages)."""
    from medic.remediator.command import backup_app, rules_commands
    from medic.sandbox.staging import staged

    # `medic rules test` stages a case's objects in the sandbox: the CLI wires the two together,
    # the remediator never imports the sandbox.
    app.add_typer(rules_commands(stage=staged), name="rules")
    app.add_typer(backup_app, name="backup")
    for optional in ("medic.sandbox.command", "medic.demo.command"):
        try:
            module = importlib.import_module(optional)
        except ModuleNotFoundError:
            continue
        app.add_typer(module.app)


_mount()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
