//! Approver identity: the credentials of people who approve pending requests
//! and review break-glass grants.
//!
//! Trusts: only the `[[approvals.issuers]]` of the gateway config, which the
//! config loader keeps apart from the agent issuers. An agent identity can
//! never approve: its issuer is not an approver issuer (and is named as such
//! in the error), and a subject that is an agent's SPIFFE id is refused even
//! if an approver issuer signed it. Approvers belong to groups (the `groups`
//! claim); an approval for group G needs a member of G.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::Config;
use crate::identity::{Audience, IssuerSetupError, SignedTokenError, TrustedIssuer, check_lifetime};
use crate::jws::{self, JwsError};
use crate::keys::KeyPair;

/// Largest approver credential accepted.
pub const MAX_APPROVER_TOKEN_BYTES: usize = 8 * 1024;

/// Claims of an approver credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApproverClaims {
    pub iss: String,
    /// The person, e.g. `alice@example.org`.
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Approval groups the person belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A verified person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedApprover {
    pub subject: String,
    pub issuer: String,
    pub groups: Vec<String>,
}

impl VerifiedApprover {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Why an approver credential was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApproverError {
    #[error("no approver credential: pass --credential FILE or set JITGATE_APPROVER_TOKEN (HTTP: Authorization: Bearer); mint a development one with `jitgate identity mint --approver NAME --groups G`")]
    Missing,
    #[error("this gateway has no [[approvals.issuers]]; configure an issuer of people's credentials before approving")]
    NotConfigured,
    #[error("approver credential is malformed ({0}); it must be a compact JWS (a JWT) signed by an approver issuer")]
    Malformed(JwsError),
    #[error("cannot verify people's credentials of this issuer right now: {0}; the gateway keeps retrying (see /healthz)")]
    KeysUnavailable(String),
    #[error("this is an agent identity (issuer `{0}`): agents can never approve or review; use a person's credential from an approver issuer")]
    AgentIdentity(String),
    #[error("approver credential issuer `{0}` is not an approver issuer of this gateway; add it to [[approvals.issuers]]")]
    UnknownIssuer(String),
    #[error("approver credential key `{kid}` is not a key of approver issuer `{issuer}`")]
    UnknownKey { kid: String, issuer: String },
    #[error("approver credential signature is invalid (not signed by approver issuer `{0}`)")]
    BadSignature(String),
    #[error("approver credential is for audience `{got}`, not this gateway (`{want}`)")]
    WrongAudience { got: String, want: String },
    #[error("approver credential expired {ago} s ago (exp {at}); get a fresh one")]
    Expired { ago: i64, at: String },
    #[error("approver credential is not valid before {at}")]
    NotYetValid { at: String },
    #[error("subject `{0}` is an agent identity; agents can never approve or review")]
    SubjectIsAgent(String),
}

impl ApproverError {
    /// Stable machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            ApproverError::Missing => "approver_missing",
            ApproverError::NotConfigured => "approver_not_configured",
            ApproverError::Malformed(_) => "approver_malformed",
            ApproverError::KeysUnavailable(_) => "approver_keys_unavailable",
            ApproverError::AgentIdentity(_) => "approver_is_agent",
            ApproverError::UnknownIssuer(_) => "approver_unknown_issuer",
            ApproverError::UnknownKey { .. } => "approver_unknown_key",
            ApproverError::BadSignature(_) => "approver_bad_signature",
            ApproverError::WrongAudience { .. } => "approver_wrong_audience",
            ApproverError::Expired { .. } => "approver_expired",
            ApproverError::NotYetValid { .. } => "approver_not_yet_valid",
            ApproverError::SubjectIsAgent(_) => "approver_is_agent",
        }
    }
}

/// Verifies approver credentials.
pub struct ApproverVerifier {
    audience: String,
    skew: i64,
    issuers: Vec<TrustedIssuer>,
    /// `iss` → name of every agent issuer, to name the mistake precisely.
    agent_issuers: BTreeMap<String, String>,
    clock: Arc<dyn Clock>,
}

