"""The body a machine channel (the webhook) receives for a burst: one digest of results.

Not a bus message: the notifier builds it when more results reach a channel within its window
than the channel's threshold (`medic.notifier.digest`). Each entry is the result exactly as it is
on the bus, so a receiver validates digests and single results with the same contract.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medic.schemas.results import RemediationResult


class ResultDigest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["medic.digest"] = "medic.digest"
    channel: str = Field(description="The configured channel the digest was sent to.")
    window: float = Field(ge=0, description="Seconds the digest collected results for.")
    results: list[RemediationResult] = Field(min_length=1)
