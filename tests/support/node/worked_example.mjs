// The README's worked example with the official TypeScript SDK client
// (@modelcontextprotocol/client, v2, pinned in package-lock.json):
//
//   node worked_example.mjs MODE http URL AGENT_TOKEN APPROVER_TOKEN
//   node worked_example.mjs MODE stdio JITGATE CONFIG IDENTITY_FILE APPROVALS_URL APPROVER_TOKEN
//
// MODE is `default` (the client's default version negotiation, the
// initialize handshake) or `auto` (versionNegotiation {mode: 'auto'}: probes
// server/discover and speaks 2026-07-28). Prints a JSON report of every step,
// the same report as tests/support/python/worked_example.py.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { answer, step } from './jit.mjs';

const [mode, kind, ...rest] = process.argv.slice(2);
let transport, base, approverToken;
if (kind === 'http') {
  const [url, agentToken, approver] = rest;
  transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${agentToken}` } } });
  base = url.replace(/\/mcp$/, '');
  approverToken = approver;
} else if (kind === 'stdio') {
  const [binary, config, identity, approvalsBase, approver] = rest;
  transport = new StdioClientTransport({ command: binary, args: ['serve', '--config', config, '--stdio', '--identity-file', identity], stderr: 'ignore' });
  base = approvalsBase;
  approverToken = approver;
} else {
  throw new Error(`unknown transport ${kind}`);
}

const options = mode === 'auto' ? { versionNegotiation: { mode: 'auto' } } : {};
const client = new Client({ name: 'jitgate-worked-example', version: '1.0.0' }, options);
await client.connect(transport);

const call = (name, args) => client.callTool({ name, arguments: args });

const report = { protocol_version: client.getNegotiatedProtocolVersion() };
const { tools } = await client.listTools();
report.tools = tools.map((t) => t.name).sort();

const begun = await call('jit_begin_task', {
  objective: 'Tidy the notes: read the plan, then remove the old meeting note',
  phases: [
    { name: 'read', tools: ['workspace__read_note'] },
    { name: 'cleanup', tools: ['workspace__delete_note'] },
  ],
});
report.begin = step(begun);
const task = answer(begun).task;

let grant = await call('jit_request', { task, tool: 'workspace__read_note', arguments: { name: 'q3-plan.md' }, purpose: 'read the plan before tidying' });
report.request_read = step(grant);
report.read = step(await call('workspace__read_note', { name: 'q3-plan.md', _jit_token: answer(grant).token }));
report.replay = step(await call('workspace__read_note', { name: 'q3-plan.md', _jit_token: answer(grant).token }));
report.next_phase = step(await call('jit_next_phase', { task, phase: 'cleanup' }));

const ask = { task, tool: 'workspace__delete_note', arguments: { name: 'meeting-2026-11-20.md' }, purpose: 'the meeting is long past' };
const pending = await call('jit_request', ask);
report.pending = step(pending);
report.decision_before = answer(pending).decision;
const approval = answer(pending).approval;
const approved = await fetch(`${base}/approvals/${approval}/approve`, {
  method: 'POST',
  headers: { Authorization: `Bearer ${approverToken}`, 'content-type': 'application/json' },
  body: JSON.stringify({ note: 'meeting is over' }),
});
report.approved_status = approved.status;
report.status_after = answer(await call('jit_approval_status', { approval })).state;
grant = await call('jit_request', ask);
report.granted = step(grant);
report.delete = step(await call('workspace__delete_note', { name: 'meeting-2026-11-20.md', _jit_token: answer(grant).token }));

report.break_glass = step(await call('jit_request', {
  task, tool: 'workspace__delete_note', arguments: { name: 'q3-plan.md' }, purpose: 'clear everything',
  break_glass: { justification: 'it would be quicker' },
}));
report.end = step(await call('jit_end_task', { task, outcome: 'done' }));
report.after_end = step(await call('jit_request', { task, tool: 'workspace__delete_note', arguments: { name: 'q3-plan.md' }, purpose: 'again' }));

await client.close();
console.log(JSON.stringify(report));
