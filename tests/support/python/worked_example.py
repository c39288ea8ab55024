"""The README's worked example with the official Python SDK's high-level
`Client`, in the negotiation mode a user picks:

  python worked_example.py MODE http URL AGENT_TOKEN APPROVER_TOKEN
  python worked_example.py MODE stdio JITGATE CONFIG IDENTITY_FILE APPROVALS_URL APPROVER_TOKEN

MODE is `auto` (the SDK's default: probes server/discover and speaks
2026-07-28 with jitgate, no session) or `legacy` (the initialize handshake).
Over stdio, the person approves through the HTTP approvals API of a gateway
that shares the state directory (APPROVALS_URL).

The task: read a note, move to the clean-up phase, ask to delete an old note
(a person must approve), get it approved and delete it, have a break-glass
request refused, end the task, and see that nothing works after the end.
Prints a JSON report of every step.
"""

import asyncio
import json
import sys
import urllib.request

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from jit import answer, step


def approve(base, approval, token):
    req = urllib.request.Request(
        f"{base}/approvals/{approval}/approve",
        data=json.dumps({"note": "meeting is over"}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req) as resp:
        return resp.status


async def run(client, approvals_base, approver_token):
    report = {"protocol_version": client.protocol_version}
    tools = await client.list_tools()
    report["tools"] = sorted(t.name for t in tools.tools)

    begun = await client.call_tool("jit_begin_task", {
        "objective": "Tidy the notes: read the plan, then remove the old meeting note",
        "phases": [
            {"name": "read", "tools": ["workspace__read_note"]},
            {"name": "cleanup", "tools": ["workspace__delete_note"]},
        ],
    })
    report["begin"] = step(begun)
    task = answer(begun)["task"]

    grant = await client.call_tool("jit_request", {
        "task": task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"},
        "purpose": "read the plan before tidying",
    })
    report["request_read"] = step(grant)
    report["read"] = step(await client.call_tool("workspace__read_note", {"name": "q3-plan.md", "_jit_token": answer(grant)["token"]}))
    report["replay"] = step(await client.call_tool("workspace__read_note", {"name": "q3-plan.md", "_jit_token": answer(grant)["token"]}))

    report["next_phase"] = step(await client.call_tool("jit_next_phase", {"task": task, "phase": "cleanup"}))

    ask = {"task": task, "tool": "workspace__delete_note", "arguments": {"name": "meeting-2026-11-20.md"}, "purpose": "the meeting is long past"}
    pending = await client.call_tool("jit_request", ask)
    report["pending"] = step(pending)
    approval = answer(pending)["approval"]
    report["decision_before"] = answer(pending)["decision"]
    report["approved_status"] = approve(approvals_base, approval, approver_token)
    report["status_after"] = answer(await client.call_tool("jit_approval_status", {"approval": approval}))["state"]
    granted = await client.call_tool("jit_request", ask)
    report["granted"] = step(granted)
    report["delete"] = step(await client.call_tool("workspace__delete_note", {"name": "meeting-2026-11-20.md", "_jit_token": answer(granted)["token"]}))

    report["break_glass"] = step(await client.call_tool("jit_request", {
        "task": task, "tool": "workspace__delete_note", "arguments": {"name": "q3-plan.md"},
        "purpose": "clear everything", "break_glass": {"justification": "it would be quicker"},
    }))

    report["end"] = step(await client.call_tool("jit_end_task", {"task": task, "outcome": "done"}))
    report["after_end"] = step(await client.call_tool("jit_request", {
        "task": task, "tool": "workspace__delete_note", "arguments": {"name": "q3-plan.md"}, "purpose": "again",
    }))
    return report


async def main():
    mode, transport = sys.argv[1], sys.argv[2]
    if transport == "http":
        url, agent_token, approver_token = sys.argv[3], sys.argv[4], sys.argv[5]
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {agent_token}"}, timeout=httpx2.Timeout(30, read=300))
        server = streamable_http_client(url, http_client=http)
        base = url.rsplit("/mcp", 1)[0]
    elif transport == "stdio":
        binary, config, identity, base, approver_token = sys.argv[3:8]
        server = StdioServerParameters(command=binary, args=["serve", "--config", config, "--stdio", "--identity-file", identity])
    else:
        raise SystemExit(f"unknown transport {transport}")
    async with Client(server, mode=mode, cache=None) as client:
        report = await run(client, base, approver_token)
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
