// A jitgate task by the official TypeScript SDK client authenticating with
// OAuth client credentials (ClientCredentialsProvider): from jitgate's 401
// it finds the protected resource metadata and the authorization server,
// gets a token for jitgate's resource, and retries.
//
//   node oauth_task.mjs URL ISSUER CLIENT_ID CLIENT_SECRET
//
// Prints a JSON report of each step.
import { Client, StreamableHTTPClientTransport, ClientCredentialsProvider } from '@modelcontextprotocol/client';

const [url, issuer, clientId, clientSecret] = process.argv.slice(2);
const authProvider = new ClientCredentialsProvider({ clientId, clientSecret, scope: 'mcp:tools', expectedIssuer: issuer });
const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider });
const client = new Client({ name: 'jitgate-oauth-task', version: '1.0.0' }, { versionNegotiation: { mode: 'auto' } });
await client.connect(transport);

const answer = (r) => r.structuredContent ?? JSON.parse(r.content[0].text);
const step = (r) => ({ is_error: Boolean(r.isError), code: r._meta?.['jitgate/error']?.code ?? null });
const call = (name, args) => client.callTool({ name, arguments: args });

const report = {};
const begun = await call('jit_begin_task', { objective: 'Read the Q3 plan', phases: [{ name: 'read', tools: ['workspace__read_note'] }] });
report.begin = step(begun);
const task = answer(begun).task;
const grant = await call('jit_request', { task, tool: 'workspace__read_note', arguments: { name: 'q3-plan.md' }, purpose: 'read the plan' });
report.request = step(grant);
const read = await call('workspace__read_note', { name: 'q3-plan.md', _jit_token: answer(grant).token });
report.call = step(read);
report.call_text = (read.content ?? []).map((c) => c.text ?? '').join('');
report.end = step(await call('jit_end_task', { task, outcome: 'done' }));
await client.close();
console.log(JSON.stringify(report));
