//! Agent identity: short-lived JWTs from approved issuers (a SPIRE server,
//! an OpenID provider, jitgate's development issuer).
//!
//! Trusts: the issuer list in the gateway config and the keys it names or
//! fetches ([`crate::issuer_keys`]). Checks, in order: size and shape, issuer
//! approved, `kid` known for that issuer, `alg` one that key is pinned to,
//! signature, `typ` and lifetime, audience is this gateway, `exp` / `nbf`
//! within the configured skew, a SPIFFE ID inside the issuer's trust domain,
//! subject has an agent file the issuer may speak for, required scopes. Each failure is its own error with a reason code
//! and a sentence telling the caller what to do.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentDirectory};
use crate::clock::{Clock, rfc3339};
use crate::config::{IdentityConfig, IssuerConfig, IssuerKeys};
use crate::issuer_keys::{self, KeyCheckError, KeySet, KeyUse, RemoteKeys, VerificationKey};
use crate::jws::{self, JwsError, UnverifiedJws};
use crate::keys::{KeyPair, PublicKey};

/// Largest identity token accepted.
pub const MAX_IDENTITY_TOKEN_BYTES: usize = 8 * 1024;
/// JOSE `typ` of identity tokens minted by the development issuer.
pub const IDENTITY_TYP: &str = "JWT";

/// Claims of an agent identity token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Any other claims (attestation and the like); policies see them as
    /// `principal.claims` tags.
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

/// `aud` may be one string or a list (RFC 7519).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(crate) fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(v) => v.iter().any(|a| a == aud),
        }
    }
    pub(crate) fn describe(&self) -> String {
        match self {
            Audience::One(a) => a.clone(),
            Audience::Many(v) => v.join(", "),
        }
    }
}

/// Why an identity was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("no identity token: send `Authorization: Bearer <JWT>` (HTTP) or start with `--identity-file` (stdio); mint a development one with `jitgate identity mint`")]
    Missing,
    #[error("identity token is malformed ({0}); it must be a compact JWS (a JWT) signed by an approved issuer")]
    Malformed(JwsError),
    #[error("identity token uses alg `{0}`; jitgate verifies only EdDSA, ES256, ES384, RS256, RS384, RS512, PS256, PS384 and PS512, as each issuer's keys allow (never none or HMAC)")]
    UnsupportedAlg(String),
    #[error("identity token uses alg `{alg}`, but key `{kid}` of issuer `{issuer}` verifies only {allowed}; the algorithm is fixed by the key, not by the token")]
    AlgNotAllowed { alg: String, kid: String, issuer: String, allowed: String },
    #[error("cannot verify identity tokens of this issuer right now: {0}; the gateway keeps retrying (see /healthz)")]
    KeysUnavailable(String),
    #[error("identity token lacks the scope(s) {missing} this gateway requires of issuer `{issuer}`'s tokens; ask the authorization server for them (scope=\"{wanted}\")")]
    InsufficientScope { missing: String, issuer: String, wanted: String },
    #[error("this token is for subject `{sub}` but was issued to client `{client}`: an agent known by its client id takes only tokens issued to it as a client (client_id or azp equal to sub)")]
    NotIssuedToAgent { sub: String, client: String },
    #[error("subject `{0}` is not a valid SPIFFE ID (spiffe://TRUST-DOMAIN/PATH, no query, fragment or empty, `.` or `..` segments); JWT-SVIDs must name one")]
    NotSpiffeId(String),
    #[error("identity token issuer `{0}` is not approved by this gateway; add it to [[identity.issuers]] or use an approved issuer")]
    UnknownIssuer(String),
    #[error("identity token key `{kid}` is not a key of issuer `{issuer}`; the issuer may have rotated keys: update its public_keys/jwks_file")]
    UnknownKey { kid: String, issuer: String },
    #[error("identity token signature is invalid; the token was altered or not signed by issuer `{0}`")]
    BadSignature(String),
    #[error("identity token is for audience `{got}`, not this gateway (`{want}`); mint it with aud = \"{want}\"")]
    WrongAudience { got: String, want: String },
    #[error("identity token expired {ago} s ago (exp {at}); get a fresh token from your issuer")]
    Expired { ago: i64, at: String },
    #[error("identity token is not valid before {at}; check the issuer's and this host's clocks")]
    NotYetValid { at: String },
    #[error("subject `{sub}` is outside issuer `{issuer}`'s trust domain `{domain}`")]
    OutsideTrustDomain { sub: String, issuer: String, domain: String },
    #[error("no agent file for subject `{0}`; a platform team must register the agent in the agents directory")]
    UnknownAgent(String),
    #[error("identity token has typ `{0}`; an identity credential is a JWT (typ absent, `JWT` or `at+jwt`)")]
    WrongType(String),
    #[error("identity token lives {seconds} s, longer than its issuer's max_lifetime of {max} s; get a shorter-lived token")]
    LifetimeTooLong { seconds: i64, max: i64 },
    #[error("issuer `{issuer}` may not speak for agent `{agent}`: list it in the agent file's `issuers`, or give the issuer a trust_domain that holds the agent's id")]
    IssuerNotAllowed { issuer: String, agent: String },
    #[error("identity token is bound to a key (cnf) and this transport cannot prove possession of it; use it over HTTP with DPoP, or get an unbound token for stdio")]
    KeyBound,
}

