//! Stage 5: the request as a link of the agent's chain, scored against its baselines.

#[allow(unused_imports)]
use super::*;

/// Stage 5: the request as a link of the chain that really happened (the
/// agent's last call, in this task or an earlier one; `follows` is
/// recorded, never trusted), scored against the baselines.
/// `learned` is the agent's learned baseline, if any; `untrusted_output`
/// says which tools' output is untrusted (the manifests).
pub(in crate::gateway::meta) fn judge_baseline(
    agent: &crate::agent::Agent,
    learned: Option<&profile::LearnedProfile>,
    untrusted_output: &dyn Fn(&str) -> bool,
    asked: &Asked,
    checked: &Checked,
    tainted: bool,
) -> profile::Assessment {
    let previous = checked.last_call.as_ref().map(|c| profile::Previous {
        tool: c.tool.clone(),
        same_task: c.task == checked.task.id,
        untrusted_output: untrusted_output(&c.tool),
    });
    let shape = profile::shape_of(&checked.constraints);
    let mut plan = decide::plan_tools(&checked.task.phases);
    plan.extend(checked.plan_above.iter().cloned());
    plan.sort();
    plan.dedup();
    let earlier_untrusted = checked.ledger.untrusted_tools();
    let assessment = profile::assess(
        agent,
        learned,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::meta::request::fixture::{NOW, agent, checked_send};

    /// The send, right after a call of `ws__fetch_page` in `task`.
    fn after_fetch(task: &str, untrusted: bool) -> profile::Assessment {
        let (asked, mut checked) = checked_send(json!({"to": "a@example.test"}));
        checked.last_call = Some(crate::store::Call { jti: "jti_fetch".into(), task: task.into(), tool: "ws__fetch_page".into(), at: NOW - 5 });
        let untrusted_output = move |tool: &str| untrusted && tool == "ws__fetch_page";
        judge_baseline(&agent(), None, &untrusted_output, &asked, &checked, false)
    }

    #[test]
    fn a_new_plan_right_after_untrusted_content_is_an_unknown_chain() {
        // Across tasks, after a read of untrusted output: a hijacked agent
        // widening its tools looks exactly like this.
        let a = after_fetch("task_0", true);
        assert!(!a.transition_known && a.score >= 60, "{a:?}");
        assert!(a.explanation.contains("ws__fetch_page -> ws__send_message (across tasks)"), "{}", a.explanation);
        // The same chain after a trusted read is usual.
        let a = after_fetch("task_0", false);
        assert!(a.transition_known && a.score == 0, "{a:?}");
    }

    #[test]
    fn the_first_call_of_an_allowed_tool_is_usual() {
        let (asked, checked) = checked_send(json!({"to": "a@example.test"}));
        let a = judge_baseline(&agent(), None, &|_: &str| false, &asked, &checked, false);
        assert_eq!((a.transition_known, a.score), (true, 0), "{a:?}");
    }
}
