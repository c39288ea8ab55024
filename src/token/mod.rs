//! Capability tokens: authority for one call, in one phase of one task.
//!
//! A token is a compact JWS (`alg: EdDSA`, `typ: jitgate-cap+jwt`) signed by
//! the gateway's current key. Verification is split by type, cheapest first:
//!
//! 1. [`UnverifiedToken::parse`]: size, shape, `alg`, `typ`, claims decode.
//!    The result can be inspected but grants nothing.
//! 2. [`UnverifiedToken::verify`]: `kid`, signature, time, issuer, audience,
//!    session, agent, tool. Still grants nothing: it yields a [`Verified`].
//! 3. [`Verified::consume`]: the store atomically marks the token consumed,
//!    checking in the same transaction that it is not revoked and that its
//!    task is active and still in the token's phase. Only this yields a
//!    [`Capability`], and only the forwarding path accepts one.
//! 4. [`Capability::check_arguments`]: the call's arguments against the
//!    token's constraints.

/// Argument constraints live below the token (the taint ledger and the
/// store use them too); reachable here as before.
pub use crate::constraints;
mod keyring;

pub use constraints::{ArgConstraints, Constraint, ConstraintError};
pub use keyring::{Keyring, KeyringError};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::rfc3339;
use crate::jws::{self, JwsError};
use crate::store::{Consumption, Store, StoreError};

/// JOSE `typ` of capability tokens.
pub const CAPABILITY_TYP: &str = "jitgate-cap+jwt";
/// Largest capability token accepted.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Tolerated clock skew on `nbf`/`exp` (same host signs and verifies, so small).
pub const SKEW_SECS: i64 = 5;

/// The claims of a capability token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityClaims {
    /// The gateway that minted it.
    pub iss: String,
    /// The agent's SPIFFE id.
    pub sub: String,
    /// The downstream server (namespace) the call goes to.
    pub aud: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// The MCP session it is bound to.
    pub sid: String,
    pub task: String,
    /// Name of the phase it was minted in.
    pub phase: String,
    /// Exposed tool name (`server__tool`).
    pub tool: String,
    /// Constraints on the call's arguments.
    pub args: ArgConstraints,
    /// SHA-256 (hex) of the declared purpose.
    pub purpose: String,
    /// The `jti` of the call whose output led to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Always 1: a token authorizes one call.
    pub uses: u32,
    /// The DPoP key the token is bound to (RFC 9449 `cnf.jkt`), when the
    /// request that minted it proved one: only a call proving the same key
    /// may use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// A key confirmation (`cnf`) claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 7638 SHA-256 thumbprint of the key, base64url.
    pub jkt: String,
}

/// SHA-256 hex of a purpose text.
pub fn purpose_digest(purpose: &str) -> String {
    hex::encode(Sha256::digest(purpose.as_bytes()))
}

