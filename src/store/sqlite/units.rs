//! The SQLite store's units of work on the request path: what a request
//! reads (one read transaction, so one snapshot), what an allowed request
//! commits and what a call commits (one IMMEDIATE transaction each, so no
//! other writer, in this process or another, changes the task, the token or
//! the audit chain's head in between).

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::runtime::WINDOW_SECS;
use super::{audit, human, runtime, task_from_row, to_i64, token_from_row};
use crate::store::{Call, Consumption, Grant, Granted, Quarantine, RequestRead, RequestState, StoreError, TaskState, TokenState};

pub(super) fn read_request(conn: &mut Connection, r: &RequestRead) -> Result<RequestState, StoreError> {
    // A deferred transaction that only reads: one snapshot of the file for
    // every statement below, whatever other processes commit meanwhile.
    let tx = conn.transaction()?;
    let task = tx.prepare_cached("SELECT * FROM tasks WHERE id=?1")?.query_row(params![r.task], task_from_row).optional()?;
    let task = task
        .map(|(mut t, state)| {
            t.state = TaskState::parse(&state)?;
            Ok::<_, StoreError>(t)
        })
        .transpose()?;
    let quarantined = tx
        .prepare_cached("SELECT agent, reason, since FROM quarantine WHERE agent=?1")?
        .query_row(params![r.agent], |q| Ok(Quarantine { agent: q.get(0)?, reason: q.get(1)?, since: q.get(2)? }))
        .optional()?;
    let parent = match &r.follows {
        Some(jti) => tx
            .prepare_cached("SELECT * FROM tokens WHERE jti=?1")?
            .query_row(params![jti], token_from_row)
            .optional()?
            .map(|(mut t, state)| {
                t.state = TokenState::parse(&state)?;
                Ok::<_, StoreError>(t)
            })
            .transpose()?,
        None => None,
    };
    let approval = match &r.digest {
        Some(d) => human::approval_where(&tx, "digest=?1 ORDER BY state = 'denied' DESC, created_at DESC, rowid DESC LIMIT 1", d)?.map(|a| human::lapse(a, r.now)),
        None => None,
    };
    let last_call = tx
        .prepare_cached("SELECT jti, task, tool, at FROM calls WHERE agent=?1 ORDER BY seq DESC LIMIT 1")?
        .query_row(params![r.agent], |c| Ok(Call { jti: c.get(0)?, task: c.get(1)?, tool: c.get(2)?, at: c.get(3)? }))
        .optional()?;
    let ledger = runtime::taint_lookup(&tx, &r.agent, &r.probe)?;
    let counted: Option<i64> = tx.prepare_cached("SELECT sum(n) FROM request_counts WHERE agent=?1 AND at > ?2")?.query_row(params![r.agent, r.now - WINDOW_SECS], |c| c.get(0))?;
    tx.commit()?;
    let rate = u32::try_from(counted.unwrap_or(0).saturating_add(1)).unwrap_or(u32::MAX);
    Ok(RequestState { task, quarantined, parent, approval, last_call, ledger, rate })
}

/// Why the token of `jti` cannot be consumed now (`None` if it can), read
/// inside the caller's transaction.
fn refusal(tx: &rusqlite::Transaction<'_>, jti: &str, now: i64) -> Result<Option<Consumption>, StoreError> {
    let row = tx
        .prepare_cached(
            "SELECT k.state, k.phase, k.changed_at, k.reason, t.state, t.current_phase, t.expires_at, t.end_reason
             FROM tokens k JOIN tasks t ON t.id = k.task WHERE k.jti=?1",
        )?
        .query_row(params![jti], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })
        .optional()?;
    let Some((token_state, token_phase, changed_at, reason, task_state, current_phase, task_exp, end_reason)) = row else {
        return Ok(Some(Consumption::Unknown));
    };
    Ok(match (TokenState::parse(&token_state)?, TaskState::parse(&task_state)?) {
        (TokenState::Consumed, _) => Some(Consumption::AlreadyConsumed { at: changed_at.unwrap_or(0) }),
        (TokenState::Revoked, _) => Some(Consumption::Revoked { reason: reason.unwrap_or_default() }),
        (TokenState::Issued, TaskState::Active) if task_exp <= now => {
            Some(Consumption::TaskInactive { state: TaskState::Expired, reason: Some("task TTL expired".into()) })
        }
        (TokenState::Issued, TaskState::Active) if token_phase != current_phase => Some(Consumption::PhaseOver {
            token_phase: usize::try_from(token_phase).unwrap_or(usize::MAX),
            current_phase: usize::try_from(current_phase).unwrap_or(usize::MAX),
        }),
        (TokenState::Issued, TaskState::Active) => None,
        (TokenState::Issued, state) => Some(Consumption::TaskInactive { state, reason: end_reason }),
    })
}

