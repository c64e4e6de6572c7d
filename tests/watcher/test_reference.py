"""The generated watcher source reference (docs/sources.md): current, complete, readable."""

from __future__ import annotations

from pathlib import Path

from medic.watcher.reference import option_rows, render
from medic.watcher.sources import default_registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "sources.md"


def test_committed_source_reference_is_what_the_settings_models_render() -> None:
    assert DOC.read_text() == render(), (
        "docs/sources.md is out of date: python -m medic.watcher.reference docs/sources.md"
    )


def test_every_source_option_is_documented_with_its_default_and_meaning() -> None:
    text = render()
    for plugin in default_registry(entry_points=False):
        assert f"## `{plugin.name}`" in text
        for option, _kind, _default, meaning in option_rows(plugin.settings_model):
            assert meaning, f"{plugin.name}.{option} has no description"
    for option in ("stale_after", "operation_after", "missing_after", "stable_after", "interval"):
        assert f"| `{option}` |" in text
    assert "| `pending_after` | `float` | `300.0` |" in text
    assert "| `endpoints` | `list[str]` | required |" in text
