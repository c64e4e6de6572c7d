"""Helm's release record format, byte for byte as pkg/storage/driver/util.go writes it."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medic.testing.helm import corrupt_release_secret, release_secret
from medic.upstream import helm


def test_secret_layout_is_base64_twice_around_gzip_json() -> None:
    secret = release_secret("podinfo", "apps", revision=3, status="pending-install")
    inner = base64.b64decode(secret["data"]["release"])
    blob = base64.b64decode(inner)
    assert blob[:3] == helm.GZIP_MAGIC
    record = json.loads(gzip.decompress(blob))
    assert record["info"]["status"] == "pending-install"
    assert secret["metadata"]["name"] == "sh.helm.release.v1.podinfo.v3"
    assert secret["metadata"]["labels"]["owner"] == "helm"
    assert secret["type"] == "helm.sh/release.v1"


def test_old_records_without_gzip_are_read() -> None:
    plain = base64.b64encode(json.dumps({"name": "x", "info": {"status": "deployed"}}).encode())
    assert helm.decode_release(plain)["info"]["status"] == "deployed"


def test_corrupt_record_raises_a_decode_error_naming_the_stage() -> None:
    with pytest.raises(helm.ReleaseDecodeError) as caught:
        helm.decode_secret_data(corrupt_release_secret("broken")["data"]["release"])
    assert caught.value.stage == "gzip"


def test_summary_keeps_no_values_or_manifest() -> None:
    record = helm.decode_secret_data(release_secret("podinfo")["data"]["release"])
    summary = helm.summarize(record)
    assert summary.chart == "podinfo"
    assert "s3cr3t-in-values" not in repr(summary)


@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_other_errors(data: bytes) -> None:
    with contextlib.suppress(helm.ReleaseDecodeError):
        helm.decode_secret_data(base64.b64encode(data).decode())


def test_with_status_round_trips() -> None:
    record = helm.decode_secret_data(
        release_secret("p", status="pending-install")["data"]["release"]
    )
    failed = helm.with_status(record, helm.ReleaseStatus.FAILED, "cleared by medic")
    again = helm.decode_secret_data(helm.encode_secret_data(failed))
    assert again["info"]["status"] == "failed"
    assert again["manifest"] == record["manifest"]
