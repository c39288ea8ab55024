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
// - Token exchange (RFC 8693) with EXCHANGE_AUDIENCE set in the environment:
//   the client `jitgate-exchange` (secret `exchange-secret`) exchanges an
//   access token this provider issued for RESOURCE (the subject) for one
//   whose audience is EXCHANGE_AUDIENCE, with the subject's `sub` and
//   `act: {sub: "jitgate-exchange"}`, valid 120 s. Anything else is refused.
// - Counters: `GET /__stats` tells how often the JWKS and discovery were
//   fetched and how many exchanges were answered (to check that jitgate
//   does not hammer the provider and reuses what it exchanged).
// Prints "oidc-provider listening on http://127.0.0.1:PORT" when ready.

import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import Provider, { errors } from "oidc-provider";
import { SignJWT, createLocalJWKSet, importJWK, jwtVerify } from "jose";

const [port, resource, uiRedirect] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const issuer = `http://127.0.0.1:${port}`;
const other = "http://127.0.0.1:1/other";
const exchangeAudience = process.env.EXCHANGE_AUDIENCE;
const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token";
const stats = { jwks: 0, discovery: 0, exchanges: 0, exchange_refusals: 0 };
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
    ...(exchangeAudience
      ? [{
          client_id: "jitgate-exchange",
          client_secret: "exchange-secret",
          grant_types: [TOKEN_EXCHANGE],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: "client_secret_basic",
        }]
      : []),
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

if (exchangeAudience) {
  const publicKeys = createLocalJWKSet({
    keys: keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub),
  });
  const signingKey = await importJWK(keys[1], "ES256");
  provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
    const p = ctx.oidc.params;
    const refuse = (error) => {
      stats.exchange_refusals++;
      throw error;
    };
    if (p.subject_token_type !== ACCESS_TOKEN) refuse(new errors.InvalidRequest("subject_token_type must be an access token"));
    if (p.audience !== exchangeAudience) refuse(new errors.InvalidTarget("unknown audience"));
    let subject;
    try {
      ({ payload: subject } = await jwtVerify(p.subject_token, publicKeys, { issuer, audience: resource }));
    } catch (e) {
      refuse(new errors.InvalidGrant(`subject_token: ${e.message}`));
    }
    stats.exchanges++;
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ client_id: ctx.oidc.client.clientId, act: { sub: ctx.oidc.client.clientId }, scope: p.scope })
      .setProtectedHeader({ alg: "ES256", kid: keys[1].kid, typ: "at+jwt" })
      .setIssuer(issuer)
      .setSubject(subject.sub)
      .setAudience(exchangeAudience)
      .setIssuedAt(now)
      .setExpirationTime(now + 120)
      .setJti(randomBytes(8).toString("hex"))
      .sign(signingKey);
    ctx.body = { access_token: token, issued_token_type: ACCESS_TOKEN, token_type: "Bearer", expires_in: 120 };
  }, ["subject_token", "subject_token_type", "audience", "scope", "requested_token_type", "actor_token", "actor_token_type"]);
}

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
