"""Helm v3 release storage (driver `secret`): names, labels, statuses and the record codec.

Format per helm.sh/helm/v3 pkg/storage/driver/util.go: the release is JSON, gzipped at best
compression, then base64 text; that text is the Secret's `data.release`, which the API encodes in
base64 once more. Records without the gzip magic bytes are plain JSON (old Helm). Names and labels
per pkg/storage/driver/secrets.go (`newSecretsObject`).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

SECRET_TYPE: Final = "helm.sh/release.v1"
SECRET_PREFIX: Final = "sh.helm.release.v1."
DATA_KEY: Final = "release"
LABEL_NAME: Final = "name"
LABEL_OWNER: Final = "owner"
LABEL_STATUS: Final = "status"
LABEL_VERSION: Final = "version"
LABEL_MODIFIED_AT: Final = "modifiedAt"
LABEL_CREATED_AT: Final = "createdAt"
# The labels the driver owns (pkg/storage/driver/util.go systemLabels); the rest are the user's.
SYSTEM_LABELS: Final = frozenset(
    (LABEL_NAME, LABEL_OWNER, LABEL_STATUS, LABEL_VERSION, LABEL_CREATED_AT, LABEL_MODIFIED_AT)
)
OWNER: Final = "helm"
GZIP_MAGIC: Final = b"\x1f\x8b\x08"
# pkg/action/action.go errPending
ANOTHER_OPERATION: Final = "another operation (install/upgrade/rollback) is in progress"


class ReleaseStatus(StrEnum):
    """pkg/release/status.go."""

    UNKNOWN = "unknown"
    DEPLOYED = "deployed"
    UNINSTALLED = "uninstalled"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    UNINSTALLING = "uninstalling"
    PENDING_INSTALL = "pending-install"
    PENDING_UPGRADE = "pending-upgrade"
    PENDING_ROLLBACK = "pending-rollback"

    @property
    def is_pending(self) -> bool:
        return self in _PENDING


_PENDING: Final = frozenset(
    {ReleaseStatus.PENDING_INSTALL, ReleaseStatus.PENDING_UPGRADE, ReleaseStatus.PENDING_ROLLBACK}
)


class ReleaseDecodeError(ValueError):
    """A release record that is not base64, not gzip, or not the JSON Helm writes."""

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(f"cannot decode Helm release record ({stage}): {detail}")
        self.stage = stage
        self.detail = detail


def secret_name(release: str, revision: int) -> str:
    return f"{SECRET_PREFIX}{release}.v{revision}"


def encode_release(record: dict[str, Any]) -> str:
    """Encode as Helm's encodeRelease does: JSON, gzip (best compression), base64 text."""
    raw = json.dumps(record, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=9)).decode("ascii")


def decode_release(text: str | bytes) -> dict[str, Any]:
    """Decode as Helm's decodeRelease does; gunzip only when the gzip magic bytes are present."""
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReleaseDecodeError("base64", str(exc)) from exc
    if blob[:3] == GZIP_MAGIC:
        try:
            blob = gzip.decompress(blob)
        except (OSError, EOFError, zlib.error) as exc:
            raise ReleaseDecodeError("gzip", str(exc)) from exc
    try:
        record = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReleaseDecodeError("json", str(exc)) from exc
    if not isinstance(record, dict) or not isinstance(record.get("info"), dict):
        raise ReleaseDecodeError("json", "record has no `info` object")
    return record


def decode_secret_data(value: str) -> dict[str, Any]:
    """Decode `data.release` as read through the API: one more base64 layer around the record."""
    try:
        inner = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReleaseDecodeError("secret-base64", str(exc)) from exc
    return decode_release(inner)


def encode_secret_data(record: dict[str, Any]) -> str:
    return base64.b64encode(encode_release(record).encode("ascii")).decode("ascii")


@dataclass(frozen=True, slots=True)
class ReleaseSummary:
    """What Medic keeps of a record: never manifest, values or hooks (they may hold secrets)."""

    name: str
    namespace: str
    revision: int
    status: ReleaseStatus
    chart: str
    chart_version: str
    description: str
    last_deployed: str


def summarize(record: dict[str, Any]) -> ReleaseSummary:
    info = record.get("info") or {}
    metadata = (record.get("chart") or {}).get("metadata") or {}
    try:
        status = ReleaseStatus(str(info.get("status", "unknown")))
    except ValueError:
        status = ReleaseStatus.UNKNOWN
    return ReleaseSummary(
        name=str(record.get("name", "")),
        namespace=str(record.get("namespace", "")),
        revision=int(record.get("version", 0)),
        status=status,
        chart=str(metadata.get("name", "")),
        chart_version=str(metadata.get("version", "")),
        description=str(info.get("description", "")),
        last_deployed=str(info.get("last_deployed", "")),
    )


def with_status(record: dict[str, Any], status: ReleaseStatus, description: str) -> dict[str, Any]:
    """A copy of the record with `info.status` and `info.description` replaced."""
    info = dict(record.get("info") or {})
    info["status"] = status.value
    info["description"] = description
    return {**record, "info": info}


def unlock_description(status: ReleaseStatus) -> str:
    """What helm-controller writes when it unlocks a pending release (internal/reconcile/unlock.go:
    `rls.SetStatus(StatusFailed, "Release unlocked from stale '%s' state")`)."""
    return f"Release unlocked from stale '{status.value}' state"


def updated_labels(
    labels: dict[str, str], record: dict[str, Any], modified_at: int
) -> dict[str, str]:
    """The labels Helm's Secrets driver writes on `Update` (pkg/storage/driver/secrets.go):
    the user's labels, then name/owner/status/version from the record and `modifiedAt` (unix
    seconds); `createdAt` is not carried over, as Helm does not."""
    summary = summarize(record)
    kept = {key: value for key, value in labels.items() if key not in SYSTEM_LABELS}
    return {
        **kept,
        LABEL_MODIFIED_AT: str(modified_at),
        LABEL_NAME: summary.name,
        LABEL_OWNER: OWNER,
        LABEL_STATUS: summary.status.value,
        LABEL_VERSION: str(summary.revision),
    }
