"""The Helm storage source end to end: a small list/watch API server (stand-in until the
sandbox lands), the real informer and client, and a real nats-server with JetStream dedup.

Shows: exactly the expected events for staged objects (nothing for healthy ones), a resolved
event when a problem clears, no duplicate stored events after a restart, and no missed change
across a 410 (compacted history), dropped watches and a burst of 429 / 500-with-etcd faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from medic.runtime.backoff import Backoff
from medic.runtime.bus import Bus
from medic.runtime.kube import KubeClient
from medic.runtime.settings import KubeSettings
from medic.schemas import Event, ProblemState, ReleaseEvent, decode_message
from medic.testing.helm import corrupt_release_secret, release_secret
from medic.testing.waiting import eventually
from medic.watcher.sources import default_registry
from medic.watcher.sources.base import SourceContext

SECRETS_PATHS = ("/api/v1/secrets", "/api/v1/namespaces/apps/secrets")


class ListWatchApi:
    """Secrets with resourceVersions, a bounded history, faults and droppable watches."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        self.version = 100
        self.compacted = 0
        self.faults: list[tuple[int, str, dict[str, str]]] = []
        self.changed = asyncio.Condition()
        self.generation = 0  # bumping it drops every open watch
        self.lists = 0
        self.watches = 0
        self.gone = 0

    async def put(self, obj: dict[str, Any]) -> None:
        self.version += 1
        name = obj["metadata"]["name"]
        kind = "MODIFIED" if name in self.objects else "ADDED"
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.version)
        obj["metadata"].setdefault("uid", f"uid-{name}")
        obj.setdefault("kind", "Secret")
        obj.setdefault("apiVersion", "v1")
        self.objects[name] = obj
        self.history.append((self.version, kind, obj))
        async with self.changed:
            self.changed.notify_all()

    async def compact_and_drop(self) -> None:
        """Forget the history (next resume gets 410) and drop every watch."""
        self.compacted = self.version + 1
        self.history.clear()
        await self.drop()

    async def drop(self) -> None:
        self.generation += 1
        async with self.changed:
            self.changed.notify_all()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path not in SECRETS_PATHS:
            return _status(404, "NotFound", request.path)
        if self.faults:
            code, message, headers = self.faults.pop(0)
            response = _status(code, "TooManyRequests" if code == 429 else "Internal", message)
            response.headers.update(headers)
            return response
        if request.query.get("watch") == "true":
            return await self._watch(request)
        self.lists += 1
        return web.json_response(
            {
                "kind": "SecretList",
                "metadata": {"resourceVersion": str(self.version)},
                "items": list(self.objects.values()),
            }
        )

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        self.watches += 1
        since = int(request.query.get("resourceVersion") or self.version)
        response = web.StreamResponse()
        await response.prepare(request)
        if since < self.compacted:
            self.gone += 1
            gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
            await response.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            return response
        generation = self.generation
        while generation == self.generation:
            for version, kind, obj in self.history:
                if version > since:
                    await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                    since = version
            async with self.changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.5)
        return response


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "code": code, "reason": reason, "message": message}
    return web.json_response(body, status=code)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[ListWatchApi, KubeSettings]]:
    state = ListWatchApi()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    try:
        yield state, KubeSettings(kubeconfig=kubeconfig, request_timeout=5)
    finally:
        await state.drop()
        await runner.cleanup()


class Watcher:
    """One helm_storage source publishing to the bus, startable and stoppable."""

    def __init__(self, settings: KubeSettings, bus: Bus, inactivity: float = 90.0) -> None:
        self.inactivity = inactivity
        self.settings = settings
        self.bus = bus
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.kube: KubeClient | None = None

    async def start(self) -> None:
        self.stop = asyncio.Event()
        self.kube = await KubeClient.connect(self.settings)
        self.kube.backoff = Backoff(base=0.01, cap=0.05)
        plugin = default_registry(entry_points=False).get("helm_storage")
        config = plugin.settings_model.model_validate(
            {"pending_after": 60, "tick": 0.1, "watch": {"inactivity_timeout": self.inactivity}}
        )
        source = plugin.create(config, SourceContext(cluster="c1", kube=self.kube))

        async def emit(event: Event) -> None:
            await self.bus.publish(event)

        self.task = asyncio.create_task(source.run(emit, self.stop))

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)
        if self.kube is not None:
            await self.kube.close()


