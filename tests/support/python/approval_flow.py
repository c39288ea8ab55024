"""An approval-gated call with the official Python MCP client: the agent asks,
gets a pending approval, a person approves through the gateway's approvals
API (with a person's credential, not the agent's), and the agent's repeated
request gets the token.

  python approval_flow.py URL AGENT_TOKEN APPROVER_TOKEN

Prints a JSON report of every step.
"""

import asyncio
import json
import sys
import urllib.request

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def answer(r):
    return r.structured_content or json.loads(r.content[0].text)


def code(r):
    return ((r.meta or {}).get("jitgate/error") or {}).get("code")


def post(url, token):
    req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Authorization": f"Bearer {token}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def main(url, agent_token, approver_token):
    report = {}
    base = url.rsplit("/mcp", 1)[0]
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {agent_token}"})
    async with streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            task = answer(await s.call_tool("jit_begin_task", {"objective": "remove an old note", "phases": [{"name": "clean", "tools": ["workspace__delete_note"]}]}))["task"]
            ask = {"task": task, "tool": "workspace__delete_note", "arguments": {"name": "meeting-2026-11-20.md"}, "purpose": "the meeting is long past"}
            pending = answer(await s.call_tool("jit_request", ask))
            report["pending"] = pending
            approval = pending["approval"]
            # The agent's own identity cannot approve.
            report["agent_approves"] = post(f"{base}/approvals/{approval}/approve", agent_token)
            report["status_before"] = answer(await s.call_tool("jit_approval_status", {"approval": approval}))["state"]
            report["person_approves"] = post(f"{base}/approvals/{approval}/approve", approver_token)
            report["status_after"] = answer(await s.call_tool("jit_approval_status", {"approval": approval}))["state"]
            granted = answer(await s.call_tool("jit_request", ask))
            report["granted"] = {"decision": granted["decision"], "approved_by": granted.get("approval", {}).get("approved_by")}
            done = await s.call_tool("workspace__delete_note", {"name": "meeting-2026-11-20.md", "_jit_token": granted["token"]})
            report["call"] = {"is_error": bool(done.is_error), "text": done.content[0].text}
            again = await s.call_tool("jit_request", ask)
            report["again"] = answer(again).get("decision") if not again.is_error else code(again)
            await s.call_tool("jit_end_task", {"task": task, "outcome": "done"})
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
