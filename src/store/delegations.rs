//! Delegation records: a share of a parent task handed to another agent
//! (`jit_delegate`), which can only shrink down the chain.

use super::Phase;

/// One task's share handed to another registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    pub id: String,
    pub parent_task: String,
    pub parent_agent: String,
    pub child_agent: String,
    pub objective: String,
    /// The delegated phases: their tools are all the child may ever plan.
    pub phases: Vec<Phase>,
    /// Argument constraints per delegated tool, as JSON text of
    /// `{tool: {argument: constraint}}` (`{}`: none).
    pub constraints: String,
    /// 1 for a delegation of a task the agent began itself.
    pub depth: u32,
    pub created_at: i64,
    pub expires_at: i64,
    /// The child's task, once it began one (one task per delegation).
    pub child_task: Option<String>,
}

impl Delegation {
    /// Every tool the delegation names, once, sorted.
    pub fn tools(&self) -> Vec<String> {
        super::tools_of(&self.phases)
    }
}

/// Ids of tasks begun under a delegation begin so: the request path reads
/// the chain above such a task (and only such a task) before it decides.
pub const DELEGATED_TASK_PREFIX: &str = "dtask_";
