//! Rows to records, the reads several operations share, and revoking by scope.

#[allow(unused_imports)]
use super::*;

pub(in crate::store::sqlite) fn task_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Task, String)> {
    let phases: String = row.get("phases")?;
    let state: String = row.get("state")?;
    let current: i64 = row.get("current_phase")?;
    Ok((
        Task {
            id: row.get("id")?,
            agent: row.get("agent")?,
            sid: row.get("sid")?,
            objective: row.get("objective")?,
            phases: serde_json::from_str::<Vec<Phase>>(&phases).unwrap_or_default(),
            current_phase: usize::try_from(current).unwrap_or(usize::MAX),
            state: TaskState::Active,
            created_at: row.get("created_at")?,
            expires_at: row.get("expires_at")?,
            end_reason: row.get("end_reason")?,
        },
        state,
    ))
}

pub(in crate::store::sqlite) fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(TokenRecord, String)> {
    let state: String = row.get("state")?;
    let phase: i64 = row.get("phase")?;
    Ok((
        TokenRecord {
            jti: row.get("jti")?,
            task: row.get("task")?,
            agent: row.get("agent")?,
            sid: row.get("sid")?,
            tool: row.get("tool")?,
            phase: usize::try_from(phase).unwrap_or(usize::MAX),
            state: TokenState::Issued,
            issued_at: row.get("issued_at")?,
            expires_at: row.get("expires_at")?,
            changed_at: row.get("changed_at")?,
            reason: row.get("reason")?,
        },
        state,
    ))
}

pub(in crate::store::sqlite) const TASK_BY_ID: &str = "SELECT * FROM tasks WHERE id=?1";

pub(in crate::store::sqlite) fn task_by_id(conn: &Connection, id: &str) -> Result<Option<Task>, StoreError> {
    let row = conn.prepare_cached(TASK_BY_ID)?.query_row(params![id], task_from_row).optional()?;
    row.map(|(mut t, state)| {
        t.state = TaskState::parse(&state)?;
        Ok(t)
    })
    .transpose()
}

pub(in crate::store::sqlite) fn token_by_jti(conn: &Connection, jti: &str) -> Result<Option<TokenRecord>, StoreError> {
    let row = conn.prepare_cached("SELECT * FROM tokens WHERE jti=?1")?.query_row(params![jti], token_from_row).optional()?;
    row.map(|(mut t, state)| {
        t.state = TokenState::parse(&state)?;
        Ok(t)
    })
    .transpose()
}

pub(in crate::store::sqlite) fn quarantine_of(conn: &Connection, agent: &str) -> Result<Option<Quarantine>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT agent, reason, since FROM quarantine WHERE agent=?1")?
        .query_row(params![agent], |r| Ok(Quarantine { agent: r.get(0)?, reason: r.get(1)?, since: r.get(2)? }))
        .optional()?)
}

/// The agent's last call; observed calls too only `with_observed` (see
/// [`crate::store::OBSERVATION_TASK_PREFIX`]).
pub(in crate::store::sqlite) fn last_call_of(conn: &Connection, agent: &str, with_observed: bool) -> Result<Option<crate::store::Call>, StoreError> {
    let sql = if with_observed {
        "SELECT jti, task, tool, at FROM calls WHERE agent=?1 ORDER BY seq DESC LIMIT 1"
    } else {
        "SELECT jti, task, tool, at FROM calls WHERE agent=?1 AND task NOT LIKE 'obs\\_%' ESCAPE '\\' ORDER BY seq DESC LIMIT 1"
    };
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params![agent], |r| Ok(crate::store::Call { jti: r.get(0)?, task: r.get(1)?, tool: r.get(2)?, at: r.get(3)? }))
        .optional()?)
}

