"""Per-object remediation state in NATS KV, so replicas and restarts agree on what was done.

Keys (KV keys allow `[-/_=.a-zA-Z0-9]`, so object keys are hashed):
    claim.<id>            an (event, rule) decision claimed by one replica: create-if-absent
                          (none for a rule whose action keeps no state: the service)
    object.<id>           attempts / last attempt / outcome per (rule, problem)
    problem.<id>          firing since / resolved at per problem
    rule.<name>           recent actions and failures (rate limit, circuit breaker)
    etcd.<cluster>        the latest etcd health per cluster
Writes use optimistic concurrency (`update(..., last=revision)`), retried on conflict.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from medic.remediator.rules.engine import (
    EtcdState,
    ObjectState,
    ProblemState,
    RuleState,
    Snapshot,
)
from medic.remediator.rules.index import CompiledRule
from medic.runtime.backoff import Backoff
from medic.runtime.replies import KvOps, Stored
from medic.schemas import EtcdCondition, stable_id


def _dump(value: Any) -> bytes:
    return json.dumps(
        value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)
    ).encode()


def _load(value: bytes) -> dict[str, Any]:
    """A record as `_read` returns it (times as the ISO strings they are stored as)."""
    loaded: dict[str, Any] = json.loads(value)
    return loaded


def _record(found: Stored | None) -> dict[str, Any]:
    """A record as read ({} when absent, deleted or empty)."""
    return _load(found.value) if found is not None and found.value else {}


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


MAX_HELD = 10_000
CONFLICT_BACKOFF = Backoff(base=0.01, cap=0.5)
SHARED_KEYS = ("rule.", "etcd.")  # written by every decision of a rule / every etcd event


def _claim_record(owner: str, step: str, now: datetime) -> dict[str, Any]:
    return {"owner": owner, "at": now.isoformat(), "done": False, "step": step}


def claim_refused(
    current: dict[str, Any], step: str, owner: str, now: datetime, lease: float
) -> str | None:
    """`done` or `busy` when an existing claim record keeps `step` from being taken."""
    if current.get("final") or (current.get("done") and current.get("step") == step):
        return "done"
    held = _time(current.get("at"))
    fresh = held is not None and now - held < timedelta(seconds=lease)
    if not current.get("done") and fresh and current.get("owner") != owner:
        return "busy"
    return None


class StateStore:
    """`kv` for the rare operations (delete), `ops` for the per-event reads and writes (the
    same bucket through `medic.runtime.replies`, issue 15)."""

    def __init__(self, kv: KeyValue, ops: KvOps) -> None:
        self.kv = kv
        self.ops = ops
        # Claims this replica holds: key -> (revision it wrote, record), so finishing one is a
        # single conditional write. Dropped when finished (or when someone else wrote the key).
        self._held: dict[str, tuple[int, dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _read(self, key: str) -> tuple[dict[str, Any], int | None]:
        found = (await self.ops.get_many([key]))[0]
        if found is None:
            return {}, None
        return _record(found), found.revision

    async def _change(
        self,
        key: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        create_first: bool = False,
    ) -> dict[str, Any]:
        """Read-modify-write `key`; returns the record as it is now. `create_first`: the key
        is most likely new (a problem firing for the first time), so try creating it before
        reading it (one round trip instead of two; a conflict falls back to reading)."""
        if key.startswith(SHARED_KEYS):
            # Every decision of a rule updates its rule.<name> key: serialise this replica's
            # writers, so optimistic concurrency only meets other replicas (rarely), not 64
            # workers of its own (which used to exhaust the retries under a burst).
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                return await self._change_unlocked(key, change)
        if create_first:
            value = _dump(change({}))
            try:
                await self.ops.create(key, value)
            except KeyWrongLastSequenceError:
                pass
            else:
                return _load(value)
        return await self._change_unlocked(key, change)

    async def _change_unlocked(
        self, key: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        for attempt in range(50):
            if attempt:
                await asyncio.sleep(CONFLICT_BACKOFF.delay(attempt))
            current, revision = await self._read(key)
            changed = change(current)
            if revision is not None and _dump(changed) == _dump(current):
                return current  # nothing to write: spare the round trip (most repeat a state)
            value = _dump(changed)
            try:
                if revision is None:
                    await self.ops.create(key, value)
                else:
                    await self.ops.update(key, value, revision)
            except KeyWrongLastSequenceError:
                continue
            return _load(value)
        raise RuntimeError(f"state key {key} kept changing under us")

    # -- claims: one replica per (event, rule) ---------------------------------------------
    async def claim(self, event_id: str, rule: str, step: str, owner: str, lease: float) -> str:
        """Take the decision `step` (e.g. `retry:act:2`) of `rule` for this event.

        One claim per (event, rule), so a redelivered event never gets a second final result:
        `done` (a final outcome was reported, or this very step finished); `busy` (another
        owner holds a fresh lease); `resumed` (an owner that stopped had written the fix: report
        it, never write again); `resumed-writing` (an owner stopped while writing: re-judge,
        and a fix found in place is that owner's); or `claimed`. A non-final outcome (`failed`,
        retried after the backoff) lets the next attempt's step claim it again."""
        key = f"claim.{stable_id(event_id, rule)}"
        now = datetime.now(UTC)
        record = _claim_record(owner, step, now)
        if len(self._held) > MAX_HELD:  # left by handlers that failed: forget (reads fall back)
            self._held.clear()
        try:  # the common case, a decision nobody has seen: one round trip
            self._held[key] = (await self.ops.create(key, _dump(record)), record)
        except KeyWrongLastSequenceError:
            pass
        else:
            return "claimed"
        current, revision = await self._read(key)
        return await self._take_over(key, (current, revision), record, now, lease)

    async def _take_over(
        self,
        key: str,
        found: tuple[dict[str, Any], int | None],
        record: dict[str, Any],
        now: datetime,
        lease: float,
    ) -> str:
        """Judge a claim record someone wrote before (`found`: it and its revision): refuse
        it, or write `record` over it, keeping the marks of an owner that stopped."""
        current, revision = found
        if revision is None:
            return "busy"  # removed under us: come back
        try:
            refused = claim_refused(current, record["step"], record["owner"], now, lease)
            if refused:
                return refused
            interrupted = not current.get("done")
            for mark in ("applied", "writing", "verify"):
                if interrupted and current.get(mark):
                    record[mark] = current[mark]
            self._held[key] = (await self.ops.update(key, _dump(record), revision), record)
        except KeyWrongLastSequenceError:
            return "busy"
        if record.get("applied"):
            return "resumed"
        return "resumed-writing" if record.get("writing") else "claimed"

    async def _update_held(self, key: str, change: dict[str, Any], *, last: bool) -> None:
        """Change a claim this replica holds, with the revision it wrote (no read); anything
        unexpected (someone else wrote it) falls back to read-modify-write."""
        held = self._held.pop(key, None) if last else self._held.get(key)
        if held is not None:
            revision, record = held
            updated = {**record, **change}
            try:
                new_revision = await self.ops.update(key, _dump(updated), revision)
            except KeyWrongLastSequenceError:
                self._held.pop(key, None)
            else:
                if not last:
                    self._held[key] = (new_revision, updated)
                return
        await self._change(key, lambda c: {**c, **change})

    async def mark_writing(self, event_id: str, rule: str) -> None:
        """Written right before the fix: an owner that stops now leaves this trace."""
        key = f"claim.{stable_id(event_id, rule)}"
        await self._update_held(key, {"writing": datetime.now(UTC).isoformat()}, last=False)

    async def mark_not_written(self, event_id: str, rule: str) -> None:
        """The API server refused the write (4xx): nothing was written, so the next owner of this
        claim judges afresh instead of taking a fix someone else made for this one's."""
        key = f"claim.{stable_id(event_id, rule)}"
        await self._update_held(key, {"writing": None}, last=False)

    async def mark_applied(
        self, event_id: str, rule: str, verification: dict[str, Any] | None = None
    ) -> None:
        """Written right after the fix: a later owner of this claim never re-applies; with
        `verification` (what to check, until when) it resumes the check and reports that."""
        key = f"claim.{stable_id(event_id, rule)}"
        change: dict[str, Any] = {"applied": datetime.now(UTC).isoformat()}
        if verification is not None:
            change["verify"] = verification
        await self._update_held(key, change, last=False)

    def held(self, event_id: str, rule: str) -> dict[str, Any]:
        """The claim record this replica holds for (event, rule) ({} when it holds none)."""
        held = self._held.get(f"claim.{stable_id(event_id, rule)}")
        return dict(held[1]) if held is not None else {}

    async def finish(self, event_id: str, rule: str, outcome: str, *, final: bool = True) -> None:
        key = f"claim.{stable_id(event_id, rule)}"
        change: dict[str, Any] = {"done": True, "outcome": outcome, "final": final}
        if not final:  # the next attempt starts clean
            change.update(writing=None, applied=None, verify=None)
        await self._update_held(key, change, last=True)

    async def release(self, event_id: str, rule: str) -> None:
        key = f"claim.{stable_id(event_id, rule)}"
        self._held.pop(key, None)
        await self.kv.delete(key)

    # -- what the engine reads ------------------------------------------------------------
    async def snapshot(
        self,
        cluster: str,
        problem: str,
        rules: list[CompiledRule],
        problem_record: dict[str, Any] | None = None,
        stateless: frozenset[str] = frozenset(),
    ) -> Snapshot:
        """Everything the engine reads, fetched concurrently (one round trip's latency, not
        two per rule plus two). Not read again: the problem's record when the caller has just
        written it (`problem_record`, from `record_problem`), and etcd's state when no rule
        has an etcd precondition (the engine reads it for nothing else). Not read at all: the
        object and rule records of rules whose action is in `stateless` (none is ever kept
        for them, `KeepsNoState`); the engine sees them as new."""
        names = [c.rule.name for c in rules if c.rule.spec.action.name not in stateless]
        keys = [
            *(f"object.{stable_id(name, problem)}" for name in names),
            *(f"rule.{stable_id(name)}" for name in names),
        ]
        if problem_record is None:
            keys.append(f"problem.{stable_id(problem)}")
        if any(c.rule.spec.preconditions.etcd_stable_for is not None for c in rules):
            keys.append(f"etcd.{stable_id(cluster)}")
        raws = [_record(found) for found in await self.ops.get_many(keys)]
        object_raws, rule_raws = raws[: len(names)], raws[len(names) : 2 * len(names)]
        rest = raws[2 * len(names) :]
        praw = problem_record if problem_record is not None else rest.pop(0)
        eraw = rest.pop(0) if rest else {}
        objects: dict[tuple[str, str], ObjectState] = {}
        rule_states: dict[str, RuleState] = {}
        for name, raw, rraw in zip(names, object_raws, rule_raws, strict=True):
            objects[(name, problem)] = ObjectState(
                attempts=int(raw.get("attempts", 0)),
                last_attempt=_time(raw.get("last_attempt")),
                last_outcome=str(raw.get("last_outcome", "")),
                escalated=bool(raw.get("escalated", False)),
            )
            rule_states[name] = RuleState(
                actions=tuple(t for t in map(_time, rraw.get("actions", [])) if t),
                failures=tuple(t for t in map(_time, rraw.get("failures", [])) if t),
                paused_until=_time(rraw.get("paused_until")),
            )
        problems = {
            problem: ProblemState(_time(praw.get("firing_since")), _time(praw.get("resolved_at")))
        }
        etcd: dict[str, EtcdState] = {}
        if eraw:
            etcd[cluster] = EtcdState(
                EtcdCondition(eraw["condition"]),
                _time(eraw.get("stable_since")),
                _time(eraw["at"]) or datetime.now(UTC),
            )
        return Snapshot(objects=objects, problems=problems, rules=rule_states, etcd=etcd)

    # -- what the service records ---------------------------------------------------------
    async def record_problem(self, problem: str, firing: bool, at: datetime) -> dict[str, Any]:
        """Record that `problem` fires (or resolved) at `at`; returns its record as it is now."""

        def change(current: dict[str, Any]) -> dict[str, Any]:
            since = _time(current.get("firing_since"))
            resolved = _time(current.get("resolved_at"))
            if firing:
                if since is None or (resolved is not None and at > resolved):
                    return {"firing_since": at, "resolved_at": None}
                return current
            return {**current, "resolved_at": at}

        # A firing problem is usually new (one record per problem): create before reading.
        return await self._change(f"problem.{stable_id(problem)}", change, create_first=firing)

    async def record_etcd(
        self, cluster: str, condition: EtcdCondition, stable_since: datetime | None, at: datetime
    ) -> None:
        def change(current: dict[str, Any]) -> dict[str, Any]:
            previous = _time(current.get("at"))
            if previous is not None and previous > at:
                return current  # an older observation arrived late
            return {"condition": condition.value, "stable_since": stable_since, "at": at}

        await self._change(f"etcd.{stable_id(cluster)}", change)

    async def record_attempt(self, rule: str, problem: str, outcome: str, at: datetime) -> None:
        def change(current: dict[str, Any]) -> dict[str, Any]:
            attempts = int(current.get("attempts", 0))
            if outcome == "succeeded":
                return {"attempts": attempts + 1, "last_attempt": at, "last_outcome": outcome}
            return {
                **current,
                "attempts": attempts + 1,
                "last_attempt": at,
                "last_outcome": outcome,
            }

        await self._change(f"object.{stable_id(rule, problem)}", change)

    async def mark_refused(self, rule: str, problem: str) -> bool:
        """Record that the action refused for a cause still in place; True the first time (so
        people are told once, not at every re-check). A success clears it (`record_attempt`)."""
        first = False

        def change(current: dict[str, Any]) -> dict[str, Any]:
            nonlocal first
            first = not current.get("refused")
            return {**current, "refused": True}

        await self._change(f"object.{stable_id(rule, problem)}", change)
        return first

    async def record_escalation(self, rule: str, problem: str) -> None:
        await self._change(f"object.{stable_id(rule, problem)}", lambda c: {**c, "escalated": True})

    async def record_rule_run(self, compiled: CompiledRule, failed: bool, at: datetime) -> bool:
        """Track actions and failures; returns True when the circuit breaker just opened."""
        breaker = compiled.rule.spec.limits.circuit_breaker
        opened = False

        def change(current: dict[str, Any]) -> dict[str, Any]:
            nonlocal opened
            window = at - timedelta(seconds=max(60.0, breaker.window))
            actions = [
                t
                for t in current.get("actions", [])
                if (_time(t) or at) > at - timedelta(seconds=60)
            ]
            failures = [t for t in current.get("failures", []) if (_time(t) or at) > window]
            actions.append(at.isoformat())
            paused = current.get("paused_until")
            if failed:
                failures.append(at.isoformat())
                if len(failures) >= breaker.failures:
                    paused = (at + timedelta(seconds=breaker.pause)).isoformat()
                    opened = True
                    failures = []
            return {"actions": actions[-1000:], "failures": failures, "paused_until": paused}

        await self._change(f"rule.{stable_id(compiled.rule.name)}", change)
        return opened


def state_dict(state: ObjectState) -> dict[str, Any]:
    return asdict(state)
