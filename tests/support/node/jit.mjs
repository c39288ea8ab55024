// What every jitgate test driver reads off a tool result (as
// tests/support/python/jit.py does for the Python drivers).

/** A meta-tool's answer: its structured content, or the JSON text. */
export const answer = (r) => r.structuredContent ?? JSON.parse(r.content[0].text);

/** One step of a report: refused or not, jitgate's reason code, the text. */
export const step = (r) => ({
  is_error: Boolean(r.isError),
  code: r._meta?.['jitgate/error']?.code ?? null,
  text: (r.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n'),
});
