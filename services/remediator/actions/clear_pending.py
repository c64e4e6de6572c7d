"""`clear-pending`: repair Helm release storage stuck in pending-install/-upgrade/-rollback.

Safe by construction (scenarios.md S3): acts only on the newest revision, only when its lock
(the `modifiedAt` label, else last_deployed) is older than `minLockAge`; asks the API server
(SubjectAccessReview) who may get/list/create/update Secrets in the namespace, as Helm's storage
needs, and when the deployer may not, refuses and escalates with that diagnosis instead of
clearing a lock the next upgrade will leave behind again, and checks again every `recheck` until
someone fixes the RBAC. The deployer is the rule's `identity`; unset (Helm records no author),
every identity bound in the namespace is checked (`medic.remediator.rbac`) and the diagnosis names
those that may write its Secrets; none may: refuse. Then it backs the Secret up (restorable with
`medic backup restore ID`) before it writes; then unlocks the revision the way helm-controller
does (internal/reconcile/unlock.go): status `failed`, description `Release unlocked from stale
'<status>' state` (plus why, from Medic), written as Helm's Secrets driver writes an update
(labels from the record, `modifiedAt`), with the judged resourceVersion.

A release a HelmRelease owns is left to helm-controller, which unlocks pending releases itself at
the start of a reconcile since Flux 2.2 (upstream-facts.md): Medic only requests that reconcile
(`reconcile.fluxcd.io/requestedAt`) and never edits Helm storage behind it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medic.remediator import rbac
from medic.remediator.actions.base import ActionContext, Plan, annotation_changes, fixed, token
from medic.remediator.rules.model import Duration
from medic.runtime.kube import SECRETS, KubeError, NotFoundError, ResourceType
from medic.schemas import Change, Event, ObjectRef
from medic.upstream import flux, helm

HELMRELEASES = ResourceType(flux.GROUP, flux.STORAGE_VERSION, flux.PLURAL, flux.KIND)

VERBS = ("get", "list", "create", "update")


class ClearPendingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    min_lock_age: Duration = Field(
        default=300.0,
        alias="minLockAge",
        description="Acts only when the pending revision's lock is older than this.",
    )
    identity: str | None = Field(
        default=None,
        description="The user who deploys the release, checked for Secret access, e.g. "
        "`system:serviceaccount:{namespace}:ci-deployer` ({namespace} is filled in). Unset: "
        "every identity bound in the namespace (RoleBindings, ClusterRoleBindings) is checked "
        "and those that may write its Secrets are named; if none may, the action refuses.",
    )
    check_rbac: bool = Field(
        default=True, alias="checkRbac", description="false: clear without asking about RBAC."
    )
    recheck: Duration = Field(
        default=30.0,
        description="While the deployer lacks Secret access: how often to check again (and "
        "unlock once someone fixed the RBAC).",
    )


def refusal(diagnosis: dict[str, Any]) -> str:
    """Why the lock is left alone, naming who was asked about."""
    namespace = diagnosis["namespace"]
    if diagnosis.get("identity"):
        denied = [verb for verb, ok in diagnosis["allowed"].items() if not ok]
        return f"{diagnosis['identity']} may not {'/'.join(denied)} Secrets in {namespace}"
    if "error" in diagnosis:
        return f"cannot tell who may write Secrets in {namespace}: {diagnosis['error']}"
    checked = ", ".join(diagnosis["checked"]) or "none"
    return f"no identity bound in {namespace} may write its Secrets (checked: {checked})"


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
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "update"]},
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["subjectaccessreviews"],
            "verbs": ["create"],
        },
        # Who owns the release: a HelmRelease gets a reconcile request instead of an edit.
        {"apiGroups": [flux.GROUP], "resources": [flux.PLURAL], "verbs": ["list", "patch"]},
        # Who could have deployed, when the rule does not say (`identity` unset).
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["rolebindings", "clusterrolebindings"],
            "verbs": ["list"],
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
        owner = await owning_helmrelease(ctx, summary)
        if owner is not None:
            return request_reconcile(owner, summary, target)
        diagnosis = await self._diagnose(ctx, params, summary.namespace)
        if diagnosis and not all(diagnosis["allowed"].values()):
            return Plan(
                verdict="refuse",
                reason=refusal(diagnosis),
                diagnosis=diagnosis,
                recheck_after=params.recheck,
            )
        why = f" by Medic: no operation in progress for {round(age)}s"
        failed = helm.with_status(
            record, helm.ReleaseStatus.FAILED, helm.unlock_description(summary.status) + why
        )
        labels = helm.updated_labels(
            secret["metadata"].get("labels") or {}, failed, int(ctx.clock().timestamp())
        )
        replacement = {
            **secret,
            "metadata": {**secret["metadata"], "labels": labels},
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
        """`allowed`: verb -> whether the deployer may; unset, whether any bound identity may
        do all four (then `writers` names them and `checked` shows what each may)."""
        if not params.check_rbac:
            return {}
        found: dict[str, Any] = {"namespace": namespace, "resource": "secrets"}
        if params.identity is not None:
            identity = params.identity.format(namespace=namespace)
            allowed = await rbac.may(ctx.kube, identity, namespace, "secrets", VERBS)
            return {**found, "identity": identity, "allowed": allowed}
        try:
            access = await rbac.who_may(ctx.kube, namespace, "secrets", VERBS)
        except KubeError as exc:  # e.g. 403 on RoleBindings: say so, never guess a deployer
            unknown = dict.fromkeys(VERBS, False)
            return {**found, "identity": None, "error": exc.message, "allowed": unknown}
        writers = access.able
        return {
            **found,
            "identity": None,
            "writers": writers,
            "checked": access.allowed,
            "unchecked": access.unchecked,
            "allowed": {verb: bool(writers) for verb in VERBS},
        }

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        """The release's Secret is no longer pending (unlocked by Medic or by helm-controller)."""
        name, namespace = plan.extra.get("secret", (plan.name, plan.namespace))
        secret = await ctx.kube.get(SECRETS, name, namespace)
        record = helm.decode_secret_data(str(secret["data"][helm.DATA_KEY]))
        return not helm.summarize(record).status.is_pending