/// The delegation a clause (`id = ?1`, `child_task = ?1`) finds.
pub(in crate::store::sqlite) fn delegation_where(conn: &Connection, clause: &str, arg: &str) -> Result<Option<crate::store::Delegation>, StoreError> {
    let sql = format!("SELECT id, parent_task, parent_agent, child_agent, objective, phases, constraints, depth, created_at, expires_at, child_task FROM delegations WHERE {clause}");
    let row = conn
        .prepare_cached(&sql)?
        .query_row(params![arg], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, Option<String>>(10)?,
            ))
        })
        .optional()?;
    let Some((id, parent_task, parent_agent, child_agent, objective, phases, constraints, depth, created_at, expires_at, child_task)) = row else { return Ok(None) };
    let phases = serde_json::from_str(&phases).map_err(|e| StoreError::Corrupt(format!("delegation {id}: phases: {e}")))?;
    Ok(Some(crate::store::Delegation { id, parent_task, parent_agent, child_agent, objective, phases, constraints, depth: u32::try_from(depth).unwrap_or(u32::MAX), created_at, expires_at, child_task }))
}

pub(in crate::store::sqlite) fn intent_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Intent> {
    Ok(Intent { jti: r.get(0)?, agent: r.get(1)?, task: r.get(2)?, tool: r.get(3)?, shape: r.get(4)?, at: r.get(5)? })
}

pub(in crate::store::sqlite) fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Revoke within an open transaction; returns how many tokens died.
/// Revoke what `scope` covers and record the revocation (its row, polled by
/// every gateway, and its audit record); returns the tokens revoked and the
/// revocation's seq.
pub(in crate::store::sqlite) fn revoke_in(tx: &rusqlite::Transaction<'_>, scope: &Scope, reason: &str, now: i64, task_state: TaskState) -> Result<(u64, i64), StoreError> {
    let end_tasks = |sql: &str, target: &str| -> Result<(), StoreError> {
        tx.prepare_cached(sql)?.execute(params![task_state.as_str(), now, reason, target])?;
        Ok(())
    };
    let kill = |sql: &str, target: &str| -> Result<u64, StoreError> {
        Ok(tx.prepare_cached(sql)?.execute(params![now, reason, target])? as u64)
    };
    // Approvals end with their task (see [`crate::store::approval_ended_with_task`]).
    let end_approvals = |tasks: &str, target: &str| -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE approvals SET expires_at=?1, note=COALESCE(note, ?2) WHERE state IN ('pending','approved') AND expires_at > ?1 AND task IN ({tasks})"
        );
        tx.prepare_cached(&sql)?.execute(params![now, crate::store::approval_ended_with_task(reason), target])?;
        Ok(())
    };
    const TOKENS: &str = "UPDATE tokens SET state='revoked', changed_at=?1, reason=?2 WHERE state='issued' AND ";
    let n = match scope {
        Scope::Token(jti) => kill(&format!("{TOKENS} jti=?3"), jti)?,
        Scope::Phase(task) => kill(&format!("{TOKENS} task=?3"), task)?,
        Scope::Task(task) => {
            end_tasks("UPDATE tasks SET state=?1, ended_at=?2, end_reason=?3 WHERE state='active' AND id=?4", task)?;
            end_approvals("SELECT id FROM tasks WHERE id=?3", task)?;
            kill(&format!("{TOKENS} task=?3"), task)?
        }
        Scope::Agent(agent) => {
            end_tasks("UPDATE tasks SET state=?1, ended_at=?2, end_reason=?3 WHERE state='active' AND agent=?4", agent)?;
            end_approvals("SELECT id FROM tasks WHERE agent=?3", agent)?;
            kill(&format!("{TOKENS} agent=?3"), agent)?
        }
        // Sessionless (2026-07-28) authority has sid ''; it never belongs to a session.
        Scope::Session(sid) if sid.is_empty() => return Err(StoreError::Backend("refusing to revoke the empty session id".into())),
        Scope::Session(sid) => {
            end_tasks("UPDATE tasks SET state=?1, ended_at=?2, end_reason=?3 WHERE state='active' AND sid=?4", sid)?;
            end_approvals("SELECT id FROM tasks WHERE sid=?3", sid)?;
            kill(&format!("{TOKENS} sid=?3"), sid)?
        }
    };
    tx.prepare_cached("INSERT INTO revocations(scope, target, reason, at, tokens) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![scope.kind(), scope.target(), reason, now, i64::try_from(n).unwrap_or(i64::MAX)])?;
    let seq = tx.last_insert_rowid();
    audit::append_in(tx, &crate::store::revocation_event(scope, reason, n, seq), now)?;
    Ok((n, seq))
}
