"""`verify.condition` (and `when`) are CEL compiled while the rule is loaded: a syntax error is
reported as file:line field like every other rule error, and the compiled condition judges the
re-read object."""

from __future__ import annotations

from medic.remediator.rules.index import CompiledRule
from medic.remediator.rules.loader import load_text

READY = 'object.status.conditions.exists(c, c.type == "Ready" && c.status == "True")'
RULES = f"""apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: broken-condition}}
spec:
  action: {{name: retry}}
  verify:
    timeout: 5s
    condition: 'object.status.conditions.exists(c, c.type == '
---
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: broken-when}}
spec:
  when: 'event.cluster =='
  action: {{name: retry}}
---
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: nothing-decides}}
spec:
  action: {{name: retry}}
  verify: {{actionCheck: false}}
---
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: good}}
spec:
  action: {{name: retry}}
  verify: {{condition: '{READY}', actionCheck: false}}
"""


def test_compile_errors_name_file_line_and_field() -> None:
    loaded = load_text(RULES, "team.yaml")
    assert [rule.name for rule in loaded.rules] == ["good"]
    errors = [str(error) for error in loaded.errors]
    assert errors[0].startswith("team.yaml:8: field 'spec.verify.condition'")
    assert "invalid CEL expression" in errors[0]
    assert "at column 43" in errors[0]
    assert errors[1].startswith("team.yaml:14: field 'spec.when'")
    assert errors[2].startswith("team.yaml:22: field 'spec.verify'")
    assert "actionCheck: false needs a condition" in errors[2]


def test_the_condition_is_compiled_once_and_judges_the_object() -> None:
    rule = CompiledRule.compile(load_text(RULES, "team.yaml").rules[0])
    assert rule.verify is not None
    assert rule.verify.source == READY
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert rule.verify.evaluate(object=ready, token="")
    assert not rule.verify.evaluate(object=not_ready, token="")
    assert not rule.verify.evaluate(object={}, token="")  # missing field: not verified
    assert not rule.verify.evaluate(object=None, token="")  # deleted
