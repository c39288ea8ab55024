//! `jitgate policy`: help for people writing policy.
//!
//! `explain` runs one decision against the deployment's policies, as the
//! gateway would, and prints the outcome and the policies that determined
//! it. `schema` prints the Cedar schema policies are validated against.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{CliError, Deployment};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::policy::{Action, AgentFacts, ApprovalFacts, BaselineFacts, DecisionInput, EndUserFacts, Outcome, RequestFacts, TaintFacts, TaskFacts, TimeFacts, ToolFacts, Verdict};
use crate::constraints;

mod cases;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide one request against the deployment's policies and show why.
    Explain(ExplainArgs),
    /// Print jitgate's Cedar schema.
    Schema,
    /// Run declarative cases (TOML `[[case]]` tables: agent, tool, facts,
    /// expected decision) through the gateway's decision; exit 3 if any fails.
    Test(cases::TestArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: PathBuf,
    /// Agent name.
    #[arg(long)]
    pub agent: String,
    /// Tool, as agents see it (server__tool).
    #[arg(long)]
    pub tool: String,
    /// The call's arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// request, begin-task or break-glass.
    #[arg(long, default_value = "request")]
    pub action: String,
    /// Decision time (RFC 3339, e.g. 2026-11-25T22:00:00Z); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// Name of the issuer that vouched for the agent; default the first configured issuer.
    #[arg(long)]
    pub issuer: Option<String>,
    /// Treat the tool as outside the current phase's plan.
    #[arg(long)]
    pub not_in_plan: bool,
    /// Pretend a person of this group approved the request.
    #[arg(long)]
    pub approved_by_group: Option<String>,
    /// Pretend a sensitive argument carries a value from untrusted content.
    #[arg(long)]
    pub tainted: bool,
    /// Pretend a sink's other argument (a message body) carries a URL, an
    /// address or an account or phone number from untrusted content.
    #[arg(long)]
    pub destination_in_text: bool,
    /// Pretend another argument (an event's title, a booking's notes)
    /// carries text from untrusted content.
    #[arg(long)]
    pub text_from_third_party: bool,
    /// Pretend the chain that led to this request is not in the agent's baseline.
    #[arg(long)]
    pub unknown_transition: bool,
    /// The baseline score (0-100) to decide with; default 0 (usual).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..=100))]
    pub baseline_score: i64,
    /// Pretend the baseline found strong evidence (a request burst over the
    /// agent's limit): with a score at the agent's drift_threshold the gateway
    /// quarantines the agent.
    #[arg(long)]
    pub strong_evidence: bool,
    /// Pretend the agent's last call read third-party content
    /// (`context.task.after_untrusted_read`).
    #[arg(long)]
    pub after_untrusted_read: bool,
    /// With --action begin-task: the tool was already in the plan of the
    /// agent's last call (not in `context.task.new_tools`).
    #[arg(long)]
    pub previously_planned: bool,
    /// Pretend the end user confirmed exactly this request through the
    /// agent's MCP client (what a @confirm rule waits for).
    #[arg(long)]
    pub confirmed_by_end_user: bool,
    /// Decide as if the agent file's `[end_user] client_trusted` said this
    /// (`context.end_user.client_trusted`); default: what the file says.
    #[arg(long)]
    pub end_user_client_trusted: Option<bool>,
    /// With --action break-glass: the justification.
    #[arg(long, default_value = "")]
    pub justification: String,
    /// Pretend the agent is quarantined.
    #[arg(long)]
    pub quarantined: bool,
    /// Print JSON on stdout (for scripts).
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: PolicyCommand) -> Result<(), CliError> {
    match cmd {
        PolicyCommand::Schema => {
            out!("{}", crate::policy::SCHEMA_TEXT);
            Ok(())
        }
        PolicyCommand::Explain(a) => explain(a),
        PolicyCommand::Test(a) => cases::test(a),
    }
}

/// The command line asks about something that is not there, or says it
/// in a form explain cannot read.
fn bad(m: String) -> CliError {
    CliError::Usage(m)
}

