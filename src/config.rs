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

/// Default limit on one JSON-RPC message (request body or stdio line).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default cap on a relayed tool result: 4 MiB of JSON.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 4 * 1024 * 1024;
/// Default limit on tool calls in flight per agent session.
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 16;
/// Default per-call timeout when a manifest sets none.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a downstream server has to start and answer `initialize`.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default clock skew tolerated on identity token times.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);

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
}

/// `[store]`: where the shared authorization state lives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: String,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    pool_size: Option<u32>,
    ca_file: Option<PathBuf>,
}

/// Where the authorization state lives: the embedded SQLite file (one
/// machine) or PostgreSQL (several replicas).
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Sqlite(PathBuf),
    Postgres {
        /// `postgres://user@host:port/database`, without a password.
        url: String,
        password: Option<SecretSource>,
        pool_size: u32,
        /// The CA(s) of the server's certificate (default: platform roots).
        ca_file: Option<PathBuf>,
    },
}

/// `[token_exchange]`: where jitgate exchanges an agent's credential for a
/// downstream server's (RFC 8693).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenExchange {
    token_endpoint: String,
    client_id: String,
    client_secret_file: Option<PathBuf>,
    client_secret_env: Option<String>,
    subject_token_type: Option<String>,
    #[serde(default, with = "source::duration::option")]
    max_ttl: Option<Duration>,
    #[serde(default)]
    issuers: Vec<String>,
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


#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUi {
    oidc: Option<Spanned<RawUiOidc>>,
}

/// `[ui.oidc]`: people sign in to /ui with OpenID Connect.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUiOidc {
    issuer: String,
    client_id: String,
    client_secret_file: Option<PathBuf>,
    client_secret_env: Option<String>,
    redirect_uri: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default, with = "source::duration::option")]
    session_ttl: Option<Duration>,
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

/// `[oauth]`: jitgate as an OAuth 2.1 resource server (the MCP
/// authorization spec).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOauth {
    resource: Spanned<String>,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
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
struct RawReviewers {
    #[serde(default)]
    issuers: Vec<Spanned<RawIssuer>>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    #[serde(default, with = "source::duration::option")]
    pending_ttl: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    use_ttl: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    break_glass_max_ttl: Option<Duration>,
    #[serde(default)]
    issuers: Vec<Spanned<RawIssuer>>,
}

/// Where the Cedar policies live.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Directory of `*.cedar` files.
    pub dir: PathBuf,
}

/// The human side: who may approve, and how long approvals and break-glass last.
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    /// How long a pending approval waits for a person.
    pub pending_ttl: Duration,
    /// How long an approved request may be picked up by the agent.
    pub use_ttl: Duration,
    /// Upper bound on a break-glass token's TTL.
    pub break_glass_max_ttl: Duration,
    /// Issuers of approvers' (people's) credentials; never agent issuers.
    pub issuers: Vec<IssuerConfig>,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            pending_ttl: Duration::from_secs(15 * 60),
            use_ttl: Duration::from_secs(10 * 60),
            break_glass_max_ttl: Duration::from_secs(5 * 60),
            issuers: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    #[serde(default, with = "source::duration::option")]
    default_ttl: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    task_ttl: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    max_task_ttl: Option<Duration>,
    on_downstream_failure: Option<OnDownstreamFailure>,
}

/// What a failed downstream call (crash, timeout, protocol error) revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDownstreamFailure {
    /// The whole task: its live tokens die and it ends.
    RevokeTask,
    /// Only the token of the failed call (already consumed; recorded).
    RevokeToken,
}

