"""`medic rules check` and `medic rules test` on a user's mistakes: one line per mistake naming
file, line and field, every other file still checked, exit 1, never a traceback."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner, Result

from medic import cli

GOOD = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: team-notify}
spec:
  action: {name: notify-only}
"""

BAD_REGEX = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: team-leader}
spec:
  match:
    message: "(leader"
  action: {name: retry}
"""


def medic(*argv: str) -> Result:
    result = CliRunner().invoke(cli.app, list(argv))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_check_of_a_folder_reports_a_bad_regex_and_still_checks_every_other_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "a-leader.yaml").write_text(BAD_REGEX)
    (tmp_path / "b-good.yaml").write_text(GOOD)
    result = medic("rules", "check", str(tmp_path))
    assert result.exit_code == 1
    assert (
        f"error: {tmp_path / 'a-leader.yaml'}:6: field 'spec.match.message' invalid regular "
        "expression: missing ), unterminated subpattern at position 0"
    ) in result.output
    assert "1 rule(s) valid, 1 error(s)" in result.output


def test_rules_test_with_a_bad_regex_names_it_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "leader.yaml").write_text(BAD_REGEX)
    spec = tmp_path / "cases.yaml"
    spec.write_text(yaml.safe_dump({"rules": ["leader.yaml"], "tests": []}))
    result = medic("rules", "test", str(spec))
    assert result.exit_code == 1
    assert f"{tmp_path / 'leader.yaml'}:6: field 'spec.match.message' invalid regular" in (
        result.output
    )


def test_check_names_the_file_and_line_of_a_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(GOOD.replace("{name: team-notify}", "{name: team-notify"))
    result = medic("rules", "check", str(path))
    assert result.exit_code == 1
    assert f"error: {path}:3: invalid YAML: expected ',' or '}}', but got ':'" in result.output
    assert "<unicode string>" not in result.output


def test_check_reports_typos_in_match_values_that_would_silently_never_match(
    tmp_path: Path,
) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        GOOD.replace(
            "spec:\n",
            "spec:\n  match:\n    types: [medic.release]\n    problems: [stuck]\n"
            "    classifications: [timout]\n",
        )
    )
    result = medic("rules", "check", str(path))
    assert result.exit_code == 1
    assert f"{path}:7: field 'spec.match.problems' unknown problem 'stuck'" in result.output
    assert f"{path}:8: field 'spec.match.classifications' unknown classification 'timout'" in (
        result.output
    )
    assert "0 rule(s) valid, 2 error(s)" in result.output


def test_check_validates_the_action_name_and_its_params(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD.replace("notify-only", "annotat"))
    (tmp_path / "b.yaml").write_text(
        GOOD.replace("{name: notify-only}", "{name: annotate, params: {annotations: {a: b}}}")
    )
    result = medic("rules", "check", str(tmp_path))
    assert result.exit_code == 1
    assert (
        f"{tmp_path / 'a.yaml'}:5: field 'spec.action.name' unknown action 'annotat' "
        "(did you mean 'annotate'?)"
    ) in result.output
    assert (
        f"{tmp_path / 'b.yaml'}:5: field 'spec.action.params.annotations' unknown parameter "
        "'annotations' of action 'annotate'; known: values, plural"
    ) in result.output
    assert "0 rule(s) valid, 3 error(s)" in result.output
    assert "pydantic.dev" not in result.output


def test_push_refuses_a_rule_whose_action_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(GOOD.replace("notify-only", "annotat"))
    result = medic("rules", "push", str(path))  # refused before any connection is made
    assert result.exit_code == 1
    assert "unknown action 'annotat'" in result.output


def test_rules_test_names_a_yaml_syntax_error_in_the_test_file(tmp_path: Path) -> None:
    spec = tmp_path / "cases.yaml"
    spec.write_text("rules: [leader.yaml\ntests: []\n")
    result = medic("rules", "test", str(spec))
    assert result.exit_code == 1
    assert f"error: {spec}:1: invalid YAML: " in result.output
    assert "the flow sequence from line 1 is not closed" in result.output
