//! `jitgate store`: migrations of a PostgreSQL store, and moving an SQLite
//! deployment to PostgreSQL.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::CliError;
use crate::config::{Config, StoreConfig};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Apply pending schema migrations to the configured PostgreSQL store
    /// (`jitgate serve` also does this on start).
    Migrate(MigrateArgs),
    /// Copy every record of an SQLite store into an empty PostgreSQL store,
    /// from one consistent snapshot, in one transaction. Stop the gateway
    /// first: a store with a live gateway lease is refused. The SQLite file
    /// is brought up to this jitgate's schema, then only read.
    Copy(CopyArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG", default_value = "gateway.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// `sqlite:PATH` of the store to copy.
    #[arg(long)]
    pub from: String,
    /// `postgres://USER@HOST:PORT/DATABASE` to copy into; it must hold no records yet.
    #[arg(long)]
    pub to: String,
    /// Environment variable holding the PostgreSQL password, if any.
    #[arg(long)]
    pub password_env: Option<String>,
    /// PEM file of the CA(s) of the PostgreSQL server's certificate
    /// (default: the platform's roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

pub fn run(c: StoreCommand) -> Result<(), CliError> {
    match c {
        StoreCommand::Migrate(a) => migrate(&a),
        StoreCommand::Copy(a) => copy(&a),
    }
}

fn migrate(a: &MigrateArgs) -> Result<(), CliError> {
    let config = Config::load(&a.config)?;
    let StoreConfig::Postgres { url, password, ca_file, .. } = &config.store else {
        outln!("the store is SQLite ({}): it migrates itself when opened", config.store_path().display());
        return Ok(());
    };
    let password = password.as_ref().map(|s| s.read().map_err(|e| CliError::Other(format!("[store] password: {e}")))).transpose()?;
    let tls = crate::store::PgTls { ca_file: ca_file.clone() };
    let from = schema_version(url, password.as_deref(), &tls)?;
    // Connecting migrates (under the store's migration lock).
    let store = crate::store::PostgresStore::connect_with(url, password.as_deref(), 1, &tls).map_err(|e| CliError::Other(e.to_string()))?;
    let (_, to) = store.migrate().map_err(|e| CliError::Other(e.to_string()))?;
    if from == to {
        outln!("schema already at version {to}");
    } else {
        outln!("migrated schema from version {from} to {to}");
    }
    Ok(())
}

/// The schema version of a PostgreSQL store before migrating (0: none yet).
fn schema_version(url: &str, password: Option<&str>, tls: &crate::store::PgTls) -> Result<i64, CliError> {
    let mut client = crate::store::postgres_client(url, password, tls).map_err(|e| CliError::Other(e.to_string()))?;
    let exists: bool = client
        .query_one("SELECT to_regclass('jitgate_schema_version') IS NOT NULL", &[])
        .map_err(|e| CliError::Other(e.to_string()))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client.query_opt("SELECT version FROM jitgate_schema_version", &[]).map_err(|e| CliError::Other(e.to_string()))?;
    Ok(row.map(|r| r.get::<_, i64>(0)).unwrap_or(0))
}

/// A column's value on its way from SQLite to PostgreSQL.
#[derive(Debug)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    Real(f64),
}

