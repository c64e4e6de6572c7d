"""Decoding the Kubernetes protobuf request bodies that kubectl's typed clients send.

client-go's generated clients for built-in kinds send `application/vnd.kubernetes.protobuf`
whatever the server (client-go rest/request.go `UseProtobufAsDefault`), and fall back to JSON
after a 415 only for CBOR (rest/client.go `UnsupportedMediaType`), so `kubectl create secret
generic` cannot be answered with a 415. The body is the `k8s\\0` magic and a `runtime.Unknown`
(apimachinery pkg/runtime/generated.proto: typeMeta = 1, raw = 2) whose `raw` is the object in
the kind's own message (k8s.io/api core/v1 and authorization/v1 generated.proto).

Only the kinds kubectl creates through typed clients in the sandbox's catalogue are decoded
(Secret, ConfigMap, Namespace, ServiceAccount, SelfSubjectAccessReview) and only the fields a
client sets on create; status, managedFields and ownerReferences are not. Responses stay JSON
(kubectl accepts `application/vnd.kubernetes.protobuf,application/json`).
Not for: encoding protobuf, or any kind outside that list (the caller answers 415).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

MAGIC = b"k8s\x00"

# A schema maps a field number to (JSON name, type); the type is "string", "bytes" (base64 in
# JSON), "bool", "int", "map" (string -> string), "bytesmap" (string -> base64), "strings"
# (repeated string) or a nested schema (a dict) for a message.
Schema = dict[int, tuple[str, Any]]

OBJECT_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    6: ("resourceVersion", "string"),
    11: ("labels", "map"),
    12: ("annotations", "map"),
    14: ("finalizers", "strings"),
}
RESOURCE_ATTRIBUTES: Schema = {
    1: ("namespace", "string"),
    2: ("verb", "string"),
    3: ("group", "string"),
    4: ("version", "string"),
    5: ("resource", "string"),
    6: ("subresource", "string"),
    7: ("name", "string"),
}
KINDS: dict[str, Schema] = {
    "Secret": {
        1: ("metadata", OBJECT_META),
        2: ("data", "bytesmap"),
        3: ("type", "string"),
        4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
    "ConfigMap": {
        1: ("metadata", OBJECT_META),
        2: ("data", "map"),
        3: ("binaryData", "bytesmap"),
        4: ("immutable", "bool"),
    },
    "Namespace": {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("finalizers", "strings")})},
    "ServiceAccount": {1: ("metadata", OBJECT_META), 4: ("automountServiceAccountToken", "bool")},
    "SelfSubjectAccessReview": {
        1: ("metadata", OBJECT_META),
        2: (
            "spec",
            {
                1: ("resourceAttributes", RESOURCE_ATTRIBUTES),
                2: ("nonResourceAttributes", {1: ("path", "string"), 2: ("verb", "string")}),
            },
        ),
    },
}
UNKNOWN: Schema = {
    1: ("typeMeta", {1: ("apiVersion", "string"), 2: ("kind", "string")}),
    2: ("raw", "raw"),
}


class ProtobufError(ValueError):
    """The body is not a Kubernetes protobuf envelope of a kind this module decodes."""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value): an int for varints, the bytes for length-delimited fields."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, value
        elif wire == 2:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise ProtobufError("truncated field")
            yield number, data[at : at + size]
            at += size
        elif wire in (1, 5):  # fixed64 / fixed32: no field decoded here uses them
            at += 8 if wire == 1 else 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def _entry(data: bytes) -> tuple[str, bytes]:
    parts = {number: value for number, value in _fields(data) if isinstance(value, bytes)}
    return parts.get(1, b"").decode(), parts.get(2, b"")


def decode_message(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        if number in schema:
            _set(out, *schema[number], value)
    return out


def _set(out: dict[str, Any], name: str, kind: Any, value: int | bytes) -> None:
    if isinstance(value, int):
        out[name] = bool(value) if kind == "bool" else value
    elif isinstance(kind, dict):
        out[name] = decode_message(value, kind)
    elif kind == "string":
        if value:  # gogo-protobuf writes empty strings; JSON omits them (omitempty)
            out[name] = value.decode()
    elif kind == "raw":
        out[name] = value
    elif kind == "bytes":
        out[name] = base64.b64encode(value).decode()
    elif kind == "strings":
        out.setdefault(name, []).append(value.decode())
    elif kind in ("map", "bytesmap"):
        key, item = _entry(value)
        text = item.decode() if kind == "map" else base64.b64encode(item).decode()
        out.setdefault(name, {})[key] = text


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object (apiVersion and kind from the envelope)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic")
    envelope = decode_message(body[len(MAGIC) :], UNKNOWN)
    type_meta = envelope.get("typeMeta") or {}
    kind = str(type_meta.get("kind", ""))
    schema = KINDS.get(kind)
    if schema is None:
        raise ProtobufError(f"protobuf bodies of kind {kind!r} are not supported")
    obj = decode_message(envelope.get("raw", b""), schema)
    return {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind, **obj}
