//! Stage 6: the request's facts to policy, and policy's decision.

#[allow(unused_imports)]
use super::*;

/// Stage 6's input: the request as policy sees it.
pub(in crate::gateway::meta) fn request_facts(asked: &Asked, checked: &Checked, taint: &Taint, assessment: &profile::Assessment) -> RequestFacts {
    RequestFacts {
        purpose: asked.purpose.clone(),
        follows: asked.follows.clone(),
        constraints: checked.constraints.clone(),
        approval: checked
            .granted
            .as_ref()
            .map(|a| ApprovalFacts { granted: true, group: a.group.clone(), approver: a.decided_by.clone().unwrap_or_default() })
            .unwrap_or_default(),
        break_glass: asked.break_glass.clone(),
        break_glass_justification_tainted: taint.justification_tainted,
        baseline: BaselineFacts {
            evaluated: true,
            transition_known: assessment.transition_known,
            score: assessment.score,
            strong_evidence: assessment.strong_evidence,
            explanation: assessment.explanation.clone(),
        },
        taint: TaintFacts {
            evaluated: true,
            sensitive_from_untrusted: taint.verdict.tainted,
            destination_in_text: taint.destination_in_text,
            text_from_third_party: taint.text_from_third_party,
            third_party_arguments: taint.third_party_arguments.clone(),
            sources: taint.verdict.sources.iter().map(|s| s.call.clone()).collect(),
            unverifiable: taint.verdict.unverifiable.clone(),
        },
        ..Default::default()
    }
}

/// A delegated request is decided for its own agent and, with the same
/// facts, for every agent above it (authority only shrinks: the parent's
/// policy holds for what it delegated); the strictest decision stands
/// (deny, then a person's approval, then the end user's confirmation, then
/// allow). An agent above that is no longer registered denies.
#[allow(clippy::too_many_arguments)]
pub(in crate::gateway::meta) async fn decide_along_chain(
    engine: Arc<crate::policy::PolicyEngine>,
    action: Action,
    agents: Vec<Option<crate::policy::AgentFacts>>,
    tool: crate::policy::ToolFacts,
    time: TimeFacts,
    task: crate::policy::TaskFacts,
    request: RequestFacts,
) -> crate::policy::Decision {
    let strictness = |o: &Outcome| match o {
        Outcome::Deny { .. } => 3,
        Outcome::NeedsApproval { .. } => 2,
        Outcome::NeedsConfirmation { .. } => 1,
        Outcome::Allow => 0,
    };
    let mut strictest: Option<crate::policy::Decision> = None;
    for facts in agents {
        let Some(facts) = facts else {
            return crate::policy::Decision {
                outcome: Outcome::Deny { policy: None, reason: "an agent that delegated this task is no longer registered".into() },
                determining: Vec::new(),
                errors: Vec::new(),
            };
        };
        let d = decide_request(engine.clone(), action, facts, tool.clone(), time, task.clone(), request.clone()).await;
        if strictest.as_ref().is_none_or(|s| strictness(&d.outcome) > strictness(&s.outcome)) {
            strictest = Some(d);
        }
    }
    strictest.unwrap_or_else(|| crate::policy::Decision {
        outcome: Outcome::Deny { policy: None, reason: "no agent to decide for".into() },
        determining: Vec::new(),
        errors: Vec::new(),
    })
}

/// Policy sets up to this size are evaluated in place; larger ones (whose
/// unscoped policies can take milliseconds) on the blocking pool, so that
/// they do not stall the runtime's workers.
pub(in crate::gateway::meta) const INLINE_POLICY_LIMIT: usize = 64;

