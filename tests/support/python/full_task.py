"""A whole jitgate task with the official Python MCP client over streamable HTTP:

  begin -> request -> call -> next phase -> request -> call -> end,
  then tries to keep acting after the end.

  python full_task.py URL TOKEN

Prints a JSON report of every step for tests/python_client.rs to check.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from jit import answer, step


async def main():
    url, token = sys.argv[1], sys.argv[2]
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    report = {}
    async with streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            begun = await s.call_tool("jit_begin_task", {
                "objective": "Send Alice the Q3 plan summary she asked for",
                "phases": [
                    {"name": "gather", "tools": ["workspace__read_inbox", "workspace__read_note"]},
                    {"name": "reply", "tools": ["workspace__send_message"]},
                ],
            })
            task = answer(begun)["task"]
            report["begin"] = step(begun)

            grant = await s.call_tool("jit_request", {
                "task": task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"},
                "purpose": "read the plan to summarise it",
            })
            report["request_read"] = step(grant)
            read_jti = answer(grant)["jti"]
            report["read"] = step(await s.call_tool("workspace__read_note", {"name": "q3-plan.md", "_jit_token": answer(grant)["token"]}))

            report["next_phase"] = step(await s.call_tool("jit_next_phase", {"task": task, "phase": "reply"}))

            send = {"to": "alice@example.org", "subject": "Q3 plan", "body": "Billing export, 2h first response, two hires."}
            grant = await s.call_tool("jit_request", {
                "task": task, "tool": "workspace__send_message", "arguments": send,
                "purpose": "reply to Alice's request", "follows": read_jti,
            })
            report["request_send"] = step(grant)
            send_token = answer(grant)["token"]
            spare = answer(await s.call_tool("jit_request", {
                "task": task, "tool": "workspace__send_message", "arguments": send, "purpose": "spare",
            }))["token"]
            report["send"] = step(await s.call_tool("workspace__send_message", {**send, "_jit_token": send_token}))
            report["end"] = step(await s.call_tool("jit_end_task", {"task": task, "outcome": "done"}))

            # Nothing after the end works.
            report["after_end_replay"] = step(await s.call_tool("workspace__send_message", {**send, "_jit_token": send_token}))
            report["after_end_spare"] = step(await s.call_tool("workspace__send_message", {**send, "_jit_token": spare}))
            report["after_end_request"] = step(await s.call_tool("jit_request", {
                "task": task, "tool": "workspace__send_message", "arguments": send, "purpose": "again",
            }))
            report["after_end_phase"] = step(await s.call_tool("jit_next_phase", {"task": task, "phase": "reply"}))
            report["after_end_no_token"] = step(await s.call_tool("workspace__send_message", send))
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
