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
    let run = move || engine.decide(&DecisionInput { action, agent: &agent, tool: &tool, time, task: &task, request: Some(&request) });
    if inline {
        return run();
    }
    tokio::task::spawn_blocking(run).await.unwrap_or_else(|e| crate::policy::Decision {
        outcome: Outcome::Deny { policy: None, reason: "the policy decision failed; the request is denied".into() },
        determining: Vec::new(),
        errors: vec![e.to_string()],
    })
}
