//! The invariants checked before policy: they are the agent's own declaration
//! (its task plan) and the platform team's outer bound (the agent file's
//! `allowed_tools`), and no policy, approval or break-glass widens them.
//!
//! A plan may only name registered tools the agent may use; a request must
//! name a tool of the current phase's plan. A violation names the rule and,
//! where useful, what would be allowed.

use crate::agent::Agent;
use crate::store::{Phase, Task};

/// The outcome of an invariant check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny { rule: &'static str, reason: String },
}

/// May `agent` open a task with this plan? Every tool in the plan must be
/// registered and one the agent may use.
pub fn decide_begin_task(agent: &Agent, phases: &[Phase], is_registered: impl Fn(&str) -> bool) -> Verdict {
    let mut bad: Vec<&str> = Vec::new();
    for tool in phases.iter().flat_map(|p| p.tools.iter()) {
        if (!is_registered(tool) || !agent.may_use(tool)) && !bad.contains(&tool.as_str()) {
            bad.push(tool);
        }
    }
    if bad.is_empty() {
        Verdict::Allow
    } else {
        Verdict::Deny {
            rule: "plan-uses-allowed-tools",
            reason: format!(
                "the plan names tools this agent may not use or that are not registered: {}; plan only with tools from tools/list",
                bad.join(", ")
            ),
        }
    }
}

/// May `agent` have a token for `tool` in the task's current phase?
pub fn decide_request(agent: &Agent, task: &Task, tool: &str) -> Verdict {
    if !agent.may_use(tool) {
        return Verdict::Deny { rule: "agent-allowed-tools", reason: format!("agent `{}` may not use `{tool}`", agent.name) };
    }
    let Some(phase) = task.phase() else {
        return Verdict::Deny { rule: "phase-plan", reason: "the task has no current phase".into() };
    };
    if phase.tools.iter().any(|t| t == tool) {
        return Verdict::Allow;
    }
    let later = task.phases.iter().skip(task.current_phase + 1).find(|p| p.tools.iter().any(|t| t == tool));
    let hint = match later {
        Some(p) => format!("it is planned for phase `{}`: finish this phase, then call jit_next_phase", p.name),
        None => "no phase of this task plans it; begin a new task whose plan includes it".into(),
    };
    Verdict::Deny {
        rule: "phase-plan",
        reason: format!("`{tool}` is not in the plan of the current phase `{}` (which allows: {}); {hint}", phase.name, phase.tools.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::ToolPattern;
    use crate::store::TaskState;

    fn agent() -> Agent {
        Agent {
            name: "triage".into(),
            id: "spiffe://x/agent/triage".into(),
            team: "support".into(),
            environment: "dev".into(),
            description: String::new(),
            allowed_tools: vec![ToolPattern::Exact("ws__read".into()), ToolPattern::Exact("ws__send".into())],
            attributes: Default::default(),
            baseline: Default::default(),
            issuers: vec![],
            source: Default::default(),
        }
    }

    fn task(current: usize) -> Task {
        Task {
            id: "t".into(),
            agent: "a".into(),
            sid: "s".into(),
            objective: "o".into(),
            phases: vec![Phase { name: "read".into(), tools: vec!["ws__read".into()] }, Phase { name: "send".into(), tools: vec!["ws__send".into()] }],
            current_phase: current,
            state: TaskState::Active,
            created_at: 0,
            expires_at: 10,
            end_reason: None,
        }
    }

    #[test]
    fn request_must_fit_the_current_phase_and_the_agent() {
        assert_eq!(decide_request(&agent(), &task(0), "ws__read"), Verdict::Allow);
        let Verdict::Deny { rule, reason } = decide_request(&agent(), &task(0), "ws__send") else { panic!() };
        assert_eq!(rule, "phase-plan");
        assert!(reason.contains("phase `send`") && reason.contains("jit_next_phase"), "{reason}");
        assert_eq!(decide_request(&agent(), &task(1), "ws__send"), Verdict::Allow);
        assert!(matches!(decide_request(&agent(), &task(0), "ws__delete"), Verdict::Deny { rule: "agent-allowed-tools", .. }));
    }

    #[test]
    fn plan_may_only_name_allowed_registered_tools() {
        let phases = task(0).phases;
        assert_eq!(decide_begin_task(&agent(), &phases, |_| true), Verdict::Allow);
        let mut bad = phases.clone();
        bad[1].tools.push("ws__delete".into());
        assert!(matches!(decide_begin_task(&agent(), &bad, |_| true), Verdict::Deny { reason, .. } if reason.contains("ws__delete")));
        assert!(matches!(decide_begin_task(&agent(), &phases, |t| t != "ws__send"), Verdict::Deny { .. }));
    }
}
