"""How every `medic` command reads in `--help`: examples one per line, arguments as `PATH...`.

Typer (0.29, plain click layout) re-wraps every paragraph of a docstring, so an `Examples:` block
runs together on one line, and it shows arguments as `{paths}...` with a `<list[Path]>` type.
`CommandApp` is a `typer.Typer` whose commands and groups keep an example paragraph's lines as
written and show arguments and option values the way man pages do (`PATH...`, `[DIR]`,
`--timeout FLOAT`); `metavar=` names a value better where it can (`--scenario KEY`).

Not for what a command does: that stays in the command's own module.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import typer
from typer import _click as click  # typer 0.29 vendors click: its types are these, not click's
from typer.core import TyperArgument, TyperCommand, TyperGroup
from typer.models import CommandFunctionType

EXAMPLE_HEADINGS = ("Example:", "Examples:")
_TYPE_LABEL = re.compile(r"<(?:list\[)?([^<>\[\]]+)\]?>")  # typer's `<int>`, `<list[Path]>`
NO_REWRAP = "\b"  # click: a paragraph starting with this line is printed as written


def help_text(help: str | None) -> str:  # noqa: A002 - click's name for it
    """The docstring as click prints it, with every example paragraph kept line by line."""
    text = inspect.cleandoc(help or "").partition("\f")[0]
    paragraphs = text.split("\n\n")
    return "\n\n".join(
        f"{NO_REWRAP}\n{p}" if p.lstrip().startswith(EXAMPLE_HEADINGS) else p for p in paragraphs
    )


def write_help_text(help: str | None, formatter: click.HelpFormatter) -> None:  # noqa: A002
    text = help_text(help)
    if text:
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(text)


def value_placeholder(option: str) -> str:
    """`--timeout <float>` -> `--timeout FLOAT`, as click writes it; choices as `[a|b]`."""

    def label(match: re.Match[str]) -> str:
        name = match[1]
        return f"[{name}]" if "|" in name else {"str": "TEXT"}.get(name, name.upper())

    return _TYPE_LABEL.sub(label, option)


def argument_metavar(param: TyperArgument) -> str:
    """`PATH...` for a list, `[DIR]` when optional: the metavar, else the name in capitals."""
    name = param.metavar or (param.name or "").upper()
    if param.nargs != 1:
        name += "..."
    return name if param.required else f"[{name}]"


class Command(TyperCommand):
    def format_help_text(
        self,
        ctx: click.Context,  # noqa: ARG002 - click's signature
        formatter: click.HelpFormatter,
    ) -> None:
        write_help_text(self.help, formatter)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        pieces += [
            argument_metavar(p) for p in self.get_params(ctx) if isinstance(p, TyperArgument)
        ]
        return pieces

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                arguments.append((argument_metavar(param).strip("[]"), record[1]))
            else:
                options.append((value_placeholder(record[0]), record[1]))
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class Group(TyperGroup):
    def format_help_text(
        self,
        ctx: click.Context,  # noqa: ARG002 - click's signature
        formatter: click.HelpFormatter,
    ) -> None:
        write_help_text(self.help, formatter)


class CommandApp(typer.Typer):
    """A `typer.Typer` for Medic's commands: plain layout, `Command` and `Group` for help."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        kwargs.setdefault("rich_markup_mode", None)
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(**kwargs)

    def command(  # the same call; `cls` defaults to Command
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        return super().command(name, cls=cls or Command, **kwargs)