impl IdentityError {
    /// Stable machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::Missing => "identity_missing",
            IdentityError::Malformed(_) => "identity_malformed",
            IdentityError::UnsupportedAlg(_) | IdentityError::AlgNotAllowed { .. } => "identity_bad_alg",
            IdentityError::KeysUnavailable(_) => "identity_keys_unavailable",
            IdentityError::InsufficientScope { .. } => "insufficient_scope",
            IdentityError::NotSpiffeId(_) => "identity_not_spiffe_id",
            IdentityError::NotIssuedToAgent { .. } => "identity_not_issued_to_agent",
            IdentityError::UnknownIssuer(_) => "identity_unknown_issuer",
            IdentityError::UnknownKey { .. } => "identity_unknown_key",
            IdentityError::BadSignature(_) => "identity_bad_signature",
            IdentityError::WrongAudience { .. } => "identity_wrong_audience",
            IdentityError::Expired { .. } => "identity_expired",
            IdentityError::NotYetValid { .. } => "identity_not_yet_valid",
            IdentityError::OutsideTrustDomain { .. } => "identity_outside_trust_domain",
            IdentityError::UnknownAgent(_) => "identity_unknown_agent",
            IdentityError::KeyBound => "identity_key_bound",
            IdentityError::WrongType(_) => "identity_bad_type",
            IdentityError::LifetimeTooLong { .. } => "identity_lifetime_too_long",
            IdentityError::IssuerNotAllowed { .. } => "identity_issuer_not_allowed",
        }
    }
}

/// A verified agent identity: the only way code learns who an agent is.
#[derive(Debug, Clone)]
pub struct VerifiedAgent {
    pub agent: Arc<Agent>,
    /// The name of the approved issuer that vouched for it.
    pub issuer: String,
    pub expires_at: i64,
    /// The token's `jti`, if any, for logs.
    pub token_id: Option<String>,
    /// Unregistered claims as strings (JSON text for non-strings), for policy.
    pub claims: Arc<std::collections::BTreeMap<String, String>>,
    /// The credential itself: only ever sent to `[token_exchange]` as the
    /// subject of an exchange, never to a downstream server or a log.
    pub credential: PresentedCredential,
}

/// An agent's credential as presented. Its `Debug` shows nothing, so no log
/// line or error message can carry it by accident.
#[derive(Clone)]
pub struct PresentedCredential(Arc<str>);

impl PresentedCredential {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PresentedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresentedCredential(..)")
    }
}

pub(crate) struct TrustedIssuer {
    pub(crate) name: String,
    pub(crate) iss: String,
    trust_domain: Option<String>,
    pub(crate) keys: KeySet,
    max_lifetime: i64,
    typ: Option<String>,
    required_scopes: Vec<String>,
    spiffe: bool,
    pub(crate) groups_claim: String,
    agent_claim: crate::config::AgentClaim,
}

