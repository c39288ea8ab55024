//! `[oauth]`: the MCP authorization spec's protected-resource metadata.

#[allow(unused_imports)]
use super::*;

/// `[oauth]`: jitgate as an OAuth 2.1 resource server (the MCP
/// authorization spec).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawOauth {
    pub(in crate::config) resource: Spanned<String>,
    #[serde(default)]
    pub(in crate::config) authorization_servers: Vec<String>,
    #[serde(default)]
    pub(in crate::config) scopes_supported: Vec<String>,
}

/// What this gateway tells OAuth clients about itself (RFC 9728) and which
/// audience their tokens must name (RFC 8707).
#[derive(Debug, Clone)]
pub struct OauthConfig {
    /// The canonical URI of this gateway's MCP endpoint, e.g.
    /// `https://gw.example.com/mcp`: the `resource` clients ask tokens for,
    /// and an audience this gateway accepts.
    pub resource: String,
    /// Issuers of the authorization servers that issue tokens for it.
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Vec<String>,
}

impl OauthConfig {
    /// The URL of the protected resource metadata: the well-known path
    /// inserted between the resource's origin and its path (RFC 9728 §3.1).
    pub fn metadata_url(&self) -> String {
        let (scheme, rest) = self.resource.split_once("://").unwrap_or(("https", self.resource.as_str()));
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, String::new()));
        format!("{scheme}://{host}/.well-known/oauth-protected-resource{}", path.trim_end_matches('/'))
    }
}

pub(in crate::config) fn validate_oauth(file: &SourceFile, raw: RawOauth, identity: &IdentityConfig) -> Result<OauthConfig, SourceError> {
    let at = |m: String| file.error_at(Some(raw.resource.span()), m);
    let resource = raw.resource.get_ref().trim().to_owned();
    // RFC 8707 §2: an absolute URI without a fragment; https except on loopback.
    crate::issuer_keys::check_fetch_url(&resource).map_err(|e| at(format!("[oauth] resource: {e}")))?;
    if resource.contains('#') {
        return Err(at("[oauth] resource must not have a fragment".into()));
    }
    if raw.authorization_servers.is_empty() {
        return Err(at("[oauth] needs authorization_servers: the issuer URL(s) of the OAuth/OpenID provider(s) that issue tokens for this gateway".into()));
    }
    for a in &raw.authorization_servers {
        if !identity.issuers.iter().any(|i| &i.iss == a) {
            return Err(at(format!(
                "[oauth] authorization server `{a}` is not the iss of any [[identity.issuers]]: its tokens would be refused; add the issuer (for example with discovery = true)"
            )));
        }
    }
    let mut scopes = raw.scopes_supported;
    if scopes.is_empty() {
        scopes = identity.issuers.iter().flat_map(|i| i.required_scopes.iter().cloned()).collect();
        scopes.sort();
        scopes.dedup();
    }
    Ok(OauthConfig { resource, authorization_servers: raw.authorization_servers, scopes_supported: scopes })
}
