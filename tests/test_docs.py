"""The README and docs/: every relative link resolves, and the webhook payload example is a
result the published schema accepts (a receiver can validate against what the README shows)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_relative_link_in_the_readme_and_docs_resolves() -> None:
    assert (ROOT / "docs" / "scenarios.md").exists(), "the README points to docs/scenarios.md"
    broken = [
        f"{doc.relative_to(ROOT)}: {target}"
        for doc in DOCS
        for target in LINK.findall(doc.read_text())
        if "://" not in target and not (doc.parent / target).exists()
    ]
    assert broken == []


def test_readme_webhook_payload_example_validates_against_the_result_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**The webhook payload.**", 1)[1]
    example = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert example, "README: a json block after **The webhook payload.**"
    schema = json.loads((ROOT / "schemas" / "remediation-result.json").read_text())
    jsonschema.validate(json.loads(example.group(1)), schema)
