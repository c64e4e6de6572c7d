"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a strategic merge patch.

The strategic merge patch is a merge patch in which lists of maps merge by key: by `name`
(containers, env, volumes, ports) or by `type` (conditions); `$patch: delete` in such a list
item removes it, `$patch: replace` on a map replaces it, `$setElementOrder/...` and
`$retainKeys` directives are dropped. Other lists are replaced, as in a merge patch.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from medic.sandbox.catalog import ApiError

MERGE = "application/merge-patch+json"
JSON = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_key(items: list[Any]) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in ("name", "type"):
        if all(key in i for i in items if i.get("$patch") != "delete" or key in i):
            return key
    return None


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        current = result.get(key)
        if isinstance(value, list) and isinstance(current, list):
            mkey = _merge_key(value) or _merge_key(current)
            if mkey is not None and all(isinstance(i, dict) for i in value + current):
                result[key] = _merge_list(current, value, mkey)
                continue
        result[key] = strategic_merge_patch(current, value)
    return result


def _merge_list(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    merged = [dict(i) for i in current]
    index = {i.get(key): n for n, i in enumerate(merged)}
    deleted: set[Any] = set()
    for item in patch:
        ident = item.get(key)
        if item.get("$patch") == "delete":
            deleted.add(ident)
        elif ident in index:
            merged[index[ident]] = strategic_merge_patch(merged[index[ident]], item)
        else:
            index[ident] = len(merged)
            merged.append(strategic_merge_patch({}, item))
    return [i for i in merged if i.get(key) not in deleted]


def apply_patch(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    ctype = content_type.split(";", maxsplit=1)[0].strip().lower()
    if ctype == JSON:
        if not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
        try:
            result = jsonpatch.apply_patch(target, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise ApiError(422, "Invalid", f"the JSON patch could not be applied: {exc}") from exc
    elif ctype in (MERGE, APPLY):
        result = merge_patch(target, patch)
    elif ctype == STRATEGIC:
        result = strategic_merge_patch(target, patch)
    else:
        raise ApiError(415, "UnsupportedMediaType", f"the patch type {ctype!r} is not supported")
    if not isinstance(result, dict):
        raise ApiError(422, "Invalid", "the patched object is not an object")
    return result