fn copy(a: &CopyArgs) -> Result<(), CliError> {
    let other = |m: String| CliError::Other(m);
    let usage = |m: String| CliError::Usage(m);
    let path = a.from.strip_prefix("sqlite:").ok_or_else(|| usage("--from must be sqlite:PATH".into()))?;
    if let Some(problem) = crate::config::postgres_url_problem(&a.to) {
        return Err(usage(format!("--to {problem}")));
    }
    let password = a.password_env.as_ref().map(|v| std::env::var(v).map_err(|_| usage(format!("--password-env {v}: the environment variable {v} is not set")))).transpose()?;
    if !std::path::Path::new(path).exists() {
        return Err(usage(format!("--from: no SQLite store at {path}")));
    }
    // A live gateway is refused before anything touches the file: opening
    // it as a store would bring an older file's schema up to date.
    let looked_at = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| other(format!("{path}: {e}")))?;
    let has_leases: bool = looked_at
        .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type='table' AND name='instances'", [], |r| r.get(0))
        .map_err(|e| other(format!("{path}: {e}")))?;
    if has_leases {
        refuse_live_gateways(&looked_at).map_err(other)?;
    }
    drop(looked_at);
    drop(crate::store::SqliteStore::open(std::path::Path::new(path)).map_err(|e| other(e.to_string()))?);
    let source = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| other(format!("{path}: {e}")))?;
    // One read transaction: every table from the same moment.
    source.execute_batch("BEGIN").map_err(|e| other(format!("{path}: {e}")))?;
    refuse_live_gateways(&source).map_err(other)?;
    // Creates or migrates the PostgreSQL schema.
    let tls = crate::store::PgTls { ca_file: a.ca_file.clone() };
    drop(crate::store::PostgresStore::connect_with(&a.to, password.as_deref(), 1, &tls).map_err(|e| other(e.to_string()))?);
    let mut pg = crate::store::postgres_client(&a.to, password.as_deref(), &tls).map_err(|e| other(e.to_string()))?;
    let tables = sqlite_tables(&source).map_err(|e| other(e.to_string()))?;
    if tables.iter().any(|t| !is_identifier(t)) {
        return Err(other("the SQLite store has a table whose name is not a plain identifier; it is not a jitgate store".into()));
    }
    let mut tx = pg.transaction().map_err(|e| other(e.to_string()))?;
    // One transaction: the copy is all or nothing.
    let mut copied = Vec::new();
    for table in &tables {
        let pg_columns = pg_columns(&mut tx, table).map_err(|e| other(e.to_string()))?;
        if pg_columns.is_empty() {
            return Err(other(format!("table `{table}` of the SQLite store has no counterpart in PostgreSQL; this jitgate cannot copy it (is the PostgreSQL schema older?)")));
        }
        let present: i64 = tx.query_one(&format!("SELECT count(*) FROM {}", quote(table)), &[]).map_err(|e| other(e.to_string()))?.get(0);
        if present > 0 {
            return Err(other(format!("the PostgreSQL store already holds records (table `{table}`); copy into an empty database")));
        }
        let rows = copy_table(&source, &mut tx, table, &pg_columns).map_err(|e| other(format!("table `{table}`: {e}")))?;
        copied.push(format!("{table}: {rows}"));
    }
    reset_sequences(&mut tx, &tables).map_err(|e| other(crate::store::StoreError::from(e).to_string()))?;
    tx.commit().map_err(|e| other(format!("commit: {}", crate::store::StoreError::from(e))))?;
    outln!("copied {}", copied.join(", "));
    outln!("now set [store] url = \"{}\" in the gateway config and run `jitgate audit verify`", a.to);
    Ok(())
}

/// A gateway still running on the store would change it under the copy.
fn refuse_live_gateways(db: &rusqlite::Connection) -> Result<(), String> {
    use crate::clock::Clock as _;
    let now = crate::clock::SystemClock.now_unix();
    let live: i64 = db
        .query_row("SELECT count(*) FROM instances WHERE stopped_at IS NULL AND lease_until > ?1", [now], |r| r.get(0))
        .map_err(|e| format!("cannot read the gateways' leases: {e}"))?;
    if live > 0 {
        return Err(format!("{live} gateway process(es) still hold a lease on this store; stop them (or wait for their lease to lapse) before copying"));
    }
    Ok(())
}

/// Table and column names are put into SQL only when they are plain
/// identifiers, and then quoted.
fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') && !name.as_bytes()[0].is_ascii_digit()
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The SQLite store's tables, without SQLite's own.
fn sqlite_tables(db: &rusqlite::Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    // The full-text index of passages and its shadow tables are SQLite's own
    // index; PostgreSQL indexes the passages itself.
    Ok(names.into_iter().filter(|n| !(n == SQLITE_ONLY_INDEX || n.starts_with(&format!("{SQLITE_ONLY_INDEX}_")))).collect())
}