/// Capability token and task lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct TokenSettings {
    /// Token TTL when neither the request nor the manifest asks for less.
    pub default_ttl: Duration,
    /// Task TTL when `jit_begin_task` gives none.
    pub task_ttl: Duration,
    /// Upper bound on any task's TTL.
    pub max_task_ttl: Duration,
    pub on_downstream_failure: OnDownstreamFailure,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            // A token is single-use and bound to exact arguments, so its
            // lifetime is not what limits it; it must outlast a model turn
            // (tens of seconds) and a person pasting it into a tool by hand.
            default_ttl: Duration::from_secs(5 * 60),
            task_ttl: Duration::from_secs(30 * 60),
            max_task_ttl: Duration::from_secs(8 * 3600),
            on_downstream_failure: OnDownstreamFailure::RevokeTask,
        }
    }
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_message_bytes: Option<Spanned<usize>>,
    max_result_bytes: Option<Spanned<usize>>,
    max_concurrent_calls_per_session: Option<Spanned<usize>>,
    max_active_tasks_per_agent: Option<Spanned<usize>>,
    max_pending_approvals_per_agent: Option<Spanned<usize>>,
    max_sessions_per_agent: Option<Spanned<usize>>,
    max_listen_streams_per_agent: Option<Spanned<usize>>,
    #[serde(default, with = "source::duration::option")]
    call_timeout: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    startup_timeout: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    instance_lease: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    header_read_timeout: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    body_read_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    #[serde(default, with = "source::duration::option")]
    clock_skew: Option<Duration>,
    #[serde(default)]
    issuers: Vec<Spanned<RawIssuer>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    name: String,
    iss: String,
    trust_domain: Option<String>,
    #[serde(default, with = "source::duration::option")]
    max_lifetime: Option<Duration>,
    #[serde(default)]
    development: bool,
    #[serde(default)]
    public_keys: Vec<String>,
    jwks_file: Option<PathBuf>,
    jwks_uri: Option<String>,
    #[serde(default)]
    discovery: bool,
    spiffe_bundle_endpoint: Option<String>,
    #[serde(default)]
    algorithms: Vec<String>,
    #[serde(default, with = "source::duration::option")]
    max_stale: Option<Duration>,
    typ: Option<String>,
    #[serde(default)]
    required_scopes: Vec<String>,
    groups_claim: Option<String>,
    agent_claim: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    manifest: Spanned<PathBuf>,
    #[serde(default = "yes")]
    enabled: bool,
    command: Option<String>,
    args: Option<Vec<String>>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
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
    /// `[oauth]`, if this gateway advertises itself as an OAuth resource server.
    pub oauth: Option<OauthConfig>,
    /// `[ui.oidc]`, if people sign in to /ui with OpenID Connect.
    pub ui_oidc: Option<UiOidcConfig>,
    /// `[token_exchange]`, if downstream servers get per-caller credentials.
    pub token_exchange: Option<TokenExchangeConfig>,
    /// `[store]`; default: SQLite in the state directory.
    pub store: StoreConfig,
}

/// Resource limits with safe defaults.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    /// The largest tool result (serialized JSON) relayed from a downstream
    /// server; a larger one is refused with `downstream_result_too_large`.
    /// rmcp drops any single downstream message over 16 MiB before parsing.
    pub max_result_bytes: usize,
    pub max_concurrent_calls_per_session: usize,
    /// Active tasks one agent may hold at once.
    pub max_active_tasks_per_agent: usize,
    /// Approvals one agent may have pending at once.
    pub max_pending_approvals_per_agent: usize,
    /// Handshake-era sessions one agent may hold open on one process.
    pub max_sessions_per_agent: usize,
    /// 2026-07-28 `subscriptions/listen` streams one agent may hold open on
    /// one process.
    pub max_listen_streams_per_agent: usize,
    pub call_timeout: Duration,
    pub startup_timeout: Duration,
    /// How long a gateway process's lease lasts without renewal; when it
    /// lapses (the process crashed), another process on the store revokes
    /// the handshake-era sessions it served.
    pub instance_lease: Duration,
    /// How long an HTTP client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long an HTTP client may take to send a request's body.
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            max_concurrent_calls_per_session: DEFAULT_MAX_CONCURRENT_CALLS,
            max_active_tasks_per_agent: 64,
            max_pending_approvals_per_agent: 16,
            max_sessions_per_agent: 32,
            max_listen_streams_per_agent: 32,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            instance_lease: DEFAULT_INSTANCE_LEASE,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
        }
    }
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

/// A registered downstream server: its manifest plus deployment overrides.
#[derive(Debug, Clone)]
pub struct ServerEntry {
    pub manifest: PathBuf,
    pub enabled: bool,
    pub overrides: TransportOverride,
}

