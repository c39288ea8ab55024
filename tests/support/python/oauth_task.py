"""A jitgate task by the official Python MCP client authenticating with OAuth
client credentials (the SDK's ClientCredentialsOAuthProvider), as the MCP
authorization spec has it: the client sends no token, gets jitgate's 401
with `resource_metadata`, reads the protected resource metadata, discovers
the authorization server, asks it for a token for jitgate's resource, and
retries.

  python oauth_task.py URL ISSUER CLIENT_ID CLIENT_SECRET

Prints a JSON report: each step's outcome and the token requests seen.
"""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client

from jit import answer, step


class MemoryStorage:
    """Tokens and client information kept in memory for one run."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


async def main():
    url, issuer, client_id, secret = sys.argv[1:5]
    seen = []

    async def log_request(request):
        seen.append(f"{request.method} {request.url.path}")

    storage = MemoryStorage()
    oauth = ClientCredentialsOAuthProvider(
        server_url=url,
        storage=storage,
        client_id=client_id,
        client_secret=secret,
        scope="mcp:tools",
        issuer=issuer,
    )
    report = {}
    async with httpx2.AsyncClient(auth=oauth, event_hooks={"request": [log_request]}, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                begun = await s.call_tool("jit_begin_task", {
                    "objective": "Read the Q3 plan",
                    "phases": [{"name": "read", "tools": ["workspace__read_note"]}],
                })
                report["begin"] = step(begun)
                task = answer(begun)["task"]
                grant = await s.call_tool("jit_request", {
                    "task": task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"},
                    "purpose": "read the plan",
                })
                report["request"] = step(grant)
                called = await s.call_tool("workspace__read_note", {"name": "q3-plan.md", "_jit_token": answer(grant)["token"]})
                report["call"] = step(called)
                report["call_text"] = "".join(c.text for c in called.content if getattr(c, "text", None))
                report["end"] = step(await s.call_tool("jit_end_task", {"task": task, "outcome": "done"}))
    report["requests"] = seen
    report["token"] = storage.tokens.access_token if storage.tokens else None
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
