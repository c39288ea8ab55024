// A real OpenID provider for jitgate's tests: panva's oidc-provider (a
// certified OpenID Connect implementation), on loopback.
//
//   node oidc_provider.mjs PORT RESOURCE [UI_REDIRECT_URI]
//
// - Keys: a fresh RSA (RS256) and EC (ES256) pair on every start, with new
//   kids, so restarting it on the same port is a key rotation.
// - Agents: the client `triage-client` (secret `triage-secret`) gets JWT
//   access tokens by client credentials, for RESOURCE (scopes mcp:tools and
//   mcp:admin) or for the other resource http://127.0.0.1:1/other (a token
//   for someone else). `POST /__sign?alg=RS256|ES256` chooses how access
//   tokens are signed.
// - People (with UI_REDIRECT_URI): the client `jitgate-ui` (secret
//   `ui-secret`) signs people in by authorization code with PKCE through the
//   provider's development login page (any login name, any password); the
//   ID token carries `groups`: ["platform-oncall"] for logins starting with
//   "oncall", none otherwise.
// - Counters: `GET /__stats` tells how often the JWKS and discovery were
//   fetched (to check that jitgate does not hammer the provider).
// Prints "oidc-provider listening on http://127.0.0.1:PORT" when ready.

import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import Provider from "oidc-provider";

const [port, resource, uiRedirect] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const issuer = `http://127.0.0.1:${port}`;
const other = "http://127.0.0.1:1/other";
const stats = { jwks: 0, discovery: 0 };
let signAlg = "ES256";

function privateJwk(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: "jwk" }), alg, use: "sig", kid: `${alg.toLowerCase()}-${randomBytes(4).toString("hex")}` };
}

const keys = [
  privateJwk("rsa", { modulusLength: 2048 }, "RS256"),
  privateJwk("ec", { namedCurve: "P-256" }, "ES256"),
];

const provider = new Provider(issuer, {
  jwks: { keys },
  clients: [
    {
      client_id: "triage-client",
      client_secret: "triage-secret",
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_basic",
    },
    {
      client_id: "triage-client-post",
      client_secret: "triage-secret",
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_post",
    },
    ...(uiRedirect
      ? [{
          client_id: "jitgate-ui",
          client_secret: "ui-secret",
          grant_types: ["authorization_code"],
          response_types: ["code"],
          redirect_uris: [uiRedirect],
          token_endpoint_auth_method: "client_secret_basic",
        }]
      : []),
  ],
  claims: { openid: ["sub"], groups: ["groups"] },
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, groups: id.startsWith("oncall") ? ["platform-oncall"] : [] }),
  }),
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, requested) => {
        if (requested !== resource && requested !== other) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: "mcp:tools mcp:admin",
          audience: requested,
          accessTokenTTL: 600,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: signAlg } },
        };
      },
    },
  },
});
provider.proxy = false;

const handler = provider.callback();
const server = createServer((req, res) => {
  if (req.url === "/__stats") {
    res.setHeader("content-type", "application/json");
    return res.end(JSON.stringify(stats));
  }
  if (req.url.startsWith("/__sign")) {
    signAlg = new URL(req.url, issuer).searchParams.get("alg") || "ES256";
    return res.end(signAlg);
  }
  if (req.url.startsWith("/jwks")) stats.jwks++;
  if (req.url.startsWith("/.well-known/openid-configuration")) stats.discovery++;
  return handler(req, res);
});
server.listen(port, "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
