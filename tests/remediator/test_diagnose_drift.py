"""What `diagnose-drift` calls drift: desired leaves whose live value differs."""

from __future__ import annotations

from medic.remediator.actions.diagnose_drift import differing_paths, other_writers


def test_only_desired_fields_that_differ_are_drift() -> None:
    desired = {"spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "a:1"}]}}}}
    live = {
        "metadata": {"uid": "x", "resourceVersion": "7"},  # set by the API server: not drift
        "spec": {
            "replicas": 5,
            "progressDeadlineSeconds": 600,  # defaulted: not drift
            "template": {"spec": {"containers": [{"image": "a:1", "imagePullPolicy": "Always"}]}},
        },
    }
    assert differing_paths(desired, live) == ["/spec/replicas"]


def test_paths_are_rfc6901_and_lists_compare_by_length_and_item() -> None:
    desired = {"metadata": {"annotations": {"a/b~c": "1"}}, "spec": {"ports": [80, 443]}}
    live = {"metadata": {"annotations": {"a/b~c": "2"}}, "spec": {"ports": [80]}}
    assert differing_paths(desired, live) == ["/metadata/annotations/a~1b~0c", "/spec/ports"]


def test_other_writers_leave_out_helm_itself() -> None:
    live = {
        "metadata": {
            "managedFields": [
                {"manager": "helm-controller", "operation": "Apply"},
                {"manager": "kube-controller-manager", "operation": "Update"},
            ]
        }
    }
    assert other_writers(live) == ["kube-controller-manager"]
