"""What the scenarios and the played controllers need of a cluster, whichever serves it.

The scenarios stage and check objects, and the controllers of `medic.demo.cluster` answer
writes, through this one small interface: the sandbox's `SandboxStore` has it, and so has
`medic.testing.played.ApiWorld` on a real kube-apiserver. Decision logic stays in `cluster.py`
and `scenarios.py`; a `World` only reads, writes and reports writes. Not a Kubernetes client for
Medic itself (that is `medic.runtime.kube`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Obj = dict[str, Any]


class World(Protocol):
    hook_errors: list[Exception]  # what an `on_write` callback raised (tests assert none)

    def put(self, obj: Obj, manager: str = ...) -> Obj:
        """Create or replace the object, status included (staging: this is the world)."""
        ...

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None: ...

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]: ...

    def patch_merge(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: Obj,
        *,
        status: bool = False,
        manager: str = ...,
    ) -> Obj:
        """A JSON merge patch as `manager` (status=True: through the status subresource)."""
        ...

    def stored_version(
        self, api_version_or_group: str, kind: str, name: str, namespace: str | None = None
    ) -> str:
        """The version the object is stored at (what etcd holds, not what a writer used)."""
        ...

    def on_write(self, kind: str, callback: Callable[[World, str, Obj], None]) -> None:
        """Call `callback(world, change, obj)` after every write of a `kind` object."""
        ...
