"""A user's mistake in a rule file is one precise `file:line: field '...' reason`, never a
traceback and never silence; the other documents and files are still read."""

from __future__ import annotations

import pytest

from medic.remediator.rules.loader import load_text

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
