//! Spending and revoking tokens inside a transaction (consume, revoke by scope).

#[allow(unused_imports)]
use super::*;

/// Revoke within an open transaction; returns how many tokens died and the
/// revocation's seq.
///
/// Seqs are taken from a sequence when the row is inserted, not when it
/// commits: if two transactions could insert at once, seq 6 could commit
/// before seq 5, and a replica polling `revocations_since(5)` in between
/// would never see 5. Holding [`REVOCATION_LOCK`] from before the insert
/// until commit makes revocations commit one at a time in seq order. The
/// lock is taken here as well as (earlier, before any row lock) by every
/// caller, so no insert can skip it.
///
/// The revocation's audit record is written here too
/// ([`crate::store::revocation_event`]), so every caller takes [`AUDIT_LOCK`]
/// before [`REVOCATION_LOCK`] (the module's lock order: the audit lock
/// first).
pub(in crate::store::postgres) fn revoke_in(tx: &mut Transaction<'_>, scope: &Scope, reason: &str, now: i64, task_state: TaskState) -> Result<(u64, i64), Fail> {
    // Sessionless (2026-07-28) authority has sid ''; it never belongs to a session.
    if matches!(scope, Scope::Session(sid) if sid.is_empty()) {
        return Err(StoreError::Backend("refusing to revoke the empty session id".into()).into());
    }
    lock(tx, REVOCATION_LOCK)?;
    let end_tasks = |tx: &mut Transaction<'_>, column: &str, target: &str| -> Result<(), Fail> {
        let sql = format!("UPDATE tasks SET state=$1, ended_at=$2, end_reason=$3 WHERE state='active' AND {column}=$4");
        tx.execute(sql.as_str(), &[&task_state.as_str(), &now, &reason, &target])?;
        Ok(())
    };
    let kill = |tx: &mut Transaction<'_>, column: &str, target: &str| -> Result<u64, Fail> {
        let sql = format!("UPDATE tokens SET state='revoked', changed_at=$1, reason=$2 WHERE state='issued' AND {column}=$3");
        Ok(tx.execute(sql.as_str(), &[&now, &reason, &target])?)
    };
    // Approvals end with their task (see [`crate::store::approval_ended_with_task`]). A person deciding at
    // the same moment locks only the approval (after the audit lock), so
    // the two cannot wait on each other.
    let end_approvals = |tx: &mut Transaction<'_>, column: &str, target: &str| -> Result<(), Fail> {
        let sql = format!(
            "UPDATE approvals SET expires_at=$1, note=COALESCE(note, $2) WHERE state IN ('pending','approved') AND expires_at > $1 AND task IN (SELECT id FROM tasks WHERE {column}=$3)"
        );
        tx.execute(sql.as_str(), &[&now, &crate::store::approval_ended_with_task(reason), &target])?;
        Ok(())
    };
    // Tasks before tokens (and their approvals): the lock order every
    // transaction follows.
    let n = match scope {
        Scope::Token(jti) => kill(tx, "jti", jti)?,
        Scope::Phase(task) => kill(tx, "task", task)?,
        Scope::Task(task) => {
            end_tasks(tx, "id", task)?;
            end_approvals(tx, "id", task)?;
            kill(tx, "task", task)?
        }
        Scope::Agent(agent) => {
            end_tasks(tx, "agent", agent)?;
            end_approvals(tx, "agent", agent)?;
            kill(tx, "agent", agent)?
        }
        Scope::Session(sid) => {
            end_tasks(tx, "sid", sid)?;
            end_approvals(tx, "sid", sid)?;
            kill(tx, "sid", sid)?
        }
    };
    let seq: i64 = tx
        .query_one(
            "INSERT INTO revocations(scope, target, reason, at, tokens) VALUES ($1, $2, $3, $4, $5) RETURNING seq",
            &[&scope.kind(), &scope.target(), &reason, &now, &i64::try_from(n).unwrap_or(i64::MAX)],
        )?
        .try_get(0)?;
    audit::append_in(tx, &crate::store::revocation_event(scope, reason, n, seq), now)?;
    Ok((n, seq))
}

