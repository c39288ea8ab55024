//! People sign in to `/ui` with OpenID Connect: the authorization code flow
//! with PKCE (S256), `state` bound to the browser by a cookie, a `nonce`
//! bound into the ID token, and the provider's `iss` checked on the way
//! back (RFC 9207) and in the token. The ID token is verified with the
//! people's issuer's keys (found by discovery, refreshed like any remote
//! key set). A sign-in becomes a server-side session: the browser holds
//! only a random id, in an HttpOnly, SameSite=Strict cookie scoped to
//! `/ui`, Secure when the gateway is reached over HTTPS, that lasts
//! `session_ttl` (1 h by default). Each session has its own CSRF token for
//! the approve and deny forms.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::approver::VerifiedApprover;
use crate::config::UiOidcConfig;
use crate::issuer_keys::percent_encode as encode;

/// Sign-ins started and not finished, and sessions, are bounded.
const MAX_PENDING: usize = 1024;
const MAX_SESSIONS: usize = 4096;
/// How long a started sign-in may take at the provider.
const PENDING_TTL: i64 = 600;

/// The cookie that binds a started sign-in to the browser that started it.
pub const STATE_COOKIE: &str = "jitgate_oidc_state";
/// The session cookie.
pub const SESSION_COOKIE: &str = "jitgate_session";

struct Pending {
    verifier: String,
    nonce: String,
    at: i64,
}

/// A signed-in person.
#[derive(Clone)]
pub struct PersonSession {
    pub person: VerifiedApprover,
    pub csrf: String,
    pub expires: i64,
}

/// The provider's endpoints, from discovery.
#[derive(Clone)]
struct Endpoints {
    authorization: String,
    token: String,
}

pub struct PeopleLogin {
    pub config: UiOidcConfig,
    secret: String,
    endpoints: tokio::sync::Mutex<Option<Endpoints>>,
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<HashMap<String, PersonSession>>,
}

/// Why a sign-in failed (shown to the person, who can start again).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("this sign-in was not started from this browser, or took longer than 10 minutes; start again")]
    UnknownState,
    #[error("the provider answered for `{0}`, not the configured issuer; start again")]
    WrongIssuer(String),
    #[error("the provider refused the sign-in: {0}")]
    Provider(String),
    #[error("the ID token was not accepted: {0}")]
    Token(String),
}

fn random(bytes: usize) -> Result<String, String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
    Ok(B64URL.encode(b))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PeopleLogin {
    /// From `[ui.oidc]`; the client secret is read now (a missing one stops the start).
    pub fn new(config: UiOidcConfig) -> Result<Self, String> {
        let secret = config.client_secret.read().map_err(|e| format!("[ui.oidc] client secret: {e}"))?;
        Ok(Self { config, secret, endpoints: tokio::sync::Mutex::new(None), pending: Mutex::new(HashMap::new()), sessions: Mutex::new(HashMap::new()) })
    }

    /// Is the gateway reached over HTTPS (then cookies are Secure)?
    pub fn secure(&self) -> bool {
        self.config.redirect_uri.starts_with("https://")
    }

    async fn endpoints(&self) -> Result<Endpoints, LoginError> {
        let mut cached = self.endpoints.lock().await;
        if let Some(e) = cached.as_ref() {
            return Ok(e.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.iss.trim_end_matches('/'));
        let doc = crate::issuer_keys::get_json_once(&url).await.map_err(LoginError::Provider)?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.config.iss.as_str()) {
            return Err(LoginError::WrongIssuer(doc.get("issuer").and_then(Value::as_str).unwrap_or("").to_owned()));
        }
        let field = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| LoginError::Provider(format!("{url} has no {k}")));
        let e = Endpoints { authorization: field("authorization_endpoint")?, token: field("token_endpoint")? };
        *cached = Some(e.clone());
        Ok(e)
    }

    /// Start a sign-in: the provider's authorization URL, and the state to
    /// put in the browser's state cookie.
    pub async fn start(&self, now: i64) -> Result<(String, String), LoginError> {
        let endpoints = self.endpoints().await?;
        let (state, nonce, verifier) = (random(24), random(24), random(32));
        let (state, nonce, verifier) = match (state, nonce, verifier) {
            (Ok(s), Ok(n), Ok(v)) => (s, n, v),
            _ => return Err(LoginError::Provider("no randomness".into())),
        };
        let challenge = B64URL.encode(Sha256::digest(verifier.as_bytes()));
        {
            let mut pending = lock(&self.pending);
            pending.retain(|_, p| now - p.at < PENDING_TTL);
            if pending.len() >= MAX_PENDING {
                return Err(LoginError::Provider("too many sign-ins in progress; try again in a few minutes".into()));
            }
            pending.insert(state.clone(), Pending { verifier, nonce: nonce.clone(), at: now });
        }
        let sep = if endpoints.authorization.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
            endpoints.authorization,
            encode(&self.config.client_id),
            encode(&self.config.redirect_uri),
            encode(&self.config.scopes.join(" ")),
            encode(&state),
            encode(&nonce),
            encode(&challenge),
        );
        Ok((url, state))
    }

    /// Finish a sign-in: the browser's state cookie must match `state`; the
    /// code is exchanged with the PKCE verifier; the ID token is verified by
    /// `verify(id_token, nonce)`. Returns the new session's id.
    pub async fn finish(
        &self,
        state: &str,
        cookie_state: Option<&str>,
        code: &str,
        iss: Option<&str>,
        now: i64,
        verify: impl FnOnce(&str, &str) -> Result<VerifiedApprover, String>,
    ) -> Result<(String, PersonSession), LoginError> {
        if cookie_state.is_none_or(|c| !crate::jws::constant_time_eq(c.as_bytes(), state.as_bytes())) {
            return Err(LoginError::UnknownState);
        }
        let pending = lock(&self.pending).remove(state).filter(|p| now - p.at < PENDING_TTL).ok_or(LoginError::UnknownState)?;
        if let Some(iss) = iss {
            if iss != self.config.iss {
                return Err(LoginError::WrongIssuer(iss.to_owned()));
            }
        }
        let endpoints = self.endpoints().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_uri.as_str()),
            ("code_verifier", pending.verifier.as_str()),
            ("client_id", self.config.client_id.as_str()),
        ];
        let answer = crate::issuer_keys::post_form(&endpoints.token, &form, &self.config.client_id, &self.secret).await.map_err(LoginError::Provider)?;
        let id_token = answer.get("id_token").and_then(Value::as_str).ok_or_else(|| LoginError::Provider("the token response has no id_token".into()))?;
        let person = verify(id_token, &pending.nonce).map_err(LoginError::Token)?;
        let id = random(32).map_err(LoginError::Provider)?;
        let csrf = random(24).map_err(LoginError::Provider)?;
        let ttl = i64::try_from(self.config.session_ttl.as_secs()).unwrap_or(3600);
        let session = PersonSession { person, csrf, expires: now + ttl };
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            return Err(LoginError::Provider("too many people are signed in; try again later".into()));
        }
        sessions.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session with this id.
    pub fn session(&self, id: &str, now: i64) -> Option<PersonSession> {
        let mut sessions = lock(&self.sessions);
        match sessions.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn end(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }
}
