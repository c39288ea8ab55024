//! `jitgate approvals` and `jitgate review`: the human side, for people with
//! approver credentials. They act on the gateway's store directly, like
//! `jitgate revoke`; the running gateway sees each decision on the agent's
//! next request.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{CliError, open_store};
use crate::approver::{ApproverVerifier, VerifiedApprover};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::Config;
use crate::store::{Approval, BreakGlassGrant, Store};
use crate::telemetry::Clean;

/// Where a person's credential comes from.
#[derive(Debug, Args)]
pub struct Credential {
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: PathBuf,
    /// File with your approver credential (a JWT from an approver issuer). Default: $JITGATE_APPROVER_TOKEN.
    #[arg(long)]
    pub credential: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List pending and approved (not yet used) approvals; --all for every one.
    List {
        #[command(flatten)]
        who: Credential,
        /// Also list denied, used and expired approvals.
        #[arg(long)]
        all: bool,
    },
    /// Show one approval in full.
    Show {
        #[command(flatten)]
        who: Credential,
        id: String,
    },
    /// Approve a pending request (you must be in its group).
    Approve {
        #[command(flatten)]
        who: Credential,
        id: String,
        /// Optional note, recorded and shown to the agent.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Deny a pending request (you must be in its group).
    Deny {
        #[command(flatten)]
        who: Credential,
        id: String,
        /// Why; recorded and shown to the agent.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// List break-glass grants awaiting review; --all for reviewed ones too.
    List {
        #[command(flatten)]
        who: Credential,
        /// Also list grants already reviewed.
        #[arg(long)]
        all: bool,
    },
    /// Sign a break-glass grant off after looking at what it did.
    Ack {
        #[command(flatten)]
        who: Credential,
        id: String,
        /// What you checked and concluded; recorded.
        #[arg(long)]
        note: String,
    },
}

/// Open the store of a config and verify the person's credential.
pub fn open(who: &Credential) -> Result<(Config, std::sync::Arc<dyn Store>, VerifiedApprover), CliError> {
    let config = Config::load(&who.config)?;
    let token = match &who.credential {
        Some(path) => std::fs::read_to_string(path).map_err(|e| CliError::Identity(format!("cannot read credential {}: {e}", path.display())))?,
        None => std::env::var("JITGATE_APPROVER_TOKEN").unwrap_or_default(),
    };
    let verifier = ApproverVerifier::new(&config, std::sync::Arc::new(SystemClock)).map_err(|e| CliError::Identity(e.to_string()))?;
    let approver = verifier.verify(&token).map_err(|e| CliError::Identity(format!("{e} [{}]", e.code())))?;
    let store = open_store(&config)?;
    Ok((config, store, approver))
}

fn other(e: impl std::fmt::Display) -> CliError {
    CliError::Other(e.to_string())
}

pub fn run_approvals(cmd: ApprovalsCommand) -> Result<(), CliError> {
    let now = SystemClock.now_unix();
    match cmd {
        ApprovalsCommand::List { who, all } => {
            let (_, store, _) = open(&who)?;
            let list = store.approvals(all, now).map_err(other)?;
            if who.json {
                outln!("{}", json!(list));
            } else if list.is_empty() {
                outln!("no {}approvals", if all { "" } else { "open " });
            } else {
                for a in &list {
                    outln!("{}  {:<8}  {}  group={}  agent={}  task={}  expires {}", a.id, a.state.as_str(), a.tool, a.group, a.agent, a.task, rfc3339(a.expires_at));
                }
            }
            Ok(())
        }
        ApprovalsCommand::Show { who, id } => {
            let (_, store, _) = open(&who)?;
            let a = store.approval(&id, now).map_err(other)?.ok_or_else(|| CliError::Usage(format!("no approval `{id}`; `jitgate approvals list --all` lists them")))?;
            print_approval(&a, who.json);
            Ok(())
        }
        ApprovalsCommand::Approve { who, id, note } => decide(&who, &id, true, &note, now),
        ApprovalsCommand::Deny { who, id, reason } => decide(&who, &id, false, &reason, now),
    }
}

fn decide(who: &Credential, id: &str, approve: bool, note: &str, now: i64) -> Result<(), CliError> {
    let (config, store, approver) = open(who)?;
    let a = crate::policy::approvals::decide(store.as_ref(), &approver, id, approve, note, now, config.approvals.use_ttl)
        .map_err(|e| {
            let message = format!("{e} [{}]", e.code());
            // An id that is not there is a mistake on the command line; a
            // decision refused (not pending, not your group) is not.
            if matches!(e, crate::policy::approvals::ApprovalActionError::NotFound(_)) { CliError::Usage(message) } else { CliError::Other(message) }
        })?;
    if who.json {
        outln!("{}", json!(a));
    } else {
        outln!("{} {} ({} for agent {}); recorded as {}", a.state.as_str(), a.id, a.tool, a.agent, approver.subject);
    }
    Ok(())
}

fn print_approval(a: &Approval, as_json: bool) {
    if as_json {
        outln!("{}", json!(a));
        return;
    }
    outln!("{}", approval_text(a));
}

/// An approval as a person reads it in a terminal. The agent wrote the
/// purpose and the arguments: a line break (U+2028 too), a terminal escape
/// or a bidi control in them is shown escaped, so it cannot forge a line
/// of this listing or hide what follows.
fn approval_text(a: &Approval) -> String {
    let mut lines = vec![
        format!("approval   {}", a.id),
        format!("state      {}", a.state.as_str()),
        format!("agent      {}", a.agent),
        format!("task       {}", a.task),
        format!("tool       {}", Clean(&a.tool)),
        format!("arguments  {}", Clean(&a.constraints)),
        format!("purpose    {}", Clean(&a.purpose)),
        format!("group      {}", a.group),
        format!("policies   {}", a.policies.join(", ")),
        format!("created    {}", rfc3339(a.created_at)),
        format!("expires    {}", rfc3339(a.expires_at)),
    ];
    match (&a.decided_by, &a.note) {
        (Some(by), note) => lines.push(format!("decided by {by} at {}: {}", a.decided_at.map(rfc3339).unwrap_or_default(), Clean(note.as_deref().unwrap_or_default()))),
        // Undecided, yet with a note: it ended with its task.
        (None, Some(note)) => lines.push(format!("note       {}", Clean(note))),
        (None, None) => {}
    }
    if let Some(j) = &a.used_jti {
        lines.push(format!("used for   token {j}"));
    }
    lines.join("\n")
}

/// A break-glass grant on one line; the agent's justification is escaped
/// like an approval's purpose.
fn grant_line(g: &BreakGlassGrant) -> String {
    let review = match (&g.reviewed_by, g.reviewed_at) {
        (Some(by), Some(at)) => format!("reviewed by {by} at {}: {}", rfc3339(at), Clean(g.note.as_deref().unwrap_or_default())),
        _ => "AWAITING REVIEW".into(),
    };
    format!(
        "{}  {}  agent={}  task={}  token={}  granted {}  justification: {}  [{review}]",
        g.id,
        Clean(&g.tool),
        g.agent,
        g.task,
        g.jti,
        rfc3339(g.granted_at),
        Clean(&g.justification)
    )
}

fn print_grant(g: &BreakGlassGrant) {
    outln!("{}", grant_line(g));
}

pub fn run_review(cmd: ReviewCommand) -> Result<(), CliError> {
    match cmd {
        ReviewCommand::List { who, all } => {
            let (_, store, _) = open(&who)?;
            let list = store.break_glass_grants(all).map_err(other)?;
            if who.json {
                outln!("{}", json!(list));
            } else if list.is_empty() {
                outln!("no break-glass grants {}", if all { "" } else { "awaiting review" });
            } else {
                list.iter().for_each(print_grant);
            }
            Ok(())
        }
        ReviewCommand::Ack { who, id, note } => {
            if note.trim().is_empty() {
                return Err(CliError::Usage("--note must say what you checked".into()));
            }
            let (_, store, approver) = open(&who)?;
            let event = crate::audit::Event::new("break_glass.reviewed", None, None, json!({"grant": id, "by": approver.subject, "note": note.trim()}));
            if !store.ack_break_glass(&id, &approver.subject, note.trim(), &event, SystemClock.now_unix()).map_err(other)? {
                return Err(CliError::Other(format!("no break-glass grant `{id}` awaiting review; see `jitgate review list --all`")));
            }
            tracing::info!(grant = %id, by = %approver.subject, "break-glass grant reviewed");
            if who.json {
                outln!("{}", json!({"id": id, "reviewed_by": approver.subject}));
            } else {
                outln!("break-glass grant {id} signed off by {}", approver.subject);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_the_agent_wrote_cannot_forge_a_line_of_a_listing() {
        let a = Approval {
            id: "a_1".into(),
            digest: "d".into(),
            agent: "spiffe://jitgate.local/agent/triage".into(),
            task: "t_1".into(),
            tool: "workspace__send_message".into(),
            constraints: "{\"to\":{\"eq\":\"x@a.test\u{2029}state      approved\"}}".into(),
            purpose: "tidy\u{2028}decided by alice@example.org\nok\u{1b}[2K\u{202E}".into(),
            group: "platform-oncall".into(),
            policies: vec!["p1".into()],
            state: crate::store::ApprovalState::Pending,
            created_at: 0,
            expires_at: 60,
            decided_at: None,
            decided_by: None,
            note: None,
            used_jti: None,
        };
        let text = approval_text(&a);
        let lines: Vec<&str> = text.split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']).collect();
        assert_eq!(lines.len(), 11, "{text}");
        assert!(!lines.iter().any(|l| l.starts_with("decided by") || l.starts_with("state      approved")), "{text}");
        assert!(text.contains(r"purpose    tidy\u{2028}decided by alice@example.org\nok\u{1b}[2K\u{202e}"), "{text}");
        assert!(text.contains("tool       workspace__send_message") && text.contains("group      platform-oncall"), "{text}");
        let g = BreakGlassGrant {
            id: "g_1".into(),
            agent: a.agent.clone(),
            task: a.task.clone(),
            tool: a.tool.clone(),
            constraints: "{}".into(),
            justification: "outage\u{2028}g_2  reviewed".into(),
            jti: "j".into(),
            policies: vec![],
            granted_at: 0,
            expires_at: 60,
            reviewed_at: None,
            reviewed_by: None,
            note: None,
        };
        let line = grant_line(&g);
        assert!(!line.contains('\u{2028}') && line.contains(r"justification: outage\u{2028}g_2  reviewed  [AWAITING REVIEW]"), "{line}");
    }
}
