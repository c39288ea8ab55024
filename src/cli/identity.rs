//! `jitgate identity mint`: identity tokens from the development issuer.
//!
//! For the quick start and tests only. Real deployments get agent identities
//! from their own issuer (e.g. SPIRE JWT-SVIDs) and list it in
//! `[[identity.issuers]]` with its public keys.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::CliError;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, IssuerKeys};
use crate::keys::KeyPair;

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Mint an identity JWT for an agent (--agent) from the config's development
    /// issuer, or an approver credential for a person (--approver) from its
    /// development approver issuer.
    Mint(MintArgs),
}

#[derive(Debug, Args)]
pub struct MintArgs {
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: PathBuf,
    /// The agent's name (its agent file's `name`).
    #[arg(long, required_unless_present_any = ["approver", "reviewer"], conflicts_with = "approver")]
    pub agent: Option<String>,
    /// Mint a person's approver credential instead, for this subject (e.g. alice@example.org).
    #[arg(long)]
    pub approver: Option<String>,
    /// With --approver: the approval groups the person belongs to (comma-separated).
    #[arg(long, requires = "approver", value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Mint a reviewer's credential (for the /ui pages) for this subject instead.
    #[arg(long, conflicts_with_all = ["agent", "approver"])]
    pub reviewer: Option<String>,
    /// Lifetime, e.g. 10m, 1h.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Write the token to this file (mode 0600) instead of stdout, e.g. for `serve --stdio --identity-file`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(cmd: IdentityCommand) -> Result<(), CliError> {
    let IdentityCommand::Mint(a) = cmd;
    let config = Config::load(&a.config)?;
    let ttl = i64::try_from(a.ttl.as_secs()).map_err(|_| CliError::Usage("--ttl is too large".into()))?;
    if let Some(subject) = &a.reviewer {
        let token = mint_person(&config, &config.reviewers, "reviewer", subject, &[], ttl)?;
        return emit(&token, a.out.as_deref(), &format!("reviewer `{subject}`"), a.ttl);
    }
    if let Some(subject) = &a.approver {
        let token = mint_person(&config, &config.approvals.issuers, "approver", subject, &a.groups, ttl)?;
        return emit(&token, a.out.as_deref(), &format!("approver `{subject}` (groups: {})", a.groups.join(", ")), a.ttl);
    }
    let Some(agent_name) = a.agent.as_deref() else {
        return Err(CliError::Usage("give --agent NAME, --approver SUBJECT or --reviewer SUBJECT".into()));
    };
    let agents = super::load_agents(&config)?;
    let agent = super::find_agent(&agents, &config, agent_name, super::AgentRef::Name)?;
    let issuer = config
        .identity
        .issuers
        .iter()
        .find(|i| matches!(i.keys, IssuerKeys::Development { .. }))
        .ok_or_else(|| CliError::Identity("the config has no development issuer (`development = true`); mint tokens with your real issuer".into()))?;
    let IssuerKeys::Development { key_file } = &issuer.keys else {
        return Err(CliError::Identity("development issuer has no key file".into()));
    };
    within_max_lifetime(issuer, a.ttl)?;
    let (key, _) = KeyPair::load_or_create(key_file).map_err(|e| CliError::Identity(e.to_string()))?;
    let token = crate::identity::mint(&key, &issuer.iss, &agent.id, &config.gateway_id, SystemClock.now_unix(), ttl)
        .map_err(|e| CliError::Identity(e.to_string()))?;
    emit(&token, a.out.as_deref(), &format!("identity for agent `{}` ({})", agent.name, agent.id), a.ttl)
}

fn emit(token: &str, out: Option<&std::path::Path>, what: &str, ttl: Duration) -> Result<(), CliError> {
    match out {
        Some(path) => {
            write_token_file(path, token).map_err(|e| CliError::Other(format!("cannot write {}: {e}", path.display())))?;
            outln!("wrote {what} to {}, valid {}", path.display(), humantime::format_duration(ttl));
        }
        None => outln!("{token}"),
    }
    Ok(())
}

fn mint_person(config: &Config, issuers: &[crate::config::IssuerConfig], role: &str, subject: &str, groups: &[String], ttl: i64) -> Result<String, CliError> {
    if subject.starts_with("spiffe://") {
        return Err(CliError::Identity(format!("a {role} is a person, not an agent: use a subject like alice@example.org")));
    }
    let issuer = issuers.iter().find(|i| matches!(i.keys, IssuerKeys::Development { .. })).ok_or_else(|| {
        CliError::Identity(format!("the config has no development {role} issuer (an issuer with development = true); {role}s get credentials from your real issuer"))
    })?;
    let IssuerKeys::Development { key_file } = &issuer.keys else {
        return Err(CliError::Identity(format!("development {role} issuer has no key file")));
    };
    within_max_lifetime(issuer, std::time::Duration::from_secs(u64::try_from(ttl).unwrap_or(u64::MAX)))?;
    let (key, _) = KeyPair::load_or_create(key_file).map_err(|e| CliError::Identity(e.to_string()))?;
    crate::approver::mint(&key, &issuer.iss, subject, &config.gateway_id, groups, SystemClock.now_unix(), ttl).map_err(|e| CliError::Identity(e.to_string()))
}

/// A token that lives longer than its issuer's `max_lifetime` is refused
/// by the gateway on every request (`identity_lifetime_too_long`): refuse
/// to write one.
fn within_max_lifetime(issuer: &crate::config::IssuerConfig, ttl: Duration) -> Result<(), CliError> {
    if ttl <= issuer.max_lifetime {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "--ttl {} is longer than issuer `{}`'s max_lifetime of {}, so the gateway would refuse the token (identity_lifetime_too_long); give --ttl {} or less, or raise max_lifetime in that issuer's section of the config",
        humantime::format_duration(ttl),
        issuer.name,
        humantime::format_duration(issuer.max_lifetime),
        humantime::format_duration(issuer.max_lifetime),
    )))
}

/// Replace the file atomically so a gateway re-reading it never sees half a token.
fn write_token_file(path: &std::path::Path, token: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write as _;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, path)
}
