"""A parent agent that delegates, with the official Python MCP client
(pip package `mcp`) in its default mode: `Client`, 2026-07-28, no session
(a task outlives the process that began it).

  python delegate_parent.py URL TOKEN begin             -> {"task": ...}
  python delegate_parent.py URL TOKEN delegate TASK     -> {"delegation": ...} or a refusal
  python delegate_parent.py URL TOKEN end TASK          -> the step

Prints one JSON object.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from jit import answer, step


async def main(url, token, what, args):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=300))
    async with http:
        async with Client(streamable_http_client(url, http_client=http), cache=None) as client:
            if what == "begin":
                r = await client.call_tool("jit_begin_task", {"objective": "answer about Q3", "phases": [
                    {"name": "read", "tools": ["workspace__read_note"]}, {"name": "reply", "tools": ["workspace__send_message"]}]})
            elif what == "delegate":
                r = await client.call_tool("jit_delegate", {"task": args[0], "agent": "helper", "objective": "summarize the Q3 plan",
                                                            "phases": [{"name": "review", "tools": ["workspace__read_note"]}]})
            else:
                r = await client.call_tool("jit_end_task", {"task": args[0], "outcome": "done"})
            out = step(r)
            if not r.is_error:
                out["answer"] = answer(r)
            print(json.dumps(out))


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
