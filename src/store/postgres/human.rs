//! PostgreSQL statements for approvals, break-glass grants and quarantine.

use ::postgres::{GenericClient, Row, Transaction};

use super::{AUDIT_LOCK, Fail, lock};
use crate::store::{Approval, ApprovalState, BreakGlassGrant, DecideOutcome};

fn list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn list_text(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

pub(super) fn create_approval(c: &mut impl GenericClient, a: &Approval) -> Result<(), Fail> {
    c.execute(
        "INSERT INTO approvals(id, digest, agent, task, tool, constraints, purpose, grp, policies, state, created_at, expires_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
        &[&a.id, &a.digest, &a.agent, &a.task, &a.tool, &a.constraints, &a.purpose, &a.group, &list_text(&a.policies), &a.state.as_str(), &a.created_at, &a.expires_at],
    )?;
    Ok(())
}

/// How many approvals of `agent` are pending and unexpired at `now`.
pub(super) fn pending_of(c: &mut impl GenericClient, agent: &str, now: i64) -> Result<usize, Fail> {
    let n: i64 = c.query_one("SELECT count(*) FROM approvals WHERE agent=$1 AND state='pending' AND expires_at > $2", &[&agent, &now])?.try_get(0)?;
    Ok(super::to_usize(n))
}

fn approval_from_row(r: &Row) -> Result<Approval, Fail> {
    let state: String = r.try_get("state")?;
    let policies: String = r.try_get("policies")?;
    Ok(Approval {
        id: r.try_get("id")?,
        digest: r.try_get("digest")?,
        agent: r.try_get("agent")?,
        task: r.try_get("task")?,
        tool: r.try_get("tool")?,
        constraints: r.try_get("constraints")?,
        purpose: r.try_get("purpose")?,
        group: r.try_get("grp")?,
        policies: list(&policies),
        state: ApprovalState::parse(&state)?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        decided_at: r.try_get("decided_at")?,
        decided_by: r.try_get("decided_by")?,
        note: r.try_get("note")?,
        used_jti: r.try_get("used_jti")?,
    })
}

/// Of a digest's approvals, the one that decides the request: a person's
/// denial if there is one, else the newest (an SQL tail after `WHERE digest = ...`).
pub(super) const DECIDING_APPROVAL: &str = "ORDER BY state = 'denied' DESC, created_at DESC, ord DESC LIMIT 1";

pub(super) fn approval_where(c: &mut impl GenericClient, clause: &str, arg: &str) -> Result<Option<Approval>, Fail> {
    let sql = format!("SELECT * FROM approvals WHERE {clause}");
    c.query_opt(sql.as_str(), &[&arg])?.map(|r| approval_from_row(&r)).transpose()
}

/// A pending or approved approval past its time reads as expired.
pub(super) fn lapse(mut a: Approval, now: i64) -> Approval {
    if matches!(a.state, ApprovalState::Pending | ApprovalState::Approved) && a.expires_at <= now {
        a.state = ApprovalState::Expired;
    }
    a
}

pub(super) fn approvals(c: &mut impl GenericClient, all: bool, now: i64) -> Result<Vec<Approval>, Fail> {
    let rows = if all {
        c.query("SELECT * FROM approvals ORDER BY created_at DESC, ord DESC LIMIT 1000", &[])?
    } else {
        c.query("SELECT * FROM approvals WHERE state IN ('pending','approved') AND expires_at > $1 ORDER BY created_at DESC, ord DESC LIMIT 1000", &[&now])?
    };
    rows.iter().map(|r| Ok(lapse(approval_from_row(r)?, now))).collect()
}

/// A person's decision and its audit record, in one transaction.
#[allow(clippy::too_many_arguments)]
pub(super) fn decide(
    tx: &mut Transaction<'_>,
    id: &str,
    approve: bool,
    by: &str,
    note: &str,
    now: i64,
    use_until: i64,
    audit: &(dyn Fn(&Approval) -> crate::audit::Event + Sync),
) -> Result<DecideOutcome, Fail> {
    // The audit lock before any row lock (the module's lock order).
    lock(tx, AUDIT_LOCK)?;
    // Pending or approved approvals past their time become expired.
    tx.execute("UPDATE approvals SET state='expired' WHERE state IN ('pending','approved') AND expires_at <= $1", &[&now])?;
    // Conditional: of two people deciding at once, the first to commit
    // decides; the other's update re-checks the committed row and matches
    // nothing, and it is told the approval is no longer pending.
    let n = if approve {
        tx.execute(
            "UPDATE approvals SET state='approved', decided_at=$2, decided_by=$3, note=$4, expires_at=$5 WHERE id=$1 AND state='pending' AND expires_at > $2",
            &[&id, &now, &by, &note, &use_until],
        )?
    } else {
        tx.execute(
            "UPDATE approvals SET state='denied', decided_at=$2, decided_by=$3, note=$4 WHERE id=$1 AND state='pending' AND expires_at > $2",
            &[&id, &now, &by, &note],
        )?
    };
    let row = approval_where(tx, "id=$1", id)?;
    Ok(match (row, n) {
        (None, _) => DecideOutcome::NotFound,
        (Some(a), 1) => {
            super::audit::append_in(tx, &audit(&a), now)?;
            DecideOutcome::Decided(a)
        }
        (Some(a), _) => DecideOutcome::NotPending(a),
    })
}

pub(super) fn record_break_glass(c: &mut impl GenericClient, g: &BreakGlassGrant) -> Result<(), Fail> {
    c.execute(
        "INSERT INTO break_glass(id, agent, task, tool, constraints, justification, jti, policies, granted_at, expires_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
        &[&g.id, &g.agent, &g.task, &g.tool, &g.constraints, &g.justification, &g.jti, &list_text(&g.policies), &g.granted_at, &g.expires_at],
    )?;
    Ok(())
}

pub(super) fn break_glass_grants(c: &mut impl GenericClient, all: bool) -> Result<Vec<BreakGlassGrant>, Fail> {
    let sql = if all {
        "SELECT * FROM break_glass ORDER BY granted_at DESC, ord DESC LIMIT 1000"
    } else {
        "SELECT * FROM break_glass WHERE reviewed_at IS NULL ORDER BY granted_at DESC, ord DESC LIMIT 1000"
    };
    c.query(sql, &[])?
        .iter()
        .map(|r| {
            let policies: String = r.try_get("policies")?;
            Ok(BreakGlassGrant {
                id: r.try_get("id")?,
                agent: r.try_get("agent")?,
                task: r.try_get("task")?,
                tool: r.try_get("tool")?,
                constraints: r.try_get("constraints")?,
                justification: r.try_get("justification")?,
                jti: r.try_get("jti")?,
                policies: list(&policies),
                granted_at: r.try_get("granted_at")?,
                expires_at: r.try_get("expires_at")?,
                reviewed_at: r.try_get("reviewed_at")?,
                reviewed_by: r.try_get("reviewed_by")?,
                note: r.try_get("note")?,
            })
        })
        .collect()
}
