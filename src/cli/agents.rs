//! `jitgate agents`: quarantine an agent or release it.
//!
//! Quarantine revokes everything the agent holds and refuses every later
//! request (including break-glass) until a person releases it. Releasing
//! takes a person's approver credential and a note; both are recorded.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::CliError;
use super::approvals::{Credential, open};
use super::open_store;
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List the registered agents and whether each is quarantined.
    List {
        /// The gateway config file.
        #[arg(long, env = "JITGATE_CONFIG")]
        config: PathBuf,
        /// Print JSON on stdout (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Quarantine an agent: revoke all it holds and refuse it until released.
    Quarantine(QuarantineArgs),
    /// Release a quarantined agent (needs your approver credential and a note).
    Release {
        #[command(flatten)]
        who: Credential,
        /// Agent name or SPIFFE id.
        name: String,
        /// What was checked before releasing it.
        #[arg(long)]
        note: String,
    },
}

#[derive(Debug, Args)]
pub struct QuarantineArgs {
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: PathBuf,
    /// Agent name or SPIFFE id.
    pub name: String,
    /// Why; shown to the agent and recorded.
    #[arg(long)]
    pub reason: String,
}

fn agent_id(config: &Config, name: &str) -> Result<String, CliError> {
    let agents = super::load_agents(config)?;
    Ok(super::find_agent(&agents, config, name, super::AgentRef::NameOrId)?.id.clone())
}

pub fn run(cmd: AgentsCommand) -> Result<(), CliError> {
    let now = SystemClock.now_unix();
    let other = |e: crate::store::StoreError| CliError::Other(e.to_string());
    match cmd {
        AgentsCommand::List { config, json } => {
            let config = Config::load(&config)?;
            let agents = super::load_agents(&config)?;
            // No store yet (no gateway has run): nobody is quarantined. A store
            // that is there but cannot be read is an error, never "active".
            let store = match open_store(&config) {
                Ok(s) => Some(s),
                Err(_) if matches!(&config.store, crate::config::StoreConfig::Sqlite(p) if !p.exists()) => None,
                Err(e) => return Err(e),
            };
            let mut rows = Vec::new();
            for a in agents.iter() {
                let q = match &store {
                    Some(s) => s.quarantined(&a.id).map_err(other)?,
                    None => None,
                };
                rows.push(json!({"name": a.name, "id": a.id, "team": a.team, "quarantined": q.as_ref().map(|q| json!({"reason": q.reason, "since": rfc3339(q.since)}))}));
                if !json {
                    let state = q.map(|q| format!("QUARANTINED since {}: {}", rfc3339(q.since), q.reason)).unwrap_or_else(|| "active".into());
                    outln!("{:<16} {:<44} team={:<10} {state}", a.name, a.id, a.team);
                }
            }
            if json {
                outln!("{}", serde_json::Value::Array(rows));
            }
            Ok(())
        }
        AgentsCommand::Quarantine(a) => {
            if a.reason.trim().is_empty() {
                return Err(CliError::Usage("--reason must say why".into()));
            }
            let config = Config::load(&a.config)?;
            let id = agent_id(&config, &a.name)?;
            let store = open_store(&config)?;
            let event = crate::audit::Event::new("quarantine", None, Some(&id), serde_json::json!({"reason": a.reason.trim(), "by": "operator (jitgate agents quarantine)"}));
            let r = store.quarantine(&id, a.reason.trim(), &event, now).map_err(other)?;
            tracing::info!(agent = %id, tokens = r.tokens, "agent quarantined");
            outln!("agent {id} quarantined; {} live token(s) revoked, its tasks ended", r.tokens);
            Ok(())
        }
        AgentsCommand::Release { who, name, note } => {
            if note.trim().is_empty() {
                return Err(CliError::Usage("--note must say what was checked".into()));
            }
            let (config, store, person) = open(&who)?;
            let id = agent_id(&config, &name)?;
            let event = crate::audit::Event::new("release", None, Some(&id), serde_json::json!({"by": person.subject, "note": note.trim()}));
            if !store.release(&id, &person.subject, note.trim(), &event, now).map_err(other)? {
                return Err(CliError::Other(format!("agent {id} is not quarantined")));
            }
            tracing::info!(agent = %id, by = %person.subject, "agent released from quarantine");
            outln!("agent {id} released by {}", person.subject);
            Ok(())
        }
    }
}
