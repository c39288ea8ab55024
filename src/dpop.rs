//! DPoP (RFC 9449): a client proves, on every HTTP request, that it holds a
//! private key, and the capability tokens jitgate mints for it are bound to
//! that key's thumbprint (`cnf.jkt`). A token copied out of the agent's
//! context (a log, a prompt-injected tool, another process) is then useless
//! without the key.
//!
//! A proof is a JWT in the `DPoP` header: `typ: dpop+jwt`, an asymmetric
//! `alg` that matches the public key in its `jwk` header (pinned by the
//! key's type, never taken from the proof alone), and claims `jti` (used
//! once), `htm` and `htu` (this request's method and URI), `iat` (fresh) and
//! `ath` (the hash of the access token it travels with). Verification uses
//! the `jsonwebtoken` crate.

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// The request header that carries a proof.
pub const HEADER: &str = "dpop";
/// Proofs older or newer than this (by `iat`) are refused.
pub const MAX_AGE_SECS: i64 = 60;
/// Largest proof accepted.
const MAX_PROOF_BYTES: usize = 8 * 1024;

/// The thumbprint (RFC 7638, SHA-256, base64url) of the key a request proved
/// possession of, attached to the request for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenKey(pub String);

/// A verified proof: the key thumbprint and what the replay check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("the DPoP proof is malformed: {0}; send one proof JWT (typ dpop+jwt) in the DPoP header")]
    Malformed(String),
    #[error("the DPoP proof's key or algorithm is not allowed: {0}; use an asymmetric key (EC P-256/P-384, RSA, Ed25519) with its matching alg")]
    Key(String),
    #[error("the DPoP proof's signature does not verify with the key in its header")]
    Signature,
    #[error("the DPoP proof is for {claim} `{got}`, but this request is `{want}`; make a new proof for each request")]
    WrongRequest { claim: &'static str, got: String, want: String },
    #[error("the DPoP proof was made {age} s from now (at most {MAX_AGE_SECS} s allowed); make a new proof for each request")]
    Stale { age: i64 },
    #[error("the DPoP proof's ath does not match the access token it came with")]
    TokenHash,
    #[error("this DPoP proof (jti) was already used; make a new proof for each request")]
    Replayed,
    #[error("the access token is bound to a DPoP key (cnf.jkt) and this request proves a different key, or none")]
    KeyMismatch,
    #[error("the access token is bound to a key by a confirmation method jitgate cannot check (only cnf.jkt with DPoP is supported)")]
    UnsupportedConfirmation,
}

impl DpopError {
    pub fn code(&self) -> &'static str {
        match self {
            DpopError::Replayed => "dpop_replayed",
            DpopError::KeyMismatch | DpopError::UnsupportedConfirmation => "dpop_key_mismatch",
            _ => "dpop_invalid",
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    ath: Option<String>,
}

/// The header fields jsonwebtoken's `Header` does not keep as they came.
#[derive(Deserialize)]
struct RawHeader {
    typ: Option<String>,
    jwk: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Length of a base64url field in bytes, or None when it does not decode.
fn decoded_len(field: &str) -> Option<usize> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(field).ok().map(|b| b.len())
}

/// The bit length of a base64url big-endian modulus (leading zero bytes do
/// not count).
fn modulus_bits(field: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(field).ok()?;
    let first = bytes.iter().position(|b| *b != 0)?;
    let leading = usize::try_from(bytes.get(first)?.leading_zeros()).ok()?;
    Some((bytes.len() - first) * 8 - leading)
}

/// The key material has the sizes its type requires. jsonwebtoken indexes
/// key bytes without checking (an Ed25519 `x` shorter than 32 bytes panicked
/// inside it; found by fuzzing), so a key from an agent is checked first.
fn check_key_material(jwk: &Jwk) -> Result<(), DpopError> {
    let bad = |what: &str| Err(DpopError::Key(what.to_owned()));
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) => match (&p.curve, decoded_len(&p.x)) {
            (EllipticCurve::Ed25519, Some(32)) => Ok(()),
            (EllipticCurve::Ed25519, _) => bad("an Ed25519 key's x must be 32 bytes"),
            (other, _) => Err(DpopError::Key(format!("curve {other:?} is not an Ed25519 key"))),
        },
        AlgorithmParameters::EllipticCurve(p) => {
            let size = match p.curve {
                EllipticCurve::P256 => 32,
                EllipticCurve::P384 => 48,
                ref other => return Err(DpopError::Key(format!("curve {other:?}"))),
            };
            if decoded_len(&p.x) == Some(size) && decoded_len(&p.y) == Some(size) { Ok(()) } else { bad("an EC key's x and y must be the curve's size") }
        }
        AlgorithmParameters::RSA(p) => match (modulus_bits(&p.n), decoded_len(&p.e)) {
            // 2048- to 4096-bit moduli (what the RSA code accepts); a public
            // exponent of at most 8 bytes.
            (Some(bits), Some(e)) if (2048..=4096).contains(&bits) && (1..=8).contains(&e) => Ok(()),
            _ => bad("an RSA key needs a 2048- to 4096-bit modulus and a short exponent"),
        },
        _ => Ok(()),
    }
}

