//! `[identity]`, `[approvals]` and `[reviewers]` issuers: who may present a credential, and how it is checked.

#[allow(unused_imports)]
use super::*;

/// Default clock skew tolerated on identity token times.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawReviewers {
    #[serde(default)]
    pub(in crate::config) issuers: Vec<Spanned<RawIssuer>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawIdentity {
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) clock_skew: Option<Duration>,
    #[serde(default)]
    pub(in crate::config) issuers: Vec<Spanned<RawIssuer>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawIssuer {
    pub(in crate::config) name: String,
    pub(in crate::config) iss: String,
    pub(in crate::config) trust_domain: Option<String>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) max_lifetime: Option<Duration>,
    #[serde(default)]
    pub(in crate::config) development: bool,
    #[serde(default)]
    pub(in crate::config) public_keys: Vec<String>,
    pub(in crate::config) jwks_file: Option<PathBuf>,
    pub(in crate::config) jwks_uri: Option<String>,
    #[serde(default)]
    pub(in crate::config) discovery: bool,
    pub(in crate::config) spiffe_bundle_endpoint: Option<String>,
    #[serde(default)]
    pub(in crate::config) algorithms: Vec<String>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) max_stale: Option<Duration>,
    pub(in crate::config) typ: Option<String>,
    #[serde(default)]
    pub(in crate::config) required_scopes: Vec<String>,
    pub(in crate::config) groups_claim: Option<String>,
    pub(in crate::config) agent_claim: Option<String>,
}

/// Approved identity issuers and how strictly token times are read.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub clock_skew: Duration,
    pub issuers: Vec<IssuerConfig>,
}

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone)]
pub enum IssuerKeys {
    /// Development issuer: key pair kept in the state directory, created on first run.
    Development { key_file: PathBuf },
    /// Base64url Ed25519 public keys written in the config.
    Inline(Vec<String>),
    /// A JWKS file on disk.
    JwksFile(PathBuf),
    /// Fetched over HTTP and refreshed ([`crate::issuer_keys::RemoteKeys`]).
    Remote(crate::issuer_keys::RemoteSource),
}

/// One approved issuer of agent identity tokens.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub name: String,
    /// The `iss` claim value this issuer signs with.
    pub iss: String,
    /// Subjects this issuer may vouch for must start with this (SPIFFE trust domain).
    pub trust_domain: Option<String>,
    pub keys: IssuerKeys,
    /// Longest credential lifetime accepted (`exp` minus `iat`, or minus now
    /// without `iat`); longer ones are refused.
    pub max_lifetime: Duration,
    /// The algorithms this issuer's keys may verify (each key is pinned to
    /// those its type and its own `alg` allow).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// How long the last good remote key set keeps working while its
    /// endpoint is down.
    pub max_stale: Duration,
    /// The JOSE `typ` every credential must carry (for example `at+jwt`), if set.
    pub typ: Option<String>,
    /// Scopes an agent's token must carry (`scope` or `scp`); a token
    /// without them is refused with 403 `insufficient_scope`.
    pub required_scopes: Vec<String>,
    /// SPIFFE JWT-SVID rules: `sub` a SPIFFE ID in the trust domain.
    pub spiffe: bool,
    /// The claim holding a person's groups (people's issuers).
    pub groups_claim: String,
    /// The claim naming the agent (agents' issuers): `sub`, or the OAuth
    /// client for providers that give a client's tokens another subject
    /// (Keycloak's service accounts: `azp`; `client_id`).
    pub agent_claim: AgentClaim,
}

/// Which claim of an agent's token names the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentClaim {
    /// `sub` (SPIFFE IDs; providers whose client tokens have `sub` = client id).
    #[default]
    Sub,
    /// The client the token was issued to (`azp`, else `client_id`).
    Client,
}

