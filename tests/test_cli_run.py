"""`medic run` on the embedded default: starts, creates its streams, is ready, stops cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from medic.runtime.embedded_nats import EmbeddedNats, free_port, servers_on
from medic.testing.waiting import eventually

pytestmark = pytest.mark.timeout(120)


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except OSError:
        return 0, {}


async def test_medic_run_is_ready_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    def streams_in_the_data_dir() -> None:
        streams = list((tmp_path / "data" / "nats" / "jetstream").rglob("MEDIC_EVENTS"))
        assert streams, "the embedded nats-server stores Medic's streams in the data dir"

    said = await _start_and_stop(
        tmp_path, {"MEDIC_CLUSTER": "laptop"}, subprocess.DEVNULL, streams_in_the_data_dir
    )
    assert "services_stopped" in said
    leftovers = await asyncio.create_subprocess_exec(
        "pgrep", "-f", str(tmp_path / "data"), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await leftovers.communicate()
    assert out.strip() == b"", "a child process (nats-server) outlived medic run"


def _run_on_busy_port(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        return subprocess.run(
            [sys.executable, "-m", "medic.cli", *args],
            env={**env, "MEDIC_HEALTH__PORT": str(port), "MEDIC_LOG_FORMAT": "json"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _assert_one_line_about_the_port(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(said) == 1, said
    assert "already in use" in said[0]
    assert "MEDIC_HEALTH__PORT" in said[0]
    assert "health port" in said[0]


def test_medic_run_on_a_busy_health_port_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_")}
    done = _run_on_busy_port(["run", "--data-dir", str(tmp_path / "data")], env)
    _assert_one_line_about_the_port(done)
    assert "embedded NATS" not in done.stderr, "nothing else starts when the port is taken"


@pytest.mark.parametrize("service", ["watcher", "remediator", "notifier"])
def test_a_service_on_a_busy_health_port_says_so_in_one_line_and_exits_2(
    service: str, nats_server: EmbeddedNats
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_")}
    done = _run_on_busy_port([service], {**env, "MEDIC_NATS__URLS": nats_server.url})
    _assert_one_line_about_the_port(done)


TEAM_RULE = """\
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata:
  name: team-a-tell-about-failed-releases
spec:
  match: {types: [medic.release], problems: [failed], kinds: [HelmRelease]}
  action: {name: notify-only}
"""


async def _start_and_stop(
    tmp_path: Path,
    extra: dict[str, str],
    stdout: int,
    while_ready: Callable[[], None] = lambda: None,
) -> str:
    """`medic run` until ready (then `while_ready()`), then SIGTERM; all it said on stderr."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEDIC_")},
        **extra,
        "MEDIC_HEALTH__PORT": str(port),
        "MEDIC_LOG_FORMAT": "json",
    }
    errors = tmp_path / "stderr.log"
    with errors.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "medic.cli",
            "run",
            "--data-dir",
            str(tmp_path / "data"),
            env=env,
            stdout=stdout,
            stderr=err,
            start_new_session=True,
        )
        try:

            async def ready() -> bool:
                status, _ = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")
                return status == 200

            await eventually(ready, timeout=60, interval=0.2)
            while_ready()
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    said = errors.read_text()
    assert code == 0, said[-3000:]
    return said


def plain(said: str) -> str:
    """What `medic run` said for people: its lines that are not JSON log records."""
    return "\n".join(line for line in said.splitlines() if not line.startswith("{"))


async def test_medic_run_says_which_rules_sources_and_channels_are_in_force(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "team.yaml"
    rules.write_text(TEAM_RULE)
    extra = {"MEDIC_REMEDIATOR_RULES": str(rules)}
    said = plain(await _start_and_stop(tmp_path, extra, subprocess.DEVNULL))
    for name in ("flux-retry-after-transient-etcd-error", "helm-clear-stuck-pending-release"):
        assert f"{name} (built-in)" in said, said
    assert "team-a-tell-about-failed-releases (custom): notify-only" in said, said
    for source in ("helmrelease", "helm_storage", "fleet", "gardener_etcd", "kube_events"):
        assert f"  {source}: " in said, said
    assert "Flux HelmReleases" in said
    assert "on cluster 'local' (kubeconfig " in said, said
    assert "notifier: no channel configured" in said, said
    assert "MEDIC_NOTIFIER_CHANNELS" in said


async def test_medic_run_on_a_terminal_without_channels_notifies_on_the_console(
    tmp_path: Path,
) -> None:
    controller, terminal = pty.openpty()
    try:
        said = plain(await _start_and_stop(tmp_path, {}, terminal))
    finally:
        os.close(terminal)
        os.close(controller)
    assert "notifications go to the console: no channel is configured" in said, said
    assert "notifier: 1 channel(s)\n  console (console, default)" in said, said


def kill_leftovers(store_dir: Path) -> None:
    """SIGKILL the nats-servers a failed test left on its own store directory (by pid)."""
    for pid in servers_on(store_dir):
        os.kill(pid, signal.SIGKILL)


async def start_run(tmp_path: Path, name: str) -> tuple[asyncio.subprocess.Process, int, Path]:
    """A real `medic run` on the embedded NATS under tmp_path/data; its health port and log."""
    port = free_port()
    env = {**os.environ, "MEDIC_HEALTH__PORT": str(port), "MEDIC_LOG_FORMAT": "json"}
    env.pop("MEDIC_NATS__URLS", None)
    env.pop("MEDIC_KUBE__KUBECONFIG", None)
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "medic.cli",
            "run",
            "--data-dir",
            str(tmp_path / "data"),
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    return process, port, log_path


async def wait_ready(port: int) -> None:
    async def ready() -> bool:
        status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")
        return status == 200 and body.get("status") == "ready"

    await eventually(ready, timeout=60, interval=0.2)


async def stop(*processes: asyncio.subprocess.Process) -> None:
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sigkilled_medic_run_leaves_no_nats_server_behind(tmp_path: Path) -> None:
    """The OOM killer's SIGKILL gives `medic run` no chance to stop its nats-server: the kernel
    must (parent-death signal), or the next run finds a second writer on its store."""
    store = tmp_path / "data" / "nats"
    process, port, log_path = await start_run(tmp_path, "run")
    try:
        await wait_ready(port)
        assert len(servers_on(store)) == 1, log_path.read_text()[-2000:]
        process.kill()
        await process.wait()

        async def gone() -> bool:
            return servers_on(store) == []

        await eventually(gone, timeout=5, interval=0.05)
    finally:
        await stop(process)
        kill_leftovers(store)


async def test_second_medic_run_on_a_store_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    store = tmp_path / "data" / "nats"
    first, port, _ = await start_run(tmp_path, "first")
    second: asyncio.subprocess.Process | None = None
    try:
        await wait_ready(port)
        [server] = servers_on(store)
        second, _, second_log = await start_run(tmp_path, "second")
        code = await asyncio.wait_for(second.wait(), 60)
        output = second_log.read_text().strip()
        assert code != 0
        assert len(output.splitlines()) == 1, output
        assert "in use" in output
        assert str(first.pid) in output
        assert servers_on(store) == [server], "a second nats-server writes the same store"
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 30) == 0
    finally:
        await stop(first, *([second] if second else []))
        kill_leftovers(store)
