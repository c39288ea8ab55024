//! Ed25519 signing keys on disk, their key ids, and JWKS rendering.
//!
//! A private key file is a JSON Web Key (OKP, Ed25519) with the private part
//! `d`, written with mode 0600. The key id (`kid`) is derived from the public
//! key, so the same key always has the same id and a verifier can never be
//! confused about which key a `kid` names.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Errors reading, writing or decoding keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}; check the path and its permissions")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write key file {path}: {source}; check that the directory exists and is writable")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("key file {path} is not a valid Ed25519 JWK ({reason}); regenerate it with `jitgate keys generate`")]
    Malformed { path: PathBuf, reason: String },
    #[error("public key `{value_prefix}…` is not a base64url-encoded 32-byte Ed25519 key ({reason})")]
    BadPublicKey { value_prefix: String, reason: String },
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error("key file {path} already exists; refusing to overwrite a key (move it away first)")]
    Exists { path: PathBuf },
}

/// A signing key with its key id.
#[derive(Clone)]
pub struct KeyPair {
    pub kid: String,
    pub signing: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    // Never print private key material, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// A public key with its key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    pub key: VerifyingKey,
}

#[derive(Serialize, Deserialize)]
struct JwkFile {
    kty: String,
    crv: String,
    alg: String,
    kid: String,
    x: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    d: Option<String>,
}

/// The key id of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

impl KeyPair {
    /// A fresh key pair from the operating system's RNG.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// A key pair from a 32-byte seed (deterministic; tests and benches).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let kid = key_id(&signing.verifying_key());
        Self { kid, signing }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey { kid: self.kid.clone(), key: self.signing.verifying_key() }
    }

    /// Read a private JWK file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
        let malformed = |reason: &str| KeyError::Malformed { path: path.to_owned(), reason: reason.to_owned() };
        let jwk: JwkFile = serde_json::from_str(&text).map_err(|e| malformed(&e.to_string()))?;
        if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
            return Err(malformed("kty must be OKP and crv Ed25519"));
        }
        let d = jwk.d.ok_or_else(|| malformed("no private part `d`"))?;
        let seed: [u8; 32] = B64URL
            .decode(d.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("`d` is not 32 base64url bytes"))?;
        let pair = Self::from_seed(&seed);
        if pair.kid != jwk.kid {
            return Err(malformed("`kid` does not match the key"));
        }
        Ok(pair)
    }

    /// Write the private JWK file with owner-only permissions; never overwrites.
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        if path.exists() {
            return Err(KeyError::Exists { path: path.to_owned() });
        }
        let jwk = JwkFile {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            alg: "EdDSA".into(),
            kid: self.kid.clone(),
            x: B64URL.encode(self.signing.verifying_key().as_bytes()),
            d: Some(B64URL.encode(self.signing.to_bytes())),
        };
        let text = serde_json::to_string_pretty(&jwk).unwrap_or_default();
        write_private(path, text.as_bytes()).map_err(|source| KeyError::Write { path: path.to_owned(), source })
    }

    /// Load the key at `path`, creating it first if it does not exist
    /// (development keys created on first run).
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        if let Some(dir) = path.parent() {
            create_private_dir(dir).map_err(|source| KeyError::Write { path: dir.to_owned(), source })?;
        }
        let pair = Self::generate()?;
        pair.save_new(path)?;
        Ok((pair, true))
    }
}

impl PublicKey {
    /// Decode a base64url Ed25519 public key (the JWK `x` value).
    pub fn from_b64url(x: &str) -> Result<Self, KeyError> {
        let bad = |reason: &str| KeyError::BadPublicKey {
            value_prefix: x.chars().take(8).collect(),
            reason: reason.to_owned(),
        };
        let bytes: [u8; 32] = B64URL
            .decode(x.trim().as_bytes())
            .map_err(|e| bad(&e.to_string()))?
            .try_into()
            .map_err(|_| bad("not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|e| bad(&e.to_string()))?;
        Ok(Self { kid: key_id(&key), key })
    }

    /// The base64url encoding of the key (JWK `x`).
    pub fn to_b64url(&self) -> String {
        B64URL.encode(self.key.as_bytes())
    }

    /// This key as a JWK object.
    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": self.kid, "x": self.to_b64url(),
        })
    }
}

/// Render public keys as a JWKS document.
pub fn jwks(keys: &[PublicKey]) -> serde_json::Value {
    serde_json::json!({ "keys": keys.iter().map(PublicKey::to_jwk).collect::<Vec<_>>() })
}

/// Parse the public keys out of a JWKS document (Ed25519 keys only; others are skipped
/// because jitgate pins `alg` to EdDSA).
pub fn parse_jwks(text: &str) -> Result<Vec<PublicKey>, String> {
    #[derive(Deserialize)]
    struct Jwks {
        keys: Vec<serde_json::Value>,
    }
    let doc: Jwks = serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut out = Vec::new();
    for key in doc.keys {
        let field = |k: &str| key.get(k).and_then(|v| v.as_str());
        if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
            continue;
        }
        let x = field("x").ok_or("an Ed25519 key has no `x`")?;
        let mut pk = PublicKey::from_b64url(x).map_err(|e| e.to_string())?;
        if let Some(kid) = field("kid") {
            pk.kid = kid.to_owned();
        }
        out.push(pk);
    }
    if out.is_empty() {
        return Err("the JWKS document has no Ed25519 (OKP) keys".into());
    }
    Ok(out)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut file = opts.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Create a directory (and its missing parents) that only its owner can
/// enter: the state directory holds the store, keys and the audit witness.
/// A directory that already exists is left as it is (it may be shared).
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_key_loads_back_with_same_kid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.jwk");
        let pair = KeyPair::generate().unwrap();
        pair.save_new(&path).unwrap();
        let loaded = KeyPair::load(&path).unwrap();
        assert_eq!(loaded.kid, pair.kid);
        assert_eq!(loaded.public(), pair.public());
        assert!(matches!(pair.save_new(&path), Err(KeyError::Exists { .. })));
    }

    #[test]
    fn jwks_round_trip_keeps_keys() {
        let a = KeyPair::from_seed(&[1; 32]).public();
        let b = KeyPair::from_seed(&[2; 32]).public();
        let doc = jwks(&[a.clone(), b.clone()]).to_string();
        assert_eq!(parse_jwks(&doc).unwrap(), vec![a, b]);
        assert!(parse_jwks(r#"{"keys":[]}"#).is_err());
    }

    #[test]
    fn debug_never_shows_private_key() {
        let pair = KeyPair::from_seed(&[7; 32]);
        let shown = format!("{pair:?}");
        assert!(!shown.contains(&B64URL.encode(pair.signing.to_bytes())));
    }
}
