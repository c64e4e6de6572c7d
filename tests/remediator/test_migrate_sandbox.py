"""S2 migration against the sandbox and a real nats-server, as `flux migrate` does it: the
HelmRelease CRD's status.storedVersions still lists v2beta1, every object is re-stored at the
storage version with an empty merge patch, then storedVersions is trimmed; verified. Nothing is
annotated (there is no `fluxcd.io/upgradeTo` in Flux)."""

from __future__ import annotations

from medic.remediator.service import create
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.kube import KubeClient
from medic.sandbox import KubeSandbox
from medic.schemas import Outcome, ReleaseProblem
from medic.testing import objects
from medic.testing.remediation import handle, results, source_running
from medic.upstream import flux

OLD = "helm.toolkit.fluxcd.io/v2beta1"


async def test_crd_left_at_an_old_version_is_migrated_as_flux_migrate_does_and_verified(
    bus: Bus, kube: tuple[KubeSandbox, KubeClient]
) -> None:
    sandbox, client = kube
    # Stored at v2beta1 by an older Flux, whose upgrade then made v2 the storage version.
    sandbox.store.set_storage_version(flux.GROUP, "HelmRelease", "v2beta1")
    for name in ("legacy", "other"):
        sandbox.store.put({**objects.helmrelease(name), "apiVersion": OLD})
    sandbox.store.set_storage_version(flux.GROUP, "HelmRelease", "v2")
    assert sandbox.store.stored_version(OLD, "HelmRelease", "legacy", "apps") == "v2beta1"
    async with source_running(client, "flux_crds") as watched:
        event = await watched.first(lambda e: e.data.problem is ReleaseProblem.OLD_API_VERSION)
    service = await create(bus, client, RemediatorSettings(actor="test"), "test")
    await handle(service, event)
    for name in ("legacy", "other"):
        assert sandbox.store.stored_version(OLD, "HelmRelease", name, "apps") == "v2"
        stored = sandbox.store.get(OLD, "HelmRelease", name, "apps") or {}
        assert "annotations" not in stored["metadata"]
    (crd,) = [c for c in sandbox.store.crds() if c["metadata"]["name"] == flux.CRD_NAME]
    assert crd["status"]["storedVersions"] == ["v2"]
    found = await results(bus)
    assert [(r.data.rule, r.data.outcome) for r in found] == [
        ("flux-migrate-old-api-version", Outcome.SUCCEEDED)
    ]
    patched = [r for r in sandbox.store.requests if r.verb == "patch"]
    assert [r.body for r in patched if r.resource == "helmreleases"] == [{}, {}]
