"""Backups of objects before Medic mutates them (Helm release Secrets), in a NATS KV bucket.

`medic backup list` shows them; `medic backup restore ID` writes the object back as it was
(replacing the current one, with its resourceVersion, so a concurrent change is not overwritten
blindly).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from medic.runtime.kube import KubeClient, NotFoundError, ResourceType
from medic.schemas import stable_id


class BackupStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def save(self, obj: dict[str, Any], rt: ResourceType, reason: str) -> str:
        metadata = obj.get("metadata") or {}
        backup_id = stable_id(metadata.get("uid"), metadata.get("resourceVersion"))[:16]
        record = {
            "id": backup_id,
            "at": datetime.now(UTC).isoformat(),
            "reason": reason,
            "resource": [rt.group, rt.version, rt.plural, rt.kind, rt.namespaced],
            "object": obj,
        }
        await self.kv.put(f"backup.{backup_id}", json.dumps(record).encode())
        return backup_id

    async def get(self, backup_id: str) -> dict[str, Any]:
        try:
            entry = await self.kv.get(f"backup.{backup_id}")
        except KeyNotFoundError:
            raise KeyError(f"no backup {backup_id!r}") from None
        return dict(json.loads(entry.value or b"{}"))

    async def list(self) -> list[dict[str, Any]]:
        try:
            keys = await self.kv.keys()
        except Exception:  # noqa: BLE001 - nats-py raises NoKeysError on an empty bucket
            return []
        found = []
        for key in keys:
            record = json.loads((await self.kv.get(key)).value or b"{}")
            meta = record["object"].get("metadata", {})
            found.append(
                {
                    "id": record["id"],
                    "at": record["at"],
                    "reason": record["reason"],
                    "kind": record["resource"][3],
                    "namespace": meta.get("namespace"),
                    "name": meta.get("name"),
                }
            )
        return found

    async def restore(self, backup_id: str, kube: KubeClient) -> dict[str, Any]:
        record = await self.get(backup_id)
        rt = ResourceType(*record["resource"])
        obj = dict(record["object"])
        metadata = dict(obj.get("metadata") or {})
        for volatile in ("resourceVersion", "managedFields", "uid", "creationTimestamp"):
            metadata.pop(volatile, None)
        try:
            current = await kube.get(rt, metadata["name"], metadata.get("namespace"))
        except NotFoundError:
            return dict(await kube.create(rt, {**obj, "metadata": metadata}))
        metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        return dict(await kube.replace(rt, {**obj, "metadata": metadata}))
