//! PostgreSQL statements for the audit chain: the same records, hashes and
//! format as the SQLite store writes (src/store/sqlite/audit.rs), so that
//! `jitgate audit verify` checks either store the same way.

use std::sync::LazyLock;

use ::postgres::types::ToSql;
use ::postgres::{GenericClient, Transaction};

use super::{Fail, Params};
use crate::audit::{Event, Record};

/// Append inside a transaction the caller opened, together with the change
/// the record is about. The head row's lock, held until that transaction
/// ends, makes appends from every process take turns: each reads the head as
/// the previous appender committed it, so the chain has one record per seq
/// and never forks. (The primary key on seq would refuse a fork anyway.)
pub(super) fn append_in(tx: &mut Transaction<'_>, e: &Event, now: i64) -> Result<i64, Fail> {
    append(tx, e, now)
}

/// Append in one statement: the head row locked, the record chained onto
/// it, the head moved. On a client outside a transaction it commits on its
/// own.
pub(super) fn append(c: &mut impl GenericClient, e: &Event, now: i64) -> Result<i64, Fail> {
    let args = AppendArgs::of(e, now);
    let row = c.query_one(APPEND.as_str(), &args.params())?;
    Ok(row.try_get(0)?)
}

/// [`append`]'s parameters, owned.
pub(super) struct AppendArgs {
    now: i64,
    chain: ChainArgs,
}

impl AppendArgs {
    pub(super) fn of(e: &Event, now: i64) -> Self {
        Self { now, chain: ChainArgs::of(&[e], now) }
    }

    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.now];
        self.chain.push_params(&mut params);
        params
    }
}

/// [`append`]'s statement, built once.
pub(super) static APPEND: LazyLock<String> =
    LazyLock::new(|| format!("WITH {HEAD_CTE}, {} SELECT seq FROM audit_appended ORDER BY seq DESC LIMIT 1", chain_ctes(1, 2, "true")));

/// The canonical text of a record (see [`crate::audit::record_hash`]) is
/// `[seq,at,kind,task,agent,data,prev_hash]` as compact JSON. Everything but
/// `seq` and `prev_hash` is known before the head is: this is that middle
/// part, so that the statement that locks the head can hash the record.
fn middle(e: &Event, now: i64) -> String {
    let whole = serde_json::json!([now, e.kind, e.task, e.agent, e.data]).to_string();
    whole[1..whole.len() - 1].to_owned()
}

/// One record's parameters of [`chain_ctes`], owned.
struct ChainRow {
    middle: String,
    kind: &'static str,
    task: Option<String>,
    agent: Option<String>,
    data: String,
}

/// The per-record parameters of [`chain_ctes`].
pub(super) struct ChainArgs {
    rows: Vec<ChainRow>,
}

impl ChainArgs {
    pub(super) fn of(events: &[&Event], now: i64) -> Self {
        let row = |e: &&Event| ChainRow { middle: middle(e, now), kind: e.kind, task: e.task.clone(), agent: e.agent.clone(), data: e.data.to_string() };
        ChainArgs { rows: events.iter().map(row).collect() }
    }

    /// Five per record, in the order [`chain_ctes`] numbers them.
    pub(super) fn push_params<'a>(&'a self, params: &mut Vec<&'a (dyn ToSql + Sync)>) {
        for r in &self.rows {
            params.extend([&r.middle as &(dyn ToSql + Sync), &r.kind, &r.task, &r.agent, &r.data]);
        }
    }
}

/// The CTEs that append `records` records to the chain in the
/// statement they are part of, written only where `gate` (an SQL condition
/// over the statement's other CTEs) holds:
///
/// - `audit_head_locked` locks the head row. A statement that also locks
///   other rows must make their CTEs depend on it (`EXISTS (SELECT 1 FROM
///   audit_head_locked)`), so that the head is locked first, as every
///   transaction of this store does (no lock cycle); a row locked after it
///   is read as last committed (READ COMMITTED re-reads a row it waited for).
/// - `audit_rN` chain record N onto the head, hashing in SQL the same
///   canonical text as [`crate::audit::record_hash`]: SHA-256, hex.
/// - `audit_appended` inserts them; the head row follows by trigger
///   (schema v5's `audit_head_follows`).
///
/// Parameters: `$1` is the records' time, then five per record from
/// `first` on (middle text, kind, task, agent, data).
/// The statement puts [`HEAD_CTE`] first in its `WITH` list and these after
/// the CTEs `gate` names.
pub(super) const HEAD_CTE: &str = "audit_head_locked AS (SELECT seq, hash FROM audit_head FOR UPDATE)";

pub(super) fn chain_ctes(records: usize, first: usize, gate: &str) -> String {
    let mut parts = Vec::new();
    let mut inserts = Vec::new();
    for i in 0..records {
        let n = i + 1;
        let p = first + 5 * i;
        let prev = if i == 0 { "audit_head_locked".to_owned() } else { format!("audit_r{i}") };
        parts.push(format!(
            "audit_r{n} AS (SELECT p.seq + 1 AS seq, p.hash AS prev,              encode(sha256(convert_to('[' || (p.seq + 1)::TEXT || ',' || ${p}::TEXT || ',\"' || p.hash || '\"]', 'UTF8')), 'hex') AS hash FROM {prev} p)"
        ));
        inserts.push(format!(
            "SELECT r.seq, $1::BIGINT, ${}::TEXT, ${}::TEXT, ${}::TEXT, ${}::TEXT, r.prev, r.hash FROM audit_r{n} r WHERE {gate}",
            p + 1,
            p + 2,
            p + 3,
            p + 4
        ));
    }
    parts.push(format!(
        "audit_appended AS (INSERT INTO audit(seq, at, kind, task, agent, data, prev_hash, hash) {} RETURNING seq, hash)",
        inserts.join(" UNION ALL ")
    ));
    parts.join(",\n")
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