pub(in crate::store::postgres) fn scope_of(kind: &str, target: String) -> Result<Scope, StoreError> {
    Ok(match kind {
        "token" => Scope::Token(target),
        "task" => Scope::Task(target),
        "phase" => Scope::Phase(target),
        "agent" => Scope::Agent(target),
        "session" => Scope::Session(target),
        other => return Err(StoreError::Corrupt(format!("revocation scope {other}"))),
    })
}

/// A token's row, as `consume` judges it.
pub(in crate::store::postgres) struct TokenRow {
    pub(in crate::store::postgres) state: TokenState,
    pub(in crate::store::postgres) phase: i64,
    pub(in crate::store::postgres) changed_at: Option<i64>,
    pub(in crate::store::postgres) reason: Option<String>,
}

/// Why a token cannot be consumed, or `None` if it can: the same judgement
/// as the SQLite store's ([`crate::store::consumption_refusal`]).
pub(in crate::store::postgres) fn refusal(token: TokenRow, task: crate::store::TaskAt, now: i64) -> Option<Consumption> {
    crate::store::consumption_refusal(token.state, token.changed_at, token.reason, to_usize(token.phase), task, now)
}

/// A task's row as [`refusal`] reads it: state, current phase, expiry, end reason.
pub(in crate::store::postgres) fn task_at(state: &str, current_phase: i64, expires_at: i64, end_reason: Option<String>) -> Result<crate::store::TaskAt, StoreError> {
    Ok(crate::store::TaskAt { state: TaskState::parse(state)?, current_phase: to_usize(current_phase), expires_at, end_reason })
}

/// Why a token cannot be consumed now, read without changing it (`None`:
/// it can be).
pub(in crate::store::postgres) fn consume_refusal(tx: &mut Transaction<'_>, jti: &str, now: i64) -> Result<Option<Consumption>, Fail> {
    let row = tx.query_opt(
        "SELECT k.state, k.phase, k.changed_at, k.reason, t.state, t.current_phase, t.expires_at, t.end_reason
         FROM tokens k JOIN tasks t ON t.id = k.task WHERE k.jti = $1",
        &[&jti],
    )?;
    let Some(r) = row else { return Ok(Some(Consumption::Unknown)) };
    let token_state: String = r.try_get(0)?;
    let task_state: String = r.try_get(4)?;
    let token = TokenRow { state: TokenState::parse(&token_state)?, phase: r.try_get(1)?, changed_at: r.try_get(2)?, reason: r.try_get(3)? };
    let task = task_at(&task_state, r.try_get(5)?, r.try_get(6)?, r.try_get(7)?)?;
    Ok(refusal(token, task, now))
}

/// Consume in one transaction. The task's row is locked `FOR SHARE` first
/// (consumers of one task's tokens go in parallel; advancing, ending or
/// revoking the task waits for them and they for it), then the token's row
/// `FOR UPDATE` (concurrent consumers of one token queue; each sees the row
/// as the previous one committed it). So the judgement below is made on
/// rows nobody can change before this transaction ends.
pub(in crate::store::postgres) fn consume_in(tx: &mut Transaction<'_>, jti: &str, now: i64) -> Result<Consumption, Fail> {
    let task = tx.query_opt(
        "SELECT state, current_phase, expires_at, end_reason FROM tasks WHERE id = (SELECT task FROM tokens WHERE jti=$1) FOR SHARE",
        &[&jti],
    )?;
    // A token whose task does not exist is unknown, as in SQLite's join.
    let Some(task) = task else { return Ok(Consumption::Unknown) };
    let task_state: String = task.try_get(0)?;
    let task = task_at(&task_state, task.try_get(1)?, task.try_get(2)?, task.try_get(3)?)?;
    let Some(token) = tx.query_opt("SELECT state, phase, changed_at, reason FROM tokens WHERE jti=$1 FOR UPDATE", &[&jti])? else {
        return Ok(Consumption::Unknown);
    };
    let token_state: String = token.try_get(0)?;
    let token = TokenRow { state: TokenState::parse(&token_state)?, phase: token.try_get(1)?, changed_at: token.try_get(2)?, reason: token.try_get(3)? };
    if let Some(refused) = refusal(token, task, now) {
        return Ok(refused);
    }
    let n = tx.execute("UPDATE tokens SET state='consumed', changed_at=$1 WHERE jti=$2 AND state='issued'", &[&now, &jti])?;
    Ok(if n == 1 { Consumption::Consumed } else { Consumption::AlreadyConsumed { at: now } })
}