impl IssuerConfig {
    /// An issuer with the defaults for everything but its name, iss and keys.
    pub fn new(name: &str, iss: &str, keys: IssuerKeys) -> Self {
        Self {
            name: name.into(),
            iss: iss.into(),
            trust_domain: None,
            keys,
            max_lifetime: DEFAULT_MAX_CREDENTIAL_LIFETIME,
            algorithms: crate::issuer_keys::SUPPORTED.iter().map(|(_, a)| *a).collect(),
            max_stale: DEFAULT_MAX_STALE_KEYS,
            typ: None,
            required_scopes: Vec::new(),
            spiffe: false,
            groups_claim: "groups".into(),
            agent_claim: AgentClaim::Sub,
        }
    }
}

/// Longest identity, approver or reviewer credential accepted by default.
pub const DEFAULT_MAX_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How long an issuer's last good remote key set keeps working while its
/// endpoint is down.
pub const DEFAULT_MAX_STALE_KEYS: Duration = Duration::from_secs(24 * 3600);

pub(in crate::config) fn validate_identity(file: &SourceFile, raw: RawIdentity, state_dir: &Path) -> Result<IdentityConfig, SourceError> {
    if raw.issuers.is_empty() {
        return Err(file.error_at(None, "[[identity.issuers]] is empty: approve at least one issuer of agent identity tokens"));
    }
    let issuers = validate_issuers(file, raw.issuers, &state_dir.join(DEV_ISSUER_KEY_FILE), false)?;
    Ok(IdentityConfig { clock_skew: raw.clock_skew.unwrap_or(DEFAULT_CLOCK_SKEW), issuers })
}

/// Approver issuers are kept apart from agent issuers: the same `iss` in both
/// lists would let an agent's identity act as a person.
/// Issuers of people's credentials (approvers, reviewers), checked apart from agent issuers.
pub(in crate::config) fn validate_people(file: &SourceFile, raw: Vec<Spanned<RawIssuer>>, dev_key: &Path, agents: &IdentityConfig, role: &str) -> Result<Vec<IssuerConfig>, SourceError> {
    let spans: Vec<_> = raw.iter().map(|i| i.span()).collect();
    let issuers = validate_issuers(file, raw, dev_key, true)?;
    for (i, span) in issuers.iter().zip(spans) {
        if let Some(a) = agents.issuers.iter().find(|a| a.iss == i.iss) {
            return Err(file.error_at(
                Some(span),
                format!("{role} issuer `{}` has the same iss `{}` as agent issuer `{}`: {role}s must come from a separate issuer of people's credentials", i.name, i.iss, a.name),
            ));
        }
    }
    Ok(issuers)
}