/// The one algorithm (or RSA family) a key type may sign proofs with.
fn algorithms_for(jwk: &Jwk) -> Result<Vec<Algorithm>, DpopError> {
    check_key_material(jwk)?;
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Ok(vec![Algorithm::ES256]),
            EllipticCurve::P384 => Ok(vec![Algorithm::ES384]),
            ref other => Err(DpopError::Key(format!("curve {other:?}"))),
        },
        AlgorithmParameters::RSA(_) => Ok(vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512]),
        AlgorithmParameters::OctetKeyPair(_) => Ok(vec![Algorithm::EdDSA]),
        AlgorithmParameters::OctetKey(_) => Err(DpopError::Key("a symmetric (oct) key proves nothing".into())),
        _ => Err(DpopError::Key("unknown key type".into())),
    }
}

/// RFC 7638 thumbprint; jsonwebtoken does not compute it for OKP keys.
fn thumbprint(jwk: &Jwk) -> Result<String, DpopError> {
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) => {
            let crv = serde_json::to_string(&p.curve).map_err(|e| DpopError::Key(e.to_string()))?;
            let canonical = format!(r#"{{"crv":{crv},"kty":"OKP","x":"{}"}}"#, p.x);
            Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
        }
        _ => jwk.thumbprint(ThumbprintHash::SHA256).map_err(|e| DpopError::Key(e.to_string())),
    }
}

/// The key an access token is bound to (`cnf`, RFC 7800 / RFC 9449), from
/// its claims as the identity verifier keeps them (JSON text). Only a
/// `jkt` thumbprint can be checked here; any other confirmation method
/// refuses the token rather than accept it unbound (fail closed).
pub fn bound_key(claims: &std::collections::BTreeMap<String, String>) -> Result<Option<String>, DpopError> {
    let Some(cnf) = claims.get("cnf") else { return Ok(None) };
    let value: serde_json::Value = serde_json::from_str(cnf).map_err(|_| DpopError::UnsupportedConfirmation)?;
    match value.as_object() {
        Some(o) if o.len() == 1 => o.get("jkt").and_then(serde_json::Value::as_str).map(|k| Some(k.to_owned())).ok_or(DpopError::UnsupportedConfirmation),
        _ => Err(DpopError::UnsupportedConfirmation),
    }
}

