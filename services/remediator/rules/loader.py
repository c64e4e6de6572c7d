"""Rules from files, folders and text (e.g. a KV entry), with errors that say file:line field.

YAML is composed to nodes first so every key keeps its line; a validation error is mapped back
to the line of the offending key. One bad document never hides the good ones beside it: the
loader returns the rules it could read and the errors it found.

Given the actions' parameter models (`ActionRegistry.params_models()`), a rule's action name and
params are checked too; the rules package knows no action itself (actions do I/O, rules do not).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import get_close_matches
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from medic.remediator.rules.model import ActionParams, ActionSpec, Rule

# A key path in a rule document and what is wrong there.
Problem = tuple[tuple[str, ...], str]


@dataclass(frozen=True)
class RuleError(Exception):
    """Where a rule is wrong and why."""

    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        where = f" field {self.field!r}" if self.field else ""
        return f"{self.file}:{self.line}:{where} {self.reason}"


@dataclass
class LoadResult:
    rules: list[Rule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)


def _lines(node: yaml.Node, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Line (1-based) of every key path in a composed YAML document."""
    found = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            found[child] = key.start_mark.line + 1
            found.update({k: v for k, v in _lines(value, child).items() if k != child})
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found.update(_lines(item, (*path, str(index))))
    return found


def _alias_path(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    return tuple(str(part) for part in loc)


def reason(error: ErrorDetails) -> str:
    """pydantic's message without its "Value error, " prefix: a validator's own words."""
    cause = (error.get("ctx") or {}).get("error")
    if error["type"] in {"value_error", "assertion_error"} and cause is not None:
        return str(cause)
    return error["msg"]


def param_names(model: type[BaseModel]) -> list[str]:
    """The parameters as a rule file spells them (the alias, if the field has one)."""
    return [info.alias or name for name, info in model.model_fields.items()]


def _param_reason(action: str, model: type[BaseModel], error: ErrorDetails) -> str:
    key = str(error["loc"][0]) if error["loc"] else ""
    names = param_names(model)
    if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
        if not names:
            return f"action {action!r} takes no parameters"
        close = get_close_matches(key, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown parameter {key!r} of action {action!r}{hint}; known: {', '.join(names)}"
    if error["type"] == "missing" and len(error["loc"]) == 1:
        return f"action {action!r} needs parameter {key!r}"
    return reason(error)


def action_problems(spec: ActionSpec, actions: ActionParams) -> list[Problem]:
    """An unknown action name or params its parameters model refuses; [] when both are fine."""
    model = actions.get(spec.name)
    if model is None:
        known = sorted(actions)
        close = get_close_matches(spec.name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        why = f"unknown action {spec.name!r}{hint}; known: {', '.join(known)}"
        return [(("spec", "action", "name"), why)]
    try:
        model.model_validate(spec.params)
    except ValidationError as exc:
        return [
            (
                ("spec", "action", "params", *_alias_path(e["loc"])),
                _param_reason(spec.name, model, e),
            )
            for e in exc.errors(include_url=False)
        ]
    return []


def describe(problems: Iterable[Problem]) -> str:
    """Problems on one line, for a message outside a file (`field 'x' reason; field 'y' ...`)."""
    return "; ".join(f"field {'.'.join(path)!r} {why}" for path, why in problems)


# Something opened and never closed: the mistake is where it opened, not where PyYAML noticed.
_UNCLOSED = {
    "while parsing a flow mapping": "flow mapping",
    "while parsing a flow sequence": "flow sequence",
    "while scanning a quoted scalar": "quoted string",
}


def yaml_error(exc: yaml.YAMLError, text: str, source: str) -> RuleError:
    """The line of the mistake and PyYAML's words, without its `in "<unicode string>"` marks."""
    problem = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context_mark", None)
    opened = _UNCLOSED.get(str(getattr(exc, "context", None)))
    mark = context if opened and context is not None else problem
    lines = text.splitlines()
    line = max(1, min(mark.line + 1, len(lines))) if mark is not None else 1
    while line > 1 and not lines[line - 1].strip():  # the end of the file: the last line written
        line -= 1
    what = str(getattr(exc, "problem", None) or exc)
    if problem is not None:
        at = "" if problem.line + 1 == line else f"line {problem.line + 1}, "
        what += f" ({at}column {problem.column + 1})"
    if opened and context is not None:
        what += f"; the {opened} from line {context.line + 1} is not closed"
    return RuleError(source, line, "", f"invalid YAML: {what}")


def _compose(text: str, source: str, result: LoadResult) -> list[yaml.Node]:
    """The documents up to the first YAML syntax error (which is added to `result`)."""
    nodes: list[yaml.Node] = []
    try:
        nodes.extend(yaml.compose_all(text))
    except yaml.YAMLError as exc:
        result.errors.append(yaml_error(exc, text, source))
    return nodes


def _construct(node: yaml.Node) -> Any:
    """What `yaml.safe_load` makes of a composed document; errors keep the file's own lines."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _validate(data: dict[str, Any], actions: ActionParams | None) -> Rule | list[Problem]:
    try:
        rule = Rule.model_validate(data)
    except ValidationError as exc:
        problems = [(_alias_path(e["loc"]), reason(e)) for e in exc.errors(include_url=False)]
        return problems + _action_beside(data, problems, actions)
    if actions is None:
        return rule
    return action_problems(rule.spec.action, actions) or rule


def _action_beside(
    data: dict[str, Any], problems: list[Problem], actions: ActionParams | None
) -> list[Problem]:
    """The action's own problems in a rule refused for something else, so one check shows all."""
    spec = data.get("spec")
    if actions is None or not isinstance(spec, dict) or "action" not in spec:
        return []
    if any(path[:2] == ("spec", "action") for path, _ in problems):
        return []
    try:
        action = ActionSpec.model_validate(spec["action"])
    except ValidationError:  # its own errors are among `problems` already
        return []
    return action_problems(action, actions)


def load_text(text: str, source: str, actions: ActionParams | None = None) -> LoadResult:
    """The rules in `text` and their errors; with `actions`, their action names and params are
    checked against the actions' own parameters models."""
    result = LoadResult()
    for node in _compose(text, source, result):
        lines = _lines(node)
        try:
            data: Any = _construct(node)
        except yaml.YAMLError as exc:  # a tag safe_load refuses (!!python/object, !custom)
            result.errors.append(yaml_error(exc, text, source))
            continue
        if not isinstance(data, dict):
            result.errors.append(RuleError(source, lines[()], "", "a rule must be a mapping"))
            continue
        validated = _validate(data, actions)
        if isinstance(validated, Rule):
            result.rules.append(validated)
            continue
        for path, why in validated:
            line = next(
                (lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in lines),
                lines[()],
            )
            result.errors.append(RuleError(source, line, ".".join(path), why))
    return result


def load_bytes(data: bytes, source: str, actions: ActionParams | None = None) -> LoadResult:
    """`load_text` of a file's or KV entry's bytes; bytes that are not UTF-8 are a rule error."""
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        why = f"not UTF-8 text: {exc.reason} at byte {exc.start}"
        return LoadResult(errors=[RuleError(source, line, "", why)])
    return load_text(text, source, actions)


def rule_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml"}))
        else:
            files.append(path)
    return files


def load_paths(paths: Iterable[Path], actions: ActionParams | None = None) -> LoadResult:
    result = LoadResult()
    for path in rule_files(paths):
        try:
            data = path.read_bytes()
        except OSError as exc:
            result.errors.append(RuleError(str(path), 0, "", f"cannot read: {exc}"))
            continue
        part = load_bytes(data, str(path), actions)
        result.rules.extend(part.rules)
        result.errors.extend(part.errors)
    return result


def load_builtin(actions: ActionParams | None = None) -> LoadResult:
    result = LoadResult()
    folder = resources.files("medic.remediator.rules").joinpath("builtin")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            part = load_text(entry.read_text(), f"builtin/{entry.name}", actions)
            result.rules.extend(part.rules)
            result.errors.extend(part.errors)
    return result
