//! The verification keys of the issuers jitgate trusts (agents' and
//! people's), and the signature check of the credentials they sign.
//!
//! Keys come from the config (`public_keys`, Ed25519), a JWKS file, a
//! `jwks_uri`, OpenID Connect discovery from the issuer's `iss`, or a SPIFFE
//! bundle endpoint. Every key carries the algorithms it may verify, fixed
//! when the key is loaded: the JWK's own `alg` if it names one, else the
//! algorithms of its key type that the issuer allows (`algorithms`, default
//! all asymmetric ones jitgate supports). A token's `alg` only selects among
//! those; it never chooses them, so `none`, HMAC with a public key as the
//! secret, or RS256 under an EC key are refused before any key is used.
//! Signatures are verified with `jsonwebtoken` (RS256/384/512,
//! PS256/384/512, ES256/384, EdDSA).
//!
//! Remote key sets are fetched at start, refreshed when their cache headers
//! (or a SPIFFE bundle's refresh hint) say, and at once when a token names
//! an unknown `kid`, at most once per [`UNKNOWN_KID_REFRESH_SECS`] per issuer,
//! so that made-up `kid`s cannot make jitgate hammer the provider. When the
//! endpoint is down the last good set keeps working for the issuer's
//! `max_stale` (default 24 h), then the issuer's tokens are refused until a
//! fetch succeeds (fail closed). `/healthz` and the logs show each set's
//! state.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::clock::Clock;

/// Algorithms jitgate verifies, by their JOSE names.
pub const SUPPORTED: &[(&str, Algorithm)] = &[
    ("EdDSA", Algorithm::EdDSA),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
];

/// The least time between two refreshes caused by unknown `kid`s, per issuer.
pub const UNKNOWN_KID_REFRESH_SECS: i64 = 30;
/// Bounds on how long a fetched key set is used before the next refresh.
const MIN_REFRESH_SECS: i64 = 60;
const MAX_REFRESH_SECS: i64 = 24 * 3600;
/// Refresh interval when the response names none.
const DEFAULT_REFRESH_SECS: i64 = 300;
/// Largest key-set or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The JOSE name of an algorithm.
pub fn alg_name(alg: Algorithm) -> &'static str {
    SUPPORTED.iter().find(|(_, a)| *a == alg).map(|(n, _)| *n).unwrap_or("unsupported")
}

/// An algorithm by its JOSE name, if jitgate verifies it.
pub fn parse_alg(name: &str) -> Option<Algorithm> {
    SUPPORTED.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// One verification key with the algorithms it may verify.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: String,
    pub algs: Vec<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey").field("kid", &self.kid).field("algs", &self.algs).finish()
    }
}

/// Why a credential's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheckError {
    UnknownKey(String),
    /// The token's `alg` is not one its key is pinned to.
    AlgNotAllowed { alg: String, kid: String, allowed: Vec<String> },
    BadSignature,
    /// No usable key set (never fetched, or stale past `max_stale`).
    KeysUnavailable(String),
    Malformed(String),
}

impl VerificationKey {
    /// An Ed25519 key given as base64url bytes (`public_keys` in the config),
    /// with jitgate's own kid for it.
    pub fn ed25519(key: &crate::keys::PublicKey) -> Result<Self, String> {
        let decoding = DecodingKey::from_ed_components(&key.to_b64url()).map_err(|e| format!("Ed25519 key {}: {e}", key.kid))?;
        Ok(Self { kid: key.kid.clone(), algs: vec![Algorithm::EdDSA], key: decoding })
    }

    /// Verify `token` (already known to name this key) and decode its claims.
    pub fn verify(&self, token: &str, alg: Algorithm) -> Result<Value, KeyCheckError> {
        if !self.algs.contains(&alg) {
            return Err(KeyCheckError::AlgNotAllowed {
                alg: alg_name(alg).to_owned(),
                kid: self.kid.clone(),
                allowed: self.algs.iter().map(|a| alg_name(*a).to_owned()).collect(),
            });
        }
        let mut validation = Validation::new(alg);
        // Times, audience and issuer are checked by the caller, with errors
        // that say what to do; here only the signature.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &self.key, &validation).map(|d| d.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => KeyCheckError::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => KeyCheckError::AlgNotAllowed {
                alg: alg_name(alg).to_owned(),
                kid: self.kid.clone(),
                allowed: self.algs.iter().map(|a| alg_name(*a).to_owned()).collect(),
            },
            // A malformed signature (wrong length, bad encoding) is as good as none.
            jsonwebtoken::errors::ErrorKind::Base64(_) | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_) => {
                KeyCheckError::BadSignature
            }
            other => KeyCheckError::Malformed(format!("{other:?}")),
        })
    }
}

