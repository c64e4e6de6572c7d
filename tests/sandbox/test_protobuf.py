"""The protobuf envelope kubectl's typed clients send, decoded without kubectl."""

from __future__ import annotations

import pytest

from medic.sandbox.protobuf import MAGIC, ProtobufError, decode


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2); lengths here stay under 128 (one-byte varint)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _entry(key: str, value: bytes) -> bytes:
    return _field(1, key.encode()) + _field(2, value)


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return MAGIC + _field(1, type_meta) + _field(2, raw)


def test_a_secret_envelope_decodes_to_its_json_form() -> None:
    metadata = _field(1, b"creds") + _field(3, b"apps") + _field(11, _entry("team", b"a"))
    metadata += _field(2, b"")  # gogo-protobuf writes empty strings; JSON omits them
    raw = _field(1, metadata) + _field(2, _entry("user", b"admin")) + _field(3, b"Opaque")
    raw += bytes([5 << 3, 1])  # immutable: true (varint)
    assert decode(_envelope("v1", "Secret", raw)) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "apps", "labels": {"team": "a"}},
        "data": {"user": "YWRtaW4="},
        "type": "Opaque",
        "immutable": True,
    }


def test_other_kinds_and_bodies_without_the_magic_are_refused() -> None:
    with pytest.raises(ProtobufError, match="Pod"):
        decode(_envelope("v1", "Pod", b""))
    with pytest.raises(ProtobufError, match="magic"):
        decode(b'{"kind": "Secret"}')
    with pytest.raises(ProtobufError, match="truncated"):
        decode(MAGIC + bytes([1 << 3 | 2, 40]) + b"short")