pub(in crate::config) fn validate_issuers(file: &SourceFile, raw: Vec<Spanned<RawIssuer>>, dev_key_file: &Path, people: bool) -> Result<Vec<IssuerConfig>, SourceError> {
    let mut issuers: Vec<IssuerConfig> = Vec::new();
    for spanned in raw {
        let span = spanned.span();
        let r = spanned.into_inner();
        let at = |m: String| file.error_at(Some(span.clone()), m);
        if issuers.iter().any(|i| i.iss == r.iss) {
            return Err(at(format!("issuer iss `{}` is listed twice", r.iss)));
        }
        if issuers.iter().any(|i| i.name == r.name) {
            return Err(at(format!("issuer name `{}` is used twice: agent files and [oauth] name issuers, so each name must be one issuer", r.name)));
        }
        if r.max_stale.is_some_and(|d| d < Duration::from_secs(60)) {
            return Err(at(format!("issuer `{}`: max_stale must be at least 60s (key sets are refreshed at most once a minute)", r.name)));
        }
        let sources = usize::from(r.development)
            + usize::from(!r.public_keys.is_empty())
            + usize::from(r.jwks_file.is_some())
            + usize::from(r.jwks_uri.is_some())
            + usize::from(r.discovery)
            + usize::from(r.spiffe_bundle_endpoint.is_some());
        if sources != 1 {
            return Err(at(format!(
                "issuer `{}` must have exactly one key source: `development = true`, `public_keys = [..]`, `jwks_file = \"..\"`, `jwks_uri = \"https://..\"`, `discovery = true` (OpenID Connect discovery from its iss) or `spiffe_bundle_endpoint = \"https://..\"`",
                r.name
            )));
        }
        for url in [r.jwks_uri.as_deref(), r.spiffe_bundle_endpoint.as_deref(), r.discovery.then_some(r.iss.as_str())].into_iter().flatten() {
            crate::issuer_keys::check_fetch_url(url).map_err(|e| at(format!("issuer `{}`: {e}", r.name)))?;
        }
        let mut algorithms = Vec::new();
        for name in &r.algorithms {
            match crate::issuer_keys::parse_alg(name) {
                Some(a) => algorithms.push(a),
                None => {
                    let known: Vec<&str> = crate::issuer_keys::SUPPORTED.iter().map(|(n, _)| *n).collect();
                    return Err(at(format!("issuer `{}`: algorithm `{name}` is not supported; use some of {}", r.name, known.join(", "))));
                }
            }
        }
        if algorithms.is_empty() {
            algorithms = crate::issuer_keys::SUPPORTED.iter().map(|(_, a)| *a).collect();
        }
        let spiffe = r.spiffe_bundle_endpoint.is_some();
        if spiffe && r.trust_domain.is_none() {
            return Err(at(format!("issuer `{}`: a SPIFFE bundle endpoint verifies JWT-SVIDs of one trust domain; set trust_domain = \"spiffe://...\"", r.name)));
        }
        let agent_claim = match r.agent_claim.as_deref() {
            None | Some("sub") => AgentClaim::Sub,
            Some("azp" | "client_id") if people => {
                return Err(at(format!("issuer `{}`: agent_claim is for agents' issuers; people are their `sub`", r.name)));
            }
            Some("azp" | "client_id") if r.trust_domain.is_some() || spiffe => {
                return Err(at(format!("issuer `{}`: a SPIFFE issuer names its workloads in `sub`; remove agent_claim", r.name)));
            }
            Some("azp" | "client_id") => AgentClaim::Client,
            Some(other) => {
                return Err(at(format!(
                    "issuer `{}`: agent_claim `{other}` is not supported; use \"sub\" (default) or \"azp\"/\"client_id\" (the OAuth client the token was issued to); a free-form claim could name an agent in a person's token",
                    r.name
                )));
            }
        };
        if people && !r.required_scopes.is_empty() {
            return Err(at(format!("issuer `{}`: required_scopes is for agents' access tokens; people's issuers do not take it", r.name)));
        }
        if let Some(td) = &r.trust_domain {
            if people {
                return Err(at(format!("approver issuer `{}`: trust_domain is for agent (SPIFFE) identities; remove it", r.name)));
            }
            if !td.starts_with("spiffe://") {
                return Err(at(format!("issuer `{}`: trust_domain must be a SPIFFE URI like \"spiffe://example.org\"", r.name)));
            }
        }
        use crate::issuer_keys::RemoteSource;
        let keys = if r.development {
            IssuerKeys::Development { key_file: dev_key_file.to_owned() }
        } else if let Some(p) = r.jwks_file {
            IssuerKeys::JwksFile(file.resolve(&p))
        } else if let Some(u) = r.jwks_uri {
            IssuerKeys::Remote(RemoteSource::JwksUri(u))
        } else if let Some(u) = r.spiffe_bundle_endpoint {
            IssuerKeys::Remote(RemoteSource::SpiffeBundle(u))
        } else if r.discovery {
            IssuerKeys::Remote(RemoteSource::Discovery { iss: r.iss.clone() })
        } else {
            IssuerKeys::Inline(r.public_keys)
        };
        let max_lifetime = r.max_lifetime.unwrap_or(DEFAULT_MAX_CREDENTIAL_LIFETIME);
        issuers.push(IssuerConfig {
            name: r.name,
            iss: r.iss,
            trust_domain: r.trust_domain,
            keys,
            max_lifetime,
            algorithms,
            max_stale: r.max_stale.unwrap_or(DEFAULT_MAX_STALE_KEYS),
            typ: r.typ,
            required_scopes: r.required_scopes,
            spiffe,
            groups_claim: r.groups_claim.unwrap_or_else(|| "groups".into()),
            agent_claim,
        });
    }
    Ok(issuers)
}