/// Key sizes a key type requires. jsonwebtoken indexes key bytes without
/// checking (a short Ed25519 `x` panicked inside it; found by fuzzing).
pub fn check_key_material(jwk: &Jwk) -> Result<(), String> {
    use base64::Engine as _;
    let decoded_len = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok().map(|b| b.len());
    let modulus_bits = |n: &str| -> Option<usize> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n).ok()?;
        let first = bytes.iter().position(|b| *b != 0)?;
        let leading = usize::try_from(bytes.get(first)?.leading_zeros()).ok()?;
        Some((bytes.len() - first) * 8 - leading)
    };
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) => match (&p.curve, decoded_len(&p.x)) {
            (EllipticCurve::Ed25519, Some(32)) => Ok(()),
            (EllipticCurve::Ed25519, _) => Err("an Ed25519 key's x must be 32 bytes".into()),
            (other, _) => Err(format!("curve {other:?} is not an Ed25519 key")),
        },
        AlgorithmParameters::EllipticCurve(p) => {
            let size = match p.curve {
                EllipticCurve::P256 => 32,
                EllipticCurve::P384 => 48,
                ref other => return Err(format!("curve {other:?} is not supported (P-256, P-384)")),
            };
            if decoded_len(&p.x) == Some(size) && decoded_len(&p.y) == Some(size) { Ok(()) } else { Err("an EC key's x and y must be the curve's size".into()) }
        }
        AlgorithmParameters::RSA(p) => match (modulus_bits(&p.n), decoded_len(&p.e)) {
            (Some(bits), Some(e)) if (2048..=4096).contains(&bits) && (1..=8).contains(&e) => Ok(()),
            _ => Err("an RSA key needs a 2048- to 4096-bit modulus and a short exponent".into()),
        },
        AlgorithmParameters::OctetKey(_) => Err("a symmetric (oct) key cannot verify anyone's signature".into()),
        _ => Err("unsupported key type".into()),
    }
}

/// The algorithms a key's type can verify.
fn algorithms_of_type(jwk: &Jwk) -> Vec<Algorithm> {
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => Vec::new(),
        },
        AlgorithmParameters::RSA(_) => vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512],
        AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
        _ => Vec::new(),
    }
}

/// The JWK's own `alg`, as an algorithm jitgate knows, if it names one.
fn declared_alg(jwk: &Jwk) -> Option<Result<Algorithm, String>> {
    let alg = jwk.common.key_algorithm?;
    let name = match alg {
        KeyAlgorithm::EdDSA => "EdDSA",
        KeyAlgorithm::ES256 => "ES256",
        KeyAlgorithm::ES384 => "ES384",
        KeyAlgorithm::RS256 => "RS256",
        KeyAlgorithm::RS384 => "RS384",
        KeyAlgorithm::RS512 => "RS512",
        KeyAlgorithm::PS256 => "PS256",
        KeyAlgorithm::PS384 => "PS384",
        KeyAlgorithm::PS512 => "PS512",
        other => return Some(Err(format!("{other:?}"))),
    };
    parse_alg(name).map(Ok)
}

/// What a key set's purpose admits: signature keys (`use` absent or `sig`),
/// or in a SPIFFE bundle, JWT-SVID keys (`use` = `jwt-svid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    Signature,
    JwtSvid,
}

