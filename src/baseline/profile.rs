//! An agent's baseline and how unusual one request is against it.
//!
//! The declared baseline is the agent file's `[baseline]`; the learned one
//! is `NAME.baseline.toml` beside it, written by `jitgate baseline learn`
//! from the recorded intents and reviewed like any other file. When a
//! learned profile exists, its transitions are what "known" means (together
//! with any declared ones); otherwise declared transitions, or, if none are
//! declared, any transition within the task's plan.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::agent::Agent;
use crate::manifest::Risk;
use crate::policy::TimeFacts;
use crate::store::Intent;
use crate::token::{ArgConstraints, Constraint};

/// File name suffix of learned profiles.
pub use crate::agent::LEARNED_SUFFIX;

/// A learned profile, as written by `jitgate baseline learn`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedProfile {
    /// The agent's name.
    pub agent: String,
    pub learned_at: String,
    /// Start of the history it was learned from.
    pub since: String,
    pub intents: u64,
    pub tasks: u64,
    /// The busiest minute seen.
    pub max_requests_per_minute: u32,
    /// UTC hours with activity.
    pub hours: Vec<u8>,
    #[serde(default)]
    pub tools: Vec<LearnedTool>,
    #[serde(default)]
    pub transitions: Vec<LearnedTransition>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedTool {
    pub name: String,
    pub count: u64,
    /// Argument shapes seen (names and constraint kinds).
    pub argument_shapes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedTransition {
    pub from: String,
    pub to: String,
    pub count: u64,
}

impl LearnedProfile {
    /// Learn from an agent's intents (oldest first).
    pub fn learn(agent: &str, intents: &[Intent], learned_at: &str, since: &str) -> Self {
        let mut tools: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
        let mut transitions: BTreeMap<(String, String), u64> = BTreeMap::new();
        // Transitions follow the agent's calls in order, across tasks, as the
        // gateway judges them.
        let mut last: Option<&str> = None;
        let mut tasks: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut per_minute: HashMap<i64, u32> = HashMap::new();
        let mut hours: Vec<u8> = Vec::new();
        for i in intents {
            let entry = tools.entry(i.tool.clone()).or_default();
            entry.0 += 1;
            if !entry.1.contains(&i.shape) {
                entry.1.push(i.shape.clone());
            }
            if let Some(prev) = last.replace(&i.tool) {
                *transitions.entry((prev.to_owned(), i.tool.clone())).or_default() += 1;
            }
            tasks.insert(&i.task);
            *per_minute.entry(i.at.div_euclid(60)).or_default() += 1;
            let hour = u8::try_from(TimeFacts::at(i.at).hour).unwrap_or(0);
            if !hours.contains(&hour) {
                hours.push(hour);
            }
        }
        hours.sort_unstable();
        Self {
            agent: agent.to_owned(),
            learned_at: learned_at.to_owned(),
            since: since.to_owned(),
            intents: intents.len() as u64,
            tasks: tasks.len() as u64,
            max_requests_per_minute: per_minute.values().copied().max().unwrap_or(0),
            hours,
            tools: tools.into_iter().map(|(name, (count, mut shapes))| {
                shapes.sort();
                LearnedTool { name, count, argument_shapes: shapes }
            }).collect(),
            transitions: transitions.into_iter().map(|((from, to), count)| LearnedTransition { from, to, count }).collect(),
        }
    }

    /// Load `DIR/NAME.baseline.toml` if it exists.
    pub fn load(dir: &Path, agent_name: &str) -> Result<Option<Self>, String> {
        let path = dir.join(format!("{agent_name}{LEARNED_SUFFIX}"));
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map(Some).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// The argument shape of a request: names and constraint kinds, sorted.
pub fn shape_of(constraints: &ArgConstraints) -> String {
    constraints
        .iter()
        .map(|(name, c)| {
            let kind = match c {
                Constraint::Eq(_) => "eq",
                Constraint::Prefix(_) => "prefix",
                Constraint::OneOf(_) => "one_of",
                Constraint::Range { .. } => "range",
                Constraint::Schema(_) => "schema",
            };
            format!("{name}:{kind}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// How unusual one request is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assessment {
    pub transition_known: bool,
    /// 0 (usual) .. 100 (never seen).
    pub score: i64,
    pub explanation: String,
    /// Evidence an honest agent does not produce, whatever its task: a burst
    /// of requests over its limit. Unusual tools, chains, shapes and hours
    /// are plausible for new legitimate work and never count here.
    pub strong_evidence: bool,
    /// The score reached the agent's drift threshold with strong evidence:
    /// the agent is quarantined. Without strong evidence a high score goes
    /// to policy (the shipped policies send it to a person), never to
    /// quarantine.
    pub drift: bool,
    /// The request rate judged within its limit: this limit. The grant
    /// holds the request to it with the exact count (see
    /// `crate::store::Grant::rate_within`); `None` when no limit applies or
    /// the rate was already over it.
    pub rate_within: Option<u32>,
}

/// The agent's previous call, whatever the agent says it follows.
#[derive(Debug, Clone)]
pub struct Previous {
    pub tool: String,
    /// Was it made in the same task?
    pub same_task: bool,
    /// Did that tool's output count as untrusted?
    pub untrusted_output: bool,
}

/// What the assessment looks at.
pub struct Request<'a> {
    pub tool: &'a str,
    pub risk: Risk,
    pub shape: &'a str,
    /// The agent's previous call (in any of its tasks); None for its first.
    pub previous: Option<&'a Previous>,
    pub plan: &'a [String],
    /// The task's current phase.
    pub phase: &'a str,
    pub time: TimeFacts,
    /// Requests by this agent in the last minute, this one included.
    pub rate: u32,
    pub tainted: bool,
    /// Tools whose untrusted output the agent read within the taint
    /// horizon (from its taint ledger), in this task or an earlier one.
    pub earlier_untrusted: &'a [String],
}

/// Score a request against the declared and learned baselines.
pub fn assess(agent: &Agent, learned: Option<&LearnedProfile>, r: &Request<'_>) -> Assessment {
    let declared = &agent.baseline;
    let mut score = 0i64;
    let mut why: Vec<String> = Vec::new();
    let usual_tool = if let Some(l) = learned {
        l.tools.iter().any(|t| t.name == r.tool) || declared.tools.iter().any(|t| t == r.tool)
    } else if declared.tools.is_empty() {
        agent.may_use(r.tool)
    } else {
        declared.tools.iter().any(|t| t == r.tool)
    };
    if !usual_tool {
        score += 30;
        why.push(format!("`{}` is not among the tools this agent normally uses", r.tool));
    }
    // Is `from -> r.tool` a chain this agent's baseline knows?
    let known = |from: &str, same_task: bool, untrusted_output: bool| {
        let declared_pair = declared.transitions.iter().any(|(a, b)| a == from && b == r.tool);
        match learned {
            Some(l) => declared_pair || l.transitions.iter().any(|t| t.from == from && t.to == r.tool),
            // No transitions declared: any chain within the task's plan is
            // usual. Across a task boundary only when the last call read
            // nothing untrusted: a new plan right after untrusted content
            // is exactly how a hijacked agent would widen its tools.
            None if declared.transitions.is_empty() => {
                let in_plan = r.plan.iter().any(|t| t == r.tool);
                in_plan && if same_task { r.plan.iter().any(|t| t == from) } else { !untrusted_output }
            }
            None => declared_pair,
        }
    };
    let mut transition_known = r.previous.is_none_or(|prev| known(&prev.tool, prev.same_task, prev.untrusted_output));
    if !transition_known {
        score += if r.risk >= Risk::High { 60 } else { 40 };
        let across = if r.previous.is_some_and(|p| !p.same_task) { " (across tasks)" } else { "" };
        why.push(format!("the transition {} -> {}{across} is not in the baseline", r.previous.map(|p| p.tool.as_str()).unwrap_or("(start)"), r.tool));
    }
    // A harmless call in between does not launder a chain: every untrusted
    // read the agent made within the taint horizon counts as a link into a
    // high-risk tool, as if it had come just before (fetch_page, read_note,
    // send_message is judged as fetch_page -> send_message too).
    if r.risk >= Risk::High {
        let last = r.previous.map(|p| p.tool.as_str());
        for read in r.earlier_untrusted.iter().filter(|t| Some(t.as_str()) != last && t.as_str() != r.tool) {
            if !known(read, true, true) {
                if transition_known {
                    score += 60;
                }
                transition_known = false;
                why.push(format!("an earlier read of untrusted content by {read} -> {} is not in the baseline", r.tool));
            }
        }
    }
    if !declared.phases.is_empty() && !declared.phases.iter().any(|p| p == r.phase) {
        score += 10;
        why.push(format!("phase `{}` is not one this agent normally uses", r.phase));
    }
    if let Some(l) = learned {
        let shape_known = l.tools.iter().any(|t| t.name == r.tool && t.argument_shapes.iter().any(|s| s == r.shape));
        if usual_tool && !shape_known {
            score += 10;
            why.push(format!("new argument shape `{}` for `{}`", r.shape, r.tool));
        }
    }
    let hour = u8::try_from(r.time.hour).unwrap_or(0);
    let outside_hours = match (declared.active_hours, learned) {
        (Some((start, end)), _) => !in_window(hour, start, end),
        (None, Some(l)) if !l.hours.is_empty() => !l.hours.contains(&hour),
        _ => false,
    };
    if outside_hours {
        score += 20;
        why.push(format!("outside active hours ({hour}:00 UTC)"));
    }
    let limit = declared.max_requests_per_minute.or_else(|| learned.map(|l| l.max_requests_per_minute.saturating_mul(2).max(10)));
    let burst = limit.is_some_and(|l| r.rate > l);
    if let Some(limit) = limit.filter(|l| r.rate > *l) {
        score += 40;
        why.push(format!("{} requests in the last minute (usual at most {limit})", r.rate));
    }
    if r.tainted {
        score += 20;
        why.push("a sensitive argument carries a value from untrusted output".into());
    }
    let score = score.min(100);
    Assessment {
        transition_known,
        score,
        explanation: if why.is_empty() { "usual".into() } else { why.join("; ") },
        strong_evidence: burst,
        drift: drifted(agent, score, burst),
        rate_within: limit.filter(|_| !burst),
    }
}

/// Quarantine needs both a score at the agent's `drift_threshold` and strong
/// evidence; the gateway and `jitgate policy explain` both decide with this.
pub fn drifted(agent: &Agent, score: i64, strong_evidence: bool) -> bool {
    strong_evidence && agent.baseline.drift_threshold.is_some_and(|t| score >= i64::from(t))
}

fn in_window(hour: u8, start: u8, end: u8) -> bool {
    if start <= end { hour >= start && hour < end } else { hour >= start || hour < end }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{DeclaredBaseline, ToolPattern};

    fn agent(baseline: DeclaredBaseline) -> Agent {
        Agent {
            name: "triage".into(),
            id: "spiffe://x/agent/triage".into(),
            team: "support".into(),
            environment: "development".into(),
            description: String::new(),
            allowed_tools: vec![ToolPattern::Server("ws".into())],
            attributes: Default::default(),
            baseline,
            issuers: vec![],
            source: Default::default(),
        }
    }

    fn intent(task: &str, tool: &str, at: i64) -> Intent {
        Intent { jti: format!("{task}{at}"), agent: "a".into(), task: task.into(), tool: tool.into(), shape: "to:eq".into(), at }
    }

    /// A previous call in the same task, of a tool with trusted output.
    fn same_task(tool: &str) -> &'static Previous {
        Box::leak(Box::new(Previous { tool: tool.into(), same_task: true, untrusted_output: false }))
    }

    fn req<'a>(tool: &'a str, previous: Option<&'a str>, plan: &'a [String], hour: i64) -> Request<'a> {
        let previous = previous.map(same_task);
        Request { tool, risk: Risk::High, shape: "to:eq", previous, plan, phase: "reply", time: TimeFacts::at(hour * 3600), rate: 1, tainted: false, earlier_untrusted: &[] }
    }

    #[test]
    fn learning_counts_transitions_across_tasks_shapes_hours_and_rates() {
        let intents = vec![intent("t1", "ws__read_inbox", 9 * 3600), intent("t1", "ws__send", 9 * 3600 + 5), intent("t2", "ws__read_inbox", 10 * 3600), intent("t2", "ws__send", 10 * 3600 + 1)];
        let p = LearnedProfile::learn("triage", &intents, "now", "then");
        assert_eq!((p.intents, p.tasks, p.hours.clone()), (4, 2, vec![9, 10]));
        assert_eq!(
            p.transitions,
            vec![
                LearnedTransition { from: "ws__read_inbox".into(), to: "ws__send".into(), count: 2 },
                LearnedTransition { from: "ws__send".into(), to: "ws__read_inbox".into(), count: 1 },
            ]
        );
        assert_eq!(p.max_requests_per_minute, 2);
        let text = toml::to_string(&p).unwrap();
        assert_eq!(toml::from_str::<LearnedProfile>(&text).unwrap(), p);
    }

    #[test]
    fn unknown_transitions_hours_bursts_and_taint_raise_the_score() {
        let plan = vec!["ws__read_inbox".to_owned(), "ws__send".to_owned()];
        let declared = agent(DeclaredBaseline {
            transitions: vec![("ws__read_inbox".into(), "ws__send".into())],
            active_hours: Some((7, 19)),
            max_requests_per_minute: Some(5),
            drift_threshold: Some(90),
            ..Default::default()
        });
        let usual = assess(&declared, None, &req("ws__send", Some("ws__read_inbox"), &plan, 9));
        assert_eq!((usual.transition_known, usual.score, usual.drift), (true, 0, false));
        assert_eq!(usual.explanation, "usual");
        let odd = assess(&declared, None, &req("ws__send", Some("ws__send"), &plan, 22));
        assert!(!odd.transition_known);
        assert_eq!(odd.score, 80, "{}", odd.explanation);
        let mut odd_phase = agent(DeclaredBaseline { phases: vec!["read".into()], ..Default::default() });
        odd_phase.baseline.transitions.clear();
        let r = assess(&odd_phase, None, &req("ws__send", Some("ws__read_inbox"), &plan, 9));
        assert_eq!(r.score, 10, "{}", r.explanation);
        let mut burst = req("ws__send", Some("ws__send"), &plan, 22);
        burst.rate = 50;
        let drift = assess(&declared, None, &burst);
        assert_eq!((drift.score, drift.strong_evidence, drift.drift), (100, true, true));
        // Unusual but plausible: a tool the agent does not normally use, by an
        // unknown chain into a high-risk tool, at an odd hour. The score
        // reaches the threshold, but without strong evidence it is a question
        // for a person, never a quarantine.
        let mut unusual = agent(DeclaredBaseline { tools: vec!["ws__read_inbox".into()], ..declared.baseline.clone() });
        unusual.baseline.transitions = vec![("ws__read_inbox".into(), "ws__send".into())];
        let r = assess(&unusual, None, &req("ws__share", Some("ws__read_inbox"), &plan, 22));
        assert!(r.score >= 90, "{}", r.explanation);
        assert_eq!((r.strong_evidence, r.drift), (false, false), "{}", r.explanation);
        // With nothing declared, any transition within the plan is known.
        let open = agent(DeclaredBaseline::default());
        assert!(assess(&open, None, &req("ws__send", Some("ws__read_inbox"), &plan, 3)).transition_known);
        let learned = LearnedProfile::learn("triage", &[intent("t", "ws__read_inbox", 0), intent("t", "ws__send", 1)], "", "");
        let r = assess(&open, Some(&learned), &req("ws__read_inbox", Some("ws__send"), &plan, 0));
        assert!(!r.transition_known, "learned transitions are directional");
        let mut tainted = req("ws__send", Some("ws__read_inbox"), &plan, 0);
        tainted.tainted = true;
        assert_eq!(assess(&open, Some(&learned), &tainted).score, 20);
    }

    #[test]
    fn a_new_task_right_after_untrusted_content_is_an_unknown_transition() {
        let open = agent(DeclaredBaseline::default());
        let plan = vec!["ws__send".to_owned()];
        let from = |untrusted_output: bool| Previous { tool: "ws__fetch_page".into(), same_task: false, untrusted_output };
        let after = |p: &Previous| assess(&open, None, &Request { previous: Some(p), ..req("ws__send", None, &plan, 9) });
        // A fresh plan naming only the sink, just after a page was read: unknown.
        let r = after(&from(true));
        assert!(!r.transition_known && r.explanation.contains("across tasks"), "{}", r.explanation);
        // After a trusted read in an earlier task, the new plan is usual.
        assert!(after(&from(false)).transition_known);
        // Declared transitions hold across tasks as within them.
        let declared = agent(DeclaredBaseline { transitions: vec![("ws__fetch_page".into(), "ws__send".into())], ..Default::default() });
        assert!(assess(&declared, None, &Request { previous: Some(&from(true)), ..req("ws__send", None, &plan, 9) }).transition_known);
    }

    #[test]
    fn hour_windows_wrap_around_midnight() {
        assert!(in_window(22, 20, 6) && in_window(3, 20, 6) && !in_window(12, 20, 6));
    }

    #[test]
    fn an_untrusted_read_earlier_in_the_work_counts_as_a_link_into_a_high_risk_tool() {
        // Triage knows fetch_page -> read_note and read_note -> send, not
        // fetch_page -> send: one harmless read in between must not launder it.
        let declared = agent(DeclaredBaseline {
            transitions: vec![("ws__fetch_page".into(), "ws__read_note".into()), ("ws__read_note".into(), "ws__send".into()), ("ws__read_inbox".into(), "ws__send".into())],
            ..Default::default()
        });
        let plan = vec!["ws__fetch_page".to_owned(), "ws__read_note".to_owned(), "ws__send".to_owned()];
        let fetched = vec!["ws__fetch_page".to_owned()];
        let laundered = Request { earlier_untrusted: &fetched, ..req("ws__send", Some("ws__read_note"), &plan, 9) };
        let a = assess(&declared, None, &laundered);
        assert!(!a.transition_known && a.explanation.contains("ws__fetch_page -> ws__send"), "{a:?}");
        // The same chain after reading only the inbox, which the baseline knows into a send: usual.
        let inbox = vec!["ws__read_inbox".to_owned()];
        assert!(assess(&declared, None, &Request { earlier_untrusted: &inbox, ..req("ws__send", Some("ws__read_note"), &plan, 9) }).transition_known);
        // Nothing untrusted read: the last link alone decides, as before.
        assert!(assess(&declared, None, &req("ws__send", Some("ws__read_note"), &plan, 9)).transition_known);
        // A low-risk tool after the page is not a sink: not judged this way.
        let low = Request { risk: Risk::Low, earlier_untrusted: &fetched, ..req("ws__send", Some("ws__read_note"), &plan, 9) };
        assert!(assess(&declared, None, &low).transition_known);
        // No declared transitions: a read in the task's plan is part of the plan's chain.
        let open = agent(DeclaredBaseline::default());
        assert!(assess(&open, None, &laundered).transition_known);
        let off_plan = vec!["ws__fetch_other".to_owned()];
        assert!(!assess(&open, None, &Request { earlier_untrusted: &off_plan, ..req("ws__send", Some("ws__read_note"), &plan, 9) }).transition_known);
    }
}
