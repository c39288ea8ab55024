//! `[policy]` and `[approvals]`: the policy directory, approvals and break-glass.

#[allow(unused_imports)]
use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawPolicy {
    pub(in crate::config) dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawApprovals {
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) pending_ttl: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) use_ttl: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) break_glass_max_ttl: Option<Duration>,
    #[serde(default)]
    pub(in crate::config) issuers: Vec<Spanned<RawIssuer>>,
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

pub(in crate::config) fn validate_approvals(file: &SourceFile, raw: RawApprovals, state_dir: &Path, agents: &IdentityConfig) -> Result<ApprovalsConfig, SourceError> {
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