/// Unix seconds of an RFC 3339 time (after 1970).
fn unix_of(t: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339_weak(t).ok()?;
    at.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One decision to make, as `explain` flags or a test case state it.
pub(crate) struct Question {
    pub(crate) action: Action,
    pub(crate) agent: crate::agent::Agent,
    pub(crate) issuer: String,
    pub(crate) quarantined: bool,
    pub(crate) client_trusted: bool,
    pub(crate) tool: ToolFacts,
    pub(crate) arguments: serde_json::Map<String, serde_json::Value>,
    pub(crate) now: i64,
    /// The tool is in the current phase's plan.
    pub(crate) in_plan: bool,
    /// The current phase's tools.
    pub(crate) plan: Vec<String>,
    pub(crate) after_untrusted_read: bool,
    /// begin-task: the tool was in the plan of the agent's last task.
    pub(crate) previously_planned: bool,
    pub(crate) approved_by_group: Option<String>,
    pub(crate) tainted: bool,
    pub(crate) destination_in_text: bool,
    pub(crate) text_from_third_party: bool,
    pub(crate) unknown_transition: bool,
    pub(crate) baseline_score: i64,
    pub(crate) strong_evidence: bool,
    pub(crate) confirmed_by_end_user: bool,
    /// break-glass: the justification.
    pub(crate) justification: String,
}

/// What the gateway would do with a [`Question`].
pub(crate) struct Judged {
    pub(crate) decision: crate::policy::Decision,
    /// `allow`, `deny`, `needs_approval`, `needs_confirmation` or `quarantine`.
    pub(crate) kind: &'static str,
    /// The same for people (`NEEDS APPROVAL`).
    pub(crate) word: &'static str,
    pub(crate) reason: String,
}

/// Decide `q` as the gateway does: the policy set's decision, then the
/// gateway's own verdict on it (a drifted agent or an `@quarantine` forbid
/// quarantines).
pub(crate) fn judge(policy: &crate::policy::PolicyEngine, q: &Question) -> Judged {
    let action = q.action;
    let agent_facts = AgentFacts { agent: q.agent.clone(), issuer: q.issuer.clone(), claims: Default::default(), quarantined: q.quarantined };
    let exposed = q.tool.exposed.clone();
    let task = TaskFacts {
        id: "task_explain".into(),
        objective: "(policy explain)".into(),
        phase: "explain".into(),
        phase_index: 0,
        phase_count: 1,
        in_phase_plan: q.in_plan,
        plan: q.plan.clone(),
        after_untrusted_read: q.after_untrusted_read,
        // For begin-task: the tool is new unless it was planned before.
        new_tools: if q.previously_planned { vec![] } else { vec![exposed] },
    };
    let request = RequestFacts {
        purpose: "(policy explain)".into(),
        constraints: constraints::exact(&q.arguments),
        approval: q.approved_by_group.clone().map(|g| ApprovalFacts { granted: true, group: g, approver: "(explain)".into() }).unwrap_or_default(),
        taint: TaintFacts {
            evaluated: true,
            sensitive_from_untrusted: q.tainted,
            destination_in_text: q.destination_in_text,
            text_from_third_party: q.text_from_third_party,
            third_party_arguments: Vec::new(),
            sources: Vec::new(),
            unverifiable: Vec::new(),
        },
        baseline: BaselineFacts {
            evaluated: true,
            transition_known: !q.unknown_transition,
            score: q.baseline_score,
            strong_evidence: q.strong_evidence,
            explanation: "(policy explain)".into(),
        },
        break_glass: (action == Action::BreakGlass).then(|| q.justification.clone()),
        confirmed_by_end_user: q.confirmed_by_end_user,
        end_user: EndUserFacts { client_trusted: q.client_trusted },
        ..Default::default()
    };
    let time = TimeFacts::at(q.now);
    // `delegate`: to an agent of the same team, one level deep.
    let delegation = crate::policy::DelegationFacts { child: q.agent.name.clone(), child_team: q.agent.team.clone(), depth: 1 };
    let decision = policy.decide(&DecisionInput { action, agent: &agent_facts, tool: &q.tool, time, task: &task, request: (action != Action::BeginTask).then_some(&request), delegation: (action == Action::Delegate).then_some(&delegation) });
    // The gateway's own verdict function, so the answer is what it would do.
    let drifted = action != Action::BeginTask && crate::baseline::profile::drifted(&q.agent, q.baseline_score, q.strong_evidence);
    let drift = drifted.then(|| format!("score {} at the agent's drift_threshold, with strong evidence", q.baseline_score));
    let (word, reason, kind) = match policy.verdict(drift.as_deref(), &decision) {
        Verdict::Quarantine { reason } => ("QUARANTINE", format!("the agent is quarantined and every task and token it holds is revoked ({reason})"), "quarantine"),
        Verdict::Outcome(Outcome::Allow) => ("ALLOW", String::new(), "allow"),
        Verdict::Outcome(Outcome::NeedsApproval { group }) => ("NEEDS APPROVAL", format!("a person of group `{group}` must approve"), "needs_approval"),
        Verdict::Outcome(Outcome::NeedsConfirmation { fallback }) => (
            "NEEDS END-USER CONFIRMATION",
            format!("the end user must confirm this exact request through the agent's MCP client; a client that cannot ask sends it to group `{fallback}` for approval"),
            "needs_confirmation",
        ),
        Verdict::Outcome(Outcome::Deny { reason, .. }) => ("DENY", reason, "deny"),
    };
    Judged { decision, kind, word, reason }
}

fn explain(a: ExplainArgs) -> Result<(), CliError> {
    let d = Deployment::load(&a.config).map_err(CliError::Config)?;
    let action: Action = a.action.parse().map_err(bad)?;
    let agent = super::find_agent(&d.agents, &d.config, &a.agent, super::AgentRef::Name)?;
    let (server, tool_name) = a.tool.split_once(crate::manifest::NAMESPACE_SEPARATOR).ok_or_else(|| bad(format!("tool `{}` must be server__tool", a.tool)))?;
    let spec = d
        .manifests
        .iter()
        .find(|(m, _)| m.name == server)
        .and_then(|(m, _)| m.tools.get(tool_name))
        .ok_or_else(|| bad(format!("`{}` is not a registered tool", a.tool)))?;
    let tool = ToolFacts::new(server, spec);
    let arguments: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&a.args).map_err(|e| bad(format!("--args must be a JSON object: {e}")))?;
    let now = match &a.at {
        Some(t) => unix_of(t).ok_or_else(|| bad(format!("--at `{t}`: use e.g. 2026-11-25T22:00:00Z")))?,
        None => SystemClock.now_unix(),
    };
    let issuer = match &a.issuer {
        Some(i) => i.clone(),
        None => d.config.identity.issuers.first().map(|i| i.name.clone()).unwrap_or_default(),
    };
    let client_trusted = a.end_user_client_trusted.unwrap_or_else(|| d.agents.end_user(&agent.id).client_trusted);
    let question = Question {
        action,
        agent: agent.clone(),
        issuer: issuer.clone(),
        quarantined: a.quarantined,
        client_trusted,
        tool: tool.clone(),
        arguments,
        now,
        in_plan: !a.not_in_plan,
        plan: vec![a.tool.clone()],
        after_untrusted_read: a.after_untrusted_read,
        previously_planned: a.previously_planned,
        approved_by_group: a.approved_by_group.clone(),
        tainted: a.tainted,
        destination_in_text: a.destination_in_text,
        text_from_third_party: a.text_from_third_party,
        unknown_transition: a.unknown_transition,
        baseline_score: a.baseline_score,
        strong_evidence: a.strong_evidence,
        confirmed_by_end_user: a.confirmed_by_end_user,
        justification: a.justification.clone(),
    };
    let Judged { decision, kind, word, reason } = judge(&d.policy, &question);
    let time = TimeFacts::at(now);
    let other_action = match action {
        Action::BeginTask => "request",
        Action::Request | Action::BreakGlass | Action::Delegate => "begin-task",
    };
    if a.json {
        outln!(
            "{}",
            json!({
                "decision": kind,
                "action": action.as_str(),
                "reason": reason,
                "approval_group": match &decision.outcome {
                    Outcome::NeedsApproval { group } => Some(group.clone()),
                    Outcome::NeedsConfirmation { fallback } => Some(fallback.clone()),
                    _ => None,
                },
                "policies": decision.determining.iter().map(|p| json!({"id": p.id, "file": p.file, "line": p.line, "effect": p.effect, "reason": p.reason, "approval": p.approval})).collect::<Vec<_>>(),
                "errors": decision.errors,
                "end_user_client_trusted": client_trusted,
                "at": rfc3339(now),
            })
        );
        return Ok(());
    }
    outln!("decision for action {}: {word}{}", action.as_str(), if reason.is_empty() { String::new() } else { format!(": {reason}") });
    if decision.determining.is_empty() {
        outln!("  no policy applied (default deny)");
    }
    for p in &decision.determining {
        let extra = match (&p.reason, &p.approval) {
            (Some(r), _) => format!(" — {r}"),
            (None, Some(g)) => format!(" — needs approval by `{g}`"),
            _ => String::new(),
        };
        outln!("  {} {} ({}:{}){extra}", p.effect, p.id, p.file.display(), p.line);
    }
    for e in &decision.errors {
        outln!("  error: {e}");
    }
    outln!(
        "input: action {} · agent {} (team {}, issuer {issuer}, end-user client {}) · tool {} (risk {}, class {}, env {}) · {} {} {:02}:{:02} UTC",
        action.as_str(),
        agent.name,
        agent.team,
        if client_trusted { "trusted" } else { "not trusted" },
        tool.exposed,
        spec.risk.as_str(),
        spec.resource_class,
        spec.environment,
        rfc3339(now),
        time.weekday(),
        time.hour,
        time.minute
    );
    outln!("(checked action {}; an agent plans with begin-task before it requests: try --action {other_action} too)", action.as_str());
    Ok(())
}

