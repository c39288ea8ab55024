// A minimal loopback reverse proxy that adds `Authorization: Bearer <token>`
// to every request, so the MCP conformance runner (which cannot send headers)
// can test jitgate's authenticated endpoint. Host and all other headers pass
// through unchanged, so jitgate's own DNS-rebinding checks still apply.
//
//   node bearer-proxy.mjs UPSTREAM_URL TOKEN   -> prints "listening PORT"
import http from "node:http";

const [upstream, token] = process.argv.slice(2);
const target = new URL(upstream);

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${token}` };
  const out = http.request(
    { host: target.hostname, port: target.port, path: req.url, method: req.method, headers },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  out.on("error", (e) => {
    res.writeHead(502, { "content-type": "text/plain" });
    res.end(`proxy error: ${e.message}`);
  });
  req.pipe(out);
});
server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
