"""Writes the JSON Schema of every message next to this module: `python -m medic.schemas.export`.

The files are committed so other tools (and editors) can validate without Python; a test fails
when they drift from the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from medic.schemas.audit import AuditEntry
from medic.schemas.deadletter import DeadLetter
from medic.schemas.digest import ResultDigest
from medic.schemas.events import CustomEvent, EtcdEvent, ReleaseEvent
from medic.schemas.notifications import Notification
from medic.schemas.results import RemediationResult

MODELS: dict[str, type[BaseModel]] = {
    "release-event": ReleaseEvent,
    "etcd-event": EtcdEvent,
    "custom-event": CustomEvent,
    "remediation-result": RemediationResult,
    "audit-entry": AuditEntry,
    "notification": Notification,
    "dead-letter": DeadLetter,
    "result-digest": ResultDigest,
}
HERE = Path(__file__).resolve().parent


def schema_documents(extra: dict[str, type[BaseModel]] | None = None) -> dict[str, str]:
    """File name -> JSON text for every model (plus any extra, e.g. the rule schema)."""
    documents: dict[str, str] = {}
    for name, model in {**MODELS, **(extra or {})}.items():
        schema: dict[str, Any] = model.model_json_schema(by_alias=True, mode="validation")
        schema["$id"] = f"https://medic.dev/schemas/{name}.json"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        documents[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return documents


def write(directory: Path = HERE, extra: dict[str, type[BaseModel]] | None = None) -> list[Path]:
    written = []
    for file_name, text in schema_documents(extra).items():
        path = directory / file_name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        sys.stdout.write(f"{path}\n")
