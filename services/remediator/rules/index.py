"""Rules indexed by (event type, problem, kind) so matching cost stays flat as rules grow.

A rule is filed under every key its match can take; a wildcard dimension files it under `*`.
Lookup unions at most 8 buckets (each dimension: exact or `*`), then runs the full match on
those candidates only.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from medic.remediator.rules.cel import Expression
from medic.remediator.rules.model import Rule

ANY = "*"
MAX_LOOKED_UP = 4096


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` the rest."""
    want, have = pattern.split("."), subject.split(".")
    for index, part in enumerate(want):
        if part == ">":
            return len(have) > index
        if index >= len(have) or (part not in {"*", have[index]}):
            return False
    return len(want) == len(have)


def _globs(patterns: list[str], value: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)


@dataclass
class CompiledRule:
    rule: Rule
    message: re.Pattern[str] | None
    when: Expression | None
    verify: Expression | None = None  # spec.verify.condition, over the re-read object

    @classmethod
    def compile(cls, rule: Rule) -> CompiledRule:
        spec = rule.spec
        message = re.compile(spec.match.message) if spec.match.message else None
        when = Expression(spec.when) if spec.when else None
        verify = Expression(spec.verify.condition) if spec.verify.condition else None
        return cls(rule, message, when, verify)

    def keys(self) -> Iterable[tuple[str, str, str]]:
        match = self.rule.spec.match
        types = match.types or [ANY]
        problems = match.problems or [ANY]
        kinds = [k for k in match.kinds if not any(c in k for c in "*?[")] or [ANY]
        if match.kinds and len(kinds) != len(match.kinds):
            kinds = [ANY]
        return product(types, problems, kinds)

    def matches(self, view: dict[str, Any], subject: str, raw: dict[str, Any]) -> bool:
        match = self.rule.spec.match
        checks = (
            (not match.subjects or any(subject_matches(p, subject) for p in match.subjects))
            and _globs(match.clusters, view["cluster"])
            and _globs(match.namespaces, view["namespace"])
            and _globs(match.names, view["name"])
            and _globs(match.kinds, view["kind"])
            and (not match.states or view["state"] in match.states)
            and (not match.reasons or view["reason"] in match.reasons)
            and (not match.classifications or view["classification"] in match.classifications)
            and (not match.etcd_conditions or view["etcd_condition"] in match.etcd_conditions)
            and all(view["labels"].get(k) == v for k, v in match.labels.items())
            and all(view["fields"].get(k) == v for k, v in match.evidence.items())
        )
        if not checks:
            return False
        if self.message is not None and not self.message.search(view["message"]):
            return False
        return self.when is None or self.when(raw)


@dataclass
class RuleSet:
    """An immutable, indexed set of rules (a new one is built on every reload)."""

    rules: list[CompiledRule] = field(default_factory=list)
    index: dict[tuple[str, str, str], list[CompiledRule]] = field(default_factory=dict)
    # candidates() per (type, problem, kind) asked: the set never changes once built
    _looked_up: dict[tuple[str, str, str], list[CompiledRule]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def build(cls, rules: Iterable[Rule]) -> RuleSet:
        compiled = [CompiledRule.compile(r) for r in rules if r.enabled]
        compiled.sort(key=lambda c: (c.rule.spec.priority, c.rule.name))
        index: dict[tuple[str, str, str], list[CompiledRule]] = {}
        for rule in compiled:
            for key in set(rule.keys()):
                index.setdefault(key, []).append(rule)
        return cls(compiled, index)

    def candidates(self, event_type: str, problem: str, kind: str) -> list[CompiledRule]:
        """The rules filed under the event's keys, in priority order (a new list each time)."""
        asked = (event_type, problem, kind)
        found = self._looked_up.get(asked)
        if found is None:
            seen: dict[str, CompiledRule] = {}
            for key in product((event_type, ANY), (problem, ANY), (kind, ANY)):
                for rule in self.index.get(key, ()):
                    seen.setdefault(rule.rule.name, rule)
            found = sorted(seen.values(), key=lambda c: (c.rule.spec.priority, c.rule.name))
            if len(self._looked_up) < MAX_LOOKED_UP:  # kinds and types come from events
                self._looked_up[asked] = found
        return list(found)

    def names(self) -> list[str]:
        return [r.rule.name for r in self.rules]
