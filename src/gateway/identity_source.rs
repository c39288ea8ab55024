//! Where a session's agent identity comes from.
//!
//! HTTP: the front end verifies `Authorization: Bearer` on every request and
//! attaches the [`VerifiedAgent`] to the request; the handler reads it from
//! the request parts rmcp passes along. Stdio: an identity file, re-read when
//! it changes (the way SPIFFE rotates JWT-SVIDs), with its lifetime checked on
//! every request.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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
    cache: Mutex<Option<(SystemTime, Result<VerifiedAgent, IdentityError>)>>,
}

impl IdentityFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path, cache: Mutex::new(None) }
    }

    /// Verify the file's token, re-reading it if it changed since last time.
    pub fn current(&self, verifier: &IdentityVerifier) -> Result<VerifiedAgent, IdentityError> {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).map_err(|_| IdentityError::Missing)?;
        // A poisoned lock only means another request panicked mid-update; the
        // cached value is then simply recomputed.
        let mut cache = match self.cache.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let fresh = match cache.as_ref() {
            Some((at, result)) if *at == modified => result.clone(),
            _ => {
                let result = std::fs::read_to_string(&self.path)
                    .map_err(|_| IdentityError::Missing)
                    .and_then(|t| verifier.verify(t.trim()));
                if let Err(e) = &result {
                    tracing::warn!(path = %self.path.display(), code = e.code(), "identity file rejected");
                } else {
                    tracing::info!(path = %self.path.display(), "identity file (re)loaded");
                }
                *cache = Some((modified, result.clone()));
                result
            }
        };
        let agent = fresh?;
        verifier.still_valid(&agent)?;
        Ok(agent)
    }
}
