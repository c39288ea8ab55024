//! Where a session's agent identity comes from.
//!
//! HTTP: the front end verifies `Authorization: Bearer` on every request and
//! attaches the [`VerifiedAgent`] to the request; the handler reads it from
//! the request parts rmcp passes along. Stdio: an identity file, re-read when
//! it changes (the way SPIFFE rotates JWT-SVIDs), with its lifetime checked on
//! every request.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::identity::{IdentityError, IdentityVerifier, VerifiedAgent};

/// How a session learns its agent's identity.
#[derive(Clone)]
pub enum IdentitySource {
    /// Verified per HTTP request by the front end.
    HttpBearer,
    /// A file holding the identity JWT (stdio).
    File(Arc<IdentityFile>),
}

impl IdentitySource {
    /// The identity for the current request.
    pub fn current(&self, verifier: &IdentityVerifier, extensions: &rmcp::model::Extensions) -> Result<VerifiedAgent, IdentityError> {
        match self {
            IdentitySource::HttpBearer => extensions
                .get::<http::request::Parts>()
                .and_then(|p| p.extensions.get::<VerifiedAgent>())
                .cloned()
                .ok_or(IdentityError::Missing),
            IdentitySource::File(f) => f.current(verifier),
        }
    }
}

/// An identity file with its last verified content.
pub struct IdentityFile {
    path: PathBuf,
    cache: Mutex<Option<(String, Result<VerifiedAgent, IdentityError>)>>,
}

impl IdentityFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path, cache: Mutex::new(None) }
    }

    /// Verify the file's token. The file is read on every request (it is a
    /// few hundred bytes) and compared with the last content, so a rotation
    /// is seen at once, whatever the file system's timestamp resolution; the
    /// signature is checked again only when the content changed.
    pub fn current(&self, verifier: &IdentityVerifier) -> Result<VerifiedAgent, IdentityError> {
        let text = std::fs::read_to_string(&self.path).map_err(|_| IdentityError::Missing)?;
        let token = text.trim().to_owned();
        // A poisoned lock only means another request panicked mid-update; the
        // cached value is then simply recomputed.
        let mut cache = match self.cache.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let fresh = match cache.as_ref() {
            Some((seen, result)) if *seen == token => result.clone(),
            _ => {
                let result = verifier.verify(&token);
                match &result {
                    Err(e) => tracing::warn!(path = %self.path.display(), code = e.code(), "identity file rejected"),
                    Ok(_) => tracing::info!(path = %self.path.display(), "identity file (re)loaded"),
                }
                *cache = Some((token, result.clone()));
                result
            }
        };
        let agent = fresh?;
        verifier.still_valid(&agent)?;
        // Stdio has no way to prove a key: a key-bound credential would be
        // usable by whoever holds the file (fail closed).
        if agent.claims.contains_key("cnf") {
            return Err(IdentityError::KeyBound);
        }
        Ok(agent)
    }
}
