//! The gateway configuration file (`gateway.toml`): loading and validation.
//!
//! Everything a deployment decides lives here: the gateway's own identity
//! (the audience agents' identity tokens must name), where state is kept,
//! limits, the approved identity issuers, and which downstream servers (by
//! manifest) are registered. Relative paths are resolved against the config
//! file's directory, so a config can be moved together with its files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::source::{self, SourceError, SourceFile};

mod approvals;
mod exchange;
mod identity;
mod limits;
mod oauth;
mod servers;
mod store;
mod tokens;
mod notify;
mod ui;

#[allow(unused_imports)]
pub use self::{approvals::*, exchange::*, identity::*, limits::*, notify::*, oauth::*, servers::*, store::*, tokens::*, ui::*};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gateway: RawGateway,
    #[serde(default)]
    limits: RawLimits,
    identity: RawIdentity,
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default)]
    servers: Vec<RawServer>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    approvals: RawApprovals,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    reviewers: RawReviewers,
    #[serde(default)]
    http: HttpConfig,
    oauth: Option<RawOauth>,
    token_exchange: Option<Spanned<RawTokenExchange>>,
    store: Option<Spanned<RawStore>>,
    #[serde(default)]
    ui: RawUi,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    notify: RawNotify,
}

/// `[metrics]`: Prometheus metrics on a listen address of their own, so
/// that the network can keep scrapers and agents apart.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served (for example `127.0.0.1:9464`);
    /// without it, no metrics endpoint.
    pub listen: Option<std::net::SocketAddr>,
}

/// What the HTTP front end accepts in `Host` and `Origin` (DNS rebinding
/// and cross-site requests from browsers).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `Host` values accepted, `name` (any port) or `name:port`. Default: the
    /// loopback names with the port jitgate listens on.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted (`scheme://host:port`, `:*` for any port).
    /// Default: loopback origins on any port. Requests without `Origin`
    /// (non-browser clients) are not affected.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default, with = "source::duration::option")]
    checkpoint_interval: Option<Duration>,
    #[serde(default)]
    content: bool,
    #[serde(default)]
    redact: Vec<String>,
    witness: Option<PathBuf>,
}

/// The audit trail's settings.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// How often a signed checkpoint is written (and always on shutdown).
    pub checkpoint_interval: Duration,
    /// Record arguments and results (after redaction), not only digests and sizes.
    pub content: bool,
    /// Argument and result keys whose values are replaced by "[redacted]".
    pub redact: Vec<String>,
    /// The append-only file every signed checkpoint is also written to,
    /// outside the store (default `STATE/audit-witness.jsonl`; put it on
    /// append-only or remote storage in production).
    pub witness: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    id: Spanned<String>,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default = "default_agents_dir")]
    agents_dir: PathBuf,
}

fn default_state_dir() -> PathBuf {
    "state".into()
}

fn default_agents_dir() -> PathBuf {
    "agents".into()
}

