"""Message templates: packaged Jinja2 files, overridable per user and per channel, sandboxed.

Users' templates are rendered in `jinja2.sandbox.SandboxedEnvironment` (no access to
underscored attributes or unsafe callables) over plain JSON data, never live objects, so a
template can format a message but not reach into the process. Look-up order for a template
name: the channel's `templates:` entry, then `template_dir`, then the packaged `templates/*.j2`.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

TEMPLATE_NAMES = ("title", "text", "digest")


class TemplateError(ValueError):
    """A user's template does not parse or failed to render; names the template."""


def packaged_templates() -> dict[str, str]:
    folder = resources.files("medic.notifier") / "templates"
    return {name: (folder / f"{name}.j2").read_text() for name in TEMPLATE_NAMES}


class TemplateSet:
    """The templates one channel renders with."""

    def __init__(
        self, overrides: Mapping[str, str] | None = None, template_dir: Path | None = None
    ) -> None:
        loaders: list[jinja2.BaseLoader] = [
            jinja2.DictLoader({f"{k}.j2": v for k, v in (overrides or {}).items()})
        ]
        if template_dir is not None:
            loaders.append(jinja2.FileSystemLoader(str(template_dir)))
        loaders.append(jinja2.DictLoader({f"{k}.j2": v for k, v in packaged_templates().items()}))
        self.env = SandboxedEnvironment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=False,
            trim_blocks=True,
            undefined=jinja2.ChainableUndefined,
        )
        for name in overrides or {}:  # fail at start-up, not at the first incident
            self._template(name)

    def _template(self, name: str) -> jinja2.Template:
        try:
            return self.env.get_template(f"{name}.j2")
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {name!r}: {exc}") from exc

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        try:
            return self._template(name).render(context).strip()
        except jinja2.TemplateError as exc:  # includes SecurityError from the sandbox
            raise TemplateError(f"template {name!r}: {exc}") from exc
