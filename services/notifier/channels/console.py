"""Console: readable notifications on stdout, for `medic demo` and local runs."""

from __future__ import annotations

import sys
from typing import TextIO

from pydantic import BaseModel, ConfigDict

from medic.notifier.channels.base import ChannelPlugin, DeliveryReceipt, Rendered


class ConsoleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stream: str = "stdout"


class ConsoleChannel:
    supports_threads = False

    def __init__(self, name: str, options: ConsoleOptions, out: TextIO | None = None) -> None:
        self.name = name
        self.out = out or (sys.stderr if options.stream == "stderr" else sys.stdout)

    async def send(self, rendered: Rendered) -> DeliveryReceipt:
        rule = "─" * 72
        self.out.write(f"{rule}\n[{self.name}] {rendered.text}\n")
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
