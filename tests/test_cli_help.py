"""`medic --help` as a newcomer reads it: a version, examples for every command, one per line,
and placeholders that name what to type (`PATH...`), not Python types."""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from medic.cli import app

runner = CliRunner()


def command_paths() -> Iterator[list[str]]:
    """Every command and group of `medic`, as the words a user types."""
    root = typer.main.get_command(app)

    def walk(command: object, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, child in sorted(getattr(command, "commands", {}).items()):
            yield from walk(child, [*path, name])

    yield from walk(root, [])


ALL = list(command_paths())


def help_of(path: list[str]) -> str:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_medic_version_prints_the_installed_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"medic {importlib.metadata.version('medic')}"


def test_the_walk_finds_the_commands_the_readme_lists() -> None:
    names = {" ".join(path) for path in ALL}
    assert {"run", "demo", "sandbox", "rules", "rules check", "rules test", "backup"} <= names


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "medic")
def test_every_command_has_examples_each_on_its_own_line(path: list[str]) -> None:
    text = help_of(path)
    lines = text.splitlines()
    headings = [i for i, line in enumerate(lines) if line.strip().startswith("Example")]
    assert headings, f"`medic {' '.join(path)} --help` has no example:\n{text}"
    for i in headings:
        heading = lines[i].strip()
        examples = [heading.removeprefix("Example:").strip()] if ":" in heading[:9] else []
        if heading.startswith("Examples:"):
            assert heading == "Examples:", f"examples run together: {heading!r}"
            examples = []
            for line in lines[i + 1 :]:
                if not line.strip():
                    break
                examples.append(line.strip())
        examples = [e for e in examples if e]
        assert examples, text
        for example in examples:
            assert example.count("medic ") <= 1, f"examples run together: {example!r}"
            assert "medic" in example or "kubectl" in example, example


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "medic")
def test_placeholders_name_what_to_type_not_python_types(path: list[str]) -> None:
    text = help_of(path)
    assert "<list[" not in text, text
    assert not re.search(r"--[\w-]+ <", text), f"a value shown as a Python type:\n{text}"
    usage = text.splitlines()[0]
    assert "{" not in usage, usage