/// Deployment-specific ways to reach a server, overriding the manifest's transport.
#[derive(Debug, Clone, Default)]
pub struct TransportOverride {
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    /// Working directory for a spawned server (resolved against the config's directory).
    pub cwd: Option<PathBuf>,
    pub url: Option<String>,
    pub env: BTreeMap<String, String>,
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

/// Longest identity, approver or reviewer credential accepted by default.
pub const DEFAULT_MAX_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long an issuer's last good remote key set keeps working while its
/// endpoint is down.
pub const DEFAULT_MAX_STALE_KEYS: Duration = Duration::from_secs(24 * 3600);

/// The SQLite store's file in the state directory.
pub const STORE_FILE: &str = "jitgate.sqlite";

/// The default witness file of audit checkpoints, in the state directory.
pub const AUDIT_WITNESS_FILE: &str = "audit-witness.jsonl";

/// Default lease of a gateway process in the store.
const DEFAULT_INSTANCE_LEASE: Duration = Duration::from_secs(30);
const MIN_INSTANCE_LEASE: Duration = Duration::from_secs(3);

fn validate_limits(file: &SourceFile, raw: RawLimits) -> Result<Limits, SourceError> {
    let mut limits = Limits::default();
    if let Some(v) = raw.max_message_bytes {
        if *v.get_ref() < 1024 {
            return Err(file.error_at(Some(v.span()), "limits.max_message_bytes must be at least 1024"));
        }
        limits.max_message_bytes = *v.get_ref();
    }
    if let Some(v) = raw.max_result_bytes {
        if !(1024..=16 * 1024 * 1024).contains(v.get_ref()) {
            return Err(file.error_at(Some(v.span()), "limits.max_result_bytes must be between 1024 and 16777216 (16 MiB, the most any downstream message may carry)"));
        }
        limits.max_result_bytes = *v.get_ref();
    }
    if let Some(v) = raw.max_concurrent_calls_per_session {
        if *v.get_ref() == 0 {
            return Err(file.error_at(Some(v.span()), "limits.max_concurrent_calls_per_session must be at least 1"));
        }
        limits.max_concurrent_calls_per_session = *v.get_ref();
    }
    for (value, name, target) in [
        (raw.max_active_tasks_per_agent, "max_active_tasks_per_agent", &mut limits.max_active_tasks_per_agent),
        (raw.max_pending_approvals_per_agent, "max_pending_approvals_per_agent", &mut limits.max_pending_approvals_per_agent),
        (raw.max_sessions_per_agent, "max_sessions_per_agent", &mut limits.max_sessions_per_agent),
        (raw.max_listen_streams_per_agent, "max_listen_streams_per_agent", &mut limits.max_listen_streams_per_agent),
    ] {
        if let Some(v) = value {
            if *v.get_ref() == 0 {
                return Err(file.error_at(Some(v.span()), format!("limits.{name} must be at least 1")));
            }
            *target = *v.get_ref();
        }
    }
    if let Some(d) = raw.call_timeout {
        limits.call_timeout = d;
    }
    if let Some(d) = raw.startup_timeout {
        limits.startup_timeout = d;
    }
    for (value, target) in [(raw.header_read_timeout, &mut limits.header_read_timeout), (raw.body_read_timeout, &mut limits.body_read_timeout)] {
        if let Some(d) = value {
            if d.is_zero() {
                return Err(file.error_at(None, "limits.header_read_timeout and limits.body_read_timeout must be above zero"));
            }
            *target = d;
        }
    }
    if let Some(d) = raw.instance_lease {
        if d < MIN_INSTANCE_LEASE {
            return Err(file.error_at(None, "limits.instance_lease must be at least 3s (leases are renewed every second)"));
        }
        limits.instance_lease = d;
    }
    Ok(limits)
}

fn validate_identity(file: &SourceFile, raw: RawIdentity, state_dir: &Path) -> Result<IdentityConfig, SourceError> {
    if raw.issuers.is_empty() {
        return Err(file.error_at(None, "[[identity.issuers]] is empty: approve at least one issuer of agent identity tokens"));
    }
    let issuers = validate_issuers(file, raw.issuers, &state_dir.join(DEV_ISSUER_KEY_FILE), false)?;
    Ok(IdentityConfig { clock_skew: raw.clock_skew.unwrap_or(DEFAULT_CLOCK_SKEW), issuers })
}

/// Approver issuers are kept apart from agent issuers: the same `iss` in both
/// lists would let an agent's identity act as a person.
/// Issuers of people's credentials (approvers, reviewers), checked apart from agent issuers.
fn validate_people(file: &SourceFile, raw: Vec<Spanned<RawIssuer>>, dev_key: &Path, agents: &IdentityConfig, role: &str) -> Result<Vec<IssuerConfig>, SourceError> {
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

fn validate_approvals(file: &SourceFile, raw: RawApprovals, state_dir: &Path, agents: &IdentityConfig) -> Result<ApprovalsConfig, SourceError> {
    let issuers = validate_people(file, raw.issuers, &state_dir.join(DEV_APPROVER_KEY_FILE), agents, "approver")?;
    let d = ApprovalsConfig::default();
    let c = ApprovalsConfig {
        pending_ttl: raw.pending_ttl.unwrap_or(d.pending_ttl),
        use_ttl: raw.use_ttl.unwrap_or(d.use_ttl),
        break_glass_max_ttl: raw.break_glass_max_ttl.unwrap_or(d.break_glass_max_ttl),
        issuers,
    };
    if c.pending_ttl.is_zero() || c.use_ttl.is_zero() || c.break_glass_max_ttl.is_zero() {
        return Err(file.error_at(None, "[approvals]: pending_ttl, use_ttl and break_glass_max_ttl must be positive"));
    }
    Ok(c)
}

fn validate_issuers(file: &SourceFile, raw: Vec<Spanned<RawIssuer>>, dev_key_file: &Path, people: bool) -> Result<Vec<IssuerConfig>, SourceError> {
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

/// A secret named by a `*_file` or `*_env` key: at most one of them (Err
/// when both), `None` when neither.
fn secret_source(file: &SourceFile, from_file: Option<PathBuf>, from_env: Option<String>) -> Result<Option<SecretSource>, ()> {
    match (from_file, from_env) {
        (Some(f), None) => Ok(Some(SecretSource::File(file.resolve(&f)))),
        (None, Some(v)) => Ok(Some(SecretSource::Env(v))),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(()),
    }
}

fn validate_ui_oidc(file: &SourceFile, raw: Spanned<RawUiOidc>, approvers: &[IssuerConfig], reviewers: &[IssuerConfig]) -> Result<UiOidcConfig, SourceError> {
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

/// What is wrong with a PostgreSQL store URL, if anything: it must parse,
/// and it must not carry a password (however spelled: the driver decodes
/// percent-escapes in parameter names), which belongs in a file or the
/// environment. The URL is never repeated in the message.
pub(crate) fn postgres_url_problem(url: &str) -> Option<String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Some("must be \"sqlite:PATH\" or \"postgres://USER@HOST:PORT/DATABASE\"".into());
    }
    match url.parse::<postgres::Config>() {
        Err(e) => Some(format!("not a valid PostgreSQL URL ({e}); write it as postgres://USER@HOST:PORT/DATABASE")),
        Ok(c) if c.get_password().is_some() => Some("must not contain a password: use password_env or password_file".into()),
        Ok(_) => None,
    }
}

fn validate_store(file: &SourceFile, raw: Spanned<RawStore>) -> Result<StoreConfig, SourceError> {
    let span = raw.span();
    let r = raw.into_inner();
    let at = |m: String| file.error_at(Some(span.clone()), m);
    if let Some(path) = r.url.strip_prefix("sqlite:") {
        if r.password_env.is_some() || r.password_file.is_some() || r.pool_size.is_some() || r.ca_file.is_some() {
            return Err(at("[store] password_env, password_file, pool_size and ca_file are for PostgreSQL; an SQLite store is a file".into()));
        }
        return Ok(StoreConfig::Sqlite(file.resolve(Path::new(path))));
    }
    if let Some(problem) = postgres_url_problem(&r.url) {
        return Err(at(format!("[store] url: {problem}")));
    }
    let Ok(password) = secret_source(file, r.password_file, r.password_env) else {
        return Err(at("[store] takes one of password_env or password_file".into()));
    };
    let pool_size = r.pool_size.unwrap_or(16);
    if !(1..=256).contains(&pool_size) {
        return Err(at("[store] pool_size must be between 1 and 256".into()));
    }
    Ok(StoreConfig::Postgres { url: r.url, password, pool_size, ca_file: r.ca_file.map(|f| file.resolve(&f)) })
}

/// RFC 8693 §3: the token types a subject token may be declared as.
const SUBJECT_TOKEN_TYPES: &[&str] = &["urn:ietf:params:oauth:token-type:access_token", "urn:ietf:params:oauth:token-type:jwt"];

fn validate_token_exchange(file: &SourceFile, raw: Spanned<RawTokenExchange>, identity: &IdentityConfig) -> Result<TokenExchangeConfig, SourceError> {
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

fn validate_oauth(file: &SourceFile, raw: RawOauth, identity: &IdentityConfig) -> Result<OauthConfig, SourceError> {
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

fn validate_server(file: &SourceFile, raw: RawServer) -> Result<ServerEntry, SourceError> {
    if raw.url.is_some() && raw.command.is_some() {
        return Err(file.error_at(Some(raw.manifest.span()), "a server entry may override `command` or `url`, not both"));
    }
    Ok(ServerEntry {
        manifest: file.resolve(raw.manifest.get_ref()),
        enabled: raw.enabled,
        overrides: TransportOverride {
            command: raw.command,
            args: raw.args,
            cwd: raw.cwd.map(|c| file.resolve(&c)),
            url: raw.url,
            env: raw.env,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, SourceError> {
        let file = SourceFile { path: "/etc/jitgate/gateway.toml".into(), text: text.into() };
        let raw: RawConfig = source::parse_toml(&file)?;
        Config::validate(&file, raw)
    }

    const MINIMAL: &str = r#"
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
