"""The subject scheme and stream layout of the bus (documented in the README).

    medic.events.<cluster>.release.<problem>     release problems (ReleaseEvent)
    medic.events.<cluster>.etcd.<condition>      etcd health (EtcdEvent)
    medic.events.<cluster>.custom.<name...>      users' own events (CustomEvent)
    medic.results.<cluster>.<outcome>.<id>       remediation results (RemediationResult)
    medic.audit.<cluster>                        audit trail of writes (AuditEntry)
    medic.notifications.<cluster>.<status>       delivery records (Notification)
    medic.deadletter.<stream>.<consumer>         messages that could not be handled (DeadLetter)

Consumers filter by subject, so a remediator can take one cluster (`medic.events.prod.>`) or
one kind of problem (`medic.events.*.release.pending`). A result's subject ends in its id, so
the stream itself keeps one result per id (`result_slot`), not only within the dedup window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Protocol

from medic.schemas import AuditEntry, DeadLetter, Notification, RemediationResult, stable_id

PREFIX: Final = "medic"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


class _Suffixed(Protocol):
    cluster: str

    def subject_suffix(self) -> str: ...


def check_token(value: str, what: str) -> str:
    """Subject tokens may not contain dots, spaces or wildcards."""
    if not _TOKEN.match(value):
        raise ValueError(f"{what} {value!r} is not a valid subject token (letters, digits, _ -)")
    return value


def event_subject(event: _Suffixed) -> str:
    return f"{PREFIX}.events.{event.cluster}.{event.subject_suffix()}"


def result_subject(result: RemediationResult) -> str:
    return f"{PREFIX}.results.{result.cluster}.{result.subject_suffix()}.{_id_token(result.id)}"


def result_slot(result: RemediationResult) -> str:
    """The subjects a result with this id may be stored under, whatever its outcome: published
    expecting none of them to hold a message yet (`Bus.publish`), a second result with the same
    id (one final result per event and rule, `medic.remediator.service.result_id`) is refused
    for as long as the stream keeps the first, where `Nats-Msg-Id` dedup lasts its window."""
    return f"{PREFIX}.results.{result.cluster}.*.{_id_token(result.id)}"


def _id_token(result_id: str) -> str:
    """The id itself (the remediator's are hex), or its hash where it is no subject token: an
    id of another producer still gets one subject, the same every time."""
    return result_id if _TOKEN.fullmatch(result_id) else stable_id("result-subject", result_id)


def audit_subject(entry: AuditEntry) -> str:
    return f"{PREFIX}.audit.{entry.cluster}"


def notification_subject(record: Notification) -> str:
    return f"{PREFIX}.notifications.{record.cluster}.{record.subject_suffix()}"


def deadletter_subject(letter: DeadLetter) -> str:
    return f"{PREFIX}.deadletter.{letter.data.stream}.{letter.data.consumer}"


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    description: str


EVENTS: Final = StreamSpec("MEDIC_EVENTS", (f"{PREFIX}.events.>",), "events from watchers")
RESULTS: Final = StreamSpec("MEDIC_RESULTS", (f"{PREFIX}.results.>",), "remediation results")
AUDIT: Final = StreamSpec("MEDIC_AUDIT", (f"{PREFIX}.audit.>",), "audit trail of writes")
NOTIFICATIONS: Final = StreamSpec(
    "MEDIC_NOTIFICATIONS", (f"{PREFIX}.notifications.>",), "delivery records"
)
DEADLETTER: Final = StreamSpec(
    "MEDIC_DEADLETTER", (f"{PREFIX}.deadletter.>",), "messages that could not be handled"
)
STREAMS: Final = (EVENTS, RESULTS, AUDIT, NOTIFICATIONS, DEADLETTER)
