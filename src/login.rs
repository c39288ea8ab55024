//! People sign in to `/ui` with OpenID Connect: the authorization code flow
//! with PKCE (S256), `state` bound to the browser by a cookie, a `nonce`
//! bound into the ID token, and the provider's `iss` checked on the way
//! back (RFC 9207) and in the token. The ID token is verified with the
//! people's issuer's keys (found by discovery, refreshed like any remote
//! key set).
//!
//! A started sign-in keeps nothing on the gateway. Anyone may start one
//! without being signed in, so a table of started sign-ins is a table a
//! stranger can fill, locking everyone out (issue 23). What finishing needs
//! (the PKCE verifier, the nonce and when the sign-in started) travels
//! instead in the browser's sign-in cookie, sealed with ChaCha20-Poly1305
//! (encrypted and integrity-protected) under a key derived from the client
//! secret for that sign-in's `state` alone. So the cookie opens only on a
//! gateway with that secret (any replica), only with its own `state`, and
//! only for 10 minutes after the time sealed inside it (Max-Age alone is
//! up to the browser). It is HttpOnly, SameSite=Lax (the provider sends
//! the browser back with a cross-site navigation, which a Strict cookie
//! would not survive) and scoped to the callback path. Spending a sign-in
//! once is the provider's part: its code is redeemed once, and only with
//! the verifier in this cookie.
//!
//! A finished sign-in becomes a server-side session: the browser holds
//! only a random id, in an HttpOnly, SameSite=Strict cookie scoped to
//! `/ui`, Secure when the gateway is reached over HTTPS, that lasts
//! `session_ttl` (1 h by default). Each session has its own CSRF token for
//! the approve and deny forms. Sessions are bounded, and a full table
//! forgets its oldest session rather than refuse a sign-in.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::{aead, hkdf};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::approver::VerifiedApprover;
use crate::config::UiOidcConfig;
use crate::issuer_keys::percent_encode as encode;

/// Sessions are bounded (the oldest makes room for a new one).
const MAX_SESSIONS: usize = 4096;
/// How long a started sign-in may take at the provider.
const PENDING_TTL: i64 = 600;
/// How far ahead of this gateway's clock another replica's may be when it
/// seals a sign-in cookie.
const CLOCK_SKEW: i64 = 60;
/// Longer than any cookie this gateway seals; a longer one is not opened.
const MAX_SEALED_CHARS: usize = 1024;

/// The cookie that carries a started sign-in to the callback.
pub const STATE_COOKIE: &str = "jitgate_oidc_state";
/// The session cookie.
pub const SESSION_COOKIE: &str = "jitgate_session";
/// Where the provider sends the browser back (`redirect_uri` ends here).
pub const CALLBACK_PATH: &str = "/ui/callback";

/// What finishing a sign-in needs, sealed into the sign-in cookie.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Started {
    verifier: String,
    nonce: String,
    /// When the sign-in started (Unix seconds, this gateway's clock).
    at: i64,
}

/// Seals a started sign-in into its cookie and opens it again.
///
/// The key material is the `[ui.oidc]` client secret: every replica behind
/// a load balancer already has the same one, so a sign-in started at one
/// replica finishes at any other, and only someone who holds the secret
/// (and could then impersonate the gateway at the provider anyway) can
/// read or forge a cookie. Each cookie is sealed under a key expanded for
/// its `state` alone: it opens with no other `state`, and as each key seals
/// one cookie, random nonces are never counted against a shared key.
struct CookieSeal {
    prk: hkdf::Prk,
}