/// A fresh token id.
pub fn new_jti() -> Result<String, TokenError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| TokenError::Internal(format!("random source failed: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// Why a capability token was refused. Each variant has a stable code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    #[error("this call needs a capability token: begin a task with jit_begin_task (once per task), call jit_request for this call, then pass the token in the `_jit_token` argument or in _meta[\"jitgate/capability\"]; or let jit_call do the request and the call in one step")]
    Missing,
    #[error("capability token is malformed ({0}); pass the token exactly as jit_request returned it")]
    Malformed(JwsError),
    #[error("capability token is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("capability token uses alg `{0}`; only EdDSA tokens minted by this gateway are accepted")]
    BadAlg(String),
    #[error("not a capability token (typ `{0}`); call jit_request for one")]
    WrongType(String),
    #[error("capability token key `{0}` is unknown to this gateway; the token was not minted here")]
    UnknownKey(String),
    #[error("capability token signature is invalid; the token was altered or forged")]
    BadSignature,
    #[error("capability token expired {ago} s ago (exp {at}); call jit_request for a new one")]
    Expired { ago: i64, at: String },
    #[error("capability token is not valid before {at}")]
    NotYetValid { at: String },
    #[error("capability token was issued by `{0}`, not this gateway")]
    WrongIssuer(String),
    #[error("capability token is for server `{token}`, not `{call}`")]
    WrongAudience { token: String, call: String },
    #[error("capability token belongs to another MCP session (or was minted outside one); tokens cannot move between sessions: request one in the session that calls it, or use jit_call, which requests and calls in one step (a client that opens a session per request, such as MCP Inspector's CLI, needs it)")]
    WrongSession,
    #[error("capability token is bound to the DPoP key of the request that asked for it; send the call with a DPoP proof of that key")]
    WrongKey,
    #[error("capability token was minted for another agent")]
    WrongAgent,
    #[error("capability token is for tool `{token}`, not `{call}`; request a token for `{call}`")]
    WrongTool { token: String, call: String },
    #[error("capability token was already used at {at}; a token authorizes one call: call jit_request again")]
    Replayed { at: String },
    #[error("capability token was revoked ({reason})")]
    Revoked { reason: String },
    #[error("the token's task is {state} ({reason}); begin a new task with jit_begin_task")]
    TaskInactive { state: &'static str, reason: String },
    #[error("the token was minted in phase {token_phase} but the task is now in phase {current_phase}; request a new token in this phase")]
    PhaseOver { token_phase: usize, current_phase: usize },
    #[error("capability token is not known to this gateway's store")]
    UnknownToken,
    #[error("{0}")]
    Arguments(ConstraintError),
    #[error("{0}")]
    Store(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl TokenError {
    /// Stable machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "capability_required",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::TooLarge { .. } => "token_too_large",
            TokenError::BadAlg(_) => "token_bad_alg",
            TokenError::WrongType(_) => "token_wrong_type",
            TokenError::UnknownKey(_) => "token_unknown_key",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::Expired { .. } => "token_expired",
            TokenError::NotYetValid { .. } => "token_not_yet_valid",
            TokenError::WrongIssuer(_) => "token_wrong_issuer",
            TokenError::WrongAudience { .. } => "token_wrong_audience",
            TokenError::WrongSession => "token_wrong_session",
            TokenError::WrongKey => "token_wrong_key",
            TokenError::WrongAgent => "token_wrong_agent",
            TokenError::WrongTool { .. } => "token_wrong_tool",
            TokenError::Replayed { .. } => "token_replayed",
            TokenError::Revoked { .. } => "token_revoked",
            TokenError::TaskInactive { .. } => "task_inactive",
            TokenError::PhaseOver { .. } => "phase_over",
            TokenError::UnknownToken => "token_unknown",
            TokenError::Arguments(_) => "arguments_not_authorized",
            TokenError::Store(_) => "store_unavailable",
            TokenError::Internal(_) => "internal_error",
        }
    }
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        TokenError::Store(e.to_string())
    }
}

/// A parsed token: inspectable, grants nothing.
#[derive(Debug, Clone)]
pub struct UnverifiedToken {
    jws: jws::UnverifiedJws,
    claims: CapabilityClaims,
}

/// What the call presenting a token is, to compare with the token's claims.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    pub gateway_id: &'a str,
    pub sid: &'a str,
    /// The DPoP key thumbprint the call proved, if any.
    pub dpop_jkt: Option<&'a str>,
    pub agent_id: &'a str,
    /// Exposed tool name being called.
    pub tool: &'a str,
    /// Server namespace of that tool.
    pub server: &'a str,
}

impl UnverifiedToken {
    /// Size, shape, `alg`, `typ` and claims; no key is used.
    pub fn parse(token: &str) -> Result<Self, TokenError> {
        let jws = jws::parse(token, MAX_TOKEN_BYTES).map_err(|e| match e {
            JwsError::TooLarge { len, max } => TokenError::TooLarge { len, max },
            JwsError::UnsupportedAlg(a) => TokenError::BadAlg(a),
            other => TokenError::Malformed(other),
        })?;
        let typ = jws.header.typ.clone().unwrap_or_default();
        if typ != CAPABILITY_TYP {
            return Err(TokenError::WrongType(typ));
        }
        let claims = jws.claims().map_err(TokenError::Malformed)?;
        Ok(Self { jws, claims })
    }

    /// The claims, unverified (for `token inspect`).
    pub fn claims(&self) -> &CapabilityClaims {
        &self.claims
    }

    /// The `kid` of the header.
    pub fn kid(&self) -> Option<&str> {
        self.jws.header.kid.as_deref()
    }

    /// Signature only (for `token inspect`).
    pub fn verify_signature(&self, keyring: &Keyring) -> Result<(), TokenError> {
        let kid = self.jws.kid().map_err(TokenError::Malformed)?;
        let key = keyring.public_key(kid).ok_or_else(|| TokenError::UnknownKey(kid.to_owned()))?;
        self.jws.verify_signature(&key.key).map_err(|_| TokenError::BadSignature)
    }

