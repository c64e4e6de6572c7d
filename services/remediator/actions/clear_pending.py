"""`clear-pending`: repair Helm release storage stuck in pending-install/-upgrade/-rollback.

Safe by construction (scenarios.md S3): acts only on the newest revision, only when its lock
(the `modifiedAt` label, else last_deployed) is older than `minLockAge`; asks the API server
(SubjectAccessReview) whether the deploying identity may get/list/create/update Secrets in the
namespace, and when it may not, refuses and escalates with that diagnosis instead of clearing a
lock the next upgrade will leave behind again; backs the Secret up (restorable with
`medic backup restore ID`) before it writes; then marks the revision failed in the record
(`info.status`) and the `status` label together, with the judged resourceVersion.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medic.remediator.actions.base import ActionContext, Plan, fixed
from medic.remediator.rules.model import Duration
from medic.runtime.kube import SECRETS, NotFoundError
from medic.schemas import Change, Event, ObjectRef
from medic.upstream import helm

VERBS = ("get", "list", "create", "update")


class ClearPendingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    min_lock_age: Duration = Field(default=300.0, alias="minLockAge")
    identity: str = Field(
        default="system:serviceaccount:{namespace}:default",
        description="Who deploys the release; {namespace} is filled in.",
    )
    check_rbac: bool = Field(default=True, alias="checkRbac")


def lock_age(secret: dict[str, Any], record: dict[str, Any], now: datetime) -> float | None:
    modified = ((secret.get("metadata") or {}).get("labels") or {}).get(helm.LABEL_MODIFIED_AT)
    if modified and str(modified).isdigit():
        return (now - datetime.fromtimestamp(int(modified), UTC)).total_seconds()
    deployed = (record.get("info") or {}).get("last_deployed")
    try:
        return (now - datetime.fromisoformat(str(deployed))).total_seconds()
    except ValueError:
        return None


class ClearPendingAction:
    name = "clear-pending"
    params_model: type[BaseModel] = ClearPendingParams
    rbac = (
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "update", "watch"]},
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["subjectaccessreviews"],
            "verbs": ["create"],
        },
    )
    example: dict[str, Any] = {"action": {"name": "clear-pending", "params": {"minLockAge": "10m"}}}

    async def plan(  # noqa: PLR0911 - each early return is one documented refusal
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan:
        assert isinstance(params, ClearPendingParams)
        try:
            secret = await ctx.kube.get(SECRETS, target.name, target.namespace)
            record = helm.decode_secret_data(str(secret["data"][helm.DATA_KEY]))
        except NotFoundError:
            return fixed("release-secret-deleted")
        except (KeyError, helm.ReleaseDecodeError) as exc:
            return Plan(verdict="refuse", reason=f"release record unreadable: {exc}")
        summary = helm.summarize(record)
        if not summary.status.is_pending:
            return fixed(f"release-now-{summary.status.value}")
        newer = await self._newer_revision(ctx, summary)
        if newer:
            return fixed(f"superseded-by-revision-{newer}")
        age = lock_age(secret, record, ctx.clock())
        if age is None or age < params.min_lock_age:
            return Plan(
                verdict="skip", reason="lock-younger-than-threshold", diagnosis={"lockAge": age}
            )
        diagnosis = await self._diagnose(ctx, params, summary.namespace)
        if diagnosis and not all(diagnosis["allowed"].values()):
            return Plan(
                verdict="refuse",
                reason="deploying identity lacks Secret access",
                diagnosis=diagnosis,
            )
        failed = helm.with_status(
            record,
            helm.ReleaseStatus.FAILED,
            f"Marked failed by Medic: stuck in {summary.status.value}",
        )
        replacement = {
            **secret,
            "metadata": {
                **secret["metadata"],
                "labels": {**(secret["metadata"].get("labels") or {}), helm.LABEL_STATUS: "failed"},
            },
            "data": {**secret["data"], helm.DATA_KEY: helm.encode_secret_data(failed)},
        }
        return Plan(
            verdict="act",
            rt=SECRETS,
            name=target.name,
            namespace=target.namespace,
            replace=replacement,
            resource_version=secret["metadata"]["resourceVersion"],
            changes=[
                Change(path="/info/status", before=summary.status.value, after="failed"),
                Change(path="/metadata/labels/status", before=summary.status.value, after="failed"),
            ],
            diagnosis=diagnosis,
            backup=secret,
        )

    async def _newer_revision(self, ctx: ActionContext, summary: helm.ReleaseSummary) -> int | None:
        items, _ = await ctx.kube.list(
            SECRETS,
            summary.namespace,
            label_selector=f"{helm.LABEL_NAME}={summary.name},owner=helm",
        )
        revisions = [
            int(((i.get("metadata") or {}).get("labels") or {}).get(helm.LABEL_VERSION, 0))
            for i in items
        ]
        newest = max(revisions, default=0)
        return newest if newest > summary.revision else None

    async def _diagnose(
        self, ctx: ActionContext, params: ClearPendingParams, namespace: str
    ) -> dict[str, Any]:
        if not params.check_rbac:
            return {}
        identity = params.identity.format(namespace=namespace)
        allowed = {
            verb: await ctx.kube.create_subject_access_review(identity, namespace, verb, "secrets")
            for verb in VERBS
        }
        return {
            "identity": identity,
            "namespace": namespace,
            "resource": "secrets",
            "allowed": allowed,
        }

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        secret = await ctx.kube.get(SECRETS, plan.name, plan.namespace)
        record = helm.decode_secret_data(str(secret["data"][helm.DATA_KEY]))
        return not helm.summarize(record).status.is_pending


ACTION = ClearPendingAction()