impl TrustedIssuer {
    /// Load an issuer's verification keys (creating the development key pair
    /// on first use). A remote key set is only prepared here: it is fetched
    /// when the gateway starts ([`IdentityVerifier::remote_key_sets`]).
    pub(crate) fn load(i: &IssuerConfig) -> Result<Self, IssuerSetupError> {
        let err = |reason: String| IssuerSetupError { issuer: i.name.clone(), reason };
        let ed25519 = |keys: Vec<PublicKey>| -> Result<KeySet, IssuerSetupError> {
            if !i.algorithms.contains(&jsonwebtoken::Algorithm::EdDSA) {
                return Err(err("its keys are Ed25519, but EdDSA is not in its `algorithms`".into()));
            }
            let keys = keys.iter().map(VerificationKey::ed25519).collect::<Result<Vec<_>, _>>().map_err(err)?;
            Ok(KeySet::Static(Arc::new(keys)))
        };
        let keys = match &i.keys {
            IssuerKeys::Development { key_file } => {
                let (pair, created) = KeyPair::load_or_create(key_file).map_err(|e| err(e.to_string()))?;
                if created {
                    tracing::warn!(issuer = %i.name, path = %key_file.display(), "created development issuer key; never use a development issuer in production");
                }
                ed25519(vec![pair.public()])?
            }
            IssuerKeys::Inline(list) => ed25519(list.iter().map(|x| PublicKey::from_b64url(x).map_err(|e| err(e.to_string()))).collect::<Result<_, _>>()?)?,
            IssuerKeys::JwksFile(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
                let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(format!("{}: not JSON: {e}", path.display())))?;
                let (keys, skipped) = issuer_keys::keys_from_jwks(&doc, &i.algorithms, KeyUse::Signature).map_err(|e| err(format!("{}: {e}", path.display())))?;
                if !skipped.is_empty() {
                    tracing::warn!(issuer = %i.name, path = %path.display(), skipped = ?skipped, "some keys of the JWKS file are not used");
                }
                KeySet::Static(Arc::new(keys))
            }
            IssuerKeys::Remote(source) => {
                KeySet::Remote(Arc::new(RemoteKeys::new(&i.name, source.clone(), i.algorithms.clone(), i.max_stale).map_err(err)?))
            }
        };
        let max_lifetime = i64::try_from(i.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        Ok(Self {
            name: i.name.clone(),
            iss: i.iss.clone(),
            trust_domain: i.trust_domain.clone(),
            keys,
            max_lifetime,
            typ: i.typ.clone(),
            required_scopes: i.required_scopes.clone(),
            spiffe: i.spiffe,
            groups_claim: i.groups_claim.clone(),
            agent_claim: i.agent_claim,
        })
    }

    /// What every credential of this issuer must be besides well signed: of
    /// a credential `typ` (the issuer's `typ` if it sets one; else absent,
    /// `JWT` or `at+jwt`, never another token kind such as a capability
    /// token or a DPoP proof), and no longer-lived than the issuer's
    /// `max_lifetime`.
    pub(crate) fn check_credential(&self, parsed: &UnverifiedJws, iat: Option<i64>, exp: i64, now: i64) -> Result<(), SignedTokenError> {
        let typ = parsed.header.typ.as_deref().map(str::to_ascii_lowercase);
        let typ = typ.as_deref().map(|t| t.strip_prefix("application/").unwrap_or(t));
        let fits = match &self.typ {
            Some(want) => typ == Some(want.to_ascii_lowercase().strip_prefix("application/").unwrap_or(&want.to_ascii_lowercase())),
            None => matches!(typ, None | Some("jwt") | Some("at+jwt")),
        };
        if !fits {
            return Err(SignedTokenError::WrongType(parsed.header.typ.clone().unwrap_or_default()));
        }
        let seconds = exp.saturating_sub(iat.unwrap_or(now).min(now));
        if seconds > self.max_lifetime {
            return Err(SignedTokenError::TooLong { seconds, max: self.max_lifetime });
        }
        Ok(())
    }

