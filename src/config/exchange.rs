//! `[token_exchange]`: per-caller downstream credentials (RFC 8693).

#[allow(unused_imports)]
use super::*;

/// `[token_exchange]`: where jitgate exchanges an agent's credential for a
/// downstream server's (RFC 8693).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawTokenExchange {
    pub(in crate::config) token_endpoint: String,
    pub(in crate::config) client_id: String,
    pub(in crate::config) client_secret_file: Option<PathBuf>,
    pub(in crate::config) client_secret_env: Option<String>,
    pub(in crate::config) subject_token_type: Option<String>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) max_ttl: Option<Duration>,
    #[serde(default)]
    pub(in crate::config) issuers: Vec<String>,
}

/// How jitgate obtains per-caller credentials for downstream servers whose
/// manifests ask for one (`exchange = { audience = ... }`).
#[derive(Debug, Clone)]
pub struct TokenExchangeConfig {
    /// The authorization server's token endpoint.
    pub token_endpoint: String,
    /// jitgate's own client at the authorization server (HTTP Basic).
    pub client_id: String,
    pub client_secret: SecretSource,
    /// What the agent's credential is to the authorization server.
    pub subject_token_type: String,
    /// An exchanged credential is reused for one agent at most this long
    /// (and never past its own expiry or the agent's credential's).
    pub max_ttl: Duration,
    /// The `[[identity.issuers]]` (by name) whose credentials may be sent to
    /// the authorization server as subjects: an agent's credential is a
    /// bearer token for this gateway, so it goes only to the server that
    /// issued it.
    pub issuers: Vec<String>,
}

/// RFC 8693 §3: the token types a subject token may be declared as.
pub(in crate::config) const SUBJECT_TOKEN_TYPES: &[&str] = &["urn:ietf:params:oauth:token-type:access_token", "urn:ietf:params:oauth:token-type:jwt"];

pub(in crate::config) fn validate_token_exchange(file: &SourceFile, raw: Spanned<RawTokenExchange>, identity: &IdentityConfig) -> Result<TokenExchangeConfig, SourceError> {
    let span = raw.span();
    let r = raw.into_inner();
    let at = |m: String| file.error_at(Some(span.clone()), m);
    if r.issuers.is_empty() {
        return Err(at("[token_exchange] needs issuers = [\"...\"]: the names of the [[identity.issuers]] whose agents' credentials this authorization server issued (and may therefore receive)".into()));
    }
    for name in &r.issuers {
        if !identity.issuers.iter().any(|i| &i.name == name) {
            return Err(at(format!("[token_exchange] issuer `{name}` is not the name of any [[identity.issuers]]")));
        }
    }
    crate::issuer_keys::check_fetch_url(&r.token_endpoint).map_err(|e| at(format!("[token_exchange] token_endpoint: {e}")))?;
    let Ok(Some(client_secret)) = secret_source(file, r.client_secret_file, r.client_secret_env) else {
        return Err(at("[token_exchange] needs exactly one of client_secret_file or client_secret_env (the secret never goes in this file)".into()));
    };
    let subject_token_type = r.subject_token_type.unwrap_or_else(|| SUBJECT_TOKEN_TYPES[0].to_owned());
    if !SUBJECT_TOKEN_TYPES.contains(&subject_token_type.as_str()) {
        return Err(at(format!("[token_exchange] subject_token_type must be one of {}: agents' credentials are JWT access tokens", SUBJECT_TOKEN_TYPES.join(", "))));
    }
    let max_ttl = r.max_ttl.unwrap_or(Duration::from_secs(300));
    if max_ttl.is_zero() || max_ttl > Duration::from_secs(3600) {
        return Err(at("[token_exchange] max_ttl must be between 1 s and 1 h: exchanged credentials are meant to be short-lived".into()));
    }
    Ok(TokenExchangeConfig { token_endpoint: r.token_endpoint, client_id: r.client_id, client_secret, subject_token_type, max_ttl, issuers: r.issuers })
}
