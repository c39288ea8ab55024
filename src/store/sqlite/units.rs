//! The SQLite store's units of work on the request path: what a request
//! reads (one read transaction, so one snapshot), what an allowed request
//! commits and what a call commits (one IMMEDIATE transaction each, so no
//! other writer, in this process or another, changes the task, the token or
//! the audit chain's head in between).

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::runtime::WINDOW_SECS;
use super::{audit, human, last_call_of, quarantine_of, runtime, task_by_id, to_i64, token_by_jti};
use crate::store::{Consumption, Grant, Granted, RequestRead, RequestState, StoreError, TaskAt, TaskState, TokenState, consumption_refusal};

pub(super) fn read_request(conn: &mut Connection, r: &RequestRead) -> Result<RequestState, StoreError> {
    // A deferred transaction that only reads: one snapshot of the file for
    // every statement below, whatever other processes commit meanwhile.
    let tx = conn.transaction()?;
    let task = task_by_id(&tx, &r.task)?;
    let quarantined = quarantine_of(&tx, &r.agent)?;
    let parent = r.follows.as_deref().map(|jti| token_by_jti(&tx, jti)).transpose()?.flatten();
    let approval = r.digest.as_deref().map(|d| human::approval_for_request(&tx, d, r.now)).transpose()?.flatten();
    let last_call = last_call_of(&tx, &r.agent, r.task.starts_with(crate::store::OBSERVATION_TASK_PREFIX))?;
    let ledger = runtime::taint_lookup(&tx, &r.agent, &r.probe)?;
    let rate = window_count(&tx, &r.agent, r.now)?.saturating_add(1);
    tx.commit()?;
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
    let task = TaskAt { state: TaskState::parse(&task_state)?, current_phase: to_usize(current_phase), expires_at: task_exp, end_reason };
    Ok(consumption_refusal(TokenState::parse(&token_state)?, changed_at, reason, to_usize(token_phase), task, now))
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
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

pub(super) fn audit_error(e: StoreError) -> StoreError {
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

/// The rate window's count ([`window_count`]), one statement.
pub(super) const WINDOW_COUNT: &str = "WITH top AS (SELECT max(?2, coalesce((SELECT max(at) FROM request_counts WHERE agent = ?1), ?2)) AS t)
     SELECT sum(n) FROM request_counts, top WHERE agent = ?1 AND at > top.t - ?3 AND at <= top.t";

/// The agent's requests in the last minute as the store has them: the
/// window ends at `now` or at the agent's latest counted second, whichever
/// is later. A request asked at second T whose grant commits after requests
/// of T+1 (from another process, or a burst straddling a second) sees them:
/// judged only up to T it would not, and a parallel burst could pass its
/// limit by one.
pub(super) fn window_count(conn: &Connection, agent: &str, now: i64) -> Result<u32, StoreError> {
    let counted: Option<i64> = conn.prepare_cached(WINDOW_COUNT)?.query_row(params![agent, now, WINDOW_SECS], |c| c.get(0))?;
    Ok(u32::try_from(counted.unwrap_or(0)).unwrap_or(u32::MAX))
}

pub(super) fn grant(conn: &mut Connection, g: &Grant<'_>) -> Result<Granted, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if g.count {
        bump_request_count(&tx, &g.token.agent, g.now)?;
    }
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
    let task = TaskAt { state: TaskState::parse(&state)?, current_phase: to_usize(phase), expires_at, end_reason };
    if let Some(changed) = task.refuses(t.phase, now) {
        return Ok(Granted::TaskChanged(changed));
    }
    if let Some(limit) = g.rate_within {
        // Exact: this IMMEDIATE transaction is the only writer, so every
        // request counted before this one is in the sum.
        let rate = window_count(tx, &t.agent, now)?;
        if rate > limit {
            return Ok(Granted::RateExceeded(rate));
        }
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