    /// Find the token's key among this issuer's and check the signature with
    /// the algorithms that key is pinned to.
    pub(crate) fn check_signature(&self, parsed: &UnverifiedJws, now: i64) -> Result<(), SignedTokenError> {
        let alg = issuer_keys::parse_alg(&parsed.header.alg).ok_or_else(|| SignedTokenError::UnsupportedAlg(parsed.header.alg.clone()))?;
        // RFC 7515 §4.1.11: a critical extension jitgate does not know means
        // the token must not be accepted.
        if parsed.header.crit.is_some() {
            return Err(SignedTokenError::Malformed(JwsError::BadPart { part: "header", reason: "`crit` names extensions jitgate does not process".into() }));
        }
        let key = self.keys.find(parsed.header.kid.as_deref(), now).map_err(SignedTokenError::from)?;
        key.verify(parsed.raw(), alg).map(|_| ()).map_err(SignedTokenError::from)
    }

    /// The issuer's remote key set, if its keys are fetched.
    pub(crate) fn remote(&self) -> Option<Arc<RemoteKeys>> {
        self.keys.remote().cloned()
    }
}

/// A token named a `kid` issuer `name` does not have: refresh that issuer's
/// remote key set (rate-limited); true if a refresh ran and succeeded, so the
/// token is worth verifying again. Agents' and people's verifiers share it.
pub(crate) async fn refreshed_for_unknown_kid(issuers: &[TrustedIssuer], name: &str, clock: &dyn Clock) -> bool {
    match issuers.iter().find(|i| i.name == name).and_then(TrustedIssuer::remote) {
        Some(remote) => remote.refresh_for_unknown_kid(clock).await,
        None => false,
    }
}

impl From<KeyCheckError> for SignedTokenError {
    fn from(e: KeyCheckError) -> Self {
        match e {
            KeyCheckError::UnknownKey(kid) => SignedTokenError::UnknownKey(kid),
            KeyCheckError::AlgNotAllowed { alg, kid, allowed } => SignedTokenError::AlgNotAllowed { alg, kid, allowed },
            KeyCheckError::BadSignature => SignedTokenError::BadSignature,
            KeyCheckError::KeysUnavailable(why) => SignedTokenError::KeysUnavailable(why),
            KeyCheckError::Malformed(why) => SignedTokenError::Malformed(JwsError::BadPart { part: "token", reason: why }),
        }
    }
}

/// A SPIFFE ID as the JWT-SVID rules require: `spiffe://` a trust domain
/// name, then a non-empty path of non-empty segments other than `.` and
/// `..`, no query or fragment, only the allowed characters.
fn is_spiffe_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("spiffe://") else { return false };
    let Some((domain, path)) = rest.split_once('/') else { return false };
    let domain_ok = !domain.is_empty() && domain.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
    let path_ok = path.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".." && seg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
    domain_ok && path_ok
}

/// The scopes a token carries: `scope` (space-separated, RFC 8693/9068) or
/// `scp` (a list or a string, as some providers write it).
fn token_scopes(extra: &std::collections::BTreeMap<String, serde_json::Value>) -> Vec<String> {
    let mut out = Vec::new();
    for claim in ["scope", "scp"] {
        match extra.get(claim) {
            Some(serde_json::Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
            Some(serde_json::Value::Array(items)) => out.extend(items.iter().filter_map(|v| v.as_str().map(str::to_owned))),
            _ => {}
        }
    }
    out
}

/// Failures common to every signed credential (agents' and people's); each
/// verifier maps them to its own error with its own wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignedTokenError {
    Malformed(JwsError),
    UnsupportedAlg(String),
    AlgNotAllowed { alg: String, kid: String, allowed: Vec<String> },
    KeysUnavailable(String),
    UnknownKey(String),
    BadSignature,
    Expired { ago: i64, at: String },
    NotYetValid { at: String },
    WrongType(String),
    TooLong { seconds: i64, max: i64 },
}

