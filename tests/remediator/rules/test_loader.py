"""A user's mistake in a rule file is one precise `file:line: field '...' reason`, never a
traceback and never silence; the other documents and files are still read."""

from __future__ import annotations

from pathlib import Path

import pytest

from medic.remediator.actions import default_registry
from medic.remediator.rules.loader import action_problems, describe, load_paths, load_text
from medic.remediator.rules.model import ActionSpec

HEAD = "apiVersion: medic.dev/v1alpha1\nkind: RemediationRule\nmetadata: {name: team}\n"


def one_error(text: str) -> str:
    loaded = load_text(text, "team.yaml")
    assert not loaded.rules
    [error] = loaded.errors
    return str(error)


def test_an_invalid_regular_expression_is_a_rule_error_with_file_line_field() -> None:
    text = HEAD + 'spec:\n  match:\n    message: "(leader"\n  action: {name: retry}\n'
    assert one_error(text) == (
        "team.yaml:6: field 'spec.match.message' invalid regular expression: "
        "missing ), unterminated subpattern at position 0"
    )


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("a{4294967296}", "the repetition number is too large"),
        ("(" * 2000 + ")" * 2000, "groups nested too deeply"),
    ],
)
def test_a_regular_expression_re_cannot_build_is_a_rule_error(pattern: str, says: str) -> None:
    text = HEAD + f'spec:\n  match:\n    message: "{pattern}"\n  action: {{name: retry}}\n'
    error = one_error(text)
    assert error == f"team.yaml:6: field 'spec.match.message' invalid regular expression: {says}"


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        ("  when: 'event.cluster.startsWith('\n", 5, "spec.when"),
        ("  verify:\n    condition: 'object.status.'\n", 6, "spec.verify.condition"),
    ],
)
def test_an_invalid_cel_expression_is_reported_in_the_validators_own_words(
    body: str, line: int, field: str
) -> None:
    text = HEAD + "spec:\n" + body + "  action: {name: retry}\n"
    assert one_error(text).startswith(f"team.yaml:{line}: field '{field}' invalid CEL expression ")


def test_a_bad_document_does_not_hide_the_good_one_beside_it() -> None:
    bad = HEAD + 'spec:\n  match: {message: "[a-"}\n  action: {name: retry}\n'
    good = HEAD.replace("team", "good") + "spec:\n  action: {name: retry}\n"
    loaded = load_text(bad + "---\n" + good, "team.yaml")
    assert [rule.name for rule in loaded.rules] == ["good"]
    [error] = loaded.errors
    assert str(error).startswith("team.yaml:5: field 'spec.match.message' invalid regular")


UNCLOSED_BRACE = HEAD.replace("{name: team}", "{name: team") + "spec:\n  action: {name: retry}\n"
UNCLOSED_BRACE_SAYS = "expected ',' or '}', but got ':' (line 4, column 5); the flow mapping from"


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        # the brace opened on line 3 is never closed; PyYAML notices on line 4
        (UNCLOSED_BRACE, 3, UNCLOSED_BRACE_SAYS),
        (HEAD + 'spec:\n  when: "event.cluster\n  action: {name: retry}\n', 5, "quoted string"),
        (HEAD + "spec:\n  action: {name: retry}\n   limits: {}\n", 6, "(column 4)"),
        (HEAD + "spec:\n  action:\n    name: retry\n  notify: [ops\n\n\n", 7, "flow sequence"),
        (HEAD + "spec:\n  action: {name: !!python/name:os.system retry}\n", 5, "constructor"),
    ],
)
def test_a_yaml_syntax_error_names_the_file_and_the_line_of_the_mistake(
    text: str, line: int, says: str
) -> None:
    error = one_error(text)
    assert error.startswith(f"team.yaml:{line}: invalid YAML: "), error
    assert says in error
    assert "<unicode string>" not in error
    assert "\n" not in error


def test_documents_before_a_yaml_syntax_error_are_still_read() -> None:
    good = HEAD + "spec:\n  action: {name: retry}\n"
    loaded = load_text(good + "---\n" + HEAD + "spec: [\n", "team.yaml")
    assert [rule.name for rule in loaded.rules] == ["team"]
    [error] = loaded.errors
    assert str(error).startswith("team.yaml:10: invalid YAML: ")


def match_error(match: str) -> str:
    return one_error(HEAD + f"spec:\n  action: {{name: retry}}\n  match: {match}\n")


def test_a_typo_in_an_event_type_is_an_error_listing_the_known_types() -> None:
    assert match_error("{types: [medic.releases]}") == (
        "team.yaml:6: field 'spec.match.types.0' unknown event type 'medic.releases' "
        "(did you mean 'medic.release'?); known: medic.release, medic.etcd; "
        "or custom.<name> for your own events"
    )