impl ApproverVerifier {
    /// Build from the gateway config (creates the development approver key on first use).
    pub fn new(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, IssuerSetupError> {
        Self::with_issuers(config, &config.approvals.issuers, clock)
    }

    /// The same checks for reviewers (`[[reviewers.issuers]]`).
    pub fn reviewers(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, IssuerSetupError> {
        Self::with_issuers(config, &config.reviewers, clock)
    }

    fn with_issuers(config: &Config, people: &[crate::config::IssuerConfig], clock: Arc<dyn Clock>) -> Result<Self, IssuerSetupError> {
        Ok(Self {
            audience: config.gateway_id.clone(),
            skew: i64::try_from(config.identity.clock_skew.as_secs()).unwrap_or(60),
            issuers: people.iter().map(TrustedIssuer::load).collect::<Result<_, _>>()?,
            agent_issuers: config.identity.issuers.iter().map(|i| (i.iss.clone(), i.name.clone())).collect(),
            clock,
        })
    }

    /// Every people's issuer's remote key set, to fetch at start and keep fresh.
    pub fn remote_key_sets(&self) -> Vec<Arc<crate::issuer_keys::RemoteKeys>> {
        self.issuers.iter().filter_map(TrustedIssuer::remote).collect()
    }

    /// Verify, refreshing a remote key set once (rate-limited) when the
    /// credential names a `kid` it does not have.
    pub async fn verify_refreshing(&self, token: &str) -> Result<VerifiedApprover, ApproverError> {
        match self.verify(token) {
            Err(ApproverError::UnknownKey { kid, issuer }) => {
                if crate::identity::refreshed_for_unknown_kid(&self.issuers, &issuer, self.clock.as_ref()).await {
                    self.verify(token)
                } else {
                    Err(ApproverError::UnknownKey { kid, issuer })
                }
            }
            other => other,
        }
    }

    /// Does this verifier hold the issuer named `name`?
    pub fn has_issuer(&self, name: &str) -> bool {
        self.issuers.iter().any(|i| i.name == name)
    }

    /// Verify an OpenID Connect ID token from a sign-in at issuer `name`:
    /// signed by that issuer's keys, for this gateway's client id (`aud`),
    /// carrying the nonce of this sign-in, within its lifetime, of a person
    /// (never a SPIFFE ID). Groups come from the issuer's groups claim.
    pub fn verify_id_token(&self, token: &str, name: &str, client_id: &str, nonce: &str) -> Result<VerifiedApprover, ApproverError> {
        let parsed = jws::parse_any_alg(token.trim(), MAX_APPROVER_TOKEN_BYTES).map_err(ApproverError::Malformed)?;
        let claims: serde_json::Value = parsed.claims().map_err(ApproverError::Malformed)?;
        let issuer = self.issuers.iter().find(|i| i.name == name).ok_or(ApproverError::NotConfigured)?;
        let bad = |reason: &str| ApproverError::Malformed(crate::jws::JwsError::BadPart { part: "claims", reason: reason.to_owned() });
        let iss = claims.get("iss").and_then(serde_json::Value::as_str).unwrap_or("");
        if iss != issuer.iss {
            return Err(ApproverError::UnknownIssuer(iss.to_owned()));
        }
        let now = self.clock.now_unix();
        let signed = |e| ApproverError::from_signed(e, &issuer.name);
        issuer.check_signature(&parsed, now).map_err(signed)?;
        let exp = claims.get("exp").and_then(serde_json::Value::as_i64).ok_or_else(|| bad("no exp"))?;
        let iat = claims.get("iat").and_then(serde_json::Value::as_i64);
        issuer.check_credential(&parsed, iat, exp, now).map_err(signed)?;
        check_lifetime(now, self.skew, exp, claims.get("nbf").and_then(serde_json::Value::as_i64)).map_err(signed)?;
        let aud: Audience = serde_json::from_value(claims.get("aud").cloned().unwrap_or_default()).map_err(|_| bad("no aud"))?;
        if !aud.contains(client_id) {
            return Err(ApproverError::WrongAudience { got: aud.describe(), want: client_id.to_owned() });
        }
        if claims.get("nonce").and_then(serde_json::Value::as_str) != Some(nonce) {
            return Err(bad("the nonce is not this sign-in's (a replayed or foreign ID token)"));
        }
        let sub = claims.get("sub").and_then(serde_json::Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| bad("no sub"))?;
        if is_agent_subject(sub) {
            return Err(ApproverError::SubjectIsAgent(sub.to_owned()));
        }
        Ok(VerifiedApprover { subject: sub.to_owned(), issuer: issuer.name.clone(), groups: groups_of(&claims, &issuer.groups_claim) })
    }

    /// Verify a credential.
    pub fn verify(&self, token: &str) -> Result<VerifiedApprover, ApproverError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(ApproverError::Missing);
        }
        let parsed = jws::parse_any_alg(token, MAX_APPROVER_TOKEN_BYTES).map_err(ApproverError::Malformed)?;
        // Claims are read before the signature only to pick the issuer.
        let claims: ApproverClaims = parsed.claims().map_err(ApproverError::Malformed)?;
        if let Some(name) = self.agent_issuers.get(&claims.iss) {
            return Err(ApproverError::AgentIdentity(name.clone()));
        }
        if self.issuers.is_empty() {
            return Err(ApproverError::NotConfigured);
        }
        let issuer = self.issuers.iter().find(|i| i.iss == claims.iss).ok_or_else(|| ApproverError::UnknownIssuer(claims.iss.clone()))?;
        let signed = |e| ApproverError::from_signed(e, &issuer.name);
        issuer.check_signature(&parsed, self.clock.now_unix()).map_err(signed)?;
        issuer.check_credential(&parsed, claims.iat, claims.exp, self.clock.now_unix()).map_err(signed)?;
        if !claims.aud.contains(&self.audience) {
            return Err(ApproverError::WrongAudience { got: claims.aud.describe(), want: self.audience.clone() });
        }
        check_lifetime(self.clock.now_unix(), self.skew, claims.exp, claims.nbf).map_err(signed)?;
        if is_agent_subject(&claims.sub) {
            return Err(ApproverError::SubjectIsAgent(claims.sub));
        }
        let raw: serde_json::Value = parsed.claims().map_err(ApproverError::Malformed)?;
        Ok(VerifiedApprover { subject: claims.sub, issuer: issuer.name.clone(), groups: groups_of(&raw, &issuer.groups_claim) })
    }
}

