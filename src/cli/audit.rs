//! `jitgate audit verify | export` and `jitgate trace`: reading the audit
//! trail. They read the store directly; the gateway may keep running.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;
use super::open_store;
use crate::audit::Record;
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::Config;
use crate::store::Store;
use crate::token::Keyring;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and the signed checkpoints; report the first bad record.
    Verify {
        /// The gateway config file.
        #[arg(long, env = "JITGATE_CONFIG")]
        config: PathBuf,
        /// Print JSON on stdout (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Stream the records as JSON lines.
    Export {
        /// The gateway config file.
        #[arg(long, env = "JITGATE_CONFIG")]
        config: PathBuf,
        /// Only records after this seq.
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}

/// Records per page when exporting.
const PAGE: usize = 10_000;

fn other(e: impl std::fmt::Display) -> CliError {
    CliError::Other(e.to_string())
}

fn all_records(store: &dyn Store) -> Result<Vec<Record>, CliError> {
    crate::store::all_audit_records(store, usize::MAX).map_err(other)
}

pub fn run(cmd: AuditCommand) -> Result<(), CliError> {
    match cmd {
        AuditCommand::Verify { config, json: as_json } => {
            let config = Config::load(&config)?;
            let store = open_store(&config)?;
            let keyring = Keyring::load(&config.keys_dir()).map_err(other)?;
            let records = all_records(store.as_ref())?;
            let checkpoints = store.checkpoints().map_err(other)?;
            let witnessed = crate::audit::read_witness(&config.audit.witness)
                .map_err(|e| other(format!("cannot read the audit witness {}: {e}", config.audit.witness.display())))?;
            // Records older than two checkpoint intervals must be covered by
            // a signed checkpoint (a running gateway signs one each interval).
            let grace = i64::try_from(config.audit.checkpoint_interval.as_secs()).unwrap_or(60).saturating_mul(2).max(2);
            let evidence = crate::audit::verify::Evidence {
                stored: &checkpoints,
                witnessed: &witnessed,
                keys: keyring.public_keys(),
                must_be_covered_before: SystemClock.now_unix().saturating_sub(grace),
            };
            let report = crate::audit::verify::verify(&records, &evidence);
            if as_json {
                outln!("{}", json!({"ok": report.ok(), "report": report}));
            } else {
                outln!("{} records, {} checkpoints; signed checkpoints cover records 1..{}", report.records, report.checkpoints, report.covered_to);
                for p in &report.problems {
                    outln!("TAMPERING: {p}");
                }
                if report.ok() {
                    outln!("ok: the chain is intact");
                }
            }
            if report.ok() {
                Ok(())
            } else {
                Err(CliError::CheckFailed(format!("audit verification failed: {}", report.problems.first().map(ToString::to_string).unwrap_or_default())))
            }
        }
        AuditCommand::Export { config, after } => {
            let config = Config::load(&config)?;
            let store = open_store(&config)?;
            let mut after = after;
            loop {
                let page = store.audit_records(after, PAGE).map_err(other)?;
                let Some(last) = page.last().map(|r| r.seq) else { break };
                for r in &page {
                    outln!("{}", serde_json::to_string(r).map_err(other)?);
                }
                after = last;
            }
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["task", "agent"])))]
pub struct TraceArgs {
    /// The task to show as a tree.
    pub task: Option<String>,
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: PathBuf,
    /// Or: list an agent's tasks (by name).
    #[arg(long)]
    pub agent: Option<String>,
    /// With --agent: how far back, e.g. 1h, 2d.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// Print JSON on stdout (for scripts).
    #[arg(long)]
    pub json: bool,
}

pub fn trace(a: TraceArgs) -> Result<(), CliError> {
    let config = Config::load(&a.config)?;
    // A wrong agent name is answered before the store is looked for.
    let agents = super::load_agents(&config)?;
    let agent = a.agent.as_deref().map(|name| super::find_agent(&agents, &config, name, super::AgentRef::Name)).transpose()?;
    let store = open_store(&config)?;
    if let Some(agent) = agent {
        let since = SystemClock.now_unix() - i64::try_from(a.since.as_secs()).unwrap_or(0);
        let mut tasks = crate::trace::tasks_of(&all_records(store.as_ref())?, &agent.id, since);
        // The outcome as the store has it (revocations need no running gateway).
        let now = SystemClock.now_unix();
        for t in &mut tasks {
            if let Ok(Some(outcome)) = crate::trace::stored_outcome(store.as_ref(), &t.id, now) {
                t.outcome = outcome;
            }
        }
        if a.json {
            outln!("{}", Value::Array(tasks.iter().map(|t| json!(t)).collect()));
        } else if tasks.is_empty() {
            outln!("no tasks of `{}` since {}", agent.name, rfc3339(since));
        } else {
            for t in &tasks {
                outln!("{}  {}  {:<8} {}  ({} requests, {} denied, {} calls)", t.id, rfc3339(t.begun), t.outcome, t.objective, t.requests, t.denied, t.calls);
            }
        }
        return Ok(());
    }
    let task = a.task.unwrap_or_default();
    let tree = crate::trace::from_store(store.as_ref(), &task, SystemClock.now_unix())
        .map_err(other)?
        .ok_or_else(|| CliError::Usage(format!("no audit records for task `{task}`; `jitgate trace --agent NAME` lists an agent's tasks")))?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&tree).map_err(other)?);
    } else {
        out!("{}", crate::trace::render_text(&tree));
    }
    Ok(())
}