/// The usable keys of a JWKS document (or SPIFFE bundle), each pinned to its
/// algorithms; and why each other key was skipped.
pub fn keys_from_jwks(doc: &Value, allowed: &[Algorithm], wanted: KeyUse) -> Result<(Vec<VerificationKey>, Vec<String>), String> {
    let list = doc.get("keys").and_then(Value::as_array).ok_or("not a JWKS document: no `keys` array")?;
    let (mut keys, mut skipped) = (Vec::new(), Vec::new());
    for (i, raw) in list.iter().enumerate() {
        let kid = raw.get("kid").and_then(Value::as_str).map(str::to_owned);
        let name = kid.clone().unwrap_or_else(|| format!("#{i}"));
        let use_ = raw.get("use").and_then(Value::as_str);
        let fits = match wanted {
            KeyUse::Signature => matches!(use_, None | Some("sig")),
            KeyUse::JwtSvid => use_ == Some("jwt-svid"),
        };
        if !fits {
            skipped.push(format!("key {name}: use {:?} is not for these tokens", use_.unwrap_or("")));
            continue;
        }
        let ops = raw.get("key_ops").and_then(Value::as_array);
        if ops.is_some_and(|ops| !ops.iter().any(|o| o == "verify")) {
            skipped.push(format!("key {name}: its key_ops do not include verify"));
            continue;
        }
        if keys.iter().any(|k: &VerificationKey| Some(&k.kid) == raw.get("kid").and_then(Value::as_str).map(str::to_owned).as_ref()) {
            skipped.push(format!("key {name}: a second key with this kid (the first one is used)"));
            continue;
        }
        // jsonwebtoken's Jwk knows `use` only as sig/enc; the check above read it.
        let mut cleaned = raw.clone();
        if let Some(o) = cleaned.as_object_mut() {
            o.remove("use");
        }
        let jwk: Jwk = match serde_json::from_value(cleaned) {
            Ok(j) => j,
            Err(e) => {
                skipped.push(format!("key {name}: not a JWK jitgate can use ({e})"));
                continue;
            }
        };
        if let Err(e) = check_key_material(&jwk) {
            skipped.push(format!("key {name}: {e}"));
            continue;
        }
        let Some(kid) = kid else {
            skipped.push(format!("key {name}: no `kid` (tokens name their key by kid)"));
            continue;
        };
        let by_type = algorithms_of_type(&jwk);
        let algs: Vec<Algorithm> = match declared_alg(&jwk) {
            Some(Ok(a)) if by_type.contains(&a) && allowed.contains(&a) => vec![a],
            Some(Ok(a)) => {
                skipped.push(format!("key {kid}: alg {} is not allowed for this issuer or not of this key's type", alg_name(a)));
                continue;
            }
            Some(Err(other)) => {
                skipped.push(format!("key {kid}: alg {other} is not supported"));
                continue;
            }
            None => by_type.into_iter().filter(|a| allowed.contains(a)).collect(),
        };
        if algs.is_empty() {
            skipped.push(format!("key {kid}: none of the issuer's algorithms fits this key type"));
            continue;
        }
        let key = match DecodingKey::from_jwk(&jwk) {
            Ok(k) => k,
            Err(e) => {
                skipped.push(format!("key {kid}: {e}"));
                continue;
            }
        };
        keys.push(VerificationKey { kid, algs, key });
    }
    if keys.is_empty() {
        return Err(format!("the key set has no usable key ({})", if skipped.is_empty() { "it is empty".into() } else { skipped.join("; ") }));
    }
    Ok((keys, skipped))
}

/// Where a remote key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteSource {
    /// A JWKS URL.
    JwksUri(String),
    /// OpenID Connect discovery: `{iss}/.well-known/openid-configuration`
    /// names the `jwks_uri`; its `issuer` must be exactly `iss`.
    Discovery { iss: String },
    /// A SPIFFE bundle endpoint (`https_web` profile): a JWKS whose
    /// `jwt-svid` keys verify JWT-SVIDs, with a refresh hint.
    SpiffeBundle(String),
}

/// The state of a remote key set, for `/healthz` and the logs.
#[derive(Debug, Clone, Default)]
struct RemoteState {
    keys: Arc<Vec<VerificationKey>>,
    /// When the current keys were fetched (unix seconds).
    fetched_at: Option<i64>,
    /// When to fetch next.
    next_refresh: i64,
    last_error: Option<String>,
    /// The last refresh caused by an unknown kid.
    last_unknown_kid_refresh: Option<i64>,
    failures: u32,
}

/// The HTTP(S) client that fetches key sets and discovery documents.
type HttpClient = hyper_util::client::legacy::Client<Connector, http_body_util::Empty<bytes::Bytes>>;
pub(crate) type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// TLS by rustls with the ring provider passed explicitly, trusting the
/// platform's roots; plain HTTP too (callers allow it on loopback only).
pub(crate) fn connector() -> Result<Connector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| format!("cannot load the platform's root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build())
}

