//! Stage 7: the end user's answer, or a question to them.

#[allow(unused_imports)]
use super::*;

/// A person denied exactly this request earlier: final, with who and why.
pub(in crate::gateway::meta) fn approval_denied(a: &Approval) -> CallToolResult {
    refusal_result(
        "approval_denied",
        &format!(
            "a person ({}) denied approval {} for exactly this request: {}; do not retry it, change the plan or ask a human",
            a.decided_by.clone().unwrap_or_default(),
            a.id,
            a.note.clone().unwrap_or_default()
        ),
    )
}

/// How long a question stays answerable, and a decline stands.
pub(in crate::gateway::meta) fn answer_ttl(shared: &crate::gateway::Shared) -> i64 {
    i64::try_from(shared.config.approvals.pending_ttl.as_secs()).unwrap_or(900)
}

/// A decline stands for the agent's exact request (in any task) for
/// [`answer_ttl`], so a hijacked agent cannot wear its user down by asking
/// again and again.
pub(in crate::gateway::meta) async fn remember_decline(shared: &crate::gateway::Shared, agent: &VerifiedAgent, checked: &Checked, now: i64) {
    let (agent_id, task, digest, until) = (agent.agent.id.clone(), checked.task.id.clone(), checked.digest.clone(), now.saturating_add(answer_ttl(shared)));
    if let Err(e) = crate::store::run_blocking(&shared.store, move |s| s.record_end_user_decline(&agent_id, &task, &digest, now, until)).await.and_then(|r| r) {
        tracing::error!(error = %e, "could not remember the end user's decline");
    }
}

pub(in crate::gateway::meta) fn declined_by_end_user(tool: &str) -> CallToolResult {
    refusal_result(
        "declined_by_end_user",
        &format!("the end user did not confirm this call of `{tool}`; do not retry it. Ask the user what they want instead"),
    )
}

/// Stage: a 2026-07-28 retry may carry the end user's answer to jitgate's
/// question about exactly this request. True when it confirms; a declined
/// or foreign answer refuses the request.
pub(in crate::gateway::meta) async fn end_user_answer(shared: &crate::gateway::Shared, agent: &VerifiedAgent, binding: Binding<'_>, asked: &Asked, checked: &Checked) -> Result<bool, CallToolResult> {
    let crate::gateway::confirm::EndUser::Stateless { state: Some(state), responses, .. } = binding.end_user else { return Ok(false) };
    // A denial or a decline is checked before any answer: an older
    // question, or another one about the same request, cannot override it
    // (the store refuses to hand such an answer out as well).
    question_still_open(&shared.store, &agent.agent.id, shared.clock.now_unix(), &asked.tool, checked).await?;
    let (qid, agent_id, task, digest, now) = (state.to_owned(), agent.agent.id.clone(), checked.task.id.clone(), checked.digest.clone(), asked.now);
    let taken = store_op(&shared.store, move |s| s.take_end_user_answer(&qid, &agent_id, &task, &digest, now)).await?;
    let answer = crate::gateway::confirm::answer_of(taken, responses);
    let word = match answer {
        crate::gateway::confirm::Answer::None => return Ok(false),
        crate::gateway::confirm::Answer::Confirmed => "confirmed",
        crate::gateway::confirm::Answer::Declined => "declined",
        crate::gateway::confirm::Answer::Invalid => "invalid",
    };
    let via = "input_required";
    let event = crate::gateway::confirm::event("confirmation.answered", agent, &checked.task.id, &asked.tool, &checked.digest, via, Some(word));
    crate::gateway::record_or_log(shared, event).await;
    tracing::info!(task = %checked.task.id, tool = %crate::telemetry::Clean(&asked.tool), answer = word, "end user answered");
    match answer {
        crate::gateway::confirm::Answer::Confirmed => Ok(true),
        crate::gateway::confirm::Answer::Declined => {
            remember_decline(shared, agent, checked, asked.now).await;
            Err(declined_by_end_user(&asked.tool))
        }
        _ => Err(refusal_result(
            "confirmation_invalid",
            "this answer is not for this agent, task and request, was used already, or expired; send the jit_request again without one to be asked anew",
        )),
    }
}

/// Can the end user still be asked about, or answer for, this request?
/// Not after a person denied exactly this request, nor while the end user's
/// decline of it stands (both hold for the agent in every task).
pub(in crate::gateway::meta) async fn question_still_open(store: &Arc<dyn Store>, agent: &str, now: i64, tool: &str, checked: &Checked) -> Result<(), CallToolResult> {
    let (agent_id, digest) = (agent.to_owned(), checked.digest.clone());
    let (approval, declined) = store_op(store, move |s| Ok((s.approval_for_request(&digest, now)?, s.end_user_declined(&agent_id, &digest, now)?))).await?;
    if let Some(a) = approval.as_ref().or(checked.existing.as_ref()).filter(|a| a.state == ApprovalState::Denied) {
        return Err(approval_denied(a));
    }
    if declined {
        return Err(declined_by_end_user(tool));
    }
    Ok(())
}