/// `exp` and `nbf` against `now`, with `skew` seconds of tolerance.
pub(crate) fn check_lifetime(now: i64, skew: i64, exp: i64, nbf: Option<i64>) -> Result<(), SignedTokenError> {
    if now > exp.saturating_add(skew) {
        return Err(SignedTokenError::Expired { ago: now - exp, at: rfc3339(exp) });
    }
    match nbf {
        Some(nbf) if now.saturating_add(skew) < nbf => Err(SignedTokenError::NotYetValid { at: rfc3339(nbf) }),
        _ => Ok(()),
    }
}

impl IdentityError {
    fn from_signed(e: SignedTokenError, issuer: &str) -> Self {
        match e {
            SignedTokenError::Malformed(j) => IdentityError::Malformed(j),
            SignedTokenError::UnsupportedAlg(a) => IdentityError::UnsupportedAlg(a),
            SignedTokenError::AlgNotAllowed { alg, kid, allowed } => IdentityError::AlgNotAllowed { alg, kid, issuer: issuer.to_owned(), allowed: allowed.join(", ") },
            SignedTokenError::KeysUnavailable(reason) => IdentityError::KeysUnavailable(reason),
            SignedTokenError::UnknownKey(kid) => IdentityError::UnknownKey { kid, issuer: issuer.to_owned() },
            SignedTokenError::BadSignature => IdentityError::BadSignature(issuer.to_owned()),
            SignedTokenError::Expired { ago, at } => IdentityError::Expired { ago, at },
            SignedTokenError::NotYetValid { at } => IdentityError::NotYetValid { at },
            SignedTokenError::WrongType(t) => IdentityError::WrongType(t),
            SignedTokenError::TooLong { seconds, max } => IdentityError::LifetimeTooLong { seconds, max },
        }
    }
}

/// The identity verifier built from the config.
pub struct IdentityVerifier {
    /// Audiences a token may name: the gateway id, and the OAuth resource
    /// URI when `[oauth]` is set (RFC 8707).
    audiences: Vec<String>,
    skew: i64,
    issuers: Vec<TrustedIssuer>,
    agents: AgentDirectory,
    clock: Arc<dyn Clock>,
    /// Tokens that verified, by SHA-256 of the token. A token is immutable and
    /// issuers, keys and agents are fixed while the gateway runs, so only the
    /// token's lifetime has to be checked again on a hit. Every HTTP request
    /// carries the bearer token; this saves a signature check per request.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], Cached>>,
}

/// A verified token, with the key that verified it: a hit counts only while
/// that key is still in its issuer's usable set (a key removed by rotation,
/// or a remote set past `max_stale`, ends the token's cached verification).
#[derive(Clone)]
struct Cached {
    agent: VerifiedAgent,
    issuer: usize,
    kid: Option<String>,
}

/// Bound on cached verified identities (cleared when full).
const VERIFIED_CACHE_MAX: usize = 4096;

/// Failure to set up issuers (bad key files).
#[derive(Debug, thiserror::Error)]
#[error("identity issuer `{issuer}`: {reason}")]
pub struct IssuerSetupError {
    pub issuer: String,
    pub reason: String,
}