pub(in crate::gateway::meta) async fn decide_request(
    engine: Arc<crate::policy::PolicyEngine>,
    action: Action,
    agent: crate::policy::AgentFacts,
    tool: crate::policy::ToolFacts,
    time: TimeFacts,
    task: crate::policy::TaskFacts,
    request: RequestFacts,
) -> crate::policy::Decision {
    let inline = engine.len() <= INLINE_POLICY_LIMIT;
    let run = move || engine.decide(&DecisionInput { action, agent: &agent, tool: &tool, time, task: &task, request: Some(&request), delegation: None });
    if inline {
        return run();
    }
    tokio::task::spawn_blocking(run).await.unwrap_or_else(|e| crate::policy::Decision {
        outcome: Outcome::Deny { policy: None, reason: "the policy decision failed; the request is denied".into() },
        determining: Vec::new(),
        errors: vec![e.to_string()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::meta::request::fixture::{NOW, agent, approval, checked_send};

    fn taint(tainted: bool) -> Taint {
        Taint {
            verdict: crate::taint::TaintVerdict { tainted, unverifiable: vec!["to".into()], ..Default::default() },
            justification_tainted: false,
            destination_in_text: true,
            text_from_third_party: false,
            third_party_arguments: vec![],
        }
    }

    #[test]
    fn policy_sees_the_stages_findings_as_they_were_found() {
        let (asked, mut checked) = checked_send(json!({"to": "a@example.test", "body": "Hi"}));
        checked.granted = Some(approval(&checked, ApprovalState::Approved, "lead@example.test"));
        let assessment = profile::Assessment { score: 40, transition_known: false, explanation: "a tool this agent never used".into(), ..Default::default() };
        let facts = request_facts(&asked, &checked, &taint(true), &assessment);
        assert!(facts.taint.evaluated && facts.taint.sensitive_from_untrusted && facts.taint.destination_in_text);
        assert_eq!(facts.taint.unverifiable, vec!["to".to_owned()]);
        assert!(facts.baseline.evaluated && !facts.baseline.transition_known);
        assert_eq!((facts.baseline.score, facts.baseline.explanation.as_str()), (40, "a tool this agent never used"));
        assert!(facts.approval.granted);
        assert_eq!((facts.approval.group.as_str(), facts.approval.approver.as_str()), ("support-leads", "lead@example.test"));
        assert_eq!(facts.constraints, checked.constraints);
        assert_eq!(facts.purpose, "answer the customer");

        // Nothing found: nothing claimed.
        checked.granted = None;
        let facts = request_facts(&asked, &checked, &taint(false), &profile::Assessment::default());
        assert!(facts.taint.evaluated && !facts.taint.sensitive_from_untrusted);
        assert!(!facts.approval.granted && facts.approval.approver.is_empty());
    }

    const TAINTED_SENDS: &str = r#"
        permit(principal, action == Action::"Request", resource);
        @id("no-sends-from-untrusted")
        forbid(principal, action == Action::"Request", resource) when { context.taint.sensitive_from_untrusted };
    "#;

    /// `count` policy files: the one above and unrelated permits.
    fn engine(count: usize) -> Arc<crate::policy::PolicyEngine> {
        let mut sources = vec![(std::path::PathBuf::from("pol/sends.cedar"), TAINTED_SENDS.to_owned())];
        for i in 1..count {
            let other = format!("@id(\"other-{i}\")\npermit(principal, action == Action::\"Request\", resource) when {{ context.purpose == \"p{i}\" }};");
            sources.push((std::path::PathBuf::from(format!("pol/other-{i}.cedar")), other));
        }
        Arc::new(crate::policy::PolicyEngine::from_sources(std::path::Path::new("pol"), sources).unwrap_or_else(|e| panic!("{e}")))
    }

    async fn decide_send(engine: Arc<crate::policy::PolicyEngine>, tainted: bool) -> crate::policy::Decision {
        let (asked, checked) = checked_send(json!({"to": "a@example.test"}));
        let facts = request_facts(&asked, &checked, &taint(tainted), &profile::Assessment::default());
        let who = crate::policy::AgentFacts { agent: agent(), issuer: "dev".into(), claims: Default::default(), quarantined: false };
        let task = decide::task_facts(&checked.task, &asked.tool);
        decide_request(engine, Action::Request, who, checked.tool_facts.clone(), TimeFacts::at(NOW), task, facts).await
    }

    #[tokio::test]
    async fn the_decision_names_the_forbid_that_denied_and_allows_otherwise() {
        for count in [1, INLINE_POLICY_LIMIT + 5] {
            let engine = engine(count);
            assert_eq!(engine.len() > INLINE_POLICY_LIMIT, count > 1, "both the inline and the blocking-pool path are tried");
            let denied = decide_send(engine.clone(), true).await;
            match &denied.outcome {
                Outcome::Deny { policy, .. } => assert_eq!(policy.as_deref(), Some("no-sends-from-untrusted"), "{count} policies"),
                other => panic!("a tainted send was not denied with {count} policies: {other:?}"),
            }
            assert_eq!(decide_send(engine, false).await.outcome, Outcome::Allow, "{count} policies");
        }
    }
}
