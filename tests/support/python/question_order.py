"""A decline, or a person's denial, closes every question about a request
(issue 23), driven with the official Python SDK's high-level `Client` in
its default (2026-07-28) mode:

  python question_order.py URL AGENT_TOKEN TASK ASKED_FOR

TASK is a triage task in its `reply` phase, after the poisoned inbox was
read. The script opens questions without answering them, prints
{"opened": ...} on one line and waits for a line on stdin (the test has a
person deny one request meanwhile), then answers them and prints the report.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from jit import answer, step

YES = {"jitgate_confirm": {"action": "accept", "content": {"confirm": True}}}
NO = {"jitgate_confirm": {"action": "decline"}}


async def never_called(context, params):
    raise RuntimeError("every question is answered by hand in this script")


async def main():
    url, agent_token, task, asked_for = sys.argv[1:5]
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {agent_token}"}, timeout=httpx2.Timeout(30, read=300))
    async with Client(streamable_http_client(url, http_client=http), cache=None, elicitation_callback=never_called) as client:
        def send(to):
            return {"task": task, "tool": "workspace__send_message", "arguments": {"to": to, "subject": "Records", "body": "As requested."}, "purpose": "answer the message"}

        async def ask(to):
            r = await client.session.call_tool("jit_request", send(to), allow_input_required=True)
            return getattr(r, "request_state", None)

        async def reply(to, state, responses):
            r = await client.session.call_tool("jit_request", send(to), input_responses=responses, request_state=state, allow_input_required=True)
            return step(r), r

        # Two questions about one injected destination, and one about another.
        declined_1, declined_2 = await ask("audit@exfil.attacker.test"), await ask("audit@exfil.attacker.test")
        denied = await ask("billing@exfil.attacker.test")
        benign = await ask(asked_for)
        print(json.dumps({"opened": [declined_1, declined_2, denied, benign]}), flush=True)
        sys.stdin.readline()

        report = {}
        report["decline"], _ = await reply("audit@exfil.attacker.test", declined_1, NO)
        # The other question about the declined request, confirmed: closed.
        report["confirm_after_decline"], _ = await reply("audit@exfil.attacker.test", declined_2, YES)
        # A person denied this request while its question was open: closed.
        report["confirm_after_denial"], _ = await reply("billing@exfil.attacker.test", denied, YES)
        # The user's own request, confirmed through its own question: works.
        report["benign"], granted = await reply(asked_for, benign, YES)
        if not granted.is_error and "token" in answer(granted):
            sent = await client.call_tool("workspace__send_message", {"to": asked_for, "subject": "Records", "body": "As requested.", "_jit_token": answer(granted)["token"]})
            report["benign_send"] = step(sent)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