/// SQLite's full-text index of taint passages (a virtual table).
const SQLITE_ONLY_INDEX: &str = "taint_fts";

/// Columns only the SQLite store has: the taint row's place in its
/// full-text index.
fn sqlite_only(table: &str, column: &str) -> bool {
    matches!((table, column), ("taint", "fts"))
}

/// A PostgreSQL column: name, type, and whether it fills itself (a default).
struct PgColumn {
    name: String,
    data_type: String,
    has_default: bool,
}

/// A PostgreSQL table's columns; empty when there is no such table.
fn pg_columns(tx: &mut postgres::Transaction<'_>, table: &str) -> Result<Vec<PgColumn>, postgres::Error> {
    let rows = tx.query(
        "SELECT column_name, data_type, column_default IS NOT NULL FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        &[&table],
    )?;
    Ok(rows.iter().map(|r| PgColumn { name: r.get(0), data_type: r.get(1), has_default: r.get(2) }).collect())
}

/// Columns the PostgreSQL store derives from others: the taint ledger's key
/// is a digest of the value (PostgreSQL indexes cannot hold long passages).
fn derived(table: &str, column: &str) -> Option<&'static str> {
    match (table, column) {
        ("taint", "value_hash") => Some("value"),
        _ => None,
    }
}

/// Columns the PostgreSQL store fills itself on insert (a trigger): a
/// passage's text for its full-text index.
fn filled_by_trigger(table: &str, column: &str) -> bool {
    matches!((table, column), ("taint", "passage"))
}

fn copy_table(source: &rusqlite::Connection, tx: &mut postgres::Transaction<'_>, table: &str, pg_columns: &[PgColumn]) -> Result<u64, String> {
    // In insertion order, which tables ordered by a serial column keep.
    let all: Vec<String> = source
        .prepare(&format!("SELECT * FROM {} LIMIT 0", quote(table)))
        .map_err(|e| e.to_string())?
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .filter(|c| !sqlite_only(table, c))
        .collect();
    let listed: Vec<String> = all.iter().map(|c| quote(c)).collect();
    let mut stmt = source.prepare(&format!("SELECT {} FROM {} ORDER BY rowid", listed.join(", "), quote(table))).map_err(|e| e.to_string())?;
    let columns: Vec<String> = all;
    let mut types = Vec::new();
    for c in &columns {
        let t = pg_columns.iter().find(|p| &p.name == c).map(|p| p.data_type.clone()).ok_or_else(|| format!("column `{c}` has no counterpart in PostgreSQL"))?;
        types.push(t);
    }
    // PostgreSQL columns SQLite does not have: filled by a default, or
    // derived from another column; anything else cannot be copied.
    let mut derived_columns = Vec::new();
    for p in pg_columns.iter().filter(|p| !columns.contains(&p.name)) {
        match derived(table, &p.name) {
            Some(from) => {
                let index = columns.iter().position(|c| c == from).ok_or_else(|| format!("column `{from}` (for `{}`) is missing", p.name))?;
                derived_columns.push((p.name.clone(), index));
            }
            None if p.has_default || filled_by_trigger(table, &p.name) => {}
            None => return Err(format!("column `{}` of PostgreSQL has no counterpart in SQLite", p.name)),
        }
    }
    let names: Vec<String> = columns.iter().chain(derived_columns.iter().map(|(n, _)| n)).map(|c| quote(c)).collect();
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let insert = format!("INSERT INTO {} ({}) VALUES ({})", quote(table), names.join(", "), placeholders.join(", "));
    let insert = tx.prepare(&insert).map_err(|e| e.to_string())?;
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    let mut count = 0;
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let mut cells = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let cell = match row.get_ref(i).map_err(|e| e.to_string())? {
                rusqlite::types::ValueRef::Null => Cell::Null,
                rusqlite::types::ValueRef::Integer(v) => Cell::Int(v),
                rusqlite::types::ValueRef::Real(v) => Cell::Real(v),
                rusqlite::types::ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                rusqlite::types::ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
            };
            cells.push(cell);
        }
        let digests: Vec<Box<dyn postgres::types::ToSql + Sync>> = derived_columns
            .iter()
            .map(|(_, from)| -> Box<dyn postgres::types::ToSql + Sync> {
                use sha2::{Digest as _, Sha256};
                let bytes = match &cells[*from] {
                    Cell::Text(t) => t.as_bytes().to_vec(),
                    Cell::Blob(b) => b.clone(),
                    _ => Vec::new(),
                };
                Box::new(Sha256::digest(&bytes).to_vec())
            })
            .collect();
        let mut values: Vec<Box<dyn postgres::types::ToSql + Sync>> =
            cells.into_iter().zip(&types).map(|(c, t)| as_pg(c, t)).collect::<Result<_, _>>().map_err(|e| format!("{e}"))?;
        values.extend(digests);
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = values.iter().map(|b| b.as_ref()).collect();
        tx.execute(&insert, &params).map_err(|e| crate::store::StoreError::from(e).to_string())?;
        count += 1;
    }
    Ok(count)
}

