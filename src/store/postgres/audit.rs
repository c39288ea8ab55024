//! PostgreSQL statements for the audit chain: the same records, hashes and
//! format as the SQLite store writes (src/store/sqlite/audit.rs), so that
//! `jitgate audit verify` checks either store the same way.

use ::postgres::{GenericClient, Transaction};

use super::{AUDIT_LOCK, Fail, Params, lock};
use crate::audit::{Event, GENESIS, Record, record_hash};

/// Append inside a transaction the caller opened, together with the change
/// the record is about. The audit lock, held until that transaction ends,
/// makes appends from every process take turns: each reads the head as the
/// previous appender committed it, so the chain has one record per seq and
/// never forks. (The primary key on seq would refuse a fork anyway; the
/// lock makes it never happen instead of failing a request.)
pub(super) fn append_in(tx: &mut Transaction<'_>, e: &Event, now: i64) -> Result<i64, Fail> {
    lock(tx, AUDIT_LOCK)?;
    let (prev_seq, prev_hash) = head(tx)?.unwrap_or((0, GENESIS.to_owned()));
    let seq = prev_seq + 1;
    let hash = record_hash(seq, now, e.kind, e.task.as_deref(), e.agent.as_deref(), &e.data, &prev_hash);
    tx.execute(
        "INSERT INTO audit(seq, at, kind, task, agent, data, prev_hash, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        &[&seq, &now, &e.kind, &e.task, &e.agent, &e.data.to_string(), &prev_hash, &hash],
    )?;
    Ok(seq)
}

pub(super) fn head(c: &mut impl GenericClient) -> Result<Option<(i64, String)>, Fail> {
    let row = c.query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])?;
    Ok(match row {
        Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
        None => None,
    })
}

pub(super) fn records(c: &mut impl GenericClient, clause: &str, args: Params<'_>) -> Result<Vec<Record>, Fail> {
    let sql = format!("SELECT seq, at, kind, task, agent, data, prev_hash, hash FROM audit WHERE {clause}");
    let rows = c.query(sql.as_str(), args)?;
    rows.iter()
        .map(|r| {
            let data: String = r.try_get(5)?;
            Ok(Record {
                seq: r.try_get(0)?,
                at: r.try_get(1)?,
                kind: r.try_get(2)?,
                task: r.try_get(3)?,
                agent: r.try_get(4)?,
                // Unparsable data is kept as a string so that verify reports a hash mismatch, not a crash.
                data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
                prev_hash: r.try_get(6)?,
                hash: r.try_get(7)?,
            })
        })
        .collect()
}
