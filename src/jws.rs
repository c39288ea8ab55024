//! Compact JWS with EdDSA (Ed25519): the one signed-token format jitgate reads
//! and writes (agent identity tokens now, capability tokens later).
//!
//! Parsing and verifying are separate steps: [`parse`] only splits and decodes
//! and yields an [`UnverifiedJws`] whose claims may be inspected but carry no
//! authority; [`UnverifiedJws::verify_signature`] checks the signature with a
//! key the caller chose from the `kid`. `alg` is pinned: anything but `EdDSA`
//! (including `none` and HMAC algorithms) is rejected before any key is used.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The only algorithm jitgate accepts.
pub const ALG: &str = "EdDSA";

/// Errors from parsing or verifying a compact JWS.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JwsError {
    #[error("token is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("token is not a compact JWS (expected three base64url parts separated by '.')")]
    NotCompact,
    #[error("token {part} is not valid base64url/JSON: {reason}")]
    BadPart { part: &'static str, reason: String },
    #[error("token uses alg `{0}`; only EdDSA is accepted")]
    UnsupportedAlg(String),
    #[error("token has no `kid` in its header")]
    MissingKid,
    #[error("token signature does not verify")]
    BadSignature,
}

/// The protected header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Critical header extensions (RFC 7515 §4.1.11): none is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit: Option<serde_json::Value>,
}

/// A parsed token whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct UnverifiedJws {
    pub header: Header,
    /// The decoded payload bytes (JSON).
    pub payload: Vec<u8>,
    signing_input_len: usize,
    raw: String,
    signature: Vec<u8>,
}

/// Split and decode a compact JWS. Checks size, shape and `alg`; not the signature.
pub fn parse(token: &str, max_len: usize) -> Result<UnverifiedJws, JwsError> {
    let parsed = parse_any_alg(token, max_len)?;
    if parsed.header.alg != ALG {
        return Err(JwsError::UnsupportedAlg(parsed.header.alg));
    }
    Ok(parsed)
}

/// Split and decode a compact JWS whatever its `alg`: for credentials of
/// other issuers, whose keys pin the algorithms they verify
/// ([`crate::issuer_keys`]). Checks size and shape only.
pub fn parse_any_alg(token: &str, max_len: usize) -> Result<UnverifiedJws, JwsError> {
    let token = token.trim();
    if token.len() > max_len {
        return Err(JwsError::TooLarge { len: token.len(), max: max_len });
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::NotCompact);
    };
    let bad = |part: &'static str| move |e: String| JwsError::BadPart { part, reason: e };
    let header_bytes = B64URL.decode(h).map_err(|e| bad("header")(e.to_string()))?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|e| bad("header")(e.to_string()))?;
    let payload = B64URL.decode(p).map_err(|e| bad("payload")(e.to_string()))?;
    let signature = B64URL.decode(s).map_err(|e| bad("signature")(e.to_string()))?;
    Ok(UnverifiedJws { header, payload, signing_input_len: h.len() + 1 + p.len(), raw: token.to_owned(), signature })
}

impl UnverifiedJws {
    /// The whole compact token (for a verifier that checks it itself).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Decode the payload as claims of type `T` (still unverified).
    pub fn claims<T: for<'de> Deserialize<'de>>(&self) -> Result<T, JwsError> {
        serde_json::from_slice(&self.payload).map_err(|e| JwsError::BadPart { part: "claims", reason: e.to_string() })
    }

    /// The `kid` of the header, required by jitgate.
    pub fn kid(&self) -> Result<&str, JwsError> {
        self.header.kid.as_deref().ok_or(JwsError::MissingKid)
    }

    /// Check the Ed25519 signature with `key` (strict verification: rejects
    /// small-order keys and non-canonical signatures).
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), JwsError> {
        let sig_bytes: [u8; 64] = self.signature.as_slice().try_into().map_err(|_| JwsError::BadSignature)?;
        let signature = Signature::from_bytes(&sig_bytes);
        let input = self.raw.get(..self.signing_input_len).ok_or(JwsError::NotCompact)?;
        key.verify_strict(input.as_bytes(), &signature).map_err(|_| JwsError::BadSignature)
    }
}

/// Sign `claims` as a compact JWS with `alg: EdDSA` and the given `kid`/`typ`.
pub fn sign<T: Serialize>(claims: &T, kid: &str, typ: &str, key: &SigningKey) -> Result<String, serde_json::Error> {
    let header = Header { alg: ALG.into(), kid: Some(kid.into()), typ: Some(typ.into()), crit: None };
    let h = B64URL.encode(serde_json::to_vec(&header)?);
    let p = B64URL.encode(serde_json::to_vec(claims)?);
    let input = format!("{h}.{p}");
    let sig = key.sign(input.as_bytes());
    Ok(format!("{input}.{}", B64URL.encode(sig.to_bytes())))
}

/// Compare secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A short, non-secret handle for a token in logs: never log a whole token.
pub fn fingerprint(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(token.trim().as_bytes());
    format!("sha256:{}", hex::encode(&d[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    #[test]
    fn signed_token_verifies_and_tampering_does_not() {
        let t = sign(&serde_json::json!({"sub": "a"}), "k1", "JWT", &key()).unwrap();
        let parsed = parse(&t, 4096).unwrap();
        parsed.verify_signature(&key().verifying_key()).unwrap();
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert_eq!(parsed.verify_signature(&other), Err(JwsError::BadSignature));

        // Swap the payload for another one: signature must fail.
        let forged_payload = B64URL.encode(br#"{"sub":"root"}"#);
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[1] = &forged_payload;
        let forged = parts.join(".");
        assert_eq!(parse(&forged, 4096).unwrap().verify_signature(&key().verifying_key()), Err(JwsError::BadSignature));
    }

    #[test]
    fn alg_none_and_hmac_are_rejected_before_keys() {
        for alg in ["none", "HS256", "RS256", "eddsa"] {
            let h = B64URL.encode(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#));
            let p = B64URL.encode(br#"{"sub":"a"}"#);
            let t = format!("{h}.{p}.");
            assert_eq!(parse(&t, 4096).unwrap_err(), JwsError::UnsupportedAlg(alg.into()));
        }
    }

    #[test]
    fn oversize_and_malformed_are_specific() {
        assert!(matches!(parse(&"a".repeat(5000), 4096), Err(JwsError::TooLarge { .. })));
        assert_eq!(parse("abc", 4096).unwrap_err(), JwsError::NotCompact);
        assert_eq!(parse("a.b.c.d", 4096).unwrap_err(), JwsError::NotCompact);
        assert!(matches!(parse("!!.e30.", 4096), Err(JwsError::BadPart { part: "header", .. })));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = parse(&s, 4096);
        }

        #[test]
        fn sign_parse_round_trip(sub in "[a-z:/._-]{1,40}", exp in 0i64..4_000_000_000) {
            let claims = serde_json::json!({"sub": sub, "exp": exp});
            let t = sign(&claims, "kid", "JWT", &key()).unwrap();
            let parsed = parse(&t, 4096).unwrap();
            parsed.verify_signature(&key().verifying_key()).unwrap();
            let back: serde_json::Value = parsed.claims().unwrap();
            prop_assert_eq!(back, claims);
        }
    }
}
