"""CEL expressions in rules (`when:` over the event, `verify.condition:` over the re-read
object), compiled once per rule, evaluated against JSON values.

CEL is the Kubernetes-native expression language (ValidatingAdmissionPolicy, CRD validation);
cel-python implements it in pure Python. An expression that fails to evaluate (a missing field,
a type mismatch) counts as false. Not for I/O: the caller reads the object and passes it in.
"""

from __future__ import annotations

from typing import Any

import celpy
from celpy.adapter import json_to_cel


class CelError(ValueError):
    """An expression that does not compile; one line, with the column when celpy knows it."""


class Expression:
    def __init__(self, source: str) -> None:
        self.source = source
        environment = celpy.Environment()
        try:
            self._program = environment.program(environment.compile(source))
        except Exception as exc:  # celpy raises its own parse/compile error classes
            column = getattr(exc, "column", None)
            # celpy's parse message is the source again with a caret under the column
            detail = f"at column {column}" if column else " ".join(str(exc).split())
            raise CelError(f"invalid CEL expression {source!r}: {detail}") from exc

    def evaluate(self, **variables: Any) -> bool:
        """True when the expression holds for these JSON values; false on any runtime error."""
        try:
            value = self._program.evaluate({k: json_to_cel(v) for k, v in variables.items()})
        except Exception:  # noqa: BLE001 - a runtime CEL error (missing field) means "no match"
            return False
        return bool(value)

    def __call__(self, event: dict[str, Any]) -> bool:
        return self.evaluate(event=event)


def check(source: str | None) -> str | None:
    """For validators: the source unchanged if it compiles, CelError (a ValueError) if not."""
    if source is not None:
        Expression(source)
    return source
