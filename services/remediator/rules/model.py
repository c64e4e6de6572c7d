"""The rule file format (`apiVersion: medic.dev/v1alpha1`, `kind: RemediationRule`).

One YAML document per rule; a file may hold many. Durations are strings like `90s`, `5m`, `1h`
or numbers of seconds. The JSON Schema (schemas/remediation-rule.json) is generated from
`rule_schema_model(...)`, this model with each action's own params model, so editors validate
rule files down to an action's params.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from medic.remediator.rules import cel
from medic.schemas import EtcdCondition, MessageClass, ReleaseProblem
from medic.schemas.events import CUSTOM_TYPE_PATTERN

API_VERSION = "medic.dev/v1alpha1"
KIND = "RemediationRule"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 5m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": _DURATION.pattern}]
}
Duration = Annotated[
    float, BeforeValidator(parse_duration), Field(ge=0), WithJsonSchema(DURATION_SCHEMA)
]
# Compiled while the rule is validated, so a syntax error is reported with file:line field.
CelSource = Annotated[str, AfterValidator(cel.check)]


# The event types the remediator handles and what each carries as its problem (the index key
# `match.problems` is compared with, engine.view_of); a user's own events are `custom.<name>`.
PROBLEMS: dict[str, tuple[str, ...]] = {
    "medic.release": tuple(p.value for p in ReleaseProblem),
    "medic.etcd": tuple(c.value for c in EtcdCondition),
}
CLASSIFIED = "medic.release"  # the only events with a classification (of their message)
CLASSIFICATIONS = tuple(c.value for c in MessageClass)
_CUSTOM_TYPE = re.compile(CUSTOM_TYPE_PATTERN)


def unknown(what: str, value: str, known: Sequence[str], where: str = "") -> ValueError:
    """`unknown problem 'stuck' for medic.release events; known: failed, stalled, ...`"""
    close = get_close_matches(value, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"unknown {what} {value!r}{where}{hint}; known: {', '.join(known)}")


def _event_type(value: str) -> str:
    if value in PROBLEMS or _CUSTOM_TYPE.match(value):
        return value
    error = unknown("event type", value, list(PROBLEMS))
    raise ValueError(f"{error}; or custom.<name> for your own events")


EventType = Annotated[
    str,
    AfterValidator(_event_type),
    WithJsonSchema(
        {"type": "string", "anyOf": [{"enum": list(PROBLEMS)}, {"pattern": CUSTOM_TYPE_PATTERN}]}
    ),
]
ProblemName = Annotated[
    str,
    WithJsonSchema({"type": "string", "enum": sorted({p for ps in PROBLEMS.values() for p in ps})}),
]
Classification = Annotated[str, WithJsonSchema({"type": "string", "enum": list(CLASSIFICATIONS)})]


def _types_of(info: ValidationInfo) -> list[str]:
    """The rule's event types; empty (any) also when they were invalid (reported already)."""
    types: list[str] = info.data.get("types") or []
    return types


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


State = Literal["firing", "resolved"]


class Match(Strict):
    """All given conditions must hold; lists are any-of; strings in name lists are globs."""

    types: list[EventType] = Field(default_factory=lambda: ["medic.release"])
    subjects: list[str] = Field(default_factory=list, description="NATS subject globs (* and >).")
    problems: list[ProblemName] = Field(default_factory=list)
    states: list[State] = Field(default_factory=lambda: list[State](["firing"]))
    clusters: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)
    classifications: list[Classification] = Field(default_factory=list)
    message: str | None = Field(default=None, description="Regular expression (search).")
    evidence: dict[str, str | int | float | bool] = Field(default_factory=dict)
    etcd_conditions: list[str] = Field(default_factory=list, alias="etcdConditions")

    @field_validator("message")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            # None of these is a ValueError: pydantic would let them escape as a traceback.
            try:
                re.compile(value)
            except (re.error, OverflowError) as exc:  # OverflowError: a{4294967296}
                raise ValueError(f"invalid regular expression: {exc}") from exc
            except RecursionError as exc:
                raise ValueError("invalid regular expression: groups nested too deeply") from exc
        return value

    @field_validator("problems")
    @classmethod
    def _known_problems(cls, value: list[str], info: ValidationInfo) -> list[str]:
        types = _types_of(info)
        given = [t for t in types if t in PROBLEMS] if types else list(PROBLEMS)
        known = list(dict.fromkeys(p for t in given for p in PROBLEMS[t]))
        events = ", ".join(types) if types else "any"
        for problem in value:
            if not known:
                raise ValueError(
                    f"problem {problem!r}: {events} events carry no problem "
                    "(match them by subjects, kinds, names or when)"
                )
            if problem not in known:
                raise unknown("problem", problem, known, f" for {events} events")
        return value

    @field_validator("classifications")
    @classmethod
    def _known_classifications(cls, value: list[str], info: ValidationInfo) -> list[str]:
        types = _types_of(info)
        for classification in value:
            if types and CLASSIFIED not in types:
                raise ValueError(
                    f"classification {classification!r}: only {CLASSIFIED} events have one, "
                    f"not {', '.join(types)}"
                )
            if classification not in CLASSIFICATIONS:
                raise unknown("classification", classification, CLASSIFICATIONS)
        return value