async def owning_helmrelease(
    ctx: ActionContext, summary: helm.ReleaseSummary
) -> dict[str, Any] | None:
    """The HelmRelease whose release this is (helm-controller's naming), if Flux is installed."""
    try:
        items, _ = await ctx.kube.list(HELMRELEASES)
    except NotFoundError:  # no Flux CRD on this cluster
        return None
    wanted = (summary.name, summary.namespace)
    return next((item for item in items if flux.release_name(item) == wanted), None)


def request_reconcile(
    owner: dict[str, Any], summary: helm.ReleaseSummary, secret: ObjectRef
) -> Plan:
    """`flux reconcile hr NAME`: helm-controller unlocks the pending release itself."""
    metadata = owner["metadata"]
    value = token()
    wanted: dict[str, str | None] = {flux.REQUESTED_AT: value}
    return Plan(
        verdict="act",
        reason="owned by a HelmRelease: helm-controller unlocks it on reconcile",
        rt=HELMRELEASES,
        name=metadata["name"],
        namespace=metadata["namespace"],
        patch={"metadata": {"annotations": wanted}},
        resource_version=metadata["resourceVersion"],
        changes=annotation_changes(owner, wanted),
        diagnosis={
            "owner": f"HelmRelease {metadata['namespace']}/{metadata['name']}",
            "release": f"{summary.namespace}/{summary.name} v{summary.revision}",
            "status": summary.status.value,
        },
        token=value,
        extra={"secret": (secret.name, secret.namespace)},
    )


ACTION = ClearPendingAction()