def test_a_typo_in_a_problem_is_an_error_listing_the_problems_of_the_rules_types() -> None:
    error = match_error("{types: [medic.release], problems: [stuck]}")
    assert error.startswith(
        "team.yaml:6: field 'spec.match.problems' unknown problem 'stuck' for medic.release "
        "events; known: failed, stalled, stale_status,"
    )
    etcd = match_error("{types: [medic.etcd], problems: [failed]}")
    assert "unknown problem 'failed' for medic.etcd events; known: leader_changed," in etcd


def test_a_typo_in_a_classification_is_an_error_with_a_suggestion() -> None:
    assert match_error("{classifications: [timout]}") == (
        "team.yaml:6: field 'spec.match.classifications' unknown classification 'timout' "
        "(did you mean 'timeout'?); known: transient_etcd, dependency_not_ready, timeout, "
        "operation_in_progress, other, none"
    )


def test_a_filter_the_rules_event_types_never_carry_is_an_error() -> None:
    assert "custom.backup events carry no problem" in match_error(
        "{types: [custom.backup], problems: [failed]}"
    )
    assert "only medic.release events have one, not medic.etcd" in match_error(
        "{types: [medic.etcd], classifications: [other]}"
    )


def test_custom_event_types_take_the_users_own_names() -> None:
    text = HEAD + "spec:\n  action: {name: retry}\n  match: {types: [custom.backup.failed]}\n"
    loaded = load_text(text, "team.yaml")
    assert loaded.errors == []
    assert loaded.rules[0].spec.match.types == ["custom.backup.failed"]


ACTIONS = default_registry(entry_points=False).params_models()


def action_errors(action: str) -> list[str]:
    text = HEAD + f"spec:\n  action:\n{action}"
    loaded = load_text(text, "team.yaml", ACTIONS)
    assert not loaded.rules
    return [str(error) for error in loaded.errors]


def test_an_unknown_action_is_an_error_with_a_suggestion() -> None:
    [error] = action_errors("    name: annotat\n")
    assert error.startswith(
        "team.yaml:6: field 'spec.action.name' unknown action 'annotat' "
        "(did you mean 'annotate'?); known: annotate, clear-pending, delete,"
    )


def test_params_are_checked_against_the_actions_own_params_model() -> None:
    errors = action_errors("    name: annotate\n    params:\n      annotations: {team: a}\n")
    assert [e.split(" ", 3)[3] for e in errors] == [
        "action 'annotate' needs parameter 'values'",
        "unknown parameter 'annotations' of action 'annotate'; known: values, plural",
    ]
    assert [e.split(" ", 3)[:3] for e in errors] == [
        ["team.yaml:7:", "field", "'spec.action.params.values'"],
        ["team.yaml:8:", "field", "'spec.action.params.annotations'"],
    ]
    [typo] = action_errors(
        "    name: delete\n    params: {allowKinds: [Pod], protectedNamespace: []}\n"
    )
    assert "unknown parameter 'protectedNamespace' of action 'delete' (did you mean " in typo
    [none] = action_errors("    name: retry\n    params: {force: true}\n")
    assert (
        none == "team.yaml:7: field 'spec.action.params.force' action 'retry' takes no parameters"
    )
    [duration] = action_errors("    name: clear-pending\n    params: {minLockAge: 10 minutes}\n")
    assert "field 'spec.action.params.minLockAge' '10 minutes' is not a duration" in duration


def test_the_action_is_checked_even_when_the_rule_has_another_error() -> None:
    errors = action_errors("    name: annotat\n  when: 'event.('\n")
    assert [e.split(" ")[2] for e in errors] == ["'spec.when'", "'spec.action.name'"]


def test_no_message_is_a_raw_pydantic_dump() -> None:
    spec = ActionSpec(name="annotate", params={"annotations": {"a": "b"}})
    message = describe(action_problems(spec, ACTIONS))
    assert message == (
        "field 'spec.action.params.values' action 'annotate' needs parameter 'values'; "
        "field 'spec.action.params.annotations' unknown parameter 'annotations' of action "
        "'annotate'; known: values, plural"
    )
    assert "pydantic.dev" not in message


def test_a_file_that_is_not_utf8_is_a_rule_error_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "team.yaml"
    path.write_bytes(HEAD.encode() + b"spec:\n  action: {name: \xff}\n")
    loaded = load_paths([path])
    assert [str(e) for e in loaded.errors] == [
        f"{path}:5: not UTF-8 text: invalid start byte at byte {len(HEAD) + 23}"
    ]


def test_a_typo_in_problems_is_reported_also_beside_a_typo_in_types() -> None:
    text = HEAD + "spec:\n  action: {name: retry}\n  match: {types: [medic.releases]}\n"
    text = text.replace("[medic.releases]}", "[medic.releases], problems: [stuck]}")
    loaded = load_text(text, "team.yaml")
    assert [e.field for e in loaded.errors] == ["spec.match.types.0", "spec.match.problems"]