/// What asking the end user came to.
pub(in crate::gateway::meta) enum Asking {
    /// A 2026-07-28 client: the question goes back as an input-required result.
    InputRequired(rmcp::model::InputRequiredResult),
    Confirmed,
    Declined,
    /// The client cannot ask its user: the rule's group approves instead.
    Unreachable,
    Failed(CallToolResult),
}

/// Stage: ask the end user about exactly this request, through the client.
pub(in crate::gateway::meta) async fn ask_end_user(shared: &crate::gateway::Shared, agent: &VerifiedAgent, binding: Binding<'_>, asked: &Asked, checked: &Checked, taint: &crate::taint::TaintVerdict) -> Asking {
    use crate::gateway::confirm::{self, EndUser};
    let message = confirm::question(&asked.tool, &checked.constraints, &asked.purpose, taint);
    match binding.end_user {
        EndUser::Stateless { can_ask: true, .. } => {
            let id = match crate::token::new_jti() {
                Ok(id) => format!("q_{id}"),
                Err(e) => return Asking::Failed(refusal_result("internal", &e.to_string())),
            };
            let ttl = answer_ttl(shared);
            let (qid, agent_id, task, digest, now) = (id.clone(), agent.agent.id.clone(), checked.task.id.clone(), checked.digest.clone(), asked.now);
            let event = confirm::event("confirmation.asked", agent, &checked.task.id, &asked.tool, &checked.digest, "input_required", None);
            // The question and its record: one unit of work.
            let stored = store_op(&shared.store, move |s| s.ask_end_user(&qid, &agent_id, &task, &digest, now, now.saturating_add(ttl), &event)).await;
            match stored {
                Ok(()) => {
                    tracing::info!(task = %checked.task.id, tool = %crate::telemetry::Clean(&asked.tool), "asking the end user to confirm");
                    Asking::InputRequired(confirm::input_required(&id, message))
                }
                Err(r) => Asking::Failed(r),
            }
        }
        EndUser::Session { can_ask: true, peer } => {
            let event = confirm::event("confirmation.asked", agent, &checked.task.id, &asked.tool, &checked.digest, "elicitation", None);
            crate::gateway::record_or_log(shared, event).await;
            let answer = confirm::ask_session(peer, message).await;
            let word = match answer {
                Some(true) => "confirmed",
                Some(false) => "declined",
                None => "unanswered",
            };
            let event = confirm::event("confirmation.answered", agent, &checked.task.id, &asked.tool, &checked.digest, "elicitation", Some(word));
            crate::gateway::record_or_log(shared, event).await;
            match answer {
                Some(true) => Asking::Confirmed,
                Some(false) => Asking::Declined,
                None => Asking::Unreachable,
            }
        }
        _ => Asking::Unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::meta::request::fixture::{AGENT, NOW, SEND, approval, checked_send, code_of, text_of};

    #[tokio::test]
    async fn a_standing_decline_or_a_persons_denial_closes_the_question() {
        let store: Arc<dyn Store> = Arc::new(crate::store::SqliteStore::in_memory().unwrap_or_else(|e| panic!("{e}")));
        let (_, checked) = checked_send(json!({"to": "a@example.test"}));
        assert!(question_still_open(&store, AGENT, NOW, SEND, &checked).await.is_ok(), "nothing on record: the user may be asked");

        // The end user declined exactly this request (in another task too).
        store.record_end_user_decline(AGENT, "task_0", &checked.digest, NOW - 10, NOW + 60).unwrap_or_else(|e| panic!("{e}"));
        let refused = question_still_open(&store, AGENT, NOW, SEND, &checked).await.err().map(|r| code_of(&r));
        assert_eq!(refused.as_deref(), Some("declined_by_end_user"));
        // ... not another agent's, and not after the decline lapsed.
        assert!(question_still_open(&store, "spiffe://example.test/agent/other", NOW, SEND, &checked).await.is_ok());
        assert!(question_still_open(&store, AGENT, NOW + 61, SEND, &checked).await.is_ok());

        // A person denied it: final, and the refusal says who and why.
        let (_, mut checked) = checked_send(json!({"to": "b@example.test"}));
        checked.existing = Some(approval(&checked, ApprovalState::Denied, "lead@example.test"));
        let r = question_still_open(&store, AGENT, NOW, SEND, &checked).await.err().unwrap_or_else(|| panic!("a denied request was asked about again"));
        assert_eq!(code_of(&r), "approval_denied");
        assert!(text_of(&r).contains("lead@example.test") && text_of(&r).contains("not this one"), "{}", text_of(&r));
        // An approval that was granted does not close it.
        checked.existing = Some(approval(&checked, ApprovalState::Approved, "lead@example.test"));
        assert!(question_still_open(&store, AGENT, NOW, SEND, &checked).await.is_ok());
    }

    #[test]
    fn a_decline_tells_the_agent_not_to_retry() {
        let r = declined_by_end_user(SEND);
        assert_eq!(code_of(&r), "declined_by_end_user");
        assert!(text_of(&r).contains("do not retry") && text_of(&r).contains(SEND));
    }
}
