"""End-user confirmation over stdio with the official Python SDK's `Client`:

  python confirm_stdio.py MODE JITGATE CONFIG IDENTITY_FILE ASKED_FOR [--cannot-ask]

The client starts `jitgate serve --stdio` itself, as a desktop client does,
and runs confirm_flow.py's task with confirm_flow.py's scripted end user
(they asked for ASKED_FOR, confirm a question only about that address and
decline anything else). MODE is `auto` (2026-07-28: no handshake, so the
client's capabilities travel in every request's `_meta` and jitgate asks with
an input-required result) or `legacy` (the initialize handshake declares
them once and jitgate sends elicitation/create). With `--cannot-ask` the
client registers no elicitation callback, so it declares no elicitation and
must not be asked. Prints confirm_flow.py's JSON report.
"""

import asyncio
import json
import sys

from mcp import Client, StdioServerParameters

import confirm_flow


async def main():
    mode, binary, config, identity, asked_for = sys.argv[1:6]
    can_ask = "--cannot-ask" not in sys.argv[6:]
    server = StdioServerParameters(command=binary, args=["serve", "--config", config, "--stdio", "--identity-file", identity])
    callback = confirm_flow.end_user(asked_for) if can_ask else None
    async with Client(server, mode=mode, cache=None, elicitation_callback=callback) as client:
        report = await confirm_flow.run(client, mode, asked_for)
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
