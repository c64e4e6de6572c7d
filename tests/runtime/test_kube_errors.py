"""The Kubernetes client's pure parts: paths, error mapping, what is safe to retry."""

from __future__ import annotations

import pytest

from medic.runtime.kube import (
    SECRETS,
    ConflictError,
    GoneError,
    NotFoundError,
    ResourceType,
    ServerError,
    TooManyRequestsError,
    UnreachableError,
    error_from,
    retryable,
)

HELMRELEASES = ResourceType("helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease")


def test_paths_for_core_and_custom_resources() -> None:
    assert SECRETS.path("apps", "s1") == "/api/v1/namespaces/apps/secrets/s1"
    assert SECRETS.path() == "/api/v1/secrets"
    assert (
        HELMRELEASES.path("apps", "podinfo", "status")
        == "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases/podinfo/status"
    )
    assert HELMRELEASES.at("v2beta1").api_version == "helm.toolkit.fluxcd.io/v2beta1"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(404, NotFoundError), (409, ConflictError), (410, GoneError), (503, ServerError)],
)
def test_status_codes_map_to_errors(status: int, kind: type[Exception]) -> None:
    error = error_from(status, {"kind": "Status", "reason": "X", "message": "m", "code": status})
    assert isinstance(error, kind)
    assert error.message == "m"


def test_429_carries_retry_after() -> None:
    error = error_from(429, {"message": "slow down"}, retry_after="3")
    assert isinstance(error, TooManyRequestsError)
    assert error.retry_after == 3.0


def test_writes_retry_only_what_did_not_happen() -> None:
    leader = error_from(500, {"message": "etcdserver: leader changed"})
    other = error_from(500, {"message": "admission webhook failed"})
    throttled = error_from(429, {"message": "x"})
    lost = UnreachableError(0, "Unreachable", "reset")
    assert retryable(leader, write=True)
    assert retryable(throttled, write=True)
    assert not retryable(other, write=True)
    assert not retryable(lost, write=True)
    assert retryable(other, write=False)
    assert retryable(lost, write=False)
    assert not retryable(error_from(409, {"message": "conflict"}), write=False)
