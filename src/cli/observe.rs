//! `jitgate observe report`: what enforcement would have changed for the
//! agents in observe mode, over a period, by rule, tool and agent, from the
//! `call.observed` records.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{CliError, open_store};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ObserveCommand {
    /// What enforcement would have changed: the observed calls it would
    /// have denied, held for a person, asked the end user about or
    /// quarantined, by rule, tool and agent.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: PathBuf,
    /// How far back, e.g. 24h, 7d.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// Only this agent (by name).
    #[arg(long)]
    pub agent: Option<String>,
    /// Print JSON on stdout (for scripts).
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: ObserveCommand) -> Result<(), CliError> {
    match cmd {
        ObserveCommand::Report(a) => report(a),
    }
}

/// Counts of observed calls: all, and by what enforcement would have done.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Tally {
    observed: u64,
    changed: u64,
    would: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, would: &str) {
        self.observed += 1;
        if would != "allow" {
            self.changed += 1;
        }
        *self.would.entry(would.to_owned()).or_default() += 1;
    }
}

fn report(a: ReportArgs) -> Result<(), CliError> {
    let config = Config::load(&a.config)?;
    let agents = crate::agent::AgentDirectory::load(&config.agents_dir).map_err(|e| CliError::Config(crate::source::SourceErrors(e)))?;
    let only = match &a.agent {
        Some(name) => Some(super::find_agent(&agents, &config, name, super::AgentRef::Name)?.id.clone()),
        None => None,
    };
    let store = open_store(&config)?;
    let since = SystemClock.now_unix().saturating_sub(i64::try_from(a.since.as_secs()).unwrap_or(i64::MAX));
    let records = crate::store::all_audit_records(store.as_ref(), usize::MAX).map_err(|e| CliError::Other(e.to_string()))?;
    let name_of = |id: &str| agents.by_subject(id).map(|x| x.name.clone()).unwrap_or_else(|| id.to_owned());
    let (mut total, mut by_rule, mut by_tool, mut by_agent) = (Tally::default(), BTreeMap::<(String, String), u64>::new(), BTreeMap::<String, Tally>::new(), BTreeMap::<String, Tally>::new());
    for r in records.iter().filter(|r| r.kind == "call.observed" && r.at >= since) {
        let agent = r.agent.clone().unwrap_or_default();
        if only.as_ref().is_some_and(|o| *o != agent) {
            continue;
        }
        let would = r.data["would"].as_str().unwrap_or("unknown");
        let tool = r.data["tool"].as_str().unwrap_or_default().to_owned();
        total.add(would);
        by_tool.entry(tool).or_default().add(would);
        by_agent.entry(name_of(&agent)).or_default().add(would);
        if would != "allow" {
            let rule = r.data["policy"].as_str().unwrap_or("(no policy permits it: default deny)").to_owned();
            *by_rule.entry((would.to_owned(), rule)).or_default() += 1;
        }
    }
    if a.json {
        let rules: Vec<Value> = by_rule.iter().map(|((would, rule), n)| json!({"would": would, "policy": rule, "calls": n})).collect();
        outln!("{}", json!({"since": rfc3339(since), "total": total, "by_rule": rules, "by_tool": by_tool, "by_agent": by_agent}));
        return Ok(());
    }
    if total.observed == 0 {
        outln!("no observed calls since {}: agents in observe mode (mode = \"observe\" in their agent file) have made none, or none is in observe mode", rfc3339(since));
        return Ok(());
    }
    outln!(
        "{} observed call(s) since {}: enforcement would have changed {} ({})",
        total.observed,
        rfc3339(since),
        total.changed,
        total.would.iter().map(|(w, n)| format!("{n} {w}")).collect::<Vec<_>>().join(", ")
    );
    if !by_rule.is_empty() {
        outln!("\nby rule:");
        for ((would, rule), n) in &by_rule {
            outln!("  {n:>6}  {would:<18}  {rule}");
        }
    }
    for (title, table) in [("by tool", &by_tool), ("by agent", &by_agent)] {
        outln!("\n{title}:                          observed  would change");
        for (name, t) in table {
            outln!("  {name:<34} {:>8}  {:>12}", t.observed, t.changed);
        }
    }
    Ok(())
}
