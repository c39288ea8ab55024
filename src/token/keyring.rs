//! The gateway's capability signing keys, kept in `STATE/keys/`.
//!
//! Each key is a file `cap-<sequence>-<created unix time>-<kid>.jwk`. The
//! highest sequence (the newest key) signs;
//! every key in the directory verifies, so tokens minted before a rotation
//! stay valid until they expire. `jitgate keys rotate` adds a key; a running
//! gateway picks it up within a second.

use std::path::{Path, PathBuf};

use crate::keys::{KeyPair, PublicKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read key directory {path}: {reason}")]
    Dir { path: PathBuf, reason: String },
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
}

/// Signing key plus every verification key.
#[derive(Debug, Clone)]
pub struct Keyring {
    active: KeyPair,
    all: Vec<PublicKey>,
    /// The file names it was loaded from, to notice rotation.
    files: Vec<String>,
}

fn key_files(dir: &Path) -> Result<Vec<String>, KeyringError> {
    let rd = std::fs::read_dir(dir).map_err(|e| KeyringError::Dir { path: dir.to_owned(), reason: e.to_string() })?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
        .filter(|n| n.starts_with("cap-") && n.ends_with(".jwk"))
        .collect();
    // Names start with a zero-padded sequence number, so the last one is the newest.
    names.sort();
    Ok(names)
}

impl Keyring {
    /// Load the keys in `dir`, creating the directory and a first key if there is none.
    pub fn load_or_init(dir: &Path) -> Result<Self, KeyringError> {
        crate::keys::create_private_dir(dir).map_err(|e| KeyringError::Dir { path: dir.to_owned(), reason: e.to_string() })?;
        if key_files(dir)?.is_empty() {
            Self::add_key(dir, crate::clock::Clock::now_unix(&crate::clock::SystemClock))?;
        }
        Self::load(dir)
    }

    /// Load the keys in `dir` (at least one must exist).
    pub fn load(dir: &Path) -> Result<Self, KeyringError> {
        let files = key_files(dir)?;
        let mut pairs = Vec::new();
        for f in &files {
            pairs.push(KeyPair::load(&dir.join(f))?);
        }
        let active = pairs.last().cloned().ok_or_else(|| KeyringError::Dir {
            path: dir.to_owned(),
            reason: "no capability signing key; run `jitgate keys rotate --config FILE` or start the gateway once".into(),
        })?;
        Ok(Self { active, all: pairs.iter().map(KeyPair::public).collect(), files })
    }

    /// Create a new signing key in `dir`; it becomes the active key.
    pub fn add_key(dir: &Path, now: i64) -> Result<PublicKey, KeyringError> {
        let pair = KeyPair::generate()?;
        let seq = key_files(dir)?.len() + 1;
        pair.save_new(&dir.join(format!("cap-{seq:06}-{now:012}-{}.jwk", pair.kid)))?;
        Ok(pair.public())
    }

    /// A keyring from one key (tests, benches).
    pub fn single(pair: KeyPair) -> Self {
        Self { all: vec![pair.public()], active: pair, files: Vec::new() }
    }

    /// Has the directory changed since this keyring was loaded?
    pub fn is_stale(&self, dir: &Path) -> bool {
        key_files(dir).map(|f| f != self.files).unwrap_or(false)
    }

    pub fn active(&self) -> &KeyPair {
        &self.active
    }

    pub fn public_key(&self, kid: &str) -> Option<&PublicKey> {
        self.all.iter().find(|k| k.kid == kid)
    }

    pub fn public_keys(&self) -> &[PublicKey] {
        &self.all
    }
}
