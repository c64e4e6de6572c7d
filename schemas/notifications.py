"""Delivery records of the notifier: what was sent where, threaded by problem."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medic.schemas.envelope import CloudEvent


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    DIGESTED = "digested"
    DEAD_LETTERED = "dead_lettered"
    DUPLICATE = "duplicate"
    FOLDED = "folded"  # a failed attempt told as part of the outcome that followed it


class NotificationData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    result_id: str = Field(description="The result (or digest of results) this notifies of.")
    problem_key: str
    channel: str
    status: DeliveryStatus
    thread: str | None = Field(default=None, description="Channel thread id (Slack ts).")
    attempts: int = Field(default=1, ge=0)
    error: str | None = None


class Notification(CloudEvent):
    type: Literal["medic.notification"] = "medic.notification"
    data: NotificationData

    def subject_suffix(self) -> str:
        return self.data.status.value
