"""helm-controller's DriftDetected Events: quiet while rare, one drift_loop finding (naming the
drifted resources) once the same Event has repeated `drift_repeats` times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from medic.schemas import ReleaseProblem
from medic.upstream import flux
from medic.watcher.sources.kube_events import judge, project
from medic.watcher.sources.kubernetes import Tracked

NOW = datetime(2026, 1, 1, tzinfo=UTC)
MESSAGE = (
    "Cluster state of release apps/podinfo.v3 has drifted from the desired state:\n"
    "Deployment/apps/podinfo changed (0 additions, 1 changes, 0 removals)\n"
    "ConfigMap/apps/podinfo-cfg removed"
)


def drift_event(count: int, kind: str = "HelmRelease", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "podinfo.drift", "namespace": "apps", "uid": "ev-1"},
        "involvedObject": {"kind": kind, "name": "podinfo", "namespace": "apps"},
        "reason": flux.DRIFT_DETECTED,
        "message": MESSAGE,
        "type": "Warning",
        "count": count,
        **extra,
    }


def findings(obj: dict[str, Any], repeats: int = 3) -> list[Any]:
    view = project(obj)
    assert view is not None
    return judge(Tracked(None, view, NOW), NOW, None, drift_repeats=repeats)


def test_a_repeating_drift_is_a_drift_loop_naming_the_resources() -> None:
    assert findings(drift_event(2)) == []
    [loop] = findings(drift_event(3))
    assert loop.problem is ReleaseProblem.DRIFT_LOOP
    resources = "Deployment/apps/podinfo, ConfigMap/apps/podinfo-cfg"
    assert loop.evidence.fields["resources"] == resources
    assert loop.evidence.fields["count"] == 3
    assert loop.fingerprint == findings(drift_event(7))[0].fingerprint  # one event per loop


def test_events_k8s_io_series_count_and_other_kinds() -> None:
    series = drift_event(0, series={"count": 4})
    series.pop("count")
    assert findings(series)[0].problem is ReleaseProblem.DRIFT_LOOP
    assert project(drift_event(5, kind="Deployment")) is None  # not helm-controller's drift


def test_drift_summary_lines_are_parsed() -> None:
    drifted = flux.drifted_resources(MESSAGE)
    assert [(str(r), r.changed) for r in drifted] == [
        ("Deployment/apps/podinfo", True),
        ("ConfigMap/apps/podinfo-cfg", False),
    ]
    assert flux.drifted_resources("Helm upgrade succeeded") == []
