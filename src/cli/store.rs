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
    /// Copy every record of an SQLite store into an empty PostgreSQL store
    /// (stop the gateway first; the SQLite file is only read).
    Copy(CopyArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[arg(long, default_value = "gateway.toml")]
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
}

pub fn run(c: StoreCommand) -> Result<(), CliError> {
    match c {
        StoreCommand::Migrate(a) => migrate(&a),
        StoreCommand::Copy(a) => copy(&a),
    }
}

fn migrate(a: &MigrateArgs) -> Result<(), CliError> {
    let config = Config::load(&a.config)?;
    let StoreConfig::Postgres { url, password, .. } = &config.store else {
        println!("the store is SQLite ({}): it migrates itself when opened", config.store_path().display());
        return Ok(());
    };
    let password = password.as_ref().map(|s| s.read().map_err(|e| CliError::Other(format!("[store] password: {e}")))).transpose()?;
    let from = schema_version(url, password.as_deref())?;
    // Connecting migrates (under the store's migration lock).
    let store = crate::store::PostgresStore::connect(url, password.as_deref(), 1).map_err(|e| CliError::Other(e.to_string()))?;
    let (_, to) = store.migrate().map_err(|e| CliError::Other(e.to_string()))?;
    if from == to {
        println!("schema already at version {to}");
    } else {
        println!("migrated schema from version {from} to {to}");
    }
    Ok(())
}

/// The schema version of a PostgreSQL store before migrating (0: none yet).
fn schema_version(url: &str, password: Option<&str>) -> Result<i64, CliError> {
    let mut config: postgres::Config = url.parse().map_err(|e| CliError::Other(format!("[store] url: {e}")))?;
    if let Some(p) = password {
        config.password(p);
    }
    config.connect_timeout(std::time::Duration::from_secs(5));
    let mut client = config.connect(postgres::NoTls).map_err(|e| CliError::Other(format!("cannot connect to PostgreSQL: {e}")))?;
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
    let path = a.from.strip_prefix("sqlite:").ok_or_else(|| other("--from must be sqlite:PATH".into()))?;
    if !(a.to.starts_with("postgres://") || a.to.starts_with("postgresql://")) {
        return Err(other("--to must be postgres://USER@HOST:PORT/DATABASE".into()));
    }
    let password = a.password_env.as_ref().map(|v| std::env::var(v).map_err(|_| other(format!("the environment variable {v} is not set")))).transpose()?;
    if !std::path::Path::new(path).exists() {
        return Err(other(format!("no SQLite store at {path}")));
    }
    // Opening it brings an older file's schema up to date first.
    drop(crate::store::SqliteStore::open(std::path::Path::new(path)).map_err(|e| other(e.to_string()))?);
    let source = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| other(format!("{path}: {e}")))?;
    // Creates or migrates the PostgreSQL schema.
    drop(crate::store::PostgresStore::connect(&a.to, password.as_deref(), 1).map_err(|e| other(e.to_string()))?);
    let mut pg_config: postgres::Config = a.to.parse().map_err(|e| other(format!("--to: {e}")))?;
    if let Some(p) = &password {
        pg_config.password(p);
    }
    let mut pg = pg_config.connect(postgres::NoTls).map_err(|e| other(format!("cannot connect to PostgreSQL: {e}")))?;
    let tables = sqlite_tables(&source).map_err(|e| other(e.to_string()))?;
    let mut tx = pg.transaction().map_err(|e| other(e.to_string()))?;
    // One transaction: the copy is all or nothing.
    let mut copied = Vec::new();
    for table in &tables {
        let pg_columns = pg_columns(&mut tx, table).map_err(|e| other(e.to_string()))?;
        if pg_columns.is_empty() {
            return Err(other(format!("table `{table}` of the SQLite store has no counterpart in PostgreSQL; this jitgate cannot copy it (is the PostgreSQL schema older?)")));
        }
        let present: i64 = tx.query_one(&format!("SELECT count(*) FROM {table}"), &[]).map_err(|e| other(e.to_string()))?.get(0);
        if present > 0 {
            return Err(other(format!("the PostgreSQL store already holds records (table `{table}`); copy into an empty database")));
        }
        let rows = copy_table(&source, &mut tx, table, &pg_columns).map_err(|e| other(format!("table `{table}`: {e}")))?;
        copied.push(format!("{table}: {rows}"));
    }
    reset_sequences(&mut tx).map_err(|e| other(e.to_string()))?;
    tx.commit().map_err(|e| other(format!("commit: {e}")))?;
    println!("copied {}", copied.join(", "));
    println!("now set [store] url = \"{}\" in the gateway config and run `jitgate audit verify`", a.to);
    Ok(())
}

/// The SQLite store's tables, without SQLite's own.
fn sqlite_tables(db: &rusqlite::Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

/// A PostgreSQL table's columns and their types; empty when there is no such table.
fn pg_columns(tx: &mut postgres::Transaction<'_>, table: &str) -> Result<Vec<(String, String)>, postgres::Error> {
    let rows = tx.query(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        &[&table],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn copy_table(source: &rusqlite::Connection, tx: &mut postgres::Transaction<'_>, table: &str, pg_columns: &[(String, String)]) -> Result<u64, String> {
    let mut stmt = source.prepare(&format!("SELECT * FROM {table}")).map_err(|e| e.to_string())?;
    let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let mut types = Vec::new();
    for c in &columns {
        let t = pg_columns.iter().find(|(n, _)| n == c).map(|(_, t)| t.clone()).ok_or_else(|| format!("column `{c}` has no counterpart in PostgreSQL"))?;
        types.push(t);
    }
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let insert = format!("INSERT INTO {table} ({}) VALUES ({})", columns.join(", "), placeholders.join(", "));
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
        let values: Vec<Box<dyn postgres::types::ToSql + Sync>> =
            cells.into_iter().zip(&types).map(|(c, t)| as_pg(c, t)).collect::<Result<_, _>>().map_err(|e| format!("{e}"))?;
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = values.iter().map(|b| b.as_ref()).collect();
        tx.execute(&insert, &params).map_err(|e| e.to_string())?;
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

/// Serial columns continue after the copied rows.
fn reset_sequences(tx: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> {
    let serials = tx.query(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%'",
        &[],
    )?;
    for row in serials {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        tx.execute(
            &format!("SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE((SELECT max({column}) FROM {table}), 0) + 1, false)"),
            &[],
        )?;
    }
    Ok(())
}