/// `ath`: base64url SHA-256 of the access token.
pub fn token_hash(access_token: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// The part of a URI a proof's `htu` is compared on: authority and path,
/// without query and fragment (RFC 9449 §4.3). The scheme is not compared:
/// behind a TLS-terminating proxy the client says https and jitgate sees
/// http for the same endpoint.
fn comparable_uri(uri: &str) -> String {
    let without_scheme = uri.split_once("://").map(|(_, rest)| rest).unwrap_or(uri);
    let cut = without_scheme.find(['?', '#']).unwrap_or(without_scheme.len());
    without_scheme[..cut].trim_end_matches('/').to_ascii_lowercase()
}

/// Verify a proof for one request. `uri` is the request's own
/// `host[:port]/path` as the gateway received it. The replay check (the
/// `jti` used once) is the caller's, against the store.
pub fn verify(proof: &str, method: &str, uri: &str, access_token: &str, now: i64) -> Result<Proof, DpopError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::Malformed(format!("{} bytes (at most {MAX_PROOF_BYTES})", proof.len())));
    }
    let header = jsonwebtoken::decode_header(proof).map_err(|e| DpopError::Malformed(e.to_string()))?;
    let raw: RawHeader = proof
        .split('.')
        .next()
        .and_then(|h| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| DpopError::Malformed("unreadable header".into()))?;
    if raw.typ.as_deref() != Some("dpop+jwt") {
        return Err(DpopError::Malformed(format!("typ must be dpop+jwt, not {:?}", raw.typ)));
    }
    if raw.jwk.as_ref().is_some_and(|k| k.contains_key("d")) {
        return Err(DpopError::Key("the jwk header holds a private key".into()));
    }
    let jwk = header.jwk.as_ref().ok_or_else(|| DpopError::Malformed("no jwk header".into()))?;
    let allowed = algorithms_for(jwk)?;
    if !allowed.contains(&header.alg) {
        return Err(DpopError::Key(format!("alg {:?} does not match the key type", header.alg)));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| DpopError::Key(e.to_string()))?;
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(proof, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => DpopError::Signature,
            _ => DpopError::Malformed(e.to_string()),
        })?
        .claims;
    if !claims.htm.eq_ignore_ascii_case(method) {
        return Err(DpopError::WrongRequest { claim: "htm", got: claims.htm, want: method.to_owned() });
    }
    if comparable_uri(&claims.htu) != comparable_uri(uri) {
        return Err(DpopError::WrongRequest { claim: "htu", got: claims.htu, want: uri.to_owned() });
    }
    let age = now.saturating_sub(claims.iat);
    if age.unsigned_abs() > MAX_AGE_SECS.unsigned_abs() {
        return Err(DpopError::Stale { age });
    }
    match &claims.ath {
        Some(ath) if crate::jws::constant_time_eq(ath.as_bytes(), token_hash(access_token).as_bytes()) => {}
        _ => return Err(DpopError::TokenHash),
    }
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(DpopError::Malformed("jti must be 1-256 characters".into()));
    }
    Ok(Proof { jkt: thumbprint(jwk)?, jti: claims.jti, iat: claims.iat })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ed25519_dalek::Signer as _;

    /// A proof signed with an Ed25519 key (the client side, for tests).
    pub(crate) fn ed25519_proof(seed: u8, method: &str, htu: &str, token: &str, iat: i64, jti: &str) -> (String, String) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}});
        let claims = serde_json::json!({"jti": jti, "htm": method, "htu": htu, "iat": iat, "ath": token_hash(token)});
        let input = format!("{}.{}", b64(&header), b64(&claims));
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes());
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        (format!("{input}.{sig}"), base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
    }

    #[test]
    fn rsa_moduli_are_measured_in_bits() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let mut n = vec![0u8; 2];
        n.extend(std::iter::repeat_n(0xff, 255));
        // 257 bytes with two leading zeros: 2040 bits, too short.
        assert_eq!(modulus_bits(&b64(&n)), Some(2040));
        assert_eq!(modulus_bits(&b64(&[0x80; 256])), Some(2048));
        assert_eq!(modulus_bits(&b64(&[0x01; 256])), Some(2041));
        assert_eq!(modulus_bits(&b64(&[0, 0])), None);
    }

    /// Found by fuzzing: an Ed25519 `x` shorter than 32 bytes panicked inside
    /// jsonwebtoken. Key sizes are checked first; a good key still verifies.
    #[test]
    fn a_key_of_the_wrong_size_is_refused_without_a_panic() {
        let (proof, _) = ed25519_proof(1, "POST", "http://127.0.0.1:7420/mcp", "tok", 1000, "p1");
        let (header, rest) = proof.split_once('.').unwrap();
        let mut h: serde_json::Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        for short in ["AAAA", "", "not base64!"] {
            h["jwk"]["x"] = serde_json::json!(short);
            let forged = format!("{}.{rest}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.to_string()));
            assert!(matches!(verify(&forged, "POST", "127.0.0.1:7420/mcp", "tok", 1000), Err(DpopError::Key(_))), "{short:?}");
        }
        assert!(verify(&proof, "POST", "127.0.0.1:7420/mcp", "tok", 1000).is_ok());
    }

    #[test]
    fn a_fresh_proof_for_this_request_and_token_verifies_to_its_key() {
        let (proof, jkt) = ed25519_proof(1, "POST", "http://127.0.0.1:7420/mcp", "tok", 1000, "p1");
        let p = verify(&proof, "POST", "127.0.0.1:7420/mcp", "tok", 1010).unwrap();
        assert_eq!((p.jkt, p.jti.as_str()), (jkt, "p1"));
        // The scheme, a trailing slash and a query do not matter.
        assert!(verify(&proof, "post", "127.0.0.1:7420/mcp/?x=1", "tok", 1010).is_ok());
    }

    #[test]
    fn a_proof_for_another_request_token_time_or_key_is_refused() {
        let (proof, _) = ed25519_proof(1, "POST", "http://127.0.0.1:7420/mcp", "tok", 1000, "p1");
        assert!(matches!(verify(&proof, "GET", "127.0.0.1:7420/mcp", "tok", 1000), Err(DpopError::WrongRequest { claim: "htm", .. })));
        assert!(matches!(verify(&proof, "POST", "127.0.0.1:7421/mcp", "tok", 1000), Err(DpopError::WrongRequest { claim: "htu", .. })));
        assert!(matches!(verify(&proof, "POST", "127.0.0.1:7420/approvals", "tok", 1000), Err(DpopError::WrongRequest { claim: "htu", .. })));
        assert_eq!(verify(&proof, "POST", "127.0.0.1:7420/mcp", "other-token", 1000), Err(DpopError::TokenHash));
        assert_eq!(verify(&proof, "POST", "127.0.0.1:7420/mcp", "tok", 1000 + MAX_AGE_SECS + 1), Err(DpopError::Stale { age: MAX_AGE_SECS + 1 }));
        // A signature by another key than the one in the header.
        let (other, _) = ed25519_proof(2, "POST", "http://127.0.0.1:7420/mcp", "tok", 1000, "p1");
        let forged = format!("{}.{}", proof.rsplit_once('.').unwrap().0, other.rsplit_once('.').unwrap().1);
        assert_eq!(verify(&forged, "POST", "127.0.0.1:7420/mcp", "tok", 1000), Err(DpopError::Signature));
    }

    #[test]
    fn extreme_times_are_stale_not_a_panic() {
        for iat in [i64::MIN, i64::MAX, 0] {
            let (proof, _) = ed25519_proof(1, "POST", "http://h/mcp", "t", iat, "j");
            assert!(matches!(verify(&proof, "POST", "h/mcp", "t", 1_800_000_000), Err(DpopError::Stale { .. })), "{iat}");
        }
    }

    #[test]
    fn only_a_jkt_confirmation_is_accepted() {
        let claims = |cnf: &str| std::collections::BTreeMap::from([("cnf".to_owned(), cnf.to_owned())]);
        assert_eq!(bound_key(&std::collections::BTreeMap::new()), Ok(None));
        assert_eq!(bound_key(&claims(r#"{"jkt":"abc"}"#)), Ok(Some("abc".into())));
        for other in [r#"{"x5t#S256":"abc"}"#, r#"{"jwk":{"kty":"OKP"}}"#, r#"{"jkt":["abc"]}"#, r#"{"jkt":"a","x5t#S256":"b"}"#, "nonsense"] {
            assert_eq!(bound_key(&claims(other)), Err(DpopError::UnsupportedConfirmation), "{other}");
        }
    }

    #[test]
    fn symmetric_keys_mismatched_algs_private_keys_and_wrong_typ_are_refused() {
        let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = b64(serde_json::json!({"jti": "j", "htm": "POST", "htu": "http://h/mcp", "iat": 0, "ath": token_hash("t")}));
        let with_header = |h: serde_json::Value| format!("{}.{claims}.c2ln", b64(h));
        let hs = with_header(serde_json::json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}));
        assert!(matches!(verify(&hs, "POST", "h/mcp", "t", 0), Err(DpopError::Key(_))));
        let (proof, _) = ed25519_proof(1, "POST", "http://h/mcp", "t", 0, "j");
        let x = serde_json::from_slice::<serde_json::Value>(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(proof.split('.').next().unwrap()).unwrap()).unwrap()["jwk"]["x"].clone();
        let es_on_ed = with_header(serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}}));
        assert!(matches!(verify(&es_on_ed, "POST", "h/mcp", "t", 0), Err(DpopError::Key(_))));
        let private = with_header(serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x, "d": x}}));
        assert!(matches!(verify(&private, "POST", "h/mcp", "t", 0), Err(DpopError::Key(_))));
        let jwt = with_header(serde_json::json!({"typ": "JWT", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}}));
        assert!(matches!(verify(&jwt, "POST", "h/mcp", "t", 0), Err(DpopError::Malformed(_))));
        assert!(matches!(verify("not.a.jwt", "POST", "h/mcp", "t", 0), Err(DpopError::Malformed(_))));
    }
}
