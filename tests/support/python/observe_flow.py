"""An agent that knows nothing of jitgate, driven with the official Python
MCP client (pip package `mcp`) in its default mode: it lists the tools and
calls them directly, as agents in front of which jitgate is rolled out in
observe mode do.

  python observe_flow.py URL TOKEN CALLS_JSON

CALLS_JSON is a list of [tool, arguments], called in order with plain
`tools/call`. Prints one JSON object: per call is_error, text, and
jitgate's reason code of a refusal.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from jit import step


async def main(url, token, calls):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = sorted(t.name for t in (await session.list_tools()).tools)
                out = {"tools": tools, "calls": []}
                for name, args in calls:
                    out["calls"].append({"tool": name, **step(await session.call_tool(name, args))})
                print(json.dumps(out))


asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
