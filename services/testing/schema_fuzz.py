"""Bad input generated from the committed JSON Schemas (schemas/*.json), for the fault suite.

`mutants(name)` is a hypothesis strategy: an instance of the schema (hypothesis-jsonschema),
made a message the decoder accepts, then maybe broken in one place: a field of the wrong type,
a field removed, or an unknown major `schemaversion`. Each `Mutant` says what was done and
whether the JSON Schema itself rejects the result (`must_reject`): such a message must be
dead-lettered naming the field (`names_field`); one the schema still accepts may be handled or
dead-lettered, never crash a consumer. `collect(strategy, count)` draws a fixed, reproducible
batch outside a `@given` test (an async test publishing to a real bus cannot be one).

Not for valid-message factories (medic.testing.factories) and not a schema validator: the
JSON Schema is the oracle here only through the `jsonschema` package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

import jsonschema
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from medic.schemas.envelope import SCHEMA_VERSION, SUPPORTED_MAJOR

VALID: Final = "valid"
WRONG_TYPE: Final = "wrong-type"
MISSING: Final = "missing"
VERSION: Final = "unknown-major-version"
MUTATIONS: Final = (VALID, WRONG_TYPE, MISSING, VERSION)
Path = tuple[str, ...]


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A committed schema by file stem, e.g. "release-event" (schemas/release-event.json)."""
    text = resources.files("medic.schemas").joinpath(f"{name}.json").read_text()
    value: dict[str, Any] = json.loads(text)
    return value


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    return jsonschema.validators.validator_for(schema)(schema)


def schema_accepts(name: str, instance: Any) -> bool:
    return bool(_validator(name).is_valid(instance))


@dataclass(frozen=True)
class Mutant:
    schema: str
    mutation: str
    path: Path  # the field broken (empty for a valid one)
    instance: Any
    must_reject: bool

    @property
    def payload(self) -> bytes:
        return json.dumps(self.instance).encode()

    @property
    def field(self) -> str:
        return ".".join(self.path)

    def names_field(self, reported: str | None) -> bool:
        """The reported field is the one broken, or lies inside it (a union member's tag)."""
        if reported is None:
            return False
        return reported == self.field or reported.startswith(self.field + ".")


def as_message(instance: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Turn a schema instance into a message the decoder accepts.

    The schemas are looser than the decoder in two places (reported, not papered over here):
    `type` has a default, so the schema lets it be absent, but the decoder dispatches on it;
    and `schemaversion`'s pattern `^\\d+\\.\\d+$` admits any Unicode digits.
    """
    message = dict(instance)
    declared = schema["properties"]["type"]
    if "const" in declared or "default" in declared:
        message["type"] = declared.get("const", declared.get("default"))
    message["schemaversion"] = SCHEMA_VERSION
    return message


def paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every field path in a JSON value (object keys and list indices), the root excluded."""
    found: list[Path] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((*prefix, str(key)))
            found.extend(paths(child, (*prefix, str(key))))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.append((*prefix, str(index)))
            found.extend(paths(child, (*prefix, str(index))))
    return found


def wrong_value(value: Any) -> Any:
    """A value of another JSON type that no lax conversion turns back into `value`'s type
    (pydantic reads "12" as an int and 1700000000 as a datetime, so neither is used)."""
    if isinstance(value, bool):
        return "not-a-bool"
    if isinstance(value, int | float):
        return "not-a-number"
    if isinstance(value, str):
        return {"not": "a string"}
    if isinstance(value, dict):
        return ["not", "an", "object"]
    if isinstance(value, list):
        return {"not": "a list"}
    return {"not": "null"}


def _parent(instance: Any, path: Path) -> Any:
    node = instance
    for part in path[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def replaced(instance: Any, path: Path, make: Any) -> Any:
    """A deep copy of `instance` with the field at `path` changed by `make(old)`."""
    copy = json.loads(json.dumps(instance))
    parent = _parent(copy, path)
    key: Any = int(path[-1]) if isinstance(parent, list) else path[-1]
    parent[key] = make(parent[key])
    return copy


def removed(instance: Any, path: Path) -> Any:
    copy = json.loads(json.dumps(instance))
    del _parent(copy, path)[path[-1]]
    return copy


@st.composite
def mutants(draw: st.DrawFn, name: str, *, message: bool = True) -> Mutant:
    """One instance of schema `name`, maybe broken (see the module docstring). `message=False`
    for a schema that is not a bus message (remediation-rule): no envelope fix-up, no version."""
    schema = load_schema(name)
    instance: Any = draw(from_schema(schema))
    if message:
        instance = as_message(instance, schema)
    kinds = MUTATIONS if message else (VALID, WRONG_TYPE, MISSING)
    mutation = draw(st.sampled_from(kinds))
    fields = paths(instance)
    if mutation == VERSION:
        major = draw(st.integers(0, 99).filter(lambda m: m != SUPPORTED_MAJOR))
        instance = {**instance, "schemaversion": f"{major}.{draw(st.integers(0, 9))}"}
        return Mutant(name, mutation, ("schemaversion",), instance, must_reject=True)
    if mutation == WRONG_TYPE and fields:
        path = draw(st.sampled_from(fields))
        broken = replaced(instance, path, wrong_value)
        return Mutant(name, mutation, path, broken, not schema_accepts(name, broken))
    keys = [p for p in fields if isinstance(_parent(instance, p), dict)]
    if mutation == MISSING and keys:
        path = draw(st.sampled_from(keys))
        broken = removed(instance, path)
        return Mutant(name, mutation, path, broken, not schema_accepts(name, broken))
    return Mutant(name, VALID, (), instance, not schema_accepts(name, instance))


def collect(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """`count` draws of `strategy`, the same ones on every run (derandomized, no database)."""
    drawn: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw_one(value: Any) -> None:
        drawn.append(value)

    draw_one()
    return drawn[:count]


def balanced(strategy: st.SearchStrategy[Mutant], count: int) -> list[Mutant]:
    """`count` mutants of which at least a third must be rejected by the schema.

    The draws are derandomized, but what they contain still moves with hypothesis' internal
    state (other tests in the same session): draw three times as many and keep the mix, so the
    batch always does break the consumer's input, whatever order the suite runs in.
    """
    drawn = collect(strategy, 3 * count)
    rejected = [m for m in drawn if m.must_reject][: count // 2]
    accepted = [m for m in drawn if not m.must_reject][: count - len(rejected)]
    return rejected + accepted
