//! `jitgate revoke`: end authority from the command line. Writes straight
//! into the gateway's store; a running gateway refuses the revoked tokens at
//! their next verification and cancels their in-flight calls within a moment.

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::store::Scope;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["task", "agent", "token"])))]
pub struct RevokeArgs {
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: PathBuf,
    /// Revoke a task: it ends and all its live tokens die.
    #[arg(long)]
    pub task: Option<String>,
    /// Revoke everything an agent holds (by agent name or SPIFFE id).
    #[arg(long)]
    pub agent: Option<String>,
    /// Revoke one token (by jti). A jti may begin with `-`: it is taken as
    /// the value, not as another option.
    #[arg(long, allow_hyphen_values = true)]
    pub token: Option<String>,
    /// Why; recorded with the revocation.
    #[arg(long, default_value = "operator revocation")]
    pub reason: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: RevokeArgs) -> Result<(), CliError> {
    let config = Config::load(&a.config)?;
    let scope = if let Some(t) = a.task {
        Scope::Task(t)
    } else if let Some(t) = a.token {
        Scope::Token(t)
    } else if let Some(name) = a.agent {
        let agents = super::load_agents(&config)?;
        Scope::Agent(super::find_agent(&agents, &config, &name, super::AgentRef::NameOrId)?.id.clone())
    } else {
        return Err(CliError::Usage("give --task, --agent or --token".into()));
    };
    let store = super::open_store(&config)?;
    let r = store.revoke(&scope, &format!("operator: {}", a.reason), SystemClock.now_unix()).map_err(|e| CliError::Other(e.to_string()))?;
    if a.json {
        outln!("{}", serde_json::json!({"scope": r.scope.kind(), "target": r.scope.target(), "tokens_revoked": r.tokens, "seq": r.seq}));
    } else {
        outln!("revoked {} {}: {} live token(s) revoked; reason recorded: {}", r.scope.kind(), r.scope.target(), r.tokens, r.reason);
    }
    Ok(())
}
