"""The action reference, generated from what each action declares (its module docstring, params
model, RBAC and example): `medic rules actions` prints it, docs/actions.md is it in Markdown (a
test keeps the file current), and the rule schema's per-action `params` come from the same
models (`rule_schema`).

Not for running actions (base.py) nor for checking rules (rules/loader.py checks params against
the same models).
"""

from __future__ import annotations

import inspect
import json
import sys
import textwrap
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from medic.remediator.actions.base import Action, ActionRegistry
from medic.remediator.rules.model import DURATION_SCHEMA, rule_schema_model

GENERATED_BY = "medic rules actions --markdown > docs/actions.md"
DURATION = "duration"  # `30s`, `5m`, `1h` or a number of seconds (rules/model.py)


@dataclass(frozen=True)
class Param:
    name: str  # as a rule file spells it
    type: str  # e.g. "list of string", "duration", "map of string to string or null"
    default: str  # JSON (durations in seconds: 300s), or "required"
    description: str


def description(action: Action) -> str:
    """The action's module docstring (one module per action), else its class docstring."""
    module = sys.modules.get(type(action).__module__)
    return inspect.cleandoc(getattr(module, "__doc__", None) or type(action).__doc__ or "")


def summary(action: Action) -> str:
    """The first paragraph of the description, on one line."""
    return " ".join(description(action).split("\n\n")[0].split())


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:  # noqa: PLR0911 - one per shape
    if schema.get("anyOf") == DURATION_SCHEMA["anyOf"]:
        return DURATION
    if "$ref" in schema:
        return _type(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in schema:
        return " or ".join(_type(option, defs) for option in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(value) for value in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return "list of " + _type(schema.get("items", {}), defs)
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "map of string to " + _type(schema["additionalProperties"], defs)
    return str(kind) if kind else "any"


def params(model: type[BaseModel]) -> list[Param]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs, properties = schema.get("$defs", {}), schema.get("properties", {})
    found = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        kind = _type(properties[key], defs)
        if info.is_required():
            default = "required"
        else:
            value = info.default
            if value is PydanticUndefined:
                value = info.get_default(call_default_factory=True)
            default = f"{value:g}s" if kind == DURATION else json.dumps(value)
        found.append(Param(key, kind, default, info.description or ""))
    return found


def _rbac(action: Action) -> list[str]:
    def names(values: list[str], everything: str, empty: str = "") -> str:
        return ", ".join(everything if v == "*" else v or empty for v in values)

    return [
        f"{', '.join(rule['verbs'])} on {names(rule['resources'], 'any resource')}"
        f" ({names(rule['apiGroups'], 'any group', 'core')})"
        for rule in action.rbac
    ]


def _example(action: Action) -> str:
    return yaml.safe_dump(dict(action.example), sort_keys=False, default_flow_style=False)


def text(registry: ActionRegistry) -> str:
    """For a terminal: each action, its params (type, default, description) and an example."""
    out: list[str] = []
    for action in sorted(registry, key=lambda a: a.name):
        out.append(action.name)
        out.extend(textwrap.wrap(summary(action), 96, initial_indent="  ", subsequent_indent="  "))
        found = params(action.params_model)
        out.append("  params:" + ("" if found else " none"))
        for param in found:
            default = "required" if param.default == "required" else f"default {param.default}"
            detail = f": {param.description}" if param.description else ""
            out.append(f"    {param.name} ({param.type}, {default}){detail}")
        out.append("  example:")
        out.extend(f"    {line}" for line in _example(action).splitlines())
        out.append("")
    return "\n".join(out)


def _escaped(text: str) -> str:
    return text.replace("|", "\\|")


def _cell(default: str) -> str:
    return default if default == "required" else f"`{default}`"


def markdown(registry: ActionRegistry) -> str:
    """docs/actions.md."""
    out = [
        "# Actions",
        "",
        (
            "Generated from each action's declaration (services/remediator/actions/) by "
            f"`{GENERATED_BY}`; a test fails when this file is out of date. `medic rules check` "
            "checks a rule's `action.params` against the same models, and "
            "`schemas/remediation-rule.json` validates them per action. A duration is `30s`, "
            "`5m`, `1h` or a number of seconds."
        ),
        "",
    ]
    for action in sorted(registry, key=lambda a: a.name):
        out += [f"## `{action.name}`", "", description(action), ""]
        found = params(action.params_model)
        if found:
            out += ["| Parameter | Type | Default | Description |", "| --- | --- | --- | --- |"]
            out += [
                f"| `{p.name}` | {p.type} | {_cell(p.default)} | {_escaped(p.description)} |"
                for p in found
            ]
        else:
            out.append("No parameters.")
        out += ["", "RBAC: " + ("; ".join(_rbac(action)) or "none") + ".", "", "```yaml"]
        out += [_example(action).rstrip("\n"), "```", ""]
    return "\n".join(out)


def rule_schema(registry: ActionRegistry) -> type[BaseModel]:
    """The model schemas/remediation-rule.json is generated from: params validated per action."""
    descriptions = {action.name: summary(action) for action in registry}
    return rule_schema_model(registry.params_models(), descriptions)
