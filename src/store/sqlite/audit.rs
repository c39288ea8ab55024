//! SQLite statements for the audit chain.

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use crate::audit::{Event, GENESIS, Record, record_hash};
use crate::store::StoreError;

/// Append under an IMMEDIATE transaction, so that two writers (the gateway
/// and a CLI command) cannot both chain onto the same previous record.
pub(super) fn append(conn: &mut Connection, e: &Event, now: i64) -> Result<i64, StoreError> {
    append_inner(conn, e, now).map_err(|err| match err {
        StoreError::Audit(m) => StoreError::Audit(m),
        other => StoreError::Audit(other.to_string()),
    })
}

fn append_inner(conn: &mut Connection, e: &Event, now: i64) -> Result<i64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let seq = append_in(&tx, e, now)?;
    tx.commit()?;
    Ok(seq)
}

/// Append inside a transaction the caller opened (IMMEDIATE, so the chain
/// head cannot move under it) together with the change it records.
pub(super) fn append_in(tx: &rusqlite::Transaction<'_>, e: &Event, now: i64) -> Result<i64, StoreError> {
    let (prev_seq, prev_hash) = tx
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .optional()?
        .unwrap_or((0, GENESIS.to_owned()));
    let seq = prev_seq + 1;
    let hash = record_hash(seq, now, e.kind, e.task.as_deref(), e.agent.as_deref(), &e.data, &prev_hash);
    tx.prepare_cached("INSERT INTO audit(seq, at, kind, task, agent, data, prev_hash, hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")?
        .execute(params![seq, now, e.kind, e.task, e.agent, e.data.to_string(), prev_hash, hash])?;
    Ok(seq)
}

pub(super) fn head(conn: &Connection) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn.prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional()?)
}

pub(super) fn records(conn: &Connection, clause: &str, args: impl rusqlite::Params) -> Result<Vec<Record>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT seq, at, kind, task, agent, data, prev_hash, hash FROM audit WHERE {clause}"))?;
    let rows = stmt.query_map(args, |r| {
        let data: String = r.get(5)?;
        Ok(Record {
            seq: r.get(0)?,
            at: r.get(1)?,
            kind: r.get(2)?,
            task: r.get(3)?,
            agent: r.get(4)?,
            // Unparsable data is kept as a string so that verify reports a hash mismatch, not a crash.
            data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
            prev_hash: r.get(6)?,
            hash: r.get(7)?,
        })
    })?;
    rows.map(|r| r.map_err(StoreError::from)).collect()
}
