//! Stage 2: one trip to the store for everything the request is judged on.

#[allow(unused_imports)]
use super::*;

/// What the store knows that the request is judged on.
pub(in crate::gateway::meta) struct Loaded {
    pub(in crate::gateway::meta) task: Option<Task>,
    pub(in crate::gateway::meta) quarantined: Option<crate::store::Quarantine>,
    pub(in crate::gateway::meta) parent: Option<TokenRecord>,
    pub(in crate::gateway::meta) existing: Option<Approval>,
    pub(in crate::gateway::meta) last_call: Option<crate::store::Call>,
    pub(in crate::gateway::meta) ledger: crate::taint::TaintLedger,
    pub(in crate::gateway::meta) rate: u32,
}

/// Stage 2: one trip to the store ([`Store::read_request`], one snapshot)
/// for the task, the quarantine flag, the named parent call, the approval
/// state of exactly this request, the agent's last call, the taint entries
/// this request can match and its request rate.
pub(in crate::gateway::meta) async fn load_request_state(shared: &crate::gateway::Shared, agent: &VerifiedAgent, asked: &Asked) -> Result<Loaded, CallToolResult> {
    let read = crate::store::RequestRead {
        agent: agent.agent.id.clone(),
        task: asked.task.clone(),
        follows: asked.follows.clone(),
        digest: asked.digest.clone().filter(|_| asked.break_glass.is_none()),
        probe: asked.probe.clone(),
        now: asked.now,
    };
    let state = crate::store::units::read_request(&shared.store, read).await.map_err(store_refusal)?;
    Ok(Loaded {
        task: state.task,
        quarantined: state.quarantined,
        parent: state.parent,
        existing: state.approval,
        last_call: state.last_call,
        ledger: state.ledger,
        rate: state.rate,
    })
}
