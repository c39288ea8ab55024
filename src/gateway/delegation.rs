//! Delegation's guarantee at the moment of use: a request or call of a task
//! begun under a delegation holds only while every delegation above it
//! holds. Walking the chain reads the store, so every process and replica
//! sees a parent that ended (however it ended: its agent, the CLI, expiry,
//! a quarantine) at the child's next request or call; the maintenance loop
//! then revokes the orphaned tasks and their tokens.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Shared;
use crate::store::{DELEGATED_TASK_PREFIX, Delegation, Store, StoreError, TaskState};
use crate::token::ArgConstraints;

/// Deeper chains than this are not walked (the depth limit is far below).
const MAX_CHAIN: usize = 16;

/// Why a delegated task's request or call is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRefusal {
    pub code: &'static str,
    pub message: String,
}

impl ChainRefusal {
    fn new(code: &'static str, message: String) -> Self {
        Self { code, message }
    }
}

impl From<StoreError> for ChainRefusal {
    fn from(e: StoreError) -> Self {
        Self::new(e.code(), format!("{e}; the delegation could not be checked, so nothing is allowed"))
    }
}

/// A delegation above a task, and the plan of the task it came from.
#[derive(Debug, Clone)]
pub struct Above {
    pub delegation: Delegation,
    /// Every tool the delegating task's plan names.
    pub parent_plan: Vec<String>,
}

/// The delegations above `task`, nearest first (none for a task the agent
/// began itself), each checked to hold now: unexpired, its parent task
/// active, and, for `tool`, the tool delegated and still in what remains of
/// the parent's plan, with `arguments` within the delegation's constraints.
pub fn check_chain(store: &dyn Store, task: &str, tool: Option<&str>, arguments: Option<&serde_json::Map<String, Value>>, now: i64) -> Result<Vec<Above>, ChainRefusal> {
    let mut chain = Vec::new();
    let mut current = task.to_owned();
    while current.starts_with(DELEGATED_TASK_PREFIX) {
        if chain.len() >= MAX_CHAIN {
            return Err(ChainRefusal::new("delegation_too_deep", "the chain of delegations above this task is too long".into()));
        }
        let Some(d) = store.delegation_of_task(&current)? else {
            return Err(ChainRefusal::new("delegation_missing", format!("task {current} names no delegation it was begun under")));
        };
        if d.expires_at <= now {
            return Err(ChainRefusal::new("delegation_expired", format!("delegation {} has expired; the delegating agent may delegate again", d.id)));
        }
        let parent = store.task(&d.parent_task)?.filter(|p| p.state == TaskState::Active && p.expires_at > now);
        let Some(parent) = parent else {
            return Err(ChainRefusal::new(
                "parent_task_inactive",
                format!("the task that delegated this work ({}) is no longer active: authority delegated from it ended with it", d.parent_task),
            ));
        };
        if let Some(tool) = tool {
            if !d.tools().iter().any(|t| t == tool) {
                return Err(ChainRefusal::new("not_delegated", format!("`{tool}` is not in delegation {}: only {} were delegated", d.id, d.tools().join(", "))));
            }
            // The parent's phase order holds for its children: a tool is
            // used while the parent is in a phase that uses it.
            let in_current = parent.phases.get(parent.current_phase).is_some_and(|p| p.tools.iter().any(|t| t == tool));
            if !in_current {
                let later = parent.phases.iter().skip(parent.current_phase + 1).any(|p| p.tools.iter().any(|t| t == tool));
                return Err(if later {
                    ChainRefusal::new(
                        "parent_phase_not_reached",
                        format!("the delegating task has not reached a phase that uses `{tool}` yet: ask again once it has"),
                    )
                } else {
                    ChainRefusal::new(
                        "parent_phase_left",
                        format!("the delegating task has moved past the phases that use `{tool}`: what it delegated for them ended with them"),
                    )
                });
            }
            within_constraints(&d, tool, arguments)?;
        }
        current = parent.id.clone();
        chain.push(Above { delegation: d, parent_plan: crate::store::tools_of(&parent.phases) });
    }
    Ok(chain)
}

/// The delegation's constraints on `tool`'s arguments (those it names; the
/// others are free), against the exact arguments.
fn within_constraints(d: &Delegation, tool: &str, arguments: Option<&serde_json::Map<String, Value>>) -> Result<(), ChainRefusal> {
    let all: BTreeMap<String, ArgConstraints> =
        serde_json::from_str(&d.constraints).map_err(|e| ChainRefusal::new("store_corrupt", format!("delegation {}: constraints: {e}", d.id)))?;
    let Some(constraints) = all.get(tool).filter(|c| !c.is_empty()) else { return Ok(()) };
    let Some(arguments) = arguments else {
        return Err(ChainRefusal::new(
            "delegation_needs_exact_arguments",
            format!("delegation {} constrains `{tool}`'s arguments: ask with exact `arguments`, not constraints", d.id),
        ));
    };
    for (name, c) in constraints {
        let Some(value) = arguments.get(name) else {
            return Err(ChainRefusal::new("outside_delegation", format!("delegation {} requires argument `{name}` of `{tool}`", d.id)));
        };
        if let Err(e) = c.check(name, value) {
            return Err(ChainRefusal::new("outside_delegation", format!("outside delegation {}: {e}", d.id)));
        }
    }
    Ok(())
}

/// The agents that delegated `task`'s work, nearest first (none for a task
/// its agent began itself). Whether each delegation still holds is not
/// asked: what was read counts wherever the work came from.
pub fn agents_above(store: &dyn Store, task: &str) -> Result<Vec<String>, StoreError> {
    let mut agents = Vec::new();
    let mut current = task.to_owned();
    while current.starts_with(DELEGATED_TASK_PREFIX) && agents.len() < MAX_CHAIN {
        let Some(d) = store.delegation_of_task(&current)? else { break };
        agents.push(d.parent_agent.clone());
        current = d.parent_task;
    }
    Ok(agents)
}

/// What `agents` (those above a delegated task) read that `probe` can
/// match, added to `ledger`: taint flows with the work.
pub fn merge_ledgers_of(store: &dyn Store, agents: &[String], probe: &crate::taint::TaintProbe, ledger: &mut crate::taint::TaintLedger) -> Result<(), StoreError> {
    for agent in agents {
        ledger.merge(store.taint_lookup(agent, probe)?);
    }
    Ok(())
}

/// [`check_chain`] from async code, for a delegated task only (any other
/// task pays nothing).
pub async fn chain_holds(shared: &Shared, task: &str, tool: Option<&str>, arguments: Option<serde_json::Map<String, Value>>, now: i64) -> Result<Vec<Above>, ChainRefusal> {
    if !task.starts_with(DELEGATED_TASK_PREFIX) {
        return Ok(Vec::new());
    }
    let (task, tool) = (task.to_owned(), tool.map(str::to_owned));
    crate::store::run_blocking(&shared.store, move |s| check_chain(s, &task, tool.as_deref(), arguments.as_ref(), now)).await?
}
