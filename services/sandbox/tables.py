"""The `Table` answer to `kubectl get`, for resource types that declare printer columns.

kubectl asks with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints the
server's columns. The API server renders a custom resource's `additionalPrinterColumns` so
(kubernetes apiextensions-apiserver pkg/registry/customresource/tableconvertor/tableconvertor.go):
a `Name` column first, then each column's JSONPath result; a `string` column prints the value, a
`date` column is the age (apimachinery pkg/api/meta/table/table.go ConvertToHumanReadableDateType,
pkg/util/duration/duration.go HumanDuration), a missing value is null; each row carries the
object's metadata as a PartialObjectMetadata (`includeObject=Metadata`, the default), which is
where `kubectl get -A` reads the namespace from.

A watch asking for a Table gets one Table of one row per event (`kubectl get -w`). Not for
built-in kinds (kubectl prints its default columns for those), and JSONPath only as the
catalogue's columns use it: dotted fields, `[n]` and `[?(@.field=="value")]`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from medic.sandbox.catalog import ResourceType

# The first column of every Table (tableconvertor.go: Name, type string, format name).
NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
DESCRIPTION = "Custom resource definition column (in JSONPath format): "  # tableconvertor.go
_STEP = re.compile(r'\.([^.\[]+)|\[(\d+)\]|\[\?\(@\.([^=]+)=="([^"]*)"\)\]')


def wanted(accept: str, rt: ResourceType) -> bool:
    """Whether the client asked for a meta.k8s.io/v1 Table and the type has columns for it."""
    if not rt.printer_columns:
        return False
    for media in accept.split(","):
        params = {p.strip() for p in media.split(";")[1:]}
        if {"as=Table", "v=v1", "g=meta.k8s.io"} <= params:
            return True
    return False


def json_path(obj: Any, path: str) -> Any:
    """The first value at a simple JSONPath, or None when a step finds nothing."""
    value = obj
    for field, index, key, expected in _STEP.findall(path):
        if field:
            value = value.get(field) if isinstance(value, dict) else None
        elif index:
            position = int(index)
            value = value[position] if isinstance(value, list) and position < len(value) else None
        else:
            items = value if isinstance(value, list) else []
            value = next(
                (i for i in items if isinstance(i, dict) and str(i.get(key)) == expected), None
            )
        if value is None:
            return None
    return value


MINUTE, HOUR, DAY, YEAR = 60, 3600, 86400, 365 * 86400
_SUFFIX = {1: "s", MINUTE: "m", HOUR: "h", DAY: "d", YEAR: "y"}
# HumanDuration's steps: below this many seconds, the unit and the remainder unit it shows.
_COARSE: tuple[tuple[int, int, int | None], ...] = (
    (10 * MINUTE, MINUTE, 1),
    (180 * MINUTE, MINUTE, None),
    (8 * HOUR, HOUR, MINUTE),
    (48 * HOUR, HOUR, None),
    (8 * DAY, DAY, HOUR),
    (2 * YEAR, DAY, None),
    (8 * YEAR, YEAR, DAY),
)


def human_duration(seconds: float) -> str:
    """apimachinery's HumanDuration: `45s`, `5m12s`, `3h20m`, `2d4h`, `1y30d`."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 120:
        return f"{max(s, 0)}s"
    for below, unit, rest in _COARSE:
        if s < below:
            return _in_units(s, unit, rest)
    return _in_units(s, YEAR, None)


def _in_units(s: int, unit: int, rest: int | None) -> str:
    text = f"{s // unit}{_SUFFIX[unit]}"
    if rest is not None and (s % unit) // rest:
        text += f"{(s % unit) // rest}{_SUFFIX[rest]}"
    return text


def cell(column_type: str, value: Any, now: datetime) -> Any:
    if value is None:
        return None
    if column_type == "date":
        try:
            at = datetime.fromisoformat(str(value))
        except ValueError:
            return "<invalid>"
        return human_duration((now - at).total_seconds())
    if column_type == "string":
        if isinstance(value, str):
            return value
        return json.dumps(value) if not isinstance(value, bool) else str(value).lower()
    return value


def _row_object(obj: dict[str, Any], include: str | None) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def table(
    rt: ResourceType,
    objects: Sequence[dict[str, Any]],
    list_metadata: dict[str, Any],
    include_object: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of `objects` with the type's printer columns."""
    now = now or datetime.now(UTC)
    columns = [NAME_COLUMN] + [
        {"name": name, "type": kind, "format": "", "description": DESCRIPTION + path, "priority": 0}
        for name, kind, path in rt.printer_columns
    ]
    rows = []
    for obj in objects:
        cells = [(obj.get("metadata") or {}).get("name")]
        cells += [cell(kind, json_path(obj, path), now) for _, kind, path in rt.printer_columns]
        row: dict[str, Any] = {"cells": cells}
        embedded = _row_object(obj, include_object)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": columns,
        "rows": rows,
    }