impl IdentityVerifier {
    /// Build from config. The development issuer's key pair is created in the
    /// state directory on first use.
    pub fn new(
        audience: &str,
        cfg: &IdentityConfig,
        agents: AgentDirectory,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IssuerSetupError> {
        let issuers = cfg.issuers.iter().map(TrustedIssuer::load).collect::<Result<Vec<_>, _>>()?;
        // An agent bound to an issuer that does not exist could never sign in,
        // and a later issuer of that name would speak for it unreviewed.
        for agent in agents.iter() {
            if let Some(missing) = agent.issuers.iter().find(|n| !issuers.iter().any(|i| &i.name == *n)) {
                return Err(IssuerSetupError { issuer: missing.clone(), reason: format!("agent `{}` lists it in `issuers`, but no [[identity.issuers]] has that name", agent.name) });
            }
        }
        Ok(Self {
            audiences: vec![audience.to_owned()],
            skew: i64::try_from(cfg.clock_skew.as_secs()).unwrap_or(60),
            issuers,
            agents,
            clock,
            verified: Default::default(),
        })
    }

    /// Also accept tokens issued for `aud` (the gateway's OAuth resource URI).
    pub fn also_accept_audience(&mut self, aud: &str) {
        if !self.audiences.iter().any(|a| a == aud) {
            self.audiences.push(aud.to_owned());
        }
    }

    /// The agent directory this verifier maps subjects into.
    pub fn agents(&self) -> &AgentDirectory {
        &self.agents
    }

    /// Verify an identity token and map it to its agent.
    pub fn verify(&self, token: &str) -> Result<VerifiedAgent, IdentityError> {
        use sha2::{Digest, Sha256};
        let key: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let cached = self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        if let Some(c) = cached {
            let key_still_there = self.issuers.get(c.issuer).is_some_and(|i| i.keys.find(c.kid.as_deref(), self.clock.now_unix()).is_ok());
            if key_still_there {
                self.still_valid(&c.agent)?;
                return Ok(c.agent);
            }
            self.verified.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        }
        let (agent, issuer, kid) = self.verify_uncached(token)?;
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, Cached { agent: agent.clone(), issuer, kid });
        Ok(agent)
    }

    /// Every issuer's remote key set, to fetch at start and keep fresh.
    pub fn remote_key_sets(&self) -> Vec<Arc<RemoteKeys>> {
        self.issuers.iter().filter_map(TrustedIssuer::remote).collect()
    }

    /// Verify, and when the token names a `kid` its issuer's remote key set
    /// does not have (the provider may have rotated), refresh the set once
    /// (rate-limited) and try again.
    pub async fn verify_refreshing(&self, token: &str) -> Result<VerifiedAgent, IdentityError> {
        match self.verify(token) {
            Err(IdentityError::UnknownKey { kid, issuer }) => {
                if refreshed_for_unknown_kid(&self.issuers, &issuer, self.clock.as_ref()).await {
                    self.verify(token)
                } else {
                    Err(IdentityError::UnknownKey { kid, issuer })
                }
            }
            other => other,
        }
    }

