"""An agent whose identity token has expired, as the official Python SDK
shows it: `python expired_identity.py URL TOKEN` prints, for each era, the
error the SDK raises (all of it, inner exceptions included), one JSON line.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def leaves(e):
    """The exception and, for a group, every exception inside it."""
    inner = getattr(e, "exceptions", None)
    if inner:
        return [x for sub in inner for x in leaves(sub)]
    return [e]


async def attempt(url, token, mode):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30))
    try:
        kwargs = {} if mode == "default" else {"mode": mode}
        async with Client(streamable_http_client(url, http_client=http), **kwargs) as c:
            await c.list_tools()
        return "no error"
    except BaseException as e:  # noqa: BLE001 - what the user would see, whatever it is
        return " | ".join(f"{type(x).__name__}: {x}" for x in leaves(e))


async def main():
    url, token = sys.argv[1], sys.argv[2]
    print(json.dumps({mode: await attempt(url, token, mode) for mode in ("default", "legacy")}))


asyncio.run(main())
