//! What a person can do with an approval, shared by the CLI and the HTTP API.
//!
//! Only a verified approver (see [`crate::approver`]) reaches these
//! functions. An approver must belong to the approval's group; a decision is
//! made once; a denial needs a reason; an approval is usable for a limited
//! time after it is granted.

use std::time::Duration;

use crate::approver::VerifiedApprover;
use crate::store::{Approval, DecideOutcome, Store, StoreError};

/// Why a person's action on an approval was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalActionError {
    #[error("no approval `{0}`; list pending ones with `jitgate approvals list`")]
    NotFound(String),
    #[error("`{subject}` is not in group `{group}`, which must decide approval {id}")]
    NotInGroup { id: String, group: String, subject: String },
    #[error("approval {id} is {state}, not pending; it cannot be decided any more{hint}")]
    NotPending { id: String, state: &'static str, hint: String },
    #[error("a denial needs a reason (--reason), so that the agent and reviewers learn why")]
    ReasonRequired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApprovalActionError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApprovalActionError::NotFound(_) => "approval_not_found",
            ApprovalActionError::NotInGroup { .. } => "approver_not_in_group",
            ApprovalActionError::NotPending { .. } => "approval_not_pending",
            ApprovalActionError::ReasonRequired => "reason_required",
            ApprovalActionError::Store(_) => "store_unavailable",
        }
    }
}

/// Approve (`approve = true`) or deny a pending approval.
pub fn decide(
    store: &dyn Store,
    approver: &VerifiedApprover,
    id: &str,
    approve: bool,
    note: &str,
    now: i64,
    use_ttl: Duration,
) -> Result<Approval, ApprovalActionError> {
    let note = note.trim();
    if !approve && note.is_empty() {
        return Err(ApprovalActionError::ReasonRequired);
    }
    let current = store.approval(id, now)?.ok_or_else(|| ApprovalActionError::NotFound(id.to_owned()))?;
    if !approver.in_group(&current.group) {
        return Err(ApprovalActionError::NotInGroup { id: id.to_owned(), group: current.group, subject: approver.subject.clone() });
    }
    let use_until = now.saturating_add(i64::try_from(use_ttl.as_secs()).unwrap_or(600));
    let record = |a: &crate::store::Approval| {
        crate::audit::Event::new(
            "approval.decided",
            Some(&a.task),
            Some(&a.agent),
            serde_json::json!({"approval": a.id, "decision": a.state.as_str(), "by": approver.subject, "issuer": approver.issuer, "note": note, "tool": a.tool, "group": a.group}),
        )
    };
    // The decision and its record are one transaction: a failed audit write
    // leaves the approval pending.
    match store.decide_approval(id, approve, &approver.subject, note, now, use_until, &record)? {
        DecideOutcome::Decided(a) => {
            tracing::info!(approval = %a.id, by = %approver.subject, decision = a.state.as_str(), tool = %a.tool, agent = %a.agent, "approval decided");
            Ok(a)
        }
        DecideOutcome::NotFound => Err(ApprovalActionError::NotFound(id.to_owned())),
        DecideOutcome::NotPending(a) => Err(ApprovalActionError::NotPending {
            id: id.to_owned(),
            state: a.state.as_str(),
            hint: match a.state {
                // Ended with its task: there is nothing left to ask again for.
                crate::store::ApprovalState::Expired if a.decided_by.is_none() && a.note.is_some() => format!("; {}", a.note.unwrap_or_default()),
                crate::store::ApprovalState::Expired => "; the agent must ask again".into(),
                _ => format!(" (decided by {})", a.decided_by.unwrap_or_default()),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ApprovalState, SqliteStore};

    fn pending(store: &SqliteStore) {
        store
            .create_approval(&Approval {
                id: "apr_1".into(),
                digest: "d".into(),
                agent: "spiffe://x/agent/a".into(),
                task: "t".into(),
                tool: "ws__delete".into(),
                constraints: "{}".into(),
                purpose: "p".into(),
                group: "oncall".into(),
                policies: vec![],
                state: ApprovalState::Pending,
                created_at: 0,
                expires_at: 100,
                decided_at: None,
                decided_by: None,
                note: None,
                used_jti: None,
            })
            .unwrap();
    }

    fn person(groups: &[&str]) -> VerifiedApprover {
        VerifiedApprover { subject: "alice@example.org".into(), issuer: "people".into(), groups: groups.iter().map(|g| (*g).to_owned()).collect() }
    }

    #[test]
    fn only_the_group_decides_once_and_denials_need_reasons() {
        let store = SqliteStore::in_memory().unwrap();
        pending(&store);
        let ttl = Duration::from_secs(60);
        assert_eq!(decide(&store, &person(&["other"]), "apr_1", true, "", 10, ttl).unwrap_err().code(), "approver_not_in_group");
        assert_eq!(decide(&store, &person(&["oncall"]), "apr_1", false, " ", 10, ttl).unwrap_err().code(), "reason_required");
        assert_eq!(decide(&store, &person(&["oncall"]), "nope", true, "", 10, ttl).unwrap_err().code(), "approval_not_found");
        let a = decide(&store, &person(&["oncall"]), "apr_1", true, "ok", 10, ttl).unwrap();
        assert_eq!((a.state, a.expires_at), (ApprovalState::Approved, 70));
        assert_eq!(decide(&store, &person(&["oncall"]), "apr_1", false, "changed my mind", 11, ttl).unwrap_err().code(), "approval_not_pending");
    }

    #[test]
    fn an_expired_approval_cannot_be_decided() {
        let store = SqliteStore::in_memory().unwrap();
        pending(&store);
        let e = decide(&store, &person(&["oncall"]), "apr_1", true, "", 100, Duration::from_secs(60)).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }
}