impl ApproverError {
    /// A failure common to every signed credential, as a people's error.
    fn from_signed(e: SignedTokenError, issuer: &str) -> Self {
        match e {
            SignedTokenError::Malformed(j) => ApproverError::Malformed(j),
            SignedTokenError::UnsupportedAlg(a) => ApproverError::Malformed(crate::jws::JwsError::UnsupportedAlg(a)),
            SignedTokenError::AlgNotAllowed { alg, kid, allowed } => ApproverError::Malformed(crate::jws::JwsError::BadPart {
                part: "header",
                reason: format!("alg `{alg}` is not one key `{kid}` verifies ({})", allowed.join(", ")),
            }),
            SignedTokenError::KeysUnavailable(why) => ApproverError::KeysUnavailable(why),
            SignedTokenError::UnknownKey(kid) => ApproverError::UnknownKey { kid, issuer: issuer.to_owned() },
            SignedTokenError::BadSignature => ApproverError::BadSignature(issuer.to_owned()),
            SignedTokenError::Expired { ago, at } => ApproverError::Expired { ago, at },
            SignedTokenError::NotYetValid { at } => ApproverError::NotYetValid { at },
            SignedTokenError::WrongType(t) => ApproverError::Malformed(crate::jws::JwsError::BadPart { part: "header", reason: format!("typ `{t}` is not a credential") }),
            SignedTokenError::TooLong { seconds, max } => ApproverError::Malformed(crate::jws::JwsError::BadPart { part: "claims", reason: format!("lifetime {seconds} s exceeds the issuer's max_lifetime of {max} s") }),
        }
    }
}

/// A SPIFFE id in any case is a workload, never a person.
fn is_agent_subject(sub: &str) -> bool {
    sub.get(..9).is_some_and(|p| p.eq_ignore_ascii_case("spiffe://"))
}