/// Tools that agent files allow but that no policy lets any of those agents
/// plan (`begin-task`) or then request with plain facts (no taint, no
/// drift): registered and listed, yet unusable. One warning each, naming
/// the action that is missing and how to see it. Needs-approval and
/// needs-confirmation count as usable: a person can let them through.
pub(crate) fn unusable_tools(d: &Deployment) -> Vec<String> {
    let mut warnings = Vec::new();
    let issuer = d.config.identity.issuers.first().map(|i| i.name.clone()).unwrap_or_default();
    // Policies may depend on the time (business hours): a tool counts as
    // usable if it is at some time, so try now and a weekday morning and
    // afternoon (Wednesday 2024-01-03, 10:00 and 14:00 UTC).
    let times = [SystemClock.now_unix(), 1_704_276_000, 1_704_290_400].map(TimeFacts::at);
    for (manifest, enabled) in &d.manifests {
        if !enabled {
            continue;
        }
        for (tool_name, spec) in &manifest.tools {
            let exposed = manifest.exposed_name(tool_name);
            let agents: Vec<_> = d.agents.iter().filter(|a| a.may_use(&exposed)).collect();
            if agents.is_empty() {
                continue;
            }
            let tool = ToolFacts::new(&manifest.name, spec);
            let usable = |action: Action| {
                agents.iter().flat_map(|agent| times.iter().map(move |time| (agent, *time))).any(|(agent, time)| {
                    let agent_facts = AgentFacts { agent: (*agent).clone(), issuer: issuer.clone(), claims: Default::default(), quarantined: false };
                    let task = TaskFacts {
                        id: "task_check".into(),
                        objective: "(check)".into(),
                        phase: "check".into(),
                        phase_index: 0,
                        phase_count: 1,
                        in_phase_plan: true,
                        plan: vec![exposed.clone()],
                        after_untrusted_read: false,
                        new_tools: if action == Action::BeginTask { vec![exposed.clone()] } else { vec![] },
                    };
                    let request = RequestFacts { purpose: "(check)".into(), ..Default::default() };
                    let input = DecisionInput { action, agent: &agent_facts, tool: &tool, time, task: &task, request: (action != Action::BeginTask).then_some(&request), delegation: None };
                    !matches!(d.policy.decide(&input).outcome, Outcome::Deny { .. })
                })
            };
            let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
            let missing = if !usable(Action::BeginTask) {
                Some("begin-task")
            } else if !usable(Action::Request) {
                Some("request")
            } else {
                None
            };
            if let Some(action) = missing {
                let effect = if action == "begin-task" { "every task naming it is refused" } else { "a task may plan it, but every request for it is refused (break-glass aside)" };
                warnings.push(format!(
                    "tool `{exposed}` is allowed to {} but no policy permits action {action} for it: {effect}; if that is not meant, add a permit (see `jitgate policy explain --action {action} --agent {} --tool {exposed}`)",
                    names.join(", "),
                    names[0]
                ));
            }
        }
    }
    warnings
}
