"""One message per problem outcome a person must read; the steps before it are folded into it.

A `failed` attempt is a step, not an outcome: the remediator always comes back to it, with the
next attempt or, once the limit is reached, with the escalation (`medic.remediator.rules.engine`
`_guards`; `medic.remediator.service` `_carry_out` keeps a failed decision open). Sent as it
came, an escalation was two messages (`failed` "not verified in time", then `escalated`). So on
a channel a person reads, a step is:
- posted into the object's thread when the channel threads (Slack Web API) and the thread
  exists: in the thread, not broadcast to the channel;
- otherwise held for `fold_window` seconds, on the bus: the handler defers the result (nak with
  a delay), nothing waits in memory. When the outcome that follows is told on that channel
  meanwhile, it carries the step ("Before: attempt 1/1 failed: not verified in time") and the
  step is recorded `folded`; when nothing followed within the window, the step is sent alone
  (a person must still hear that an attempt failed).
An object's problems share one thread (`thread_key`): S2's stale status after its old API
version is a reply under the first message, not a second message in the channel. Limits: on a
channel without threads (Slack incoming webhook, console) two problems of one object remain two
messages, since nothing says a second problem will follow; and an outcome that goes out in a
digest (a burst) folds nothing, so steps held for it are sent alone after the window.

Why here and not where the remediator publishes results: the bus keeps every result, the audit,
the machines (the webhook), the demo and the tests count them, and the remediator publishes each
decision when it is made; it cannot know what follows without holding a decision open, nor which
channels thread. What a person is sent is a per-channel matter, decided where channels are.
Machine channels (`machine_readable = True`, the webhook) get every result unfolded.

The record per (channel, problem) lives in NATS KV, so a restart or another replica folds the
same way: `{"told": <time of the last outcome told>, "held": [steps waiting]}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from medic.runtime.errors import TransientError
from medic.schemas import Outcome, RemediationResult, stable_id

STEP_OUTCOMES: Final = frozenset({Outcome.FAILED})
_UPDATE_TRIES: Final = 5


def is_step(result: RemediationResult) -> bool:
    """A result another one for the same problem always follows."""
    return result.data.outcome in STEP_OUTCOMES


def thread_key(result: RemediationResult) -> str:
    """One thread per object: its problems' stories together."""
    obj = result.data.object
    if obj is None:
        return result.data.problem_key
    return f"{result.cluster}/{obj.kind}/{obj.namespace or ''}/{obj.name}"


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


class FoldBook:
    """Per (channel, problem): the steps held back, and when an outcome was last told."""

    def __init__(self, kv: KeyValue, clock: Callable[[], float]) -> None:
        self.kv = kv
        self.clock = clock

    @staticmethod
    def _key(channel: str, result: RemediationResult) -> str:
        return f"{channel}.{stable_id('fold', result.data.problem_key)}"

    async def _read(self, key: str) -> tuple[dict[str, Any], int | None]:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return {}, None
        return json.loads(entry.value or b"{}"), entry.revision

    async def _update(
        self, key: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """Read, change, compare-and-set; replicas racing on one problem retry."""
        for _ in range(_UPDATE_TRIES):
            record, revision = await self._read(key)
            new = change(record)
            body = json.dumps(new).encode()
            try:
                if revision is None:
                    await self.kv.create(key, body)
                else:
                    await self.kv.update(key, body, last=revision)
            except KeyWrongLastSequenceError:
                continue
            return new
        raise TransientError(f"fold record {key} contended", delay=0.5)

    async def told_after(self, channel: str, step: RemediationResult) -> bool:
        """Whether an outcome later than this step was already told on the channel."""
        record, _ = await self._read(self._key(channel, step))
        told = record.get("told")
        return isinstance(told, str) and _time(told) >= step.time

    async def hold(self, channel: str, step: RemediationResult, line: str) -> float:
        """Hold the step (once); returns how long it has been held, in seconds."""
        now = self.clock()

        def add(record: dict[str, Any]) -> dict[str, Any]:
            held = list(record.get("held", []))
            if not any(h["id"] == step.id for h in held):
                held.append({"id": step.id, "time": step.time.isoformat(), "at": now, "line": line})
            return {**record, "held": held}

        record = await self._update(self._key(channel, step), add)
        since = next(h["at"] for h in record["held"] if h["id"] == step.id)
        return max(0.0, now - float(since))

    async def drop(self, channel: str, step: RemediationResult) -> None:
        """The step is sent alone: no later outcome folds it again."""

        def remove(record: dict[str, Any]) -> dict[str, Any]:
            return {**record, "held": [h for h in record.get("held", []) if h["id"] != step.id]}

        await self._update(self._key(channel, step), remove)

    async def held_before(self, channel: str, outcome: RemediationResult) -> list[str]:
        """The lines of the steps this outcome folds in, oldest first."""
        record, _ = await self._read(self._key(channel, outcome))
        held = [h for h in record.get("held", []) if _time(h["time"]) <= outcome.time]
        return [h["line"] for h in sorted(held, key=lambda h: h["time"])]

    async def told(self, channel: str, outcome: RemediationResult) -> None:
        """The outcome was told: the steps before it are folded; later ones stay held."""

        def settle(record: dict[str, Any]) -> dict[str, Any]:
            told = record.get("told")
            latest = max(outcome.time, _time(told)) if told else outcome.time
            held = [h for h in record.get("held", []) if _time(h["time"]) > outcome.time]
            return {"told": latest.isoformat(), "held": held}

        await self._update(self._key(channel, outcome), settle)
