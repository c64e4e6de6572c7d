"""CEL expressions (`when:`), compiled once per rule, evaluated against the event as JSON.

CEL is the Kubernetes-native expression language (ValidatingAdmissionPolicy, CRD validation);
cel-python implements it in pure Python. An expression that fails to evaluate counts as false.
"""

from __future__ import annotations

from typing import Any

import celpy
from celpy.adapter import json_to_cel


class CelError(ValueError):
    pass


class Expression:
    def __init__(self, source: str) -> None:
        self.source = source
        environment = celpy.Environment()
        try:
            self._program = environment.program(environment.compile(source))
        except Exception as exc:  # celpy raises its own parse/compile error classes
            raise CelError(f"invalid CEL expression {source!r}: {exc}") from exc

    def __call__(self, event: dict[str, Any]) -> bool:
        try:
            value = self._program.evaluate({"event": json_to_cel(event)})
        except Exception:  # noqa: BLE001 - a runtime CEL error (missing field) means "no match"
            return False
        return bool(value)