fn http_client() -> Result<HttpClient, String> {
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector()?))
}

/// Percent-encoding for form bodies and query strings: everything but the
/// unreserved characters (RFC 3986 §2.3).
pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// GET a JSON document: HTTPS (or plain HTTP on loopback), within
/// [`FETCH_TIMEOUT`], at most [`MAX_DOCUMENT_BYTES`], no redirects (a key
/// set that moved is a configuration change a person should make). Also the
/// `Cache-Control: max-age`, if any.
async fn fetch_json(http: &HttpClient, url: &str) -> Result<(Value, Option<i64>), String> {
    use http_body_util::BodyExt as _;
    // Every URL, configured or found by discovery.
    check_fetch_url(url)?;
    let uri: http::Uri = url.parse().map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let request = http::Request::get(uri)
        .header(http::header::ACCEPT, "application/json")
        .body(http_body_util::Empty::new())
        .map_err(|e| format!("GET {url}: {e}"))?;
    let fetched = async {
        let response = http.request(request).await.map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        if status.is_redirection() {
            let to = response.headers().get(http::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
            return Err(format!("GET {url}: redirected to {to}; configure that URL instead"));
        }
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        let age = max_age(response.headers());
        let body = http_body_util::Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| format!("GET {url}: {e} (at most {MAX_DOCUMENT_BYTES} bytes)"))?
            .to_bytes();
        let doc = serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
        Ok((doc, age))
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetched).await.map_err(|_| format!("GET {url}: no answer within {} s", FETCH_TIMEOUT.as_secs()))?
}

/// A key set fetched over HTTP and kept fresh.
pub struct RemoteKeys {
    issuer: String,
    source: RemoteSource,
    allowed: Vec<Algorithm>,
    max_stale: i64,
    state: RwLock<RemoteState>,
    refreshing: tokio::sync::Mutex<()>,
    http: HttpClient,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys").field("issuer", &self.issuer).field("source", &self.source).finish()
    }
}

/// Seconds from a `Cache-Control: max-age=N` header, if any.
fn max_age(headers: &http::HeaderMap) -> Option<i64> {
    let value = headers.get(http::header::CACHE_CONTROL)?.to_str().ok()?;
    value.split(',').find_map(|d| d.trim().strip_prefix("max-age=")).and_then(|n| n.trim().parse().ok())
}

/// GET a JSON document once (OpenID discovery for sign-in), with the same
/// limits as key sets: HTTPS (or loopback), no redirects, bounded size and time.
pub async fn get_json_once(url: &str) -> Result<Value, String> {
    fetch_json(&http_client()?, url).await.map(|(doc, _)| doc)
}

/// POST a form and read a JSON answer (an OAuth token request), with HTTP
/// Basic client authentication (RFC 6749 §2.3.1). Same limits as above.
pub async fn post_form(url: &str, form: &[(&str, &str)], client_id: &str, client_secret: &str) -> Result<Value, String> {
    use base64::Engine as _;
    use http_body_util::BodyExt as _;
    check_fetch_url(url)?;
    let enc = percent_encode;
    let body: Vec<String> = form.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(client_id), enc(client_secret)));
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector()?);
    let uri: http::Uri = url.parse().map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(body.join("&"))))
        .map_err(|e| format!("POST {url}: {e}"))?;
    let answered = async {
        let response = client.request(request).await.map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_DOCUMENT_BYTES).collect().await.map_err(|e| format!("POST {url}: {e}"))?.to_bytes();
        let doc: Value = serde_json::from_slice(&body).map_err(|e| format!("POST {url}: HTTP {status}, not JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!("POST {url}: HTTP {status}: {}", doc.get("error_description").or(doc.get("error")).map(Value::to_string).unwrap_or_default()));
        }
        Ok(doc)
    };
    tokio::time::timeout(FETCH_TIMEOUT, answered).await.map_err(|_| format!("POST {url}: no answer within {} s", FETCH_TIMEOUT.as_secs()))?
}