    /// Verify an identity token fully (no cache); also which issuer (its
    /// index) and key verified it.
    fn verify_uncached(&self, token: &str) -> Result<(VerifiedAgent, usize, Option<String>), IdentityError> {
        let parsed = jws::parse_any_alg(token, MAX_IDENTITY_TOKEN_BYTES).map_err(IdentityError::Malformed)?;
        // Claims are read before the signature only to pick the issuer's keys;
        // nothing is trusted until the signature has verified.
        let claims: IdentityClaims = parsed.claims().map_err(IdentityError::Malformed)?;
        let (index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.iss == claims.iss)
            .ok_or_else(|| IdentityError::UnknownIssuer(claims.iss.clone()))?;
        issuer.check_signature(&parsed, self.clock.now_unix()).map_err(|e| IdentityError::from_signed(e, &issuer.name))?;
        issuer.check_credential(&parsed, claims.iat, claims.exp, self.clock.now_unix()).map_err(|e| IdentityError::from_signed(e, &issuer.name))?;
        if !self.audiences.iter().any(|a| claims.aud.contains(a)) {
            return Err(IdentityError::WrongAudience { got: claims.aud.describe(), want: self.audiences.join("` or `") });
        }
        self.check_times(&claims)?;
        if issuer.spiffe && !is_spiffe_id(&claims.sub) {
            return Err(IdentityError::NotSpiffeId(claims.sub));
        }
        if let Some(domain) = &issuer.trust_domain {
            let inside = claims.sub.strip_prefix(domain.as_str()).is_some_and(|rest| rest.starts_with('/'));
            if !inside {
                return Err(IdentityError::OutsideTrustDomain { sub: claims.sub, issuer: issuer.name.clone(), domain: domain.clone() });
            }
        }
        // The client the token was issued to, if it says; `azp` and
        // `client_id` must agree when both are present.
        let clients: Vec<&str> = ["azp", "client_id"].iter().filter_map(|c| claims.extra.get(*c)).map(|v| v.as_str().unwrap_or("\u{0}not a string")).collect();
        let client = clients.first().copied().filter(|first| clients.iter().all(|c| c == first));
        let subject = match issuer.agent_claim {
            crate::config::AgentClaim::Sub => claims.sub.as_str(),
            crate::config::AgentClaim::Client => client.ok_or_else(|| IdentityError::NotIssuedToAgent { sub: claims.sub.clone(), client: String::new() })?,
        };
        let agent = self.agents.by_subject(subject).ok_or_else(|| IdentityError::UnknownAgent(subject.to_owned()))?;
        // Who may speak for this agent: the issuers its file names, else an
        // issuer whose trust domain holds its id (one without a trust domain
        // could otherwise speak for any agent).
        let allowed = if agent.issuers.is_empty() { issuer.trust_domain.is_some() } else { agent.issuers.iter().any(|i| *i == issuer.name) };
        if !allowed {
            return Err(IdentityError::IssuerNotAllowed { issuer: issuer.name.clone(), agent: agent.name.clone() });
        }
        // An agent known by a subject its issuer gives it (an OAuth client
        // id) is spoken for only by tokens issued to it as a client: a
        // person whose user name happens to equal the client id, signing in
        // at the same provider through another client, is not the agent.
        // (With `agent_claim = "azp"` the agent is that client by definition.)
        if !agent.id.starts_with("spiffe://") && client != Some(subject) {
            return Err(IdentityError::NotIssuedToAgent { sub: claims.sub.clone(), client: client.unwrap_or("").to_owned() });
        }
        if !issuer.required_scopes.is_empty() {
            let have = token_scopes(&claims.extra);
            let missing: Vec<&str> = issuer.required_scopes.iter().filter(|s| !have.contains(s)).map(String::as_str).collect();
            if !missing.is_empty() {
                return Err(IdentityError::InsufficientScope { missing: missing.join(" "), issuer: issuer.name.clone(), wanted: issuer.required_scopes.join(" ") });
            }
        }
        let extra = claims
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
            .collect();
        let verified = VerifiedAgent {
            agent: Arc::new(agent.clone()),
            issuer: issuer.name.clone(),
            expires_at: claims.exp,
            token_id: claims.jti,
            claims: Arc::new(extra),
            credential: PresentedCredential(Arc::from(token.trim())),
        };
        Ok((verified, index, parsed.header.kid.clone()))
    }

    fn check_times(&self, claims: &IdentityClaims) -> Result<(), IdentityError> {
        check_lifetime(self.clock.now_unix(), self.skew, claims.exp, claims.nbf).map_err(|e| IdentityError::from_signed(e, ""))
    }

    /// Is a previously verified identity still within its lifetime?
    pub fn still_valid(&self, v: &VerifiedAgent) -> Result<(), IdentityError> {
        let now = self.clock.now_unix();
        if now > v.expires_at.saturating_add(self.skew) {
            return Err(IdentityError::Expired { ago: now - v.expires_at, at: rfc3339(v.expires_at) });
        }
        Ok(())
    }
}

/// Mint an identity token (development issuer, tests).
pub fn mint(key: &KeyPair, iss: &str, sub: &str, aud: &str, now: i64, ttl_secs: i64) -> Result<String, serde_json::Error> {
    let mut jti = [0u8; 12];
    // A missing jti only weakens log correlation, never verification.
    let _ = getrandom::fill(&mut jti);
    let claims = IdentityClaims {
        iss: iss.into(),
        sub: sub.into(),
        aud: Audience::One(aud.into()),
        exp: now + ttl_secs,
        nbf: Some(now),
        iat: Some(now),
        jti: Some(hex::encode(jti)),
        extra: Default::default(),
    };
    jws::sign(&claims, &key.kid, IDENTITY_TYP, &key.signing)
}

#[cfg(test)]
mod tests;