/// Consume inside the caller's IMMEDIATE transaction.
pub(super) fn consume_in(tx: &rusqlite::Transaction<'_>, jti: &str, now: i64) -> Result<Consumption, StoreError> {
    if let Some(refused) = refusal(tx, jti, now)? {
        return Ok(refused);
    }
    let n = tx.prepare_cached("UPDATE tokens SET state='consumed', changed_at=?1 WHERE jti=?2 AND state='issued'")?.execute(params![now, jti])?;
    Ok(if n == 1 { Consumption::Consumed } else { Consumption::AlreadyConsumed { at: now } })
}

pub(super) fn consume_for_call(conn: &mut Connection, jti: &str, forwarded: &crate::audit::Event, now: i64) -> Result<Consumption, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcome = consume_in(&tx, jti, now)?;
    if outcome == Consumption::Consumed {
        audit::append_in(&tx, forwarded, now).map_err(audit_error)?;
    }
    tx.commit()?;
    Ok(outcome)
}

fn audit_error(e: StoreError) -> StoreError {
    match e {
        StoreError::Audit(m) => StoreError::Audit(m),
        other => StoreError::Audit(other.to_string()),
    }
}

/// Count a request at `now` (inside the caller's transaction).
pub(super) fn bump_request_count(conn: &Connection, agent: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM request_counts WHERE agent=?1 AND at <= ?2")?.execute(params![agent, now - WINDOW_SECS])?;
    conn.prepare_cached("INSERT INTO request_counts(agent, at, n) VALUES (?1, ?2, 1) ON CONFLICT(agent, at) DO UPDATE SET n = n + 1")?.execute(params![agent, now])?;
    Ok(())
}

pub(super) fn note_request(conn: &mut Connection, agent: &str, now: i64) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    bump_request_count(&tx, agent, now)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn grant(conn: &mut Connection, g: &Grant<'_>) -> Result<Granted, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    bump_request_count(&tx, &g.token.agent, g.now)?;
    let outcome = grant_in(&tx, g)?;
    // The count stands whatever the outcome; the rest only with `Recorded`
    // (grant_in writes nothing before every check has passed).
    tx.commit()?;
    Ok(outcome)
}

fn grant_in(tx: &rusqlite::Transaction<'_>, g: &Grant<'_>) -> Result<Granted, StoreError> {
    let (t, now) = (g.token, g.now);
    if tx.prepare_cached("SELECT 1 FROM quarantine WHERE agent=?1")?.query_row(params![t.agent], |_| Ok(())).optional()?.is_some() {
        return Ok(Granted::Quarantined);
    }
    let task = tx
        .prepare_cached("SELECT state, current_phase, expires_at, end_reason FROM tasks WHERE id=?1")?
        .query_row(params![t.task], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<String>>(3)?)))
        .optional()?;
    let Some((state, phase, expires_at, end_reason)) = task else { return Ok(Granted::TaskChanged(Consumption::Unknown)) };
    match TaskState::parse(&state)? {
        TaskState::Active if expires_at <= now => {
            return Ok(Granted::TaskChanged(Consumption::TaskInactive { state: TaskState::Expired, reason: Some("task TTL expired".into()) }));
        }
        TaskState::Active if phase != to_i64(t.phase) => {
            return Ok(Granted::TaskChanged(Consumption::PhaseOver { token_phase: t.phase, current_phase: usize::try_from(phase).unwrap_or(usize::MAX) }));
        }
        TaskState::Active => {}
        other => return Ok(Granted::TaskChanged(Consumption::TaskInactive { state: other, reason: end_reason })),
    }
    if let Some(id) = g.approval {
        let spent = tx
            .prepare_cached("UPDATE approvals SET state='used', used_jti=?2 WHERE id=?1 AND state='approved' AND expires_at > ?3")?
            .execute(params![id, t.jti, now])?;
        if spent != 1 {
            return Ok(Granted::ApprovalUsed);
        }
    }
    let state = if g.forwarded.is_some() { "consumed" } else { "issued" };
    let changed_at = g.forwarded.map(|_| now);
    tx.prepare_cached("INSERT INTO tokens(jti, task, agent, sid, tool, phase, state, issued_at, expires_at, changed_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)")?
        .execute(params![t.jti, t.task, t.agent, t.sid, t.tool, to_i64(t.phase), state, t.issued_at, t.expires_at, changed_at])?;
    let i = g.intent;
    tx.prepare_cached("INSERT INTO intents(jti, agent, task, tool, shape, at) VALUES (?1,?2,?3,?4,?5,?6)")?.execute(params![i.jti, i.agent, i.task, i.tool, i.shape, i.at])?;
    audit::append_in(tx, g.record, now).map_err(audit_error)?;
    if let Some(forwarded) = g.forwarded {
        // A token written as consumed fires no consumption trigger: the
        // call goes into the agent's call history here.
        tx.prepare_cached("INSERT INTO calls(agent, task, tool, jti, at) VALUES (?1,?2,?3,?4,?5)")?.execute(params![t.agent, t.task, t.tool, t.jti, now])?;
        audit::append_in(tx, forwarded, now).map_err(audit_error)?;
    }
    Ok(Granted::Recorded)
}
