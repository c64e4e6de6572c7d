"""The CloudEvents-shaped envelope shared by every message, and stable ids for deduplication."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = "1.0"
SUPPORTED_MAJOR: Final = 1
CLUSTER_PATTERN: Final = r"^[A-Za-z0-9_-]{1,63}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


def stable_id(*parts: object) -> str:
    """A deterministic id from its parts: the same problem state always gets the same id.

    JetStream deduplicates on it (`Nats-Msg-Id`), so restarts and re-lists do not flood the bus.
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:32]


class CloudEvent(BaseModel):
    """CloudEvents 1.0 structured-mode attributes plus Medic's `schemaversion` and `cluster`."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=256, description="Stable id; the dedup key.")
    source: str = Field(min_length=1, description="URI-reference of the producer.")
    type: str
    subject: str | None = Field(default=None, description="The object the event is about.")
    time: AwareDatetime = Field(default_factory=utcnow)
    datacontenttype: Literal["application/json"] = "application/json"
    schemaversion: str = Field(default=SCHEMA_VERSION, pattern=r"^\d+\.\d+$")
    cluster: str = Field(pattern=CLUSTER_PATTERN, description="Cluster name; a subject token.")
