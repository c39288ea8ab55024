// A child agent working under a delegation, with the official TypeScript
// SDK client (@modelcontextprotocol/client, pinned in package-lock.json):
//
//   node delegate_child.mjs MODE URL AGENT_TOKEN DELEGATION
//
// MODE is `default` (the initialize handshake) or `auto` (2026-07-28).
// It tries a plan beyond the delegation, begins its task within it, reads
// the delegated note with jit_call, and prints {widened, begun, called, task}.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { answer, step } from './jit.mjs';

const [mode, url, agentToken, delegation] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${agentToken}` } } });
const client = new Client({ name: 'jitgate-delegate-child', version: '1.0.0' }, mode === 'auto' ? { versionNegotiation: { mode: 'auto' } } : {});
await client.connect(transport);
const plan = (tools) => [{ name: 'review', tools }];
const widened = step(await client.callTool({ name: 'jit_begin_task', arguments: { objective: 'more', delegation, phases: plan(['workspace__read_note', 'workspace__send_message']) } }));
const begunResult = await client.callTool({ name: 'jit_begin_task', arguments: { objective: 'summarize the Q3 plan', delegation, phases: plan(['workspace__read_note']) } });
const begun = step(begunResult);
let called = null;
let task = null;
if (!begun.is_error) {
  task = answer(begunResult).task;
  called = step(await client.callTool({ name: 'jit_call', arguments: { task, tool: 'workspace__read_note', arguments: { name: 'q3-plan.md' }, purpose: 'summarize' } }));
}
console.log(JSON.stringify({ widened, begun, called, task }));
await client.close();