impl RemoteKeys {
    pub fn new(issuer: &str, source: RemoteSource, allowed: Vec<Algorithm>, max_stale: Duration) -> Result<Self, String> {
        let http = http_client()?;
        Ok(Self {
            issuer: issuer.to_owned(),
            source,
            allowed,
            max_stale: i64::try_from(max_stale.as_secs()).unwrap_or(i64::MAX),
            state: RwLock::new(RemoteState::default()),
            refreshing: tokio::sync::Mutex::new(()),
            http,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RemoteState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RemoteState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The keys to verify with now: the last good set, unless there is none
    /// or it is older than `max_stale` (fail closed).
    pub fn current(&self, now: i64) -> Result<Arc<Vec<VerificationKey>>, KeyCheckError> {
        let s = self.read();
        match s.fetched_at {
            None => Err(KeyCheckError::KeysUnavailable(format!(
                "the keys of issuer `{}` could not be fetched yet{}",
                self.issuer,
                s.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            ))),
            Some(at) if now.saturating_sub(at) > self.max_stale => Err(KeyCheckError::KeysUnavailable(format!(
                "the keys of issuer `{}` were last fetched {} s ago, longer than its max_stale of {} s{}",
                self.issuer,
                now - at,
                self.max_stale,
                s.last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default()
            ))),
            Some(_) => Ok(s.keys.clone()),
        }
    }

    async fn get_json(&self, url: &str) -> Result<(Value, Option<i64>), String> {
        fetch_json(&self.http, url).await
    }

    /// Where the JWKS is, discovering it if needed.
    async fn jwks_url(&self) -> Result<String, String> {
        match &self.source {
            RemoteSource::JwksUri(u) | RemoteSource::SpiffeBundle(u) => Ok(u.clone()),
            RemoteSource::Discovery { iss } => {
                let url = format!("{}/.well-known/openid-configuration", iss.trim_end_matches('/'));
                let (doc, _) = self.get_json(&url).await?;
                // OpenID Connect Discovery 1.0 §4.3: the issuer in the document
                // must be the one asked for, or the keys are someone else's.
                let issuer = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
                if issuer != iss {
                    return Err(format!("{url} names issuer `{issuer}`, not `{iss}`; refusing its keys"));
                }
                let jwks = doc.get("jwks_uri").and_then(Value::as_str).ok_or_else(|| format!("{url} has no jwks_uri"))?;
                Ok(jwks.to_owned())
            }
        }
    }

    /// Fetch the key set now and swap it in; on failure the last good set stays.
    pub async fn refresh(&self, clock: &dyn Clock) -> Result<usize, String> {
        let _one_at_a_time = self.refreshing.lock().await;
        let now = clock.now_unix();
        let fetched = async {
            let url = self.jwks_url().await?;
            let (doc, age) = self.get_json(&url).await?;
            let wanted = if matches!(self.source, RemoteSource::SpiffeBundle(_)) { KeyUse::JwtSvid } else { KeyUse::Signature };
            let (keys, skipped) = keys_from_jwks(&doc, &self.allowed, wanted)?;
            let hint = doc.get("spiffe_refresh_hint").and_then(Value::as_i64);
            Ok::<_, String>((url, keys, skipped, hint.or(age)))
        }
        .await;
        let mut s = self.write();
        match fetched {
            Ok((url, keys, skipped, every)) => {
                let n = keys.len();
                let kids: Vec<String> = keys.iter().map(|k| k.kid.clone()).collect();
                s.keys = Arc::new(keys);
                s.fetched_at = Some(now);
                // Refresh before the set could go stale, whatever the cache headers say.
                let within_stale = (self.max_stale / 2).max(MIN_REFRESH_SECS);
                s.next_refresh = now + every.unwrap_or(DEFAULT_REFRESH_SECS).clamp(MIN_REFRESH_SECS, MAX_REFRESH_SECS).min(within_stale);
                s.last_error = None;
                s.failures = 0;
                tracing::info!(issuer = %self.issuer, url = %url, keys = ?kids, skipped = ?skipped, next_in_secs = s.next_refresh - now, "issuer keys fetched");
                Ok(n)
            }
            Err(e) => {
                s.failures = s.failures.saturating_add(1);
                // Retry sooner than a normal refresh, backing off: 10 s, 20 s, 40 s ... 5 min.
                let backoff = (10i64 << s.failures.min(5).saturating_sub(1)).min(300);
                s.next_refresh = now + backoff;
                s.last_error = Some(e.clone());
                let stale_in = s.fetched_at.map(|at| self.max_stale - (now - at));
                tracing::warn!(issuer = %self.issuer, error = %e, retry_in_secs = backoff, last_good_valid_for_secs = ?stale_in, "issuer keys could not be fetched; the last good set stays in use until max_stale");
                Err(e)
            }
        }
    }

    /// A token named a `kid` the set does not have: the provider may have
    /// rotated. Refresh, unless an unknown kid already caused a refresh in
    /// the last [`UNKNOWN_KID_REFRESH_SECS`] (anyone can make up kids).
    /// True if a refresh ran and succeeded.
    pub async fn refresh_for_unknown_kid(&self, clock: &dyn Clock) -> bool {
        let now = clock.now_unix();
        {
            let mut s = self.write();
            if s.last_unknown_kid_refresh.is_some_and(|at| now - at < UNKNOWN_KID_REFRESH_SECS) {
                return false;
            }
            s.last_unknown_kid_refresh = Some(now);
        }
        self.refresh(clock).await.is_ok()
    }

    /// Keep the set fresh until `shutdown`.
    pub async fn run(self: Arc<Self>, clock: Arc<dyn Clock>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            let wait = (self.read().next_refresh - clock.now_unix()).max(1);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(u64::try_from(wait).unwrap_or(1))) => {}
                _ = shutdown.cancelled() => return,
            }
            if self.read().next_refresh <= clock.now_unix() {
                let _ = self.refresh(clock.as_ref()).await;
            }
        }
    }

