"""One distribution, one import package: the folders map into `medic`, nothing else is installed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_only_medic_is_importable_from_outside_the_checkout(tmp_path: Path) -> None:
    probe = (
        "import importlib.util as u, json;"
        "print(json.dumps([u.find_spec(n) is None for n in ('services', 'schemas')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[true, true]"


def test_every_package_folder_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for package, folder in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base)
            dotted = ".".join([package, *relative.parts]) if relative.parts else package
            if not any(
                dotted.startswith(other + ".") or dotted == other
                for other in mapping
                if other != package and len(other) > len(package)
            ):
                found.add(dotted)
    assert found <= listed, f"folders missing from [tool.setuptools] packages: {found - listed}"
    assert listed <= found | set(mapping), f"listed but absent: {listed - found}"


def test_medic_package_is_typed() -> None:
    assert (ROOT / "services" / "py.typed").exists()
