"""The dead-letter envelope: a message that could not be handled, with why, never dropped."""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medic.schemas.envelope import CloudEvent


class ErrorKind(StrEnum):
    SCHEMA = "schema"  # malformed payload, unknown version, invalid field
    PERMANENT = "permanent"  # a handler said it can never succeed
    EXHAUSTED = "exhausted"  # transient failures until max_deliver


class ErrorInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ErrorKind
    message: str
    field: str | None = None
    exception: str | None = None


class DeadLetterData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    stream: str
    consumer: str
    subject: str
    sequence: int = Field(ge=0)
    deliveries: int = Field(ge=0)
    error: ErrorInfo
    payload: str = Field(description="The original bytes, as text or base64.")
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    headers: dict[str, str] = Field(default_factory=dict)

    def original_bytes(self) -> bytes:
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode()

    @staticmethod
    def encode_payload(payload: bytes) -> tuple[str, Literal["utf-8", "base64"]]:
        try:
            return payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(payload).decode("ascii"), "base64"


class DeadLetter(CloudEvent):
    type: Literal["medic.deadletter"] = "medic.deadletter"
    data: DeadLetterData
