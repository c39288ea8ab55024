// DPoP with the official TypeScript SDK client: the agent proves possession
// of a key on every request (withDpop), and the tokens jitgate mints for it
// are bound to that key.
//
//   node dpop_flow.mjs URL AGENT_TOKEN
//
// Prints a JSON report: the call with the agent's own key, and the same kind
// of token presented without a proof and with another key.
import { Client, StreamableHTTPClientTransport, DpopSession, withDpop } from '@modelcontextprotocol/client';

const [url, token] = process.argv.slice(2);

async function connect(dpopSession) {
  const fetchImpl = dpopSession ? withDpop(dpopSession, async () => token)(fetch) : fetch;
  const headers = dpopSession ? {} : { Authorization: `Bearer ${token}` };
  const client = new Client({ name: 'jitgate-dpop', version: '1.0.0' }, { versionNegotiation: { mode: 'auto' } });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { fetch: fetchImpl, requestInit: { headers } }));
  return client;
}

const answer = (r) => r.structuredContent ?? JSON.parse(r.content[0].text);
const step = (r) => ({ is_error: Boolean(r.isError), code: r._meta?.['jitgate/error']?.code ?? null, text: (r.content ?? []).map((c) => c.text).join('\n') });

const own = await connect(await DpopSession.create());
const plain = await connect(null);
const other = await connect(await DpopSession.create());
const report = { protocol_version: own.getNegotiatedProtocolVersion() };

const call = (c, name, args) => c.callTool({ name, arguments: args });
const begun = answer(await call(own, 'jit_begin_task', { objective: 'read a note', phases: [{ name: 'read', tools: ['workspace__read_note'] }] }));
const grant = async () => answer(await call(own, 'jit_request', { task: begun.task, tool: 'workspace__read_note', arguments: { name: 'q3-plan.md' }, purpose: 'read the plan' }));

const first = await grant();
report.token = first.token;
report.own_key = step(await call(own, 'workspace__read_note', { name: 'q3-plan.md', _jit_token: first.token }));
report.no_proof = step(await call(plain, 'workspace__read_note', { name: 'q3-plan.md', _jit_token: (await grant()).token }));
report.other_key = step(await call(other, 'workspace__read_note', { name: 'q3-plan.md', _jit_token: (await grant()).token }));
// The task is the agent's, whatever key or none: a request without a proof
// gets a token bound to no key.
const unbound = answer(await call(plain, 'jit_request', { task: begun.task, tool: 'workspace__read_note', arguments: { name: 'q3-plan.md' }, purpose: 'read again' }));
report.unbound_token = unbound.token;
report.unbound = step(await call(plain, 'workspace__read_note', { name: 'q3-plan.md', _jit_token: unbound.token }));

for (const c of [own, plain, other]) await c.close();
console.log(JSON.stringify(report));
