"""The action reference is generated from the actions' own declarations: `medic rules actions`,
docs/actions.md (kept current by this test) and the rule schema, whose `params` are validated
per action."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from medic import cli
from medic.remediator.actions import default_registry, reference
from medic.remediator.rules.loader import load_builtin

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = default_registry(entry_points=False)
SCHEMA = json.loads((ROOT / "schemas" / "remediation-rule.json").read_text())


def test_docs_actions_md_is_generated_from_the_actions_and_current() -> None:
    committed = (ROOT / "docs" / "actions.md").read_text()
    assert committed == reference.markdown(REGISTRY), f"run `{reference.GENERATED_BY}`"


def test_rules_actions_prints_every_action_with_its_params() -> None:
    result = CliRunner().invoke(cli.app, ["rules", "actions"])
    assert result.exit_code == 0, result.output
    names = [line for line in result.output.splitlines() if line and not line.startswith(" ")]
    assert names == sorted(action.name for action in REGISTRY)
    assert "    values (map of string to string or null, required): Keys to set;" in result.output
    assert "    minLockAge (duration, default 300s): " in result.output
    markdown = CliRunner().invoke(cli.app, ["rules", "actions", "--markdown"])
    assert markdown.output == reference.markdown(REGISTRY)


def test_every_param_of_every_action_is_in_the_reference() -> None:
    doc = reference.markdown(REGISTRY)
    for action in REGISTRY:
        for param in reference.params(action.params_model):
            assert f"| `{param.name}` | {param.type} |" in doc, (action.name, param)


def rule(action: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "medic.dev/v1alpha1",
        "kind": "RemediationRule",
        "metadata": {"name": "team"},
        "spec": {"action": action},
    }


def schema_errors(instance: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [error.message for error in validator.iter_errors(instance)]


@pytest.mark.parametrize("action", sorted(REGISTRY, key=lambda a: a.name), ids=lambda a: a.name)
def test_every_actions_example_is_valid_by_the_rule_schema(action: Any) -> None:
    example = dict(action.example)
    instance = rule(example.pop("action"))
    instance["spec"].update(example)
    assert schema_errors(instance) == []


def test_the_builtin_rules_are_valid_by_the_rule_schema() -> None:
    for builtin in load_builtin().rules:
        data = yaml.safe_load(yaml.safe_dump(builtin.model_dump(by_alias=True, mode="json")))
        assert schema_errors(data) == [], builtin.name


@pytest.mark.parametrize(
    "action",
    [
        {"name": "annotate", "params": {"annotations": {"team": "a"}}},
        {"name": "annotate"},
        {"name": "retry", "params": {"force": True}},
        {"name": "delete", "params": {"allowKinds": "Pod"}},
        {"name": "clear-pending", "params": {"minLockAge": "10 minutes"}},
        {"name": "annotat", "params": {"values": {"team": "a"}}},
    ],
)
def test_the_rule_schema_refuses_params_the_action_refuses(action: dict[str, Any]) -> None:
    assert schema_errors(rule(action))


def test_medic_schemas_writes_the_rule_schema_with_params_per_action(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["schemas", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "remediation-rule.json").read_text())
    assert written == SCHEMA
    action = written["$defs"]["RuleSpec"]["properties"]["action"]
    assert len(action["oneOf"]) == len(list(REGISTRY))