class Preconditions(Strict):
    etcd_stable_for: Duration | None = Field(default=None, alias="etcdStableFor")


class CircuitBreaker(Strict):
    failures: int = Field(default=5, ge=1)
    window: Duration = 600.0
    pause: Duration = 1800.0


class Limits(Strict):
    max_attempts: int = Field(default=3, ge=1, alias="maxAttempts")
    backoff: Duration = 30.0
    cooldown: Duration = 600.0
    rate_per_minute: int = Field(default=60, ge=1, alias="ratePerMinute")
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker, alias="circuitBreaker")


class ActionSpec(Strict):
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class Verify(Strict):
    """What "fixed" looks like, polled every `interval` until `timeout` after the write."""

    timeout: Duration = 300.0
    interval: Duration = 1.0
    condition: CelSource | None = Field(
        default=None,
        description=(
            "CEL expression over `object` (the object the action wrote, re-read; null once "
            "deleted) and `token` (the action's reconcile token, if any); must be true to "
            'succeed. Example: object.status.conditions.exists(c, c.type == "Ready" && '
            'c.status == "True")'
        ),
    )
    action_check: bool = Field(
        default=True,
        alias="actionCheck",
        description="Also require the action's own check; false: `condition` alone decides.",
    )

    @model_validator(mode="after")
    def _something_decides(self) -> Verify:
        if not self.action_check and self.condition is None:
            raise ValueError("actionCheck: false needs a condition (nothing would decide)")
        return self


class RuleSpec(Strict):
    match: Match = Field(default_factory=Match)
    when: CelSource | None = Field(default=None, description="CEL expression over `event`.")
    for_: Duration = Field(default=0.0, alias="for")
    preconditions: Preconditions = Field(default_factory=Preconditions)
    action: ActionSpec
    limits: Limits = Field(default_factory=Limits)
    dry_run: bool = Field(default=False, alias="dryRun")
    verify: Verify = Field(default_factory=Verify)
    notify: list[str] = Field(default_factory=list)
    severity: Literal["info", "warning", "critical"] = "warning"
    priority: int = 100


class Metadata(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,126}$")
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


class Rule(Strict):
    api_version: Literal["medic.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["RemediationRule"]
    metadata: Metadata
    spec: RuleSpec
    enabled: bool = True

    @property
    def name(self) -> str:
        return self.metadata.name


# Action name -> its parameters model (medic.remediator.actions' registry; rules know no action).
ActionParams = Mapping[str, type[BaseModel]]


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_.]", name))


def rule_schema_model(
    actions: ActionParams, descriptions: Mapping[str, str] | None = None
) -> type[BaseModel]:
    """`Rule` with `spec.action` one of the actions, each with its own params model: the model
    the JSON Schema is generated from (`oneOf` on the action name). Validation uses `Rule`."""
    variants = []
    for name, params in sorted(actions.items()):
        required = any(info.is_required() for info in params.model_fields.values())
        tag: Any = Literal.__getitem__(name)  # built at run time: one Literal per action
        variants.append(
            create_model(
                f"{_camel(name)}Action",
                __base__=ActionSpec,
                __doc__=(descriptions or {}).get(name),
                name=(tag, ...),
                params=(params, ...) if required else (params, Field(default_factory=params)),
            )
        )
    if not variants:
        return Rule
    one_of: Any = Union.__getitem__(tuple(variants))
    spec = create_model("RuleSpec", __base__=RuleSpec, action=(one_of, Field(discriminator="name")))
    return create_model("Rule", __base__=Rule, spec=(spec, ...))
