"""Drive jitgate with the official Python MCP client (pip package `mcp`).

Used by tests/python_client.rs and usable by hand:

  python client_e2e.py http URL TOKEN CALLS_JSON
  python client_e2e.py stdio JITGATE_BIN CONFIG IDENTITY_FILE CALLS_JSON

CALLS_JSON is a list of [tool, arguments]. Each call runs jitgate's
just-in-time flow: jit_begin_task (one phase naming the tool), jit_request
for exactly those arguments, then the call with the token in `_jit_token`.
Prints one JSON object: the wrapped tool names the agent sees, the meta-tools,
and per call is_error, text and the jitgate reason code of the first refusal.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def summary(name, r):
    meta = r.meta or {}
    return {
        "tool": name,
        "is_error": bool(r.is_error),
        "text": "\n".join(c.text for c in r.content if getattr(c, "type", "") == "text"),
        "code": (meta.get("jitgate/error") or {}).get("code"),
    }


def answer(r):
    return r.structured_content or json.loads(r.content[0].text)


async def jit_call(session, name, args):
    begun = await session.call_tool("jit_begin_task", {"objective": f"use {name}", "phases": [{"name": "p", "tools": [name]}]})
    if begun.is_error:
        return summary(name, begun)
    task = answer(begun)["task"]
    granted = await session.call_tool("jit_request", {"task": task, "tool": name, "arguments": args, "purpose": "e2e test"})
    if granted.is_error:
        return summary(name, granted)
    return summary(name, await session.call_tool(name, {**args, "_jit_token": answer(granted)["token"]}))


async def drive(session, calls):
    await session.initialize()
    tools = await session.list_tools()
    names = sorted(t.name for t in tools.tools)
    out = {"tools": [n for n in names if not n.startswith("jit_")], "meta_tools": [n for n in names if n.startswith("jit_")], "calls": []}
    for name, args in calls:
        try:
            out["calls"].append(await jit_call(session, name, args))
        except Exception as e:  # a protocol error (e.g. unknown tool)
            out["calls"].append({"tool": name, "is_error": True, "text": str(e), "code": "protocol_error"})
    return out


async def main():
    mode = sys.argv[1]
    if mode == "http":
        url, token, calls = sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                result = await drive(session, calls)
    elif mode == "stdio":
        binary, config, identity, calls = sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
        params = StdioServerParameters(
            command=binary, args=["serve", "--config", config, "--stdio", "--identity-file", identity]
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                result = await drive(session, calls)
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
