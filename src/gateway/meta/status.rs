//! `jit_approval_status`: where a person's decision on a request stands.

#[allow(unused_imports)]
use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::gateway::meta) struct ApprovalStatus {
    pub(in crate::gateway::meta) approval: String,
}

pub(in crate::gateway::meta) async fn approval_status(session: &Session, agent: &VerifiedAgent, req: ApprovalStatus) -> CallToolResult {
    let now = session.shared.clock.now_unix();
    let id = req.approval.clone();
    let found = match store_op(&session.shared.store, move |s| s.approval(&id, now)).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    // Another agent's approval looks exactly like one that does not exist.
    let Some(a) = found.filter(|a| a.agent == agent.agent.id) else {
        return refusal_result("approval_not_found", &format!("no approval `{}` for this agent; it is returned by {REQUEST} as `approval`", req.approval));
    };
    let next = match a.state {
        ApprovalState::Pending => format!("wait for a person of group `{}`; ask again later", a.group),
        ApprovalState::Approved => format!("approved: call {REQUEST} again with exactly the same task, tool, arguments and purpose to get the token"),
        ApprovalState::Denied => "denied: do not retry this request".into(),
        ApprovalState::Used => "already used for a token; a new call needs a new request".into(),
        ApprovalState::Expired => format!("expired: call {REQUEST} again to ask for a new approval"),
    };
    ok(json!({
        "approval": a.id,
        "state": a.state.as_str(),
        "group": a.group,
        "tool": a.tool,
        "task": a.task,
        "decided_by": a.decided_by,
        "note": a.note,
        "expires_at": rfc3339(a.expires_at),
        "next": next,
    }))
}
