"""Objects staged in a throw-away sandbox, for `medic rules test`: give the objects, get the
kubeconfig of an API server that holds them (and nothing else); it stops when the block ends.

What the sandbox does not do (admission, defaulting, schema validation) it does not do here
either: objects are stored as given, status included. Not for serving (`medic sandbox` does).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from medic.sandbox import KubeSandbox
from medic.sandbox.catalog import ApiError


class StagingError(ValueError):
    """An object the sandbox cannot hold; names its position in the list and why."""


@contextlib.asynccontextmanager
async def staged(objects: Sequence[Mapping[str, Any]]) -> AsyncIterator[Path]:
    async with KubeSandbox.start() as sandbox:
        for index, obj in enumerate(objects):
            if not isinstance(obj, Mapping) or not (obj.get("metadata") or {}).get("name"):
                raise StagingError(f"objects[{index}]: not an object with metadata.name")
            try:
                sandbox.store.put(dict(obj))
            except ApiError as exc:
                kind = f"{obj.get('apiVersion')} {obj.get('kind')}"
                raise StagingError(f"objects[{index}] ({kind}): {exc}") from exc
        yield sandbox.kubeconfig_path
