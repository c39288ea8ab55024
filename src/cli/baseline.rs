//! `jitgate baseline learn`: build an agent's profile from its recorded
//! intents and write it beside its agent file (`NAME.baseline.toml`) for a
//! person to review and commit. The gateway reads it at start.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::CliError;
use super::open_store;
use crate::baseline::profile::{LEARNED_SUFFIX, LearnedProfile};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Learn an agent's profile from the recorded history.
    Learn(LearnArgs),
}

#[derive(Debug, Args)]
pub struct LearnArgs {
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: PathBuf,
    /// Agent name.
    #[arg(long)]
    pub agent: String,
    /// How far back to look, e.g. 7d, 24h.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// Write here instead of AGENTS_DIR/NAME.baseline.toml ("-" for stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Upper bound on intents read for one profile.
const MAX_INTENTS: usize = 1_000_000;

pub fn run(cmd: BaselineCommand) -> Result<(), CliError> {
    let BaselineCommand::Learn(a) = cmd;
    let config = Config::load(&a.config)?;
    let agents = super::load_agents(&config)?;
    let agent = super::find_agent(&agents, &config, &a.agent, super::AgentRef::Name)?;
    let store = open_store(&config)?;
    let now = SystemClock.now_unix();
    let since = now.saturating_sub(i64::try_from(a.since.as_secs()).unwrap_or(i64::MAX));
    let intents = store.intents_of(&agent.id, since, MAX_INTENTS).map_err(|e| CliError::Other(e.to_string()))?;
    if intents.is_empty() {
        return Err(CliError::Other(format!(
            "no recorded intents of `{}` since {}; run the agent through the gateway first (or widen --since)",
            agent.name,
            rfc3339(since)
        )));
    }
    let profile = LearnedProfile::learn(&agent.name, &intents, &rfc3339(now), &rfc3339(since));
    let body = toml::to_string_pretty(&profile).map_err(|e| CliError::Other(e.to_string()))?;
    let text = format!(
        "# Learned baseline of agent `{}` from {} intents in {} tasks ({} .. {}).\n# Review before committing: every transition listed here counts as normal.\n{body}",
        agent.name, profile.intents, profile.tasks, profile.since, profile.learned_at
    );
    let path = a.out.unwrap_or_else(|| config.agents_dir.join(format!("{}{LEARNED_SUFFIX}", agent.name)));
    if path.as_os_str() == "-" {
        out!("{text}");
        return Ok(());
    }
    std::fs::write(&path, text).map_err(|e| CliError::Other(format!("cannot write {}: {e}", path.display())))?;
    outln!(
        "learned baseline of `{}`: {} intents, {} tools, {} transitions; wrote {} (restart the gateway to use it)",
        agent.name,
        profile.intents,
        profile.tools.len(),
        profile.transitions.len(),
        path.display()
    );
    Ok(())
}
