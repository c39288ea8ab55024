//! Rows to records and back: tasks, tokens, counts.

#[allow(unused_imports)]
use super::*;

pub(in crate::store::postgres) fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(in crate::store::postgres) fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

pub(in crate::store::postgres) fn phases_text(phases: &[Phase]) -> Result<String, StoreError> {
    serde_json::to_string(phases).map_err(|e| StoreError::Backend(e.to_string()))
}

pub(in crate::store::postgres) fn task_from_row(r: &Row) -> Result<Task, Fail> {
    let phases: String = r.try_get("phases")?;
    let state: String = r.try_get("state")?;
    Ok(Task {
        id: r.try_get("id")?,
        agent: r.try_get("agent")?,
        sid: r.try_get("sid")?,
        objective: r.try_get("objective")?,
        phases: serde_json::from_str::<Vec<Phase>>(&phases).unwrap_or_default(),
        current_phase: to_usize(r.try_get("current_phase")?),
        state: TaskState::parse(&state)?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        end_reason: r.try_get("end_reason")?,
    })
}

pub(in crate::store::postgres) fn token_from_row(r: &Row) -> Result<TokenRecord, Fail> {
    let state: String = r.try_get("state")?;
    Ok(TokenRecord {
        jti: r.try_get("jti")?,
        task: r.try_get("task")?,
        agent: r.try_get("agent")?,
        sid: r.try_get("sid")?,
        tool: r.try_get("tool")?,
        phase: to_usize(r.try_get("phase")?),
        state: TokenState::parse(&state)?,
        issued_at: r.try_get("issued_at")?,
        expires_at: r.try_get("expires_at")?,
        changed_at: r.try_get("changed_at")?,
        reason: r.try_get("reason")?,
    })
}

/// The delegation a clause (`id = $1`, `child_task = $1`) finds.
pub(in crate::store::postgres) fn delegation_where(c: &mut impl GenericClient, clause: &str, arg: &str) -> Result<Option<crate::store::Delegation>, Fail> {
    let Some(r) = c.query_opt(&format!("SELECT id, parent_task, parent_agent, child_agent, objective, phases, constraints, depth, created_at, expires_at, child_task FROM delegations WHERE {clause}"), &[&arg])? else { return Ok(None) };
    let id: String = r.try_get(0)?;
    let phases: String = r.try_get(5)?;
    let phases = serde_json::from_str(&phases).map_err(|e| Fail::Store(StoreError::Corrupt(format!("delegation {id}: phases: {e}"))))?;
    let depth: i64 = r.try_get(7)?;
    Ok(Some(crate::store::Delegation {
        parent_task: r.try_get(1)?,
        parent_agent: r.try_get(2)?,
        child_agent: r.try_get(3)?,
        objective: r.try_get(4)?,
        phases,
        constraints: r.try_get(6)?,
        depth: u32::try_from(depth).unwrap_or(u32::MAX),
        created_at: r.try_get(8)?,
        expires_at: r.try_get(9)?,
        child_task: r.try_get(10)?,
        id,
    }))
}

pub(in crate::store::postgres) fn insert_task(c: &mut impl GenericClient, t: &Task, phases: &str) -> Result<(), Fail> {
    c.execute(
        "INSERT INTO tasks(id, agent, sid, objective, phases, current_phase, state, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        &[&t.id, &t.agent, &t.sid, &t.objective, &phases, &to_i64(t.current_phase), &t.state.as_str(), &t.created_at, &t.expires_at],
    )?;
    Ok(())
}

pub(in crate::store::postgres) fn insert_token(c: &mut impl GenericClient, t: &TokenRecord) -> Result<(), Fail> {
    c.execute(
        "INSERT INTO tokens(jti, task, agent, sid, tool, phase, state, issued_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,'issued',$7,$8)",
        &[&t.jti, &t.task, &t.agent, &t.sid, &t.tool, &to_i64(t.phase), &t.issued_at, &t.expires_at],
    )?;
    Ok(())
}