    /// Signature, time and binding checks. Yields [`Verified`], which still
    /// needs [`Verified::consume`] to grant anything.
    pub fn verify(self, keyring: &Keyring, call: &CallContext<'_>, now: i64) -> Result<Verified, TokenError> {
        self.verify_signature(keyring)?;
        let c = &self.claims;
        if now > c.exp.saturating_add(SKEW_SECS) {
            return Err(TokenError::Expired { ago: now - c.exp, at: rfc3339(c.exp) });
        }
        if now.saturating_add(SKEW_SECS) < c.nbf {
            return Err(TokenError::NotYetValid { at: rfc3339(c.nbf) });
        }
        if c.iss != call.gateway_id {
            return Err(TokenError::WrongIssuer(c.iss.clone()));
        }
        if c.aud != call.server {
            return Err(TokenError::WrongAudience { token: c.aud.clone(), call: call.server.to_owned() });
        }
        if !crate::jws::constant_time_eq(c.sid.as_bytes(), call.sid.as_bytes()) {
            return Err(TokenError::WrongSession);
        }
        if c.sub != call.agent_id {
            return Err(TokenError::WrongAgent);
        }
        if let Some(cnf) = &c.cnf {
            match call.dpop_jkt {
                Some(jkt) if crate::jws::constant_time_eq(jkt.as_bytes(), cnf.jkt.as_bytes()) => {}
                _ => return Err(TokenError::WrongKey),
            }
        }
        if c.tool != call.tool {
            return Err(TokenError::WrongTool { token: c.tool.clone(), call: call.tool.to_owned() });
        }
        if c.uses != 1 {
            return Err(TokenError::Malformed(JwsError::BadPart { part: "claims", reason: "uses must be 1".into() }));
        }
        Ok(Verified { claims: self.claims })
    }
}

/// A token whose signature and bindings checked out, not yet consumed.
#[derive(Debug)]
pub struct Verified {
    claims: CapabilityClaims,
}

impl Verified {
    /// Atomically consume the token in the store (exactly once, even under
    /// concurrency and across processes sharing the store).
    pub fn consume(self, store: &dyn Store, now: i64) -> Result<Capability, TokenError> {
        let outcome = store.consume(&self.claims.jti, now)?;
        self.consumed(outcome)
    }

    /// The authority a consumption gave, or why there is none: for a
    /// consumption made with the call's record
    /// ([`Store::consume_for_call`]), whose store errors the caller tells
    /// apart (an audit failure is not a store outage).
    pub fn consumed(self, outcome: Consumption) -> Result<Capability, TokenError> {
        match outcome {
            Consumption::Consumed => Ok(Capability { claims: self.claims }),
            Consumption::AlreadyConsumed { at } => Err(TokenError::Replayed { at: rfc3339(at) }),
            Consumption::Revoked { reason } => Err(TokenError::Revoked { reason }),
            Consumption::TaskInactive { state, reason } => {
                Err(TokenError::TaskInactive { state: state.as_str(), reason: reason.unwrap_or_else(|| "no reason recorded".into()) })
            }
            Consumption::PhaseOver { token_phase, current_phase } => {
                Err(TokenError::PhaseOver { token_phase: token_phase + 1, current_phase: current_phase + 1 })
            }
            Consumption::Unknown => Err(TokenError::UnknownToken),
        }
    }

    pub fn claims(&self) -> &CapabilityClaims {
        &self.claims
    }

}

/// Authority for exactly one call: a verified token that this call consumed.
/// Only [`Verified::consumed`] (after [`Verified::consume`] or
/// [`Store::consume_for_call`]) and a
/// `jit_call` grant that recorded its token as spent on the call
/// ([`Capability::spent_at_grant`]) create one.
#[derive(Debug)]
pub struct Capability {
    claims: CapabilityClaims,
}

impl Capability {
    /// The authority of a `jit_call` whose grant recorded its token as
    /// consumed by this call, in the transaction that wrote the token and
    /// the call's record ([`crate::store::Grant::forwarded`]).
    pub(crate) fn spent_at_grant(claims: CapabilityClaims) -> Capability {
        Capability { claims }
    }

    pub fn claims(&self) -> &CapabilityClaims {
        &self.claims
    }

    /// The call's arguments against the token's constraints.
    pub fn check_arguments(&self, arguments: &serde_json::Map<String, serde_json::Value>) -> Result<(), TokenError> {
        constraints::check_arguments(&self.claims.args, arguments).map_err(TokenError::Arguments)
    }
}

/// Sign claims with the keyring's active key.
pub fn mint(keyring: &Keyring, claims: &CapabilityClaims) -> Result<String, TokenError> {
    let key = keyring.active();
    jws::sign(claims, &key.kid, CAPABILITY_TYP, &key.signing).map_err(|e| TokenError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests;