impl CookieSeal {
    fn new(client_secret: &str) -> Self {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"jitgate [ui.oidc] sign-in cookie v1");
        Self { prk: salt.extract(client_secret.as_bytes()) }
    }

    fn key(&self, state: &str) -> Option<aead::LessSafeKey> {
        let info: [&[u8]; 2] = [b"state=", state.as_bytes()];
        let okm = self.prk.expand(&info, &aead::CHACHA20_POLY1305).ok()?;
        Some(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
    }

    /// The cookie's value: base64url of nonce, ciphertext and tag.
    fn seal(&self, state: &str, started: &Started) -> Result<String, LoginError> {
        let failed = |what: &str| LoginError::Provider(format!("the sign-in could not be sealed ({what}); try again"));
        let key = self.key(state).ok_or_else(|| failed("key"))?;
        let mut nonce = [0u8; aead::NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| failed("no randomness"))?;
        let mut sealed = serde_json::to_vec(started).map_err(|_| failed("encoding"))?;
        key.seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::empty(), &mut sealed).map_err(|_| failed("cipher"))?;
        let mut cookie = nonce.to_vec();
        cookie.extend_from_slice(&sealed);
        Ok(B64URL.encode(cookie))
    }

    /// The started sign-in in `cookie`, if this gateway sealed it for
    /// `state` less than 10 minutes ago; anything else (no cookie, another
    /// sign-in's, altered, forged, expired) is `UnknownState`.
    fn open(&self, state: &str, cookie: Option<&str>, now: i64) -> Result<Started, LoginError> {
        let cookie = cookie.filter(|c| c.len() <= MAX_SEALED_CHARS).ok_or(LoginError::UnknownState)?;
        let bytes = B64URL.decode(cookie).map_err(|_| LoginError::UnknownState)?;
        let (nonce, sealed) = bytes.split_first_chunk::<{ aead::NONCE_LEN }>().ok_or(LoginError::UnknownState)?;
        let key = self.key(state).ok_or(LoginError::UnknownState)?;
        let mut sealed = sealed.to_vec();
        let plain = key.open_in_place(aead::Nonce::assume_unique_for_key(*nonce), aead::Aad::empty(), &mut sealed).map_err(|_| LoginError::UnknownState)?;
        let started: Started = serde_json::from_slice(plain).map_err(|_| LoginError::UnknownState)?;
        let age = now.saturating_sub(started.at);
        if !(-CLOCK_SKEW..PENDING_TTL).contains(&age) {
            return Err(LoginError::UnknownState);
        }
        Ok(started)
    }
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
    seal: CookieSeal,
    endpoints: tokio::sync::Mutex<Option<Endpoints>>,
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
        let seal = CookieSeal::new(&secret);
        Ok(Self { config, secret, seal, endpoints: tokio::sync::Mutex::new(None), sessions: Mutex::new(HashMap::new()) })
    }

    /// Is the gateway reached over HTTPS (then cookies are Secure)?
    pub fn secure(&self) -> bool {
        self.config.redirect_uri.starts_with("https://")
    }

    fn secure_attr(&self) -> &'static str {
        if self.secure() { "; Secure" } else { "" }
    }

    /// `Set-Cookie` for a started sign-in's sealed cookie (from `start`).
    pub fn started_cookie(&self, sealed: &str) -> String {
        format!("{STATE_COOKIE}={sealed}; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age={PENDING_TTL}{}", self.secure_attr())
    }

    /// `Set-Cookie` that drops it once the callback has used it, either way.
    pub fn forget_started_cookie(&self) -> String {
        format!("{STATE_COOKIE}=; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age=0{}", self.secure_attr())
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

    /// Start a sign-in: the provider's authorization URL, and the sealed
    /// value for the browser's sign-in cookie (see `started_cookie`).
    /// Nothing is kept here: a started sign-in that never comes back costs
    /// the gateway nothing.
    pub async fn start(&self, now: i64) -> Result<(String, String), LoginError> {
        let endpoints = self.endpoints().await?;
        let (state, nonce, verifier) = (random(24), random(24), random(32));
        let (state, nonce, verifier) = match (state, nonce, verifier) {
            (Ok(s), Ok(n), Ok(v)) => (s, n, v),
            _ => return Err(LoginError::Provider("no randomness".into())),
        };
        let challenge = B64URL.encode(Sha256::digest(verifier.as_bytes()));
        let cookie = self.seal.seal(&state, &Started { verifier, nonce: nonce.clone(), at: now })?;
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
        Ok((url, cookie))
    }

    /// Finish a sign-in: the browser's sign-in cookie must open for
    /// `state`; the code is exchanged with the PKCE verifier sealed in it;
    /// the ID token is verified by `verify(id_token, nonce)`. Returns the
    /// new session's id.
    pub async fn finish(
        &self,
        state: &str,
        cookie: Option<&str>,
        code: &str,
        iss: Option<&str>,
        now: i64,
        verify: impl FnOnce(&str, &str) -> Result<VerifiedApprover, String>,
    ) -> Result<(String, PersonSession), LoginError> {
        let started = self.seal.open(state, cookie, now)?;
        if let Some(iss) = iss
            && iss != self.config.iss
        {
            return Err(LoginError::WrongIssuer(iss.to_owned()));
        }
        let id_token = self.redeem(code, &started.verifier).await?;
        let person = verify(&id_token, &started.nonce).map_err(LoginError::Token)?;
        self.new_session(person, now)
    }

    /// The ID token the provider gives for `code` and the PKCE verifier.
    async fn redeem(&self, code: &str, verifier: &str) -> Result<String, LoginError> {
        let endpoints = self.endpoints().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_uri.as_str()),
            ("code_verifier", verifier),
            ("client_id", self.config.client_id.as_str()),
        ];
        let answer = crate::issuer_keys::post_form(&endpoints.token, &form, &self.config.client_id, &self.secret).await.map_err(LoginError::Provider)?;
        answer.get("id_token").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| LoginError::Provider("the token response has no id_token".into()))
    }

    fn new_session(&self, person: VerifiedApprover, now: i64) -> Result<(String, PersonSession), LoginError> {
        let id = random(32).map_err(LoginError::Provider)?;
        let csrf = random(24).map_err(LoginError::Provider)?;
        let ttl = i64::try_from(self.config.session_ttl.as_secs()).unwrap_or(3600);
        let session = PersonSession { person, csrf, expires: now.saturating_add(ttl) };
        keep_session(&mut lock(&self.sessions), id.clone(), session.clone(), now);
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

/// Keep a new session within `MAX_SESSIONS`: expired ones go first, then,
/// if every slot is live, the oldest (all last `session_ttl`, so the one
/// that ends first). Refusing instead would let whoever holds enough
/// accounts at the provider keep everyone else from signing in; evicting
/// only signs the oldest session out.
fn keep_session(sessions: &mut HashMap<String, PersonSession>, id: String, session: PersonSession, now: i64) {
    sessions.retain(|_, s| s.expires > now);
    while sessions.len() >= MAX_SESSIONS {
        let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.expires).map(|(id, _)| id.clone()) else { break };
        sessions.remove(&oldest);
    }
    sessions.insert(id, session);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000;

    fn config(redirect_uri: &str) -> UiOidcConfig {
        UiOidcConfig {
            issuer: "corp-sso".into(),
            iss: "http://127.0.0.1:1".into(),
            client_id: "jitgate-ui".into(),
            client_secret: crate::config::SecretSource::Env("UNUSED".into()),
            redirect_uri: redirect_uri.into(),
            scopes: vec!["openid".into()],
            session_ttl: std::time::Duration::from_secs(1800),
        }
    }

    /// A login whose provider endpoints are already discovered.
    fn login_with(token: &str) -> PeopleLogin {
        let endpoints = Endpoints { authorization: "http://127.0.0.1:1/authorize".into(), token: token.into() };
        PeopleLogin {
            config: config("http://127.0.0.1:8080/ui/callback"),
            secret: "ui-secret".into(),
            seal: CookieSeal::new("ui-secret"),
            endpoints: tokio::sync::Mutex::new(Some(endpoints)),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// A provider's token endpoint on loopback that answers every code with
    /// an "ID token" that is the PKCE verifier it was sent, so a test can
    /// check the verifier against the challenge the sign-in started with.
    async fn echoing_token_endpoint() -> String {
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(|body: axum::body::Bytes| async move {
                let form = String::from_utf8_lossy(&body).into_owned();
                let verifier = form.split('&').find_map(|kv| kv.strip_prefix("code_verifier=")).unwrap_or_default().to_owned();
                axum::Json(serde_json::json!({ "id_token": verifier }))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/token")
    }

    fn param(url: &str, name: &str) -> String {
        let query = url.split_once('?').unwrap().1;
        query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).unwrap().to_owned()
    }

    fn person(subject: &str) -> VerifiedApprover {
        VerifiedApprover { subject: subject.into(), issuer: "corp-sso".into(), groups: vec![] }
    }

    fn started() -> Started {
        Started { verifier: "v".repeat(43), nonce: "n".repeat(32), at: NOW }
    }

    fn refused(r: Result<impl std::fmt::Debug, LoginError>) -> bool {
        matches!(r, Err(LoginError::UnknownState))
    }

    #[test]
    fn a_sealed_sign_in_opens_with_its_state_for_ten_minutes() {
        let seal = CookieSeal::new("ui-secret");
        let cookie = seal.seal("state-a", &started()).unwrap();
        assert!(!cookie.contains(&"v".repeat(8)) && !cookie.contains(&"n".repeat(8)), "the verifier and nonce are not readable: {cookie}");
        assert_eq!(seal.open("state-a", Some(&cookie), NOW).unwrap(), started());
        assert_eq!(seal.open("state-a", Some(&cookie), NOW + PENDING_TTL - 1).unwrap(), started());
        assert!(refused(seal.open("state-a", Some(&cookie), NOW + PENDING_TTL)), "expired");
        assert!(refused(seal.open("state-a", Some(&cookie), NOW - CLOCK_SKEW - 1)), "sealed too far in the future");
        // Another replica with the same client secret opens it; a gateway
        // (or forger) with another secret does not.
        assert_eq!(CookieSeal::new("ui-secret").open("state-a", Some(&cookie), NOW).unwrap(), started());
        assert!(refused(CookieSeal::new("other-secret").open("state-a", Some(&cookie), NOW)));
    }

    #[test]
    fn a_sign_in_cookie_opens_with_no_other_state() {
        let seal = CookieSeal::new("ui-secret");
        let a = seal.seal("state-a", &started()).unwrap();
        let b = seal.seal("state-b", &started()).unwrap();
        assert!(refused(seal.open("state-b", Some(&a), NOW)));
        assert!(refused(seal.open("state-a", Some(&b), NOW)));
        assert!(refused(seal.open("", Some(&a), NOW)));
    }

    #[test]
    fn an_altered_or_forged_sign_in_cookie_is_refused() {
        let seal = CookieSeal::new("ui-secret");
        let cookie = seal.seal("state-a", &started()).unwrap();
        let bytes = B64URL.decode(&cookie).unwrap();
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            assert!(refused(seal.open("state-a", Some(&B64URL.encode(&altered)), NOW)), "byte {i} altered");
        }
        for len in 0..bytes.len() {
            assert!(refused(seal.open("state-a", Some(&B64URL.encode(&bytes[..len])), NOW)), "cut to {len} bytes");
        }
        // What the cookie held before issue 23 (the state itself), no
        // cookie, one too long to be ours, and a sealed payload that an
        // attacker wrote under a key of their own.
        let forger = CookieSeal::new("guessed");
        let forged = forger.seal("state-a", &Started { at: NOW + 3600, ..started() }).unwrap();
        for bad in [Some("state-a"), None, Some(""), Some("%%%"), Some(&*"A".repeat(MAX_SEALED_CHARS + 1)), Some(&*forged)] {
            assert!(refused(seal.open("state-a", bad, NOW)), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_cookies_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300), text in "\\PC{0,300}") {
            let seal = CookieSeal::new("ui-secret");
            prop_assert!(refused(seal.open("state-a", Some(&B64URL.encode(&bytes)), NOW)));
            prop_assert!(refused(seal.open("state-a", Some(&text), NOW)));
        }
    }

    #[test]
    fn the_sign_in_cookie_is_http_only_lax_and_scoped_to_the_callback() {
        let login = login_with("http://127.0.0.1:1/token");
        assert_eq!(login.started_cookie("SEALED"), "jitgate_oidc_state=SEALED; Path=/ui/callback; HttpOnly; SameSite=Lax; Max-Age=600");
        assert_eq!(login.forget_started_cookie(), "jitgate_oidc_state=; Path=/ui/callback; HttpOnly; SameSite=Lax; Max-Age=0");
        let https = PeopleLogin { config: config("https://gw.example.org/ui/callback"), ..login_with("http://127.0.0.1:1/token") };
        assert!(https.started_cookie("SEALED").ends_with("; Secure"));
    }

    /// Issue 23: 1,023 started sign-ins used to fill the gateway's table and
    /// refuse every real one. Started sign-ins now cost the gateway nothing.
    #[tokio::test]
    async fn a_real_sign_in_completes_after_two_thousand_abandoned_ones() {
        let login = login_with(&echoing_token_endpoint().await);
        let first = login.start(NOW).await.unwrap();
        for _ in 0..2000 {
            // Started and never finished: the browser never comes back.
            login.start(NOW).await.unwrap();
        }
        let last = login.start(NOW + 1).await.unwrap();
        for (url, cookie) in [first, last] {
            let (state, nonce, challenge) = (param(&url, "state"), param(&url, "nonce"), param(&url, "code_challenge"));
            let verify = |id_token: &str, sealed_nonce: &str| {
                // The provider was sent the verifier of this sign-in's challenge, and the nonce is this sign-in's.
                if B64URL.encode(Sha256::digest(id_token.as_bytes())) != challenge || sealed_nonce != nonce {
                    return Err(format!("verifier or nonce of another sign-in: {id_token} {sealed_nonce}"));
                }
                Ok(person("oncall@example.org"))
            };
            let (id, _) = login.finish(&state, Some(&cookie), "code", Some("http://127.0.0.1:1"), NOW + 30, verify).await.unwrap();
            assert_eq!(login.session(&id, NOW + 30).map(|s| s.person.subject).as_deref(), Some("oncall@example.org"));
        }
    }

    /// Refusals come before the provider is asked anything (its token
    /// endpoint here answers nothing), each with the UnknownState sentence.
    #[tokio::test]
    async fn finishing_with_a_wrong_expired_or_forged_cookie_is_refused_as_unknown_state() {
        let login = login_with("http://127.0.0.1:1/token");
        let (url_a, cookie_a) = login.start(NOW).await.unwrap();
        let (url_b, _cookie_b) = login.start(NOW).await.unwrap();
        let (state_a, state_b) = (param(&url_a, "state"), param(&url_b, "state"));
        let mut altered = B64URL.decode(&cookie_a).unwrap();
        if let Some(last) = altered.last_mut() {
            *last ^= 0x80;
        }
        let altered = B64URL.encode(altered);
        let never = |_: &str, _: &str| -> Result<VerifiedApprover, String> { panic!("no ID token may be verified") };
        for (state, cookie, now) in [
            (&state_b, Some(cookie_a.as_str()), NOW),        // one sign-in's cookie with another's state
            (&state_a, Some(altered.as_str()), NOW),         // altered
            (&state_a, Some(state_a.as_str()), NOW),         // forged: the state itself
            (&state_a, None, NOW),                           // not started from this browser
            (&state_a, Some(cookie_a.as_str()), NOW + 600),  // expired
        ] {
            let err = login.finish(state, cookie, "code", None, now, never).await.err();
            assert!(matches!(err, Some(LoginError::UnknownState)), "{err:?}");
            assert!(err.is_some_and(|e| e.to_string().contains("not started from this browser, or took longer than 10 minutes; start again")));
        }
    }

    #[test]
    fn a_full_session_table_forgets_its_oldest_session_instead_of_refusing() {
        let session = |expires: i64| PersonSession { person: person("p@example.org"), csrf: "c".into(), expires };
        let mut sessions = HashMap::new();
        sessions.insert("expired".to_owned(), session(NOW - 1));
        for i in 0..MAX_SESSIONS - 1 {
            keep_session(&mut sessions, format!("s{i}"), session(NOW + 100 + i as i64), NOW);
        }
        assert_eq!(sessions.len(), MAX_SESSIONS - 1, "the expired one went first");
        keep_session(&mut sessions, "full".into(), session(NOW + 10_000), NOW);
        keep_session(&mut sessions, "newest".into(), session(NOW + 10_001), NOW);
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(!sessions.contains_key("s0") && sessions.contains_key("s1") && sessions.contains_key("newest"));
    }
}
