//! Stage 5: the request as a link of the agent's chain, scored against its baselines.

#[allow(unused_imports)]
use super::*;

/// Stage 5: the request as a link of the chain that really happened (the
/// agent's last call, in this task or an earlier one; `follows` is
/// recorded, never trusted), scored against the baselines.
pub(in crate::gateway::meta) fn judge_baseline(shared: &crate::gateway::Shared, agent: &VerifiedAgent, asked: &Asked, checked: &Checked, tainted: bool) -> profile::Assessment {
    let previous = checked.last_call.as_ref().map(|c| profile::Previous {
        tool: c.tool.clone(),
        same_task: c.task == checked.task.id,
        untrusted_output: decide::untrusted_output(shared, &c.tool),
    });
    let shape = profile::shape_of(&checked.constraints);
    let plan = decide::plan_tools(&checked.task.phases);
    let earlier_untrusted = checked.ledger.untrusted_tools();
    let assessment = profile::assess(
        &agent.agent,
        shared.learned.get(&agent.agent.id),
        &profile::Request {
            tool: &asked.tool,
            risk: checked.tool.spec.risk,
            shape: &shape,
            previous: previous.as_ref(),
            plan: &plan,
            phase: checked.task.phase().map(|p| p.name.as_str()).unwrap_or(""),
            time: TimeFacts::at(asked.now),
            rate: checked.rate,
            tainted,
            earlier_untrusted: &earlier_untrusted,
        },
    );
    if assessment.score > 0 {
        tracing::info!(task = %checked.task.id, tool = %crate::telemetry::Clean(&asked.tool), score = assessment.score, explanation = %crate::telemetry::Clean(&assessment.explanation), "baseline deviation");
    }
    assessment
}