    /// What `/healthz` shows: no keys, only their ids and the set's state.
    pub fn health(&self, now: i64) -> Value {
        let s = self.read();
        let status = match s.fetched_at {
            None => "unavailable",
            Some(at) if now - at > self.max_stale => "stale",
            Some(_) if s.last_error.is_some() => "degraded",
            Some(_) => "ok",
        };
        // /healthz is unauthenticated: the state only. URLs, key ids and
        // error texts (which can name internal hosts) are in the logs.
        serde_json::json!({
            "issuer": self.issuer,
            "status": status,
            "keys": s.keys.len(),
            "fetched_secs_ago": s.fetched_at.map(|at| now - at),
            "next_refresh_in_secs": s.next_refresh - now,
        })
    }
}

/// An issuer's keys: fixed at start, or remote and refreshed.
#[derive(Debug, Clone)]
pub enum KeySet {
    Static(Arc<Vec<VerificationKey>>),
    Remote(Arc<RemoteKeys>),
}

impl KeySet {
    /// The key a token names, among those usable now.
    pub fn find(&self, kid: Option<&str>, now: i64) -> Result<VerificationKey, KeyCheckError> {
        let keys = match self {
            KeySet::Static(k) => k.clone(),
            KeySet::Remote(r) => r.current(now)?,
        };
        match kid {
            Some(kid) => keys.iter().find(|k| k.kid == kid).cloned().ok_or_else(|| KeyCheckError::UnknownKey(kid.to_owned())),
            // A token without a kid is accepted only from an issuer with one key.
            None if keys.len() == 1 => keys.first().cloned().ok_or_else(|| KeyCheckError::UnknownKey(String::new())),
            None => Err(KeyCheckError::Malformed("the token has no `kid` and the issuer has several keys".into())),
        }
    }

    pub fn remote(&self) -> Option<&Arc<RemoteKeys>> {
        match self {
            KeySet::Remote(r) => Some(r),
            KeySet::Static(_) => None,
        }
    }
}

/// Keys are fetched over HTTPS; plain HTTP only from this machine (tests,
/// a provider on loopback), where no one can change them on the way.
pub(crate) fn check_fetch_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("`{url}` is not a URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
    let name = if host.starts_with('[') { host.split(']').next().map(|h| format!("{h}]")).unwrap_or_default() } else { host.split(':').next().unwrap_or("").to_owned() };
    match scheme {
        "https" if !name.is_empty() => Ok(()),
        "http" if matches!(name.as_str(), "127.0.0.1" | "localhost" | "[::1]") => Ok(()),
        "http" => Err(format!("`{url}`: keys fetched over plain HTTP could be swapped on the way; use https (plain http is allowed only on loopback)")),
        _ => Err(format!("`{url}` must be an https URL")),
    }
}


#[cfg(test)]
mod tests;