/// A person's groups, from the claim the issuer is configured with
/// (`groups` by default; providers name it differently): a list, or a
/// space-separated string.
fn groups_of(claims: &serde_json::Value, claim: &str) -> Vec<String> {
    match claims.get(claim) {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect(),
        Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// Mint an approver credential (development approver issuer, tests).
pub fn mint(key: &KeyPair, iss: &str, sub: &str, aud: &str, groups: &[String], now: i64, ttl_secs: i64) -> Result<String, serde_json::Error> {
    let claims = ApproverClaims {
        iss: iss.into(),
        sub: sub.into(),
        aud: Audience::One(aud.into()),
        exp: now + ttl_secs,
        nbf: Some(now),
        iat: Some(now),
        groups: groups.to_vec(),
    };
    jws::sign(&claims, &key.kid, crate::identity::IDENTITY_TYP, &key.signing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{IssuerConfig, IssuerKeys};

    const NOW: i64 = 1_800_000_000;

    fn verifier(people: &KeyPair, clock: &ManualClock) -> ApproverVerifier {
        ApproverVerifier {
            audience: "jitgate://gw".into(),
            skew: 5,
            issuers: vec![
                TrustedIssuer::load(&IssuerConfig::new("people", "https://people.test", IssuerKeys::Inline(vec![people.public().to_b64url()])))
                .unwrap(),
            ],
            agent_issuers: BTreeMap::from([("https://agents.test".to_owned(), "corp-agents".to_owned())]),
            clock: Arc::new(clock.clone()),
        }
    }

    #[test]
    fn people_verify_and_agents_never_do() {
        let people = KeyPair::from_seed(&[5; 32]);
        let clock = ManualClock::at(NOW);
        let v = verifier(&people, &clock);
        let groups = vec!["oncall".to_owned()];
        let ok = mint(&people, "https://people.test", "alice@example.org", "jitgate://gw", &groups, NOW, 60).unwrap();
        let a = v.verify(&ok).unwrap();
        assert_eq!((a.subject.as_str(), a.in_group("oncall"), a.in_group("other")), ("alice@example.org", true, false));

        // An agent identity token (agent issuer): refused and named as such.
        let agent_token = crate::identity::mint(&people, "https://agents.test", "spiffe://x/agent/a", "jitgate://gw", NOW, 60).unwrap();
        let e = v.verify(&agent_token).unwrap_err();
        assert_eq!(e.code(), "approver_is_agent");
        assert!(e.to_string().contains("agents can never approve"), "{e}");
        // Even signed by the people issuer, a SPIFFE subject is an agent.
        let spiffe = mint(&people, "https://people.test", "spiffe://x/agent/a", "jitgate://gw", &groups, NOW, 60).unwrap();
        assert_eq!(v.verify(&spiffe).unwrap_err().code(), "approver_is_agent");
        let upper = mint(&people, "https://people.test", "SPIFFE://x/agent/a", "jitgate://gw", &groups, NOW, 60).unwrap();
        assert_eq!(v.verify(&upper).unwrap_err().code(), "approver_is_agent", "a SPIFFE id in any case is an agent");

        let rogue = KeyPair::from_seed(&[6; 32]);
        let mut forged_key = rogue.clone();
        forged_key.kid = people.kid.clone();
        let forged = mint(&forged_key, "https://people.test", "alice@example.org", "jitgate://gw", &groups, NOW, 60).unwrap();
        assert_eq!(v.verify(&forged).unwrap_err().code(), "approver_bad_signature");
        let other_aud = mint(&people, "https://people.test", "alice@example.org", "jitgate://elsewhere", &groups, NOW, 60).unwrap();
        assert_eq!(v.verify(&other_aud).unwrap_err().code(), "approver_wrong_audience");
        assert_eq!(v.verify("").unwrap_err().code(), "approver_missing");
        assert_eq!(v.verify("x.y").unwrap_err().code(), "approver_malformed");
        clock.advance(66);
        assert_eq!(v.verify(&ok).unwrap_err().code(), "approver_expired");
    }
}