/// The validated gateway configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file itself.
    pub path: PathBuf,
    /// The gateway's identifier: the `aud` agent identity tokens must carry.
    pub gateway_id: String,
    pub state_dir: PathBuf,
    pub agents_dir: PathBuf,
    pub limits: Limits,
    pub identity: IdentityConfig,
    pub tokens: TokenSettings,
    pub servers: Vec<ServerEntry>,
    pub policy: PolicyConfig,
    pub approvals: ApprovalsConfig,
    pub audit: AuditConfig,
    /// Issuers of reviewers' credentials for the /ui pages; never agent issuers.
    pub reviewers: Vec<IssuerConfig>,
    pub http: HttpConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[notify]`: webhooks.
    pub notify: NotifyConfig,
    /// `[oauth]`, if this gateway advertises itself as an OAuth resource server.
    pub oauth: Option<OauthConfig>,
    /// `[ui.oidc]`, if people sign in to /ui with OpenID Connect.
    pub ui_oidc: Option<UiOidcConfig>,
    /// `[token_exchange]`, if downstream servers get per-caller credentials.
    pub token_exchange: Option<TokenExchangeConfig>,
    /// `[store]`; default: SQLite in the state directory.
    pub store: StoreConfig,
}

/// The file name of the development issuer's key in the state directory.
pub const DEV_ISSUER_KEY_FILE: &str = "dev-issuer.jwk";

/// The file name of the development reviewer issuer's key in the state directory.
pub const DEV_REVIEWER_KEY_FILE: &str = "dev-reviewer-issuer.jwk";

/// The file name of the development approver issuer's key in the state directory.
pub const DEV_APPROVER_KEY_FILE: &str = "dev-approver-issuer.jwk";

impl Config {
    /// Load and validate a gateway config file.
    pub fn load(path: &Path) -> Result<Self, SourceError> {
        Self::from_source(SourceFile::read(path)?)
    }

    /// Validate a config's text (as read from `file.path`).
    pub fn from_source(file: SourceFile) -> Result<Self, SourceError> {
        let raw: RawConfig = source::parse_toml(&file)?;
        Self::validate(&file, raw)
    }

    fn validate(file: &SourceFile, raw: RawConfig) -> Result<Self, SourceError> {
        let gateway_id = raw.gateway.id.get_ref().trim().to_owned();
        if gateway_id.is_empty() {
            return Err(file.error_at(Some(raw.gateway.id.span()), "gateway.id must not be empty: it is the audience agents' identity tokens must carry, e.g. \"jitgate://prod-eu\""));
        }
        let state_dir = file.resolve(&raw.gateway.state_dir);
        let witness = raw.audit.witness.as_ref().map(|w| file.resolve(w)).unwrap_or_else(|| state_dir.join(AUDIT_WITNESS_FILE));
        let limits = validate_limits(file, raw.limits)?;
        let identity = validate_identity(file, raw.identity, &state_dir)?;
        let approvals = validate_approvals(file, raw.approvals, &state_dir, &identity)?;
        let reviewers = validate_people(file, raw.reviewers.issuers, &state_dir.join(DEV_REVIEWER_KEY_FILE), &identity, "reviewer")?;
        let policy = PolicyConfig { dir: file.resolve(raw.policy.dir.as_deref().unwrap_or(Path::new("policies"))) };
        let defaults = TokenSettings::default();
        let tokens = TokenSettings {
            default_ttl: raw.tokens.default_ttl.unwrap_or(defaults.default_ttl),
            task_ttl: raw.tokens.task_ttl.unwrap_or(defaults.task_ttl),
            max_task_ttl: raw.tokens.max_task_ttl.unwrap_or(defaults.max_task_ttl),
            on_downstream_failure: raw.tokens.on_downstream_failure.unwrap_or(defaults.on_downstream_failure),
        };
        if tokens.default_ttl.is_zero() || tokens.task_ttl > tokens.max_task_ttl {
            return Err(file.error_at(None, "[tokens]: default_ttl must be positive and task_ttl at most max_task_ttl"));
        }
        let servers = raw
            .servers
            .into_iter()
            .map(|s| validate_server(file, s))
            .collect::<Result<Vec<_>, _>>()?;
        let oauth = raw.oauth.map(|o| validate_oauth(file, o, &identity)).transpose()?;
        let notify = validate_notify(file, raw.notify)?;
        let ui_oidc = raw.ui.oidc.map(|o| validate_ui_oidc(file, o, &approvals.issuers, &reviewers)).transpose()?;
        let token_exchange = raw.token_exchange.map(|t| validate_token_exchange(file, t, &identity)).transpose()?;
        let store = match raw.store {
            Some(s) => validate_store(file, s)?,
            None => StoreConfig::Sqlite(state_dir.join(STORE_FILE)),
        };
        Ok(Self {
            store,
            oauth,
            token_exchange,
            ui_oidc,
            path: file.path.clone(),
            gateway_id,
            agents_dir: file.resolve(&raw.gateway.agents_dir),
            state_dir,
            limits,
            identity,
            tokens,
            servers,
            policy,
            approvals,
            reviewers,
            http: raw.http,
            metrics: raw.metrics,
            notify,
            audit: AuditConfig {
                checkpoint_interval: raw.audit.checkpoint_interval.unwrap_or(Duration::from_secs(60)),
                content: raw.audit.content,
                redact: raw.audit.redact,
                witness,
            },
        })
    }

    /// Where capability signing keys live.
    pub fn keys_dir(&self) -> PathBuf {
        self.state_dir.join("keys")
    }

    /// The SQLite store file.
    /// The SQLite store's file (where an SQLite store is configured; the
    /// default place otherwise, for messages).
    pub fn store_path(&self) -> PathBuf {
        match &self.store {
            StoreConfig::Sqlite(p) => p.clone(),
            StoreConfig::Postgres { .. } => self.state_dir.join(STORE_FILE),
        }
    }

    /// The directory relative paths in the config are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path.parent().map(Path::to_owned).unwrap_or_default()
    }
}

/// The SQLite store's file in the state directory.
pub const STORE_FILE: &str = "jitgate.sqlite";

/// The default witness file of audit checkpoints, in the state directory.
pub const AUDIT_WITNESS_FILE: &str = "audit-witness.jsonl";

#[cfg(test)]
pub(in crate::config) mod tests {
    use super::*;

    pub(in crate::config) fn load(text: &str) -> Result<Config, SourceError> {
        let file = SourceFile { path: "/etc/jitgate/gateway.toml".into(), text: text.into() };
        let raw: RawConfig = source::parse_toml(&file)?;
        Config::validate(&file, raw)
    }

    pub(in crate::config) const MINIMAL: &str = r#"
[gateway]
id = "jitgate://test"

[[identity.issuers]]
name = "dev"
iss = "dev-issuer"
development = true
"#;

    #[test]
    fn the_readme_reference_is_a_config_this_parser_reads() {
        // Copied as is, every key must be where jitgate looks for it
        // (`content` and `redact` under [http] instead of [audit] failed).
        let file = source::reference_toml_block("## Gateway config (`gateway.toml`)");
        if let Err(e) = source::parse_toml::<RawConfig>(&file) {
            panic!("{e}");
        }
    }

    #[test]
    fn remote_key_sources_need_https_except_on_loopback() {
        let with = |src: &str| load(&format!("{MINIMAL}\n[[identity.issuers]]\nname = \"idp\"\niss = \"https://idp.example.org\"\n{src}\n"));
        let c = with("jwks_uri = \"https://idp.example.org/keys\"").unwrap();
        assert!(matches!(&c.identity.issuers[1].keys, IssuerKeys::Remote(crate::issuer_keys::RemoteSource::JwksUri(_))));
        assert!(with("jwks_uri = \"http://127.0.0.1:9000/keys\"").is_ok());
        assert!(with("discovery = true").is_ok());
        let e = with("jwks_uri = \"http://idp.example.org/keys\"").unwrap_err();
        assert!(e.message.contains("plain HTTP") && e.message.contains("https"), "{e}");
        let e = with("jwks_uri = \"https://idp.example.org/keys\"\ndiscovery = true").unwrap_err();
        assert!(e.message.contains("exactly one key source"), "{e}");
        let e = with("discovery = true\nalgorithms = [\"HS256\"]").unwrap_err();
        assert!(e.message.contains("HS256") && e.message.contains("RS256"), "{e}");
        let e = with("spiffe_bundle_endpoint = \"https://spire.example.org/bundle\"").unwrap_err();
        assert!(e.message.contains("trust_domain"), "{e}");
        // Tricks with the host: userinfo and look-alike loopback names are not loopback.
        for url in ["http://127.0.0.1.evil.example/keys", "http://user@evil.example/keys", "http://localhost.evil.example/k"] {
            assert!(crate::issuer_keys::check_fetch_url(url).is_err(), "{url}");
        }
        assert!(crate::issuer_keys::check_fetch_url("http://[::1]:8080/keys").is_ok());
    }

    #[test]
    fn oauth_names_its_resource_and_known_authorization_servers() {
        let base = format!("{MINIMAL}\n[[identity.issuers]]\nname = \"idp\"\niss = \"https://idp.example.org\"\ndiscovery = true\nrequired_scopes = [\"mcp:tools\"]\n");
        let c = load(&format!("{base}\n[oauth]\nresource = \"https://gw.example.org/mcp\"\nauthorization_servers = [\"https://idp.example.org\"]\n")).unwrap();
        let o = c.oauth.unwrap();
        assert_eq!(o.metadata_url(), "https://gw.example.org/.well-known/oauth-protected-resource/mcp");
        assert_eq!(o.scopes_supported, ["mcp:tools"]);
        let e = load(&format!("{base}\n[oauth]\nresource = \"https://gw.example.org/mcp\"\nauthorization_servers = [\"https://other.example.org\"]\n")).unwrap_err();
        assert!(e.message.contains("not the iss of any"), "{e}");
        let e = load(&format!("{base}\n[oauth]\nresource = \"http://gw.example.org/mcp\"\nauthorization_servers = [\"https://idp.example.org\"]\n")).unwrap_err();
        assert!(e.message.contains("resource"), "{e}");
    }

    #[test]
    fn agent_claim_is_sub_or_the_client_and_only_for_agents_outside_spiffe() {
        let issuer = |extra: &str| format!("{MINIMAL}\n[[identity.issuers]]\nname = \"kc\"\niss = \"https://kc.example.org\"\ndiscovery = true\n{extra}");
        let c = load(&issuer("agent_claim = \"azp\"\n")).unwrap();
        assert_eq!(c.identity.issuers.iter().find(|i| i.name == "kc").unwrap().agent_claim, AgentClaim::Client);
        let e = load(&issuer("agent_claim = \"preferred_username\"\n")).unwrap_err();
        assert!(e.message.contains("not supported"), "{e}");
        let e = load(&issuer("agent_claim = \"azp\"\ntrust_domain = \"spiffe://kc.example.org\"\n")).unwrap_err();
        assert!(e.message.contains("SPIFFE"), "{e}");
    }

    #[test]
    fn token_exchange_needs_an_endpoint_a_secret_kept_elsewhere_and_a_short_lifetime() {
        let ok = "\n[token_exchange]\ntoken_endpoint = \"https://idp.example.org/token\"\nclient_id = \"jitgate\"\nclient_secret_env = \"TE_SECRET\"\nissuers = [\"dev\"]\n";
        let c = load(&format!("{MINIMAL}{ok}")).unwrap().token_exchange.unwrap();
        assert_eq!((c.subject_token_type.as_str(), c.max_ttl), ("urn:ietf:params:oauth:token-type:access_token", Duration::from_secs(300)));
        let e = load(&format!("{MINIMAL}{}", ok.replace("https://idp", "http://idp"))).unwrap_err();
        assert!(e.message.contains("token_endpoint"), "{e}");
        let e = load(&format!("{MINIMAL}{}", ok.replace("client_secret_env = \"TE_SECRET\"\n", ""))).unwrap_err();
        assert!(e.message.contains("client_secret_file or client_secret_env"), "{e}");
        let e = load(&format!("{MINIMAL}{ok}max_ttl = \"2h\"\n")).unwrap_err();
        assert!(e.message.contains("max_ttl"), "{e}");
        let e = load(&format!("{MINIMAL}{ok}subject_token_type = \"urn:ietf:params:oauth:token-type:refresh_token\"\n")).unwrap_err();
        assert!(e.message.contains("subject_token_type"), "{e}");
        let e = load(&format!("{MINIMAL}{}", ok.replace("issuers = [\"dev\"]\n", ""))).unwrap_err();
        assert!(e.message.contains("needs issuers"), "{e}");
        let e = load(&format!("{MINIMAL}{}", ok.replace("[\"dev\"]", "[\"nobody\"]"))).unwrap_err();
        assert!(e.message.contains("`nobody`"), "{e}");
    }

    #[test]
    fn ui_oidc_needs_a_discovered_people_issuer_a_callback_and_a_secret_kept_elsewhere() {
        let base = format!("{MINIMAL}\n[[approvals.issuers]]\nname = \"sso\"\niss = \"https://sso.example.org\"\ndiscovery = true\n");
        let ui = |extra: &str| format!("{base}\n[ui.oidc]\nissuer = \"sso\"\nclient_id = \"jitgate-ui\"\nredirect_uri = \"https://gw.example.org/ui/callback\"\n{extra}\n");
        let c = load(&ui("client_secret_env = \"UI_SECRET\"")).unwrap();
        let o = c.ui_oidc.unwrap();
        assert_eq!((o.iss.as_str(), o.scopes.as_slice()), ("https://sso.example.org", &["openid".to_owned()][..]));
        assert!(load(&ui("")).unwrap_err().message.contains("client_secret"));
        assert!(load(&ui("client_secret_env = \"A\"\nclient_secret_file = \"b\"")).unwrap_err().message.contains("exactly one"));
        let e = load(&ui("client_secret_env = \"A\"").replace("issuer = \"sso\"", "issuer = \"nobody\"")).unwrap_err();
        assert!(e.message.contains("not the name of any"), "{e}");
        let e = load(&ui("client_secret_env = \"A\"").replace("/ui/callback", "/elsewhere")).unwrap_err();
        assert!(e.message.contains("/ui/callback"), "{e}");
        let e = load(&ui("client_secret_env = \"A\"").replace("https://gw.example.org", "http://gw.example.org")).unwrap_err();
        assert!(e.message.contains("redirect_uri"), "{e}");
    }

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.gateway_id, "jitgate://test");
        assert_eq!(c.state_dir, PathBuf::from("/etc/jitgate/state"));
        assert_eq!(c.limits.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
        assert!(matches!(&c.identity.issuers[0].keys, IssuerKeys::Development { key_file } if key_file.ends_with(DEV_ISSUER_KEY_FILE)));
    }

    #[test]
    fn typo_is_reported_with_line() {
        let e = load(&format!("{MINIMAL}\n[limits]\nmax_mesage_bytes = 10\n")).unwrap_err();
        assert_eq!(e.line, 11, "{e}");
        assert!(e.message.contains("max_mesage_bytes"), "{e}");
    }

    #[test]
    fn issuer_needs_exactly_one_key_source() {
        let text = MINIMAL.replace("development = true", "development = true\npublic_keys = [\"x\"]");
        let e = load(&text).unwrap_err();
        assert!(e.message.contains("exactly one key source"), "{e}");
        assert_eq!(e.line, 5, "{e}");
    }

    #[test]
    fn bad_duration_says_how_to_write_one() {
        let e = load(&format!("{MINIMAL}\n[limits]\ncall_timeout = \"soon\"\n")).unwrap_err();
        assert!(e.message.contains("not a duration"), "{e}");
    }

    #[test]
    fn result_limit_is_bounded_by_what_rmcp_accepts() {
        assert_eq!(load(MINIMAL).unwrap().limits.max_result_bytes, DEFAULT_MAX_RESULT_BYTES);
        assert_eq!(load(&format!("{MINIMAL}\n[limits]\nmax_result_bytes = 65536\n")).unwrap().limits.max_result_bytes, 65536);
        for bad in ["10", "1000000000"] {
            let e = load(&format!("{MINIMAL}\n[limits]\nmax_result_bytes = {bad}\n")).unwrap_err();
            assert!(e.message.contains("between 1024 and 16777216"), "{e}");
        }
    }

    #[test]
    fn approver_issuers_are_kept_apart_from_agent_issuers() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.approvals.break_glass_max_ttl, Duration::from_secs(300));
        assert!(c.policy.dir.ends_with("policies"));
        let same = format!("{MINIMAL}\n[[approvals.issuers]]\nname = \"people\"\niss = \"dev-issuer\"\npublic_keys = [\"x\"]\n");
        let e = load(&same).unwrap_err();
        assert!(e.message.contains("same iss") && e.line > 0, "{e}");
        let td = format!("{MINIMAL}\n[[approvals.issuers]]\nname = \"people\"\niss = \"p\"\ntrust_domain = \"spiffe://x\"\npublic_keys = [\"x\"]\n");
        assert!(load(&td).unwrap_err().message.contains("trust_domain"));
        let ok = format!("{MINIMAL}\n[approvals]\nbreak_glass_max_ttl = \"2m\"\n[[approvals.issuers]]\nname = \"people\"\niss = \"p\"\ndevelopment = true\n[policy]\ndir = \"cedar\"\n");
        let c = load(&ok).unwrap();
        assert_eq!((c.approvals.issuers.len(), c.approvals.break_glass_max_ttl), (1, Duration::from_secs(120)));
        assert!(c.policy.dir.ends_with("cedar"));
    }
}
