"""Console: readable notifications on stdout, for `medic demo` and local runs."""

from __future__ import annotations

import sys
from typing import TextIO

from pydantic import BaseModel, ConfigDict

from medic.notifier.channels.base import ChannelPlugin, DeliveryReceipt, Rendered


class ConsoleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stream: str = "stdout"


# The Slack shortcodes the templates use, as a terminal shows them.
SHORTCODES = {
    ":white_check_mark:": "\N{WHITE HEAVY CHECK MARK}",
    ":wrench:": "\N{WRENCH}",
    ":memo:": "\N{MEMO}",
    ":zzz:": "\N{SLEEPING SYMBOL}",
    ":fast_forward:": "\N{BLACK RIGHT-POINTING DOUBLE TRIANGLE}",
    ":x:": "\N{CROSS MARK}",
    ":rotating_light:": "\N{POLICE CARS REVOLVING LIGHT}",
}


def plain(text: str) -> str:
    for code, symbol in SHORTCODES.items():
        text = text.replace(code, symbol)
    return text


class ConsoleChannel:
    supports_threads = False

    def __init__(self, name: str, options: ConsoleOptions, out: TextIO | None = None) -> None:
        self.name = name
        self.out = out or (sys.stderr if options.stream == "stderr" else sys.stdout)

    async def send(self, rendered: Rendered) -> DeliveryReceipt:
        rule = "─" * 72
        self.out.write(f"{rule}\n[{self.name}] {plain(rendered.text)}\n")
        self.out.flush()
        return DeliveryReceipt()

    async def close(self) -> None:
        """Nothing to close: the stream belongs to the process."""


PLUGIN = ChannelPlugin(
    kind="console",
    options_model=ConsoleOptions,
    create=ConsoleChannel,
    description="Readable notifications on stdout.",
)
