"""helm-controller's drift messages and release naming, as Medic reads them."""

from __future__ import annotations

from medic.upstream import flux

MESSAGE = """Cluster state of release apps/podinfo.v3 has drifted from the desired state:
Secret/apps/naughty removed
ClusterIssuer/letsencrypt excluded
Deployment/apps/podinfo changed (1 additions, 3 changes, 2 removals)"""


def test_drifted_objects_are_read_from_the_summary_lines() -> None:
    found = flux.drifted_objects(MESSAGE)
    assert [str(d) for d in found] == [
        "Secret/apps/naughty removed",
        "ClusterIssuer/letsencrypt excluded",
        "Deployment/apps/podinfo changed",
    ]
    assert found[1].namespace is None
    assert flux.drifted_objects("Helm upgrade succeeded") == []


def test_release_name_and_storage_namespace_follow_helm_controller() -> None:
    plain = {"metadata": {"name": "podinfo", "namespace": "apps"}, "spec": {}}
    assert flux.release_name(plain) == ("podinfo", "apps")
    targeted = {
        "metadata": {"name": "podinfo", "namespace": "flux"},
        "spec": {"targetNamespace": "web"},
    }
    assert flux.release_name(targeted) == ("web-podinfo", "flux")
    named = {
        "metadata": {"name": "podinfo", "namespace": "flux"},
        "spec": {"releaseName": "pi", "storageNamespace": "helm"},
    }
    assert flux.release_name(named) == ("pi", "helm")
