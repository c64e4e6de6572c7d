"""Errors at the bus boundary, and how a handler tells the consumer what to do with a message.

    BusError                   NATS unreachable, publish not acknowledged, stream mis-configured
    HandlingError              raised by a message handler
    ├── TransientError         retry later (`msg.nak(delay)`), dead-letter after max_deliver
    └── PermanentError         never retry: dead-letter now, then `msg.term()`

Any other exception escaping a handler is treated as transient: logged with the event id and
retried, so a bug never silently drops a message; after max_deliver it is dead-lettered.
"""

from __future__ import annotations


class BusError(Exception):
    """The bus could not do what was asked (connect, publish, configure)."""


class HandlingError(Exception):
    """Base for handler outcomes that are not success."""


class TransientError(HandlingError):
    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class Deferred(TransientError):  # noqa: N818 - not an error: "come back later"
    """Not a failure: the handler must come back later (a grace period, a precondition)."""


class PermanentError(HandlingError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