/// Convert an SQLite value to what the PostgreSQL column takes.
fn as_pg(cell: Cell, pg_type: &str) -> Result<Box<dyn postgres::types::ToSql + Sync>, String> {
    Ok(match (cell, pg_type) {
        (Cell::Null, "bigint") => Box::new(None::<i64>),
        (Cell::Null, "integer") => Box::new(None::<i32>),
        (Cell::Null, "smallint") => Box::new(None::<i16>),
        (Cell::Null, "boolean") => Box::new(None::<bool>),
        (Cell::Null, "bytea") => Box::new(None::<Vec<u8>>),
        (Cell::Null, "double precision") => Box::new(None::<f64>),
        (Cell::Null, _) => Box::new(None::<String>),
        (Cell::Int(v), "bigint") => Box::new(v),
        (Cell::Int(v), "integer") => Box::new(i32::try_from(v).map_err(|_| format!("{v} does not fit an integer column"))?),
        (Cell::Int(v), "smallint") => Box::new(i16::try_from(v).map_err(|_| format!("{v} does not fit a smallint column"))?),
        (Cell::Int(v), "boolean") => Box::new(v != 0),
        (Cell::Int(v), "double precision") => Box::new(v as f64),
        (Cell::Int(v), "text") => Box::new(v.to_string()),
        (Cell::Real(v), "double precision") => Box::new(v),
        (Cell::Text(t), "text" | "character varying") => Box::new(t),
        (Cell::Text(t), "bytea") => Box::new(t.into_bytes()),
        (Cell::Blob(b), "bytea") => Box::new(b),
        (Cell::Blob(b), "text") => Box::new(String::from_utf8(b).map_err(|_| "binary value in a text column".to_owned())?),
        (c, t) => return Err(format!("cannot put {c:?} into a {t} column")),
    })
}

/// Serial columns of the copied tables continue after the copied rows.
fn reset_sequences(tx: &mut postgres::Transaction<'_>, tables: &[String]) -> Result<(), postgres::Error> {
    let serials = tx.query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%' AND table_name = ANY($1)",
        &[&tables],
    )?;
    for row in serials {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        if !is_identifier(&table) || !is_identifier(&column) {
            continue;
        }
        let next: i64 = tx.query_one(&format!("SELECT COALESCE(max({}), 0) + 1 FROM {}", quote(&column), quote(&table)), &[])?.get(0);
        tx.execute("SELECT setval(pg_get_serial_sequence($1, $2), $3, false)", &[&table, &column, &next])?;
    }
    // The audit chain's head row (PostgreSQL only) follows the copied chain.
    tx.execute(
        "UPDATE audit_head SET seq = last.seq, hash = last.hash FROM (SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1) last",
        &[],
    )?;
    // So do the agents' rate windows (one row per agent there, see the
    // store's schema 6), from the copied per-second counts.
    tx.execute(
        "INSERT INTO request_windows(agent, counts) SELECT agent, jsonb_object_agg(at::TEXT, n) FROM request_counts GROUP BY agent ON CONFLICT (agent) DO NOTHING",
        &[],
    )?;
    Ok(())
}
