//! `[ui]`: the reviewer pages' sign-in for people.

#[allow(unused_imports)]
use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawUi {
    pub(in crate::config) oidc: Option<Spanned<RawUiOidc>>,
}

/// `[ui.oidc]`: people sign in to /ui with OpenID Connect.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawUiOidc {
    pub(in crate::config) issuer: String,
    pub(in crate::config) client_id: String,
    pub(in crate::config) client_secret_file: Option<PathBuf>,
    pub(in crate::config) client_secret_env: Option<String>,
    pub(in crate::config) redirect_uri: String,
    #[serde(default)]
    pub(in crate::config) scopes: Vec<String>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) session_ttl: Option<Duration>,
}

/// How people sign in to `/ui` with OpenID Connect (authorization code with
/// PKCE) at one of the people's issuers.
#[derive(Debug, Clone)]
pub struct UiOidcConfig {
    /// The `name` of an `[[approvals.issuers]]` or `[[reviewers.issuers]]`
    /// entry with `discovery = true`: the OpenID provider.
    pub issuer: String,
    /// Its `iss`.
    pub iss: String,
    pub client_id: String,
    /// Where the secret is read from when the gateway starts.
    pub client_secret: SecretSource,
    /// `https://GATEWAY/ui/callback`, as registered at the provider.
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
}

/// Where a secret comes from (never written in the config itself).
#[derive(Debug, Clone)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl SecretSource {
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretSource::File(p) => std::fs::read_to_string(p).map(|s| s.trim().to_owned()).map_err(|e| format!("cannot read {}: {e}", p.display())),
            SecretSource::Env(v) => std::env::var(v).map(|s| s.trim().to_owned()).map_err(|_| format!("the environment variable {v} is not set")),
        }
    }
}

/// A secret named by a `*_file` or `*_env` key: at most one of them (Err
/// when both), `None` when neither.
pub(in crate::config) fn secret_source(file: &SourceFile, from_file: Option<PathBuf>, from_env: Option<String>) -> Result<Option<SecretSource>, ()> {
    match (from_file, from_env) {
        (Some(f), None) => Ok(Some(SecretSource::File(file.resolve(&f)))),
        (None, Some(v)) => Ok(Some(SecretSource::Env(v))),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(()),
    }
}

pub(in crate::config) fn validate_ui_oidc(file: &SourceFile, raw: Spanned<RawUiOidc>, approvers: &[IssuerConfig], reviewers: &[IssuerConfig]) -> Result<UiOidcConfig, SourceError> {
    let span = raw.span();
    let r = raw.into_inner();
    let at = |m: String| file.error_at(Some(span.clone()), m);
    let issuer = approvers.iter().chain(reviewers).find(|i| i.name == r.issuer).ok_or_else(|| {
        at(format!("[ui.oidc] issuer `{}` is not the name of any [[approvals.issuers]] or [[reviewers.issuers]]; people sign in at a people's issuer", r.issuer))
    })?;
    if !matches!(issuer.keys, IssuerKeys::Remote(crate::issuer_keys::RemoteSource::Discovery { .. })) {
        return Err(at(format!("[ui.oidc] issuer `{}` needs `discovery = true`: sign-in finds the provider's endpoints and keys by OpenID Connect discovery", r.issuer)));
    }
    crate::issuer_keys::check_fetch_url(&r.redirect_uri).map_err(|e| at(format!("[ui.oidc] redirect_uri: {e}")))?;
    if !r.redirect_uri.ends_with("/ui/callback") {
        return Err(at("[ui.oidc] redirect_uri must be this gateway's /ui/callback, e.g. \"https://gw.example.org/ui/callback\"".into()));
    }
    let Ok(Some(client_secret)) = secret_source(file, r.client_secret_file, r.client_secret_env) else {
        return Err(at("[ui.oidc] needs exactly one of client_secret_file or client_secret_env (the secret never goes in this file)".into()));
    };
    let mut scopes = r.scopes;
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let session_ttl = r.session_ttl.unwrap_or(Duration::from_secs(3600));
    if session_ttl.is_zero() || session_ttl > Duration::from_secs(12 * 3600) {
        return Err(at("[ui.oidc] session_ttl must be between 1 s and 12 h".into()));
    }
    Ok(UiOidcConfig { issuer: r.issuer, iss: issuer.iss.clone(), client_id: r.client_id, client_secret, redirect_uri: r.redirect_uri, scopes, session_ttl })
}
