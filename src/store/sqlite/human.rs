//! SQLite statements for approvals, break-glass grants and quarantine.

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use crate::store::{Approval, ApprovalState, BreakGlassGrant, DecideOutcome, StoreError};

fn list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn list_text(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

pub(super) fn create_approval(conn: &Connection, a: &Approval) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO approvals(id, digest, agent, task, tool, constraints, purpose, grp, policies, state, created_at, expires_at)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)")?.execute(params![a.id, a.digest, a.agent, a.task, a.tool, a.constraints, a.purpose, a.group, list_text(&a.policies), a.state.as_str(), a.created_at, a.expires_at])?;
    Ok(())
}

/// How many approvals of `agent` are pending and unexpired at `now`.
pub(super) fn pending_of(conn: &Connection, agent: &str, now: i64) -> Result<usize, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM approvals WHERE agent=?1 AND state='pending' AND expires_at > ?2")?
        .query_row(params![agent, now], |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Pending or approved approvals past their time become expired.
pub(super) fn expire_approvals(conn: &Connection, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE approvals SET state='expired' WHERE state IN ('pending','approved') AND expires_at <= ?1")?
        .execute(params![now])?;
    Ok(())
}

fn approval_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Approval, String)> {
    let state: String = r.get("state")?;
    let policies: String = r.get("policies")?;
    Ok((
        Approval {
            id: r.get("id")?,
            digest: r.get("digest")?,
            agent: r.get("agent")?,
            task: r.get("task")?,
            tool: r.get("tool")?,
            constraints: r.get("constraints")?,
            purpose: r.get("purpose")?,
            group: r.get("grp")?,
            policies: list(&policies),
            state: ApprovalState::Pending,
            created_at: r.get("created_at")?,
            expires_at: r.get("expires_at")?,
            decided_at: r.get("decided_at")?,
            decided_by: r.get("decided_by")?,
            note: r.get("note")?,
            used_jti: r.get("used_jti")?,
        },
        state,
    ))
}

fn finish((mut a, state): (Approval, String)) -> Result<Approval, StoreError> {
    a.state = ApprovalState::parse(&state)?;
    Ok(a)
}

pub(super) fn approval_where(conn: &Connection, clause: &str, arg: &str) -> Result<Option<Approval>, StoreError> {
    let row = conn.prepare_cached(&approval_sql(clause))?.query_row(params![arg], approval_from_row).optional()?;
    row.map(finish).transpose()
}

pub(super) fn approval_sql(clause: &str) -> String {
    format!("SELECT * FROM approvals WHERE {clause}")
}

/// Which approval decides a request: a denial first, then the newest.
pub(super) const FOR_REQUEST: &str = "digest=?1 ORDER BY state = 'denied' DESC, created_at DESC, rowid DESC LIMIT 1";

/// A pending or approved approval past its time reads as expired.
/// The approval that decides a request ([`crate::store::Store::approval_for_request`]).
pub(super) fn approval_for_request(conn: &Connection, digest: &str, now: i64) -> Result<Option<Approval>, StoreError> {
    let found = approval_where(conn, FOR_REQUEST, digest)?;
    Ok(found.map(|a| lapse(a, now)))
}

pub(super) fn lapse(mut a: Approval, now: i64) -> Approval {
    if matches!(a.state, ApprovalState::Pending | ApprovalState::Approved) && a.expires_at <= now {
        a.state = ApprovalState::Expired;
    }
    a
}

pub(super) fn approvals(conn: &Connection, all: bool, now: i64) -> Result<Vec<Approval>, StoreError> {
    let sql = if all {
        "SELECT * FROM approvals WHERE ?1 = ?1 ORDER BY created_at DESC, rowid DESC LIMIT 1000"
    } else {
        "SELECT * FROM approvals WHERE state IN ('pending','approved') AND expires_at > ?1 ORDER BY created_at DESC, rowid DESC LIMIT 1000"
    };
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params![now], approval_from_row)?;
    rows.map(|r| r.map_err(StoreError::from).and_then(finish).map(|a| lapse(a, now))).collect()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn decide(
    conn: &mut Connection,
    id: &str,
    approve: bool,
    by: &str,
    note: &str,
    now: i64,
    use_until: i64,
    audit: &(dyn Fn(&Approval) -> crate::audit::Event + Sync),
) -> Result<DecideOutcome, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = if approve {
        tx.prepare_cached("UPDATE approvals SET state='approved', decided_at=?2, decided_by=?3, note=?4, expires_at=?5 WHERE id=?1 AND state='pending' AND expires_at > ?2")?.execute(params![id, now, by, note, use_until])?
    } else {
        tx.prepare_cached("UPDATE approvals SET state='denied', decided_at=?2, decided_by=?3, note=?4 WHERE id=?1 AND state='pending' AND expires_at > ?2")?.execute(params![id, now, by, note])?
    };
    let row = tx.prepare_cached("SELECT * FROM approvals WHERE id=?1")?.query_row(params![id], approval_from_row).optional()?;
    let outcome = match (row.map(finish).transpose()?, n) {
        (None, _) => DecideOutcome::NotFound,
        (Some(a), 1) => {
            super::audit::append_in(&tx, &audit(&a), now)?;
            DecideOutcome::Decided(a)
        }
        (Some(a), _) => DecideOutcome::NotPending(a),
    };
    tx.commit()?;
    Ok(outcome)
}

pub(super) fn record_break_glass(conn: &Connection, g: &BreakGlassGrant) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO break_glass(id, agent, task, tool, constraints, justification, jti, policies, granted_at, expires_at)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)")?.execute(params![g.id, g.agent, g.task, g.tool, g.constraints, g.justification, g.jti, list_text(&g.policies), g.granted_at, g.expires_at])?;
    Ok(())
}

pub(super) fn break_glass_grants(conn: &Connection, all: bool) -> Result<Vec<BreakGlassGrant>, StoreError> {
    let sql = if all {
        "SELECT * FROM break_glass ORDER BY granted_at DESC, rowid DESC LIMIT 1000"
    } else {
        "SELECT * FROM break_glass WHERE reviewed_at IS NULL ORDER BY granted_at DESC, rowid DESC LIMIT 1000"
    };
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        let policies: String = r.get("policies")?;
        Ok(BreakGlassGrant {
            id: r.get("id")?,
            agent: r.get("agent")?,
            task: r.get("task")?,
            tool: r.get("tool")?,
            constraints: r.get("constraints")?,
            justification: r.get("justification")?,
            jti: r.get("jti")?,
            policies: list(&policies),
            granted_at: r.get("granted_at")?,
            expires_at: r.get("expires_at")?,
            reviewed_at: r.get("reviewed_at")?,
            reviewed_by: r.get("reviewed_by")?,
            note: r.get("note")?,
        })
    })?;
    rows.map(|r| r.map_err(StoreError::from)).collect()
}
