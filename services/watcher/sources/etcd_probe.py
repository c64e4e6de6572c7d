"""The etcd probe: polls each etcd member's `/health` and `/metrics` and emits `EtcdEvent`s.

This module does the HTTP (aiohttp, a timeout on every request, optional TLS client
certificates) and the polling loop; the judgement (what is a leader change, when is the cluster
stable) is the pure `medic.watcher.etcd_health.EtcdStability`. It knows nothing about NATS: the
watcher service passes an `emit` that publishes. Not for Kubernetes objects: Gardener's `Etcd`
resources are watched by the `gardener_etcd` source.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medic.watcher.etcd_health import (
    EtcdStability,
    MemberObservation,
    Reachability,
    StabilityState,
    parse_member_metrics,
)
from medic.watcher.sources.base import Emit, SourceContext, SourcePlugin

log = structlog.get_logger(__name__)

NAME = "etcd_probe"


class EtcdProbeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[str] = Field(min_length=1, description="Client URLs of the etcd members.")
    interval: float = Field(default=5.0, gt=0, description="Seconds between polling rounds.")
    timeout: float = Field(default=2.0, gt=0, description="Seconds per request to a member.")
    stable_after: float = Field(
        default=30.0, ge=0, description="Seconds with a leader and no change before `stable`."
    )
    tls_ca_file: Path | None = Field(default=None, description="CA bundle for https members.")
    tls_cert_file: Path | None = Field(default=None, description="Client certificate (mTLS).")
    tls_key_file: Path | None = Field(default=None, description="Key of the client certificate.")

    @field_validator("endpoints")
    @classmethod
    def _strip_slash(cls, endpoints: list[str]) -> list[str]:
        return [endpoint.rstrip("/") for endpoint in endpoints]

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_ca_file is None and self.tls_cert_file is None:
            return None
        context = ssl.create_default_context(
            cafile=str(self.tls_ca_file) if self.tls_ca_file else None
        )
        if self.tls_cert_file is not None:
            context.load_cert_chain(
                str(self.tls_cert_file), str(self.tls_key_file) if self.tls_key_file else None
            )
        return context


async def observe_member(
    session: aiohttp.ClientSession, endpoint: str, timeout: float
) -> MemberObservation:
    """One member's /metrics and /health; a timeout or refusal is an observation too.

    /metrics first: it answers at once, while /health may wait on a quorum read; a member whose
    metrics came but whose health check timed out is answering, just not healthy.
    """
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    try:
        async with session.get(f"{endpoint}/metrics", timeout=client_timeout) as response:
            response.raise_for_status()
            metrics = parse_member_metrics(await response.text())
    except TimeoutError:
        return MemberObservation(
            endpoint, Reachability.TIMEOUT, error=f"no answer within {timeout}s"
        )
    except (aiohttp.ClientError, ValueError) as error:
        return MemberObservation(endpoint, Reachability.UNREACHABLE, error=str(error) or "error")
    healthy, problem = await _health(session, endpoint, client_timeout)
    return MemberObservation(
        endpoint,
        Reachability.ANSWERED,
        healthy=healthy,
        has_leader=metrics.has_leader,
        is_leader=metrics.is_leader,
        leader_changes=metrics.leader_changes,
        error=problem,
    )


async def _health(
    session: aiohttp.ClientSession, endpoint: str, timeout: aiohttp.ClientTimeout
) -> tuple[bool, str | None]:
    """Whether /health says true, and if not, why (etcd's `reason`, or what went wrong)."""
    try:
        async with session.get(f"{endpoint}/health", timeout=timeout) as response:
            health: Any = await response.json(content_type=None)
    except TimeoutError:
        return False, f"health check took longer than {timeout.total}s"
    except (aiohttp.ClientError, ValueError) as error:
        return False, f"health check failed: {error}"
    if isinstance(health, dict) and health.get("health") == "true":
        return True, None
    reason = health.get("reason") if isinstance(health, dict) else None
    return False, reason or f"health is not true: {health!r}"


async def observe(
    session: aiohttp.ClientSession, endpoints: Sequence[str], timeout: float
) -> list[MemberObservation]:
    return list(await asyncio.gather(*(observe_member(session, e, timeout) for e in endpoints)))


@dataclass
class EtcdProbe:
    """The source: one polling loop over all members, state kept between rounds."""

    settings: EtcdProbeSettings
    cluster: str
    name: str = NAME
    state: StabilityState = field(default_factory=StabilityState)

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        judge = EtcdStability(
            cluster=self.cluster,
            stable_after=timedelta(seconds=self.settings.stable_after),
            source=f"medic/watcher/{self.cluster}/{NAME}",
        )
        bound = log.bind(source=NAME, endpoints=self.settings.endpoints)
        connector = aiohttp.TCPConnector(ssl=self.settings.ssl_context() or True)
        async with aiohttp.ClientSession(connector=connector) as session:
            while not stop.is_set():
                observations = await observe(
                    session, self.settings.endpoints, self.settings.timeout
                )
                state, events = judge.step(self.state, observations, datetime.now(UTC))
                for event in events:
                    bound.info(
                        "etcd_condition",
                        condition=event.data.condition,
                        endpoint=event.data.endpoint,
                    )
                    await emit(event)
                # Committed after the events went out: a failed emit is judged again next round.
                self.state = state
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.interval)


def create(settings: BaseModel, context: SourceContext) -> EtcdProbe:
    assert isinstance(settings, EtcdProbeSettings)
    return EtcdProbe(settings=settings, cluster=context.cluster)


PLUGIN = SourcePlugin(
    name=NAME,
    settings_model=EtcdProbeSettings,
    create=create,
    rbac=(),
    description=(
        "Polls etcd members' /health and /metrics: leader changes, members without a leader, "
        "unhealthy or timing-out members, and when the cluster has been stable."
    ),
    example={
        "endpoints": ["https://etcd-main-client.shoot--dev--a:2379"],
        "interval": 5,
        "timeout": 2,
        "stable_after": 30,
        "tls_ca_file": "/etc/etcd/ca.crt",
        "tls_cert_file": "/etc/etcd/client.crt",
        "tls_key_file": "/etc/etcd/client.key",
    },
)
