"""The event contracts: committed JSON Schemas match the models; bad payloads name the field."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medic.schemas import (
    MalformedPayloadError,
    ReleaseEvent,
    SchemaError,
    SchemaFieldError,
    UnsupportedVersionError,
    decode_message,
    encode_message,
    stable_id,
)
from medic.schemas.export import HERE, schema_documents
from medic.testing.factories import etcd_event, release_event

EXTRA_SCHEMAS = {"remediation-rule.json"}  # owned by the remediator, checked by its tests


def test_committed_json_schemas_match_the_models() -> None:
    generated = schema_documents()
    committed = {p.name for p in Path(HERE).glob("*.json")} - EXTRA_SCHEMAS
    assert committed == set(generated), "run `python -m medic.schemas.export` and commit"
    for name, text in generated.items():
        assert (Path(HERE) / name).read_text() == text, f"{name} drifted: re-export"


def test_envelope_uses_cloudevents_attribute_names() -> None:
    payload = json.loads(encode_message(release_event()))
    for attribute in ("specversion", "id", "source", "type", "subject", "time"):
        assert attribute in payload
    assert payload["specversion"] == "1.0"
    assert payload["data"]["object"]["apiVersion"].startswith("helm.toolkit.fluxcd.io/")


def test_round_trip_preserves_every_message() -> None:
    for message in (release_event(), etcd_event()):
        assert decode_message(encode_message(message)) == message


def test_missing_field_is_named() -> None:
    payload = json.loads(encode_message(release_event()))
    del payload["data"]["object"]["name"]
    with pytest.raises(SchemaFieldError) as caught:
        decode_message(json.dumps(payload))
    assert caught.value.field == "data.object.name"


def test_unknown_major_version_is_rejected() -> None:
    payload = json.loads(encode_message(release_event()))
    payload["schemaversion"] = "7.0"
    with pytest.raises(UnsupportedVersionError) as caught:
        decode_message(json.dumps(payload))
    assert caught.value.field == "schemaversion"


def test_newer_minor_version_is_accepted() -> None:
    payload = json.loads(encode_message(release_event()))
    payload["schemaversion"] = "1.9"
    assert isinstance(decode_message(json.dumps(payload)), ReleaseEvent)


def test_unknown_type_is_named() -> None:
    with pytest.raises(SchemaFieldError) as caught:
        decode_message(b'{"type": "medic.bogus", "id": "x"}')
    assert caught.value.field == "type"


def test_custom_events_are_accepted() -> None:
    message = decode_message(
        json.dumps(
            {
                "id": "1",
                "source": "team-a",
                "type": "custom.cert_expiring",
                "cluster": "prod",
                "data": {"days": 3},
            }
        )
    )
    assert message.type == "custom.cert_expiring"


def test_stable_id_is_deterministic_and_distinguishes_parts() -> None:
    assert stable_id("uid", "failed", "msg") == stable_id("uid", "failed", "msg")
    assert stable_id("uid", "failed", "msg") != stable_id("uid", "failed", "msg2")
    assert stable_id("a", "bc") != stable_id("ab", "c")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_crash_the_decoder(payload: bytes) -> None:
    with contextlib.suppress(SchemaError):
        decode_message(payload)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "type", "source", "cluster", "data", "schemaversion", "time"]),
        st.one_of(
            st.none(),
            st.text(max_size=20),
            st.integers(),
            st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
        ),
    )
)
def test_random_envelopes_are_rejected_with_a_schema_error(raw: dict[str, object]) -> None:
    with contextlib.suppress(SchemaFieldError, UnsupportedVersionError, MalformedPayloadError):
        decode_message(json.dumps(raw))
