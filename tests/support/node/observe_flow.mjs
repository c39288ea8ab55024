// An agent that knows nothing of jitgate, with the official TypeScript SDK
// client (@modelcontextprotocol/client, pinned in package-lock.json):
//
//   node observe_flow.mjs MODE URL AGENT_TOKEN CALLS_JSON
//
// MODE is `default` (the initialize handshake) or `auto` (2026-07-28:
// versionNegotiation {mode: 'auto'}). CALLS_JSON is a list of
// [tool, arguments], called in order with plain tools/call. Prints one JSON
// object: per call is_error, jitgate's reason code and the text.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { step } from './jit.mjs';

const [mode, url, agentToken, callsJson] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${agentToken}` } } });
const options = mode === 'auto' ? { versionNegotiation: { mode: 'auto' } } : {};
const client = new Client({ name: 'jitgate-observe-flow', version: '1.0.0' }, options);
await client.connect(transport);
const calls = [];
for (const [name, args] of JSON.parse(callsJson)) {
  calls.push({ tool: name, ...step(await client.callTool({ name, arguments: args })) });
}
console.log(JSON.stringify({ calls }));
await client.close();
