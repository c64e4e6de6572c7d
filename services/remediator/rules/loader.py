"""Rules from files, folders and text (e.g. a KV entry), with errors that say file:line field.

YAML is composed to nodes first so every key keeps its line; a validation error is mapped back
to the line of the offending key. One bad document never hides the good ones beside it: the
loader returns the rules it could read and the errors it found.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from medic.remediator.rules.model import Rule


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


def load_text(text: str, source: str) -> LoadResult:
    result = LoadResult()
    try:
        nodes = list(yaml.compose_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        result.errors.append(RuleError(source, line, "", f"invalid YAML: {exc}"))
        return result
    for node in nodes:
        lines = _lines(node)
        data: Any = yaml.safe_load(yaml.serialize(node))
        if not isinstance(data, dict):
            result.errors.append(RuleError(source, lines[()], "", "a rule must be a mapping"))
            continue
        try:
            result.rules.append(Rule.model_validate(data))
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                path = _alias_path(error["loc"])
                line = next(
                    (lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in lines),
                    lines[()],
                )
                result.errors.append(RuleError(source, line, ".".join(path), reason(error)))
    return result


def rule_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml"}))
        else:
            files.append(path)
    return files


def load_paths(paths: Iterable[Path]) -> LoadResult:
    result = LoadResult()
    for path in rule_files(paths):
        try:
            text = path.read_text()
        except OSError as exc:
            result.errors.append(RuleError(str(path), 0, "", f"cannot read: {exc}"))
            continue
        part = load_text(text, str(path))
        result.rules.extend(part.rules)
        result.errors.extend(part.errors)
    return result


def load_builtin() -> LoadResult:
    result = LoadResult()
    folder = resources.files("medic.remediator.rules").joinpath("builtin")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            part = load_text(entry.read_text(), f"builtin/{entry.name}")
            result.rules.extend(part.rules)
            result.errors.extend(part.errors)
    return result
