"""`medic sandbox`: serve the Kubernetes API sandbox until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import typer

from medic.runtime.cli_help import CommandApp
from medic.sandbox import KubeSandbox
from medic.sandbox.kubeconf import write_kubeconfig

app = CommandApp(no_args_is_help=True)


async def _serve(port: int, kubeconfig: Path, load: list[Path]) -> None:
    async with KubeSandbox.start(port=port) as sandbox:
        for path in load:
            sandbox.store.load_yaml(path)
        write_kubeconfig(kubeconfig, sandbox.url)
        typer.echo(f"Kubernetes API sandbox at {sandbox.url}; kubeconfig at {kubeconfig}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()


@app.command("sandbox")
def sandbox(
    port: int = typer.Option(0, help="TCP port on 127.0.0.1 (0 picks a free one)"),
    kubeconfig: Path = typer.Option(
        Path("sandbox.kubeconfig"), help="where to write the kubeconfig"
    ),
    load: list[Path] = typer.Option(
        [], metavar="FILE", help="YAML files (multi-document) to load at start; repeatable"
    ),
) -> None:
    """Serve an in-memory Kubernetes API (HelmRelease, Secrets, RBAC, ...) until interrupted.

    Examples:
      medic sandbox --port 6443 --kubeconfig sandbox.kubeconfig
      kubectl --kubeconfig sandbox.kubeconfig get hr -A
      medic sandbox --load examples/objects.yaml --load more.yaml
    """
    asyncio.run(_serve(port, kubeconfig, load))
