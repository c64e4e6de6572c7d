"""The per-channel token bucket and Retry-After pause."""

from __future__ import annotations

import asyncio

import pytest

from medic.notifier.delivery import MAX_RATE_WAIT, ChannelGate
from medic.runtime.errors import TransientError


async def test_gate_spaces_messages_at_the_channel_rate() -> None:
    gate = ChannelGate(rate=20.0, burst=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(5):
        await gate.acquire()
    assert loop.time() - started >= 4 / 20.0 * 0.9


async def test_gate_without_rate_does_not_wait() -> None:
    gate = ChannelGate(rate=None, burst=1)
    async with asyncio.timeout(0.5):
        for _ in range(100):
            await gate.acquire()


async def test_long_retry_after_pause_hands_the_message_back_to_the_bus() -> None:
    gate = ChannelGate(rate=1.0, burst=1)
    gate.pause(MAX_RATE_WAIT + 10)
    with pytest.raises(TransientError) as caught:
        await gate.acquire()
    assert caught.value.delay is not None
    assert caught.value.delay > MAX_RATE_WAIT