async def stored(bus: Bus) -> list[ReleaseEvent]:
    info = await bus.js.stream_info("MEDIC_EVENTS")
    events = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        raw = await bus.js.get_msg("MEDIC_EVENTS", seq)
        message = decode_message(raw.data or b"")
        assert isinstance(message, ReleaseEvent)
        events.append(message)
    return events


def summary(events: list[ReleaseEvent]) -> list[tuple[str, str, str]]:
    return sorted((e.data.object.name, e.data.problem.value, e.data.state.value) for e in events)


async def test_helm_storage_events_resolve_restart_and_faults(
    api: tuple[ListWatchApi, KubeSettings], bus: Bus
) -> None:
    state, settings = api
    await state.put(release_secret("healthy", revision=1, status="deployed"))
    await state.put(release_secret("stuck", revision=2, status="pending-upgrade", modified_ago=600))
    await state.put(corrupt_release_secret("broken", revision=1))
    # pending, but not for long enough yet: nothing
    await state.put(release_secret("young", revision=1, status="pending-install", modified_ago=1))

    watcher = Watcher(settings, bus)
    await watcher.start()
    try:
        expected = [
            ("sh.helm.release.v1.broken.v1", "decode_error", "firing"),
            ("sh.helm.release.v1.stuck.v2", "pending", "firing"),
        ]

        async def firing() -> bool:
            return summary(await stored(bus)) == expected

        await eventually(firing, timeout=10)
        first = next(e for e in await stored(bus) if e.data.problem.value == "pending")
        assert first.cluster == "c1"
        fields = first.data.evidence.fields
        assert fields["status"] == "pending-upgrade"
        assert fields["revision"] == 2
        assert fields["chart"] == "podinfo"
        assert (first.data.evidence.age_seconds or 0) >= 600

        # the problem clears: a resolved event
        await state.put(release_secret("stuck", revision=2, status="deployed"))

        async def resolved() -> bool:
            return ("sh.helm.release.v1.stuck.v2", "pending", "resolved") in summary(
                await stored(bus)
            )

        await eventually(resolved, timeout=10)
    finally:
        await watcher.close()
    count = len(await stored(bus))

    # a restart re-lists everything: JetStream stores nothing new
    watcher = Watcher(settings, bus)
    await watcher.start()
    try:
        await eventually(lambda: _async(state.watches >= 2), timeout=10)
        await asyncio.sleep(0.5)  # a few ticks: would publish duplicates if ids were unstable
        assert len(await stored(bus)) == count

        # faults: a burst of 429 and 500 carrying etcd errors, a dropped watch, then a change
        state.faults = [
            (429, "throttled", {"Retry-After": "0"}),
            (500, "etcdserver: leader changed", {}),
            (500, "etcdserver: request timed out", {}),
            (429, "throttled", {"Retry-After": "0"}),
        ]
        await state.drop()
        await state.put(
            release_secret("late", revision=3, status="pending-rollback", modified_ago=900)
        )

        async def late_seen() -> bool:
            return ("sh.helm.release.v1.late.v3", "pending", "firing") in summary(await stored(bus))

        await eventually(late_seen, timeout=10)
        assert not state.faults

        # 410: the history is compacted while a change happens; the re-list sees it
        lists_before = state.lists
        await state.compact_and_drop()
        await state.put(release_secret("late", revision=3, status="deployed"))

        async def late_resolved() -> bool:
            return ("sh.helm.release.v1.late.v3", "pending", "resolved") in summary(
                await stored(bus)
            )

        await eventually(late_resolved, timeout=10)
        assert state.lists > lists_before
        assert state.gone >= 1
    finally:
        await watcher.close()
    assert all(
        e.data.state in {ProblemState.FIRING, ProblemState.RESOLVED} for e in await stored(bus)
    )


async def _async(value: bool) -> bool:
    return value


async def test_silent_watch_is_reconnected_without_missing_changes(
    api: tuple[ListWatchApi, KubeSettings], bus: Bus
) -> None:
    state, settings = api
    watcher = Watcher(settings, bus, inactivity=0.3)
    await watcher.start()
    try:
        # the server keeps the watch open and says nothing: the watcher declares it dead
        await eventually(lambda: _async(state.watches >= 3), timeout=10)
        assert state.lists == 1  # resumed from its resourceVersion, no re-list
        await state.put(
            release_secret("quiet", revision=1, status="pending-install", modified_ago=900)
        )

        async def seen() -> bool:
            return summary(await stored(bus)) == [
                ("sh.helm.release.v1.quiet.v1", "pending", "firing")
            ]

        await eventually(seen, timeout=10)
    finally:
        await watcher.close()
