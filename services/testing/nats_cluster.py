"""A three-node (or N-node) nats-server cluster with JetStream on loopback, for fault tests.

Each node is an `EmbeddedNats` with `--cluster_name`, its own `--cluster` port, `--routes` to
the others, a `--server_name` and its own store directory. Use `NatsSettings(urls=cluster.urls,
stream_replicas=3)` so streams and KV buckets are replicated on every node.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from medic.runtime.embedded_nats import EmbeddedNats, free_port


@dataclass
class NatsCluster:
    base_dir: Path
    size: int = 3
    name: str = "medic-test"
    nodes: list[EmbeddedNats] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    async def start(self) -> None:
        cluster_ports = [free_port() for _ in range(self.size)]
        routes = ",".join(f"nats://127.0.0.1:{port}" for port in cluster_ports)
        self.nodes = [
            EmbeddedNats(
                data_dir=self.base_dir / f"n{i}",
                port=free_port(),
                extra_args=self._args(i, cluster_ports[i], routes),
            )
            for i in range(self.size)
        ]
        await asyncio.gather(*(node.start() for node in self.nodes))

    def _args(self, index: int, cluster_port: int, routes: str) -> list[str]:
        return [
            "--server_name", f"n{index}",
            "--cluster_name", self.name,
            "--cluster", f"nats://127.0.0.1:{cluster_port}",
            "--routes", routes,
        ]  # fmt: skip

    def kill(self, index: int) -> None:
        """SIGKILL one node (no flush), for the one-node-lost test."""
        self.nodes[index].kill()

    async def restart(self, index: int) -> None:
        await self.nodes[index].start()

    async def stop_all(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes))
