//! Records of the human side of just-in-time authority: approvals of
//! pending requests, break-glass grants awaiting review, and quarantined
//! agents. People change them (through the approvals CLI/API, `review ack`,
//! `agents release`); the gateway reads them on every decision.

use serde::Serialize;

use super::StoreError;

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    /// Waiting for a person.
    Pending,
    /// A person approved; the agent's next identical request gets a token.
    Approved,
    Denied,
    /// The approved request got its token; the approval is spent.
    Used,
    /// Nobody decided (or the agent did not come back) in time.
    Expired,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Used => "used",
            ApprovalState::Expired => "expired",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => ApprovalState::Pending,
            "approved" => ApprovalState::Approved,
            "denied" => ApprovalState::Denied,
            "used" => ApprovalState::Used,
            "expired" => ApprovalState::Expired,
            other => return Err(StoreError::Corrupt(format!("approval state `{other}`"))),
        })
    }
}

/// A request that policy sent to a person, bound to the exact request by
/// `digest` (agent, task, tool, argument constraints).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub id: String,
    pub digest: String,
    pub agent: String,
    pub task: String,
    pub tool: String,
    /// The argument constraints, as JSON text.
    pub constraints: String,
    pub purpose: String,
    /// The group whose member must decide.
    pub group: String,
    /// The policies that asked for approval.
    pub policies: Vec<String>,
    pub state: ApprovalState,
    pub created_at: i64,
    /// Pending: until when a person may decide. Approved: until when the agent may use it.
    pub expires_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    pub note: Option<String>,
    /// The token the approval was spent on.
    pub used_jti: Option<String>,
}

/// A break-glass grant; open until a person acknowledges it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakGlassGrant {
    pub id: String,
    pub agent: String,
    pub task: String,
    pub tool: String,
    pub constraints: String,
    pub justification: String,
    pub jti: String,
    pub policies: Vec<String>,
    pub granted_at: i64,
    pub expires_at: i64,
    pub reviewed_at: Option<i64>,
    pub reviewed_by: Option<String>,
    pub note: Option<String>,
}

/// An agent in quarantine: every request refused until a person releases it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quarantine {
    pub agent: String,
    pub reason: String,
    pub since: i64,
}

/// The outcome of a person's decision on an approval.
#[derive(Debug, Clone, PartialEq)]
pub enum DecideOutcome {
    Decided(Approval),
    NotFound,
    /// Already decided, used or expired: the current record.
    NotPending(Approval),
}

/// One granted intent, kept as the history baselines are learned from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Intent {
    pub jti: String,
    pub agent: String,
    pub task: String,
    pub tool: String,
    /// The argument names and kinds, e.g. `body:eq,subject:eq,to:eq`.
    pub shape: String,
    pub at: i64,
}
