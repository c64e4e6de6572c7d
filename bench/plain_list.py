"""The baseline client of the real-server watcher benchmark, run as its own process.

    python -m bench.plain_list SERVER CA CERT KEY FIELD_SELECTOR

A plain aiohttp client (no Medic, no projection): the same two paged lists the watcher's
informers make (HelmReleases, and Secrets with the watcher's field selector; limit 500,
continue), at the same time, and it keeps every listed object as decoded, as a client without a
projection would. Prints one JSON line: list time, items, pages, and its own VmRSS/VmHWM.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

LIMIT = 500
HELMRELEASES = "/apis/helm.toolkit.fluxcd.io/v2/helmreleases"
SECRETS = "/api/v1/secrets"


async def paged(
    session: aiohttp.ClientSession, path: str, query: dict[str, str], kept: list[Any]
) -> int:
    pages = 0
    query = {"limit": str(LIMIT), **query}
    while True:
        async with session.get(path, params=query) as reply:
            reply.raise_for_status()
            page = await reply.json()
        pages += 1
        kept.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return pages
        query["continue"] = token


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


async def main(server: str, ca: str, cert: str, key: str, field_selector: str) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    kept: list[Any] = []
    async with aiohttp.ClientSession(
        base_url=server,
        connector=aiohttp.TCPConnector(ssl=context),
        headers={"Accept": "application/json"},
    ) as session:
        started = time.perf_counter()
        pages = await asyncio.gather(
            paged(session, HELMRELEASES, {}, kept),
            paged(session, SECRETS, {"fieldSelector": field_selector}, kept),
        )
        listed = time.perf_counter() - started
    return {
        "list_s": listed,
        "items": len(kept),
        "pages": sum(pages),
        "rss_kib": status_kib("VmRSS"),
        "hwm_kib": status_kib("VmHWM"),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:6]))), flush=True)
