"""Builders of valid messages for tests and benchmarks: one line per event, defaults filled in."""

from __future__ import annotations

from typing import Any

from medic.schemas import (
    CustomEvent,
    EtcdCondition,
    EtcdEvent,
    EtcdEventData,
    Evidence,
    MessageClass,
    ObjectRef,
    ReleaseEvent,
    ReleaseEventData,
    ReleaseProblem,
    stable_id,
)
from medic.upstream import flux


def helmrelease_ref(name: str = "podinfo", namespace: str = "apps", uid: str = "") -> ObjectRef:
    return ObjectRef(
        kind=flux.KIND,
        api_version=flux.api_version("v2"),
        namespace=namespace,
        name=name,
        uid=uid or stable_id("uid", namespace, name),
        resource_version="1",
    )


def release_event(
    name: str = "podinfo",
    namespace: str = "apps",
    *,
    cluster: str = "test",
    problem: ReleaseProblem = ReleaseProblem.FAILED,
    message: str = "install failed: etcdserver: leader changed",
    classification: MessageClass = MessageClass.TRANSIENT_ETCD,
    **evidence: Any,
) -> ReleaseEvent:
    ref = helmrelease_ref(name, namespace)
    return ReleaseEvent(
        id=stable_id(ref.uid, problem, message),
        source=f"medic/watcher/{cluster}",
        cluster=cluster,
        subject=f"{ref.kind}/{namespace}/{name}",
        data=ReleaseEventData(
            object=ref,
            problem=problem,
            classification=classification,
            watcher_source="helmrelease",
            evidence=Evidence(message=message, **evidence),
        ),
    )


def etcd_event(
    condition: EtcdCondition = EtcdCondition.LEADER_CHANGED,
    *,
    cluster: str = "test",
    endpoint: str = "http://127.0.0.1:2379",
    seq: int = 0,
) -> EtcdEvent:
    return EtcdEvent(
        id=stable_id("etcd", cluster, condition, endpoint, seq),
        source=f"medic/watcher/{cluster}",
        cluster=cluster,
        data=EtcdEventData(condition=condition, endpoint=endpoint),
    )


def custom_event(
    name: str,
    namespace: str = "default",
    *,
    type_name: str = "custom.test",
    kind: str = "ConfigMap",
    api_version: str = "v1",
    cluster: str = "test",
    **data: Any,
) -> CustomEvent:
    """A user's own event about any object (a ConfigMap by default): cheap remediation targets."""
    ref = ObjectRef(
        kind=kind,
        api_version=api_version,
        namespace=namespace,
        name=name,
        uid=stable_id("uid", kind, namespace, name),
        resource_version="1",
    )
    return CustomEvent(
        id=stable_id(type_name, cluster, kind, namespace, name),
        source=f"medic/test/{cluster}",
        cluster=cluster,
        type=type_name,
        subject=f"{kind}/{namespace}/{name}",
        object=ref,
        data=data,
    )
