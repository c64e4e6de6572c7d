"""`.ci/run` runs exactly the test command the README gives a newcomer."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```bash\n(.+?)\n```", readme, re.DOTALL)
    assert match, "README needs the test command in a bash block after <!-- test-command -->"
    command = match.group(1).strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci.splitlines()


def test_readme_first_command_installs_and_runs_the_demo() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- run-command -->\s*```bash\n(.+?)\n```", readme, re.DOTALL)
    assert match, "README needs the run command in a bash block after <!-- run-command -->"
    command = match.group(1).strip()
    assert readme.index("<!-- run-command -->") < readme.index("<!-- test-command -->")
    assert "pip install '.[demo]'" in command
    assert command.endswith("medic demo")
