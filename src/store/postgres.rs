//! The PostgreSQL store: several gateway replicas (and the CLI) share one
//! database, with the same behaviour as the SQLite store.
//!
//! What this module trusts: the database to keep committed rows and to run
//! transactions at READ COMMITTED, its default. What it does not trust: that
//! two replicas never act at the same moment. Every state change is one
//! transaction, and each is written so that it is correct under READ
//! COMMITTED however many connections race:
//!
//! - **Conditional updates** decide "exactly once" (consume a token, use an
//!   approval, advance a phase, take an end user's answer): `UPDATE ... WHERE
//!   state = '<expected>'`. A second updater of the same row waits for the
//!   first to commit, then PostgreSQL re-checks the `WHERE` on the committed
//!   row and finds it no longer matches, so exactly one caller changes it.
//! - **Row locks** where a decision reads one row to change another:
//!   `consume` holds its task's row `FOR SHARE` (so the task cannot advance,
//!   end or be revoked while the token is judged against it) and the token
//!   `FOR UPDATE`. Rows are always locked task first, then its tokens, as
//!   every update of tasks does, so these never deadlock with each other.
//! - **Advisory transaction locks** serialise what no single row can: the
//!   audit chain head (one chain, no forks), the order in which revocations
//!   commit (pollers on other replicas never skip one), `begin_task`'s
//!   active-task cap, and an agent's request-rate window and taint ledger.
//!   A transaction takes every advisory lock it needs first, before any row
//!   lock, and always in the order audit, revocations, per-agent; nothing
//!   that holds a row lock ever waits for an advisory lock, so there is no
//!   cycle. Each lock is released when its transaction ends, and each
//!   statement after it (READ COMMITTED takes a fresh snapshot per
//!   statement) sees everything the previous holder committed.
//! - A deadlock or serialization failure (SQLSTATE 40P01/40001), which
//!   PostgreSQL reports only after rolling the transaction back, is retried
//!   a few times; every other error is a refusal (fail closed). A transaction
//!   cut off by a lost connection is never retried: it may have committed.
//!
//! Time comes from the callers (unix seconds); the database clock decides
//! nothing.
//!
//! The schema is versioned (`jitgate_schema_version`, one row) and migrated
//! by [`PostgresStore::connect`] under an advisory lock, so replicas starting
//! together migrate once. A binary refuses a schema newer than it knows.
//!
//! Connections: an r2d2 pool that tests each connection as it is checked
//! out, so that after the database restarts the dead connections are
//! replaced instead of failing calls forever.
//!
//! TLS: rustls (ring), verifying the server's certificate against the
//! platform's roots or the configured CA file. The URL's `sslmode` decides
//! whether TLS is required (`require`), tried (`prefer`) or off (`disable`);
//! without one, TLS is required unless every `host` and every `hostaddr` is
//! a loopback address or a Unix socket, where it is tried. A certificate that does not verify
//! is never accepted, whatever the mode.

mod async_units;
mod audit;
mod group_commit;
mod human;
mod pool;
mod runtime;
mod schema;
mod units;

use std::time::Duration;

use ::postgres::error::SqlState;
use ::postgres::types::ToSql;
use ::postgres::{Client, GenericClient, Row, Transaction};
/// The driver's connection settings (the async client's type; the
/// synchronous client's wraps it).
use deadpool_postgres::tokio_postgres::Config as PgConfig;

use schema::{LATEST, MIGRATIONS};
use super::{Approval, BeginTask, BreakGlassGrant, DecideOutcome, Intent, Quarantine};
use super::{Call, Consumption, Phase, Revocation, Scope, Store, StoreError, Task, TaskState, TokenRecord, TokenState};


/// Advisory lock keys (`pg_advisory_xact_lock(bigint)`), fixed for every
/// jitgate version: replicas of different versions must agree on them.
/// Migrations run one at a time.
const MIGRATION_LOCK: i64 = 0x6a69_7467_6174_6501;
/// The audit chain head: one appender at a time, so no two records chain
/// onto the same previous one.
const AUDIT_LOCK: i64 = 0x6a69_7467_6174_6502;
/// Revocations commit one at a time, in seq order (see [`revoke_in`]).
const REVOCATION_LOCK: i64 = 0x6a69_7467_6174_6503;
/// Per-agent locks (`pg_advisory_xact_lock(int, hashtext(agent))`; the
/// two-key form has its own key space). A hash collision only makes two
/// agents wait for each other. (`0x6a67_0001` was the rate window's
/// until schema 6 made the window a row; not to be reused while replicas
/// of schema 5 may run.)
const TAINT_LOCK: i32 = 0x6a67_0002;

/// How long connecting may take before the store counts as down (unless
/// the URL sets `connect_timeout`), and how long a call waits for a pooled
/// connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts of a transaction that PostgreSQL rolled back for a deadlock or
/// a serialization failure.
const MAX_ATTEMPTS: u32 = 5;

use pool::Manager;

/// How connections to PostgreSQL are protected.
#[derive(Debug, Clone, Default)]
pub struct PgTls {
    /// PEM file of the CA(s) that sign the server's certificate; default:
    /// the platform's root certificates.
    pub ca_file: Option<std::path::PathBuf>,
}

/// The rustls connector for the pool.
fn tls_connector(tls: &PgTls) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| StoreError::Backend(format!("[store] ca_file {}: not a PEM certificate file ({e})", path.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(StoreError::Backend(format!("[store] ca_file {} holds no usable CA certificate", path.display())));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// One plain client (no pool, no migration) with the store's URL, password
/// and TLS rules, for operator commands that read tables directly
/// (`jitgate store copy`). Call it where blocking is allowed.
pub fn direct_client(url: &str, password: Option<&str>, tls: &PgTls) -> Result<Client, StoreError> {
    let mut config = client_config(url, password)?;
    default_ssl_mode(url, &mut config);
    let connector = tls_connector(tls)?;
    let where_ = describe(&config);
    ::postgres::Config::from(config)
        .connect(connector)
        .map_err(|e| StoreError::Backend(format!("cannot connect to the PostgreSQL store ({where_}): {}", pool::ConnectError::from(&e))))
}

/// Without an explicit `sslmode`, TLS is required unless every host and
/// every `hostaddr` is a loopback address or a Unix socket. A `hostaddr` is
/// where the driver actually connects, whatever `host` says, so a loopback
/// `host` with a remote `hostaddr` is remote. An explicit `sslmode` is kept
/// as written.
fn default_ssl_mode(url: &str, config: &mut PgConfig) {
    if parameter_names(url).iter().any(|name| name == "sslmode") {
        return;
    }
    let hosts_local = config.get_hosts().iter().all(|h| match h {
        ::postgres::config::Host::Tcp(name) => {
            name == "localhost" || name.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        ::postgres::config::Host::Unix(_) => true,
    });
    let addrs_local = config.get_hostaddrs().iter().all(std::net::IpAddr::is_loopback);
    if !(hosts_local && addrs_local) {
        config.ssl_mode(::postgres::config::SslMode::Require);
    }
}

/// The parameter names a connection string sets, read the way the driver
/// reads them. The driver's config cannot say whether `sslmode` was given
/// (absent reads as `prefer`), and a substring search would find
/// `sslmode=` in a user name, a parameter's value or the database name,
/// leaving a remote database on the downgradable `prefer`.
fn parameter_names(url: &str) -> Vec<String> {
    match url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")) {
        Some(rest) => url_parameter_names(rest),
        None => keyword_parameter_names(url),
    }
}

/// A URL's parameter names: those of its query string, percent-decoded. As
/// in the driver, the user part ends at the first `@` and the query starts
/// at the first `?` after it; each parameter is a name up to the next `=`
/// and a value up to the next `&`.
fn url_parameter_names(rest: &str) -> Vec<String> {
    let after_user = rest.split_once('@').map_or(rest, |(_, r)| r);
    let Some((_, mut left)) = after_user.split_once('?') else { return Vec::new() };
    let mut names = Vec::new();
    while let Some((name, after)) = left.split_once('=') {
        names.push(percent_decode(name));
        left = after.split_once('&').map_or("", |(_, r)| r);
    }
    names
}

/// The keys of a `key=value` connection string, as the driver tokenizes it:
/// whitespace-separated, a value either `'quoted'` or up to whitespace, with
/// a backslash escaping the next character in either.
fn keyword_parameter_names(s: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            name.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if name.is_empty() || chars.next() != Some('=') {
            return names;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' if quoted => break,
                c if c.is_whitespace() && !quoted => break,
                _ => {}
            }
        }
        names.push(name);
    }
}

/// Percent-decoding as the driver does it: `%` and two hex digits is a
/// byte; anything else stays as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|h| (*h as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a statement failed inside this module. The driver's error is kept
/// as it is until the end, so that its SQLSTATE decides whether to retry.
enum Fail {
    Pg(::postgres::Error),
    Store(StoreError),
}

impl From<::postgres::Error> for Fail {
    fn from(e: ::postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Pg(e) => StoreError::from(e),
            Fail::Store(e) => e,
        }
    }
}

/// Did PostgreSQL roll the transaction back so that running it again is safe?
fn retryable(f: &Fail) -> bool {
    let Fail::Pg(e) = f else { return false };
    e.code().is_some_and(|c| *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// PostgreSQL-backed [`Store`], shared by any number of processes.
pub struct PostgresStore {
    /// Always `Some` until dropped (taken in `Drop`, see there).
    pool: Option<r2d2::Pool<Manager>>,
    /// The request path's units of work ([`async_units`]): the async
    /// client's pool and its group-committing writer.
    async_parts: Option<async_units::AsyncParts>,
}

/// Run `f`, which may block on the synchronous PostgreSQL client, from
/// whatever thread calls the store. The client drives each request with a
/// runtime of its own, and tokio forbids starting a runtime on a thread that
/// is already driving one (a worker, or inside `block_on`): there it would
/// panic. On a multi-threaded runtime `block_in_place` gives the thread up
/// for the duration; on a current-thread runtime (where that is not allowed)
/// the work runs on a scoped thread of its own. Blocking-pool threads and
/// plain threads run it directly.
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::CurrentThread => {
            std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }
        Ok(_) => tokio::task::block_in_place(f),
        Err(_) => f(),
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing the pooled connections blocks on the client's runtime too.
        if let Some(pool) = self.pool.take() {
            blocking(move || drop(pool));
        }
    }
}

impl PostgresStore {
    /// Connect (a pool of up to `pool_size` connections), apply pending
    /// migrations and check that the schema is not newer than this binary.
    ///
    /// `url` is libpq-style, `postgres://user@host:port/database`; the
    /// password, when given, comes from outside the config (environment or
    /// file) and overrides one in the URL.
    ///
    /// ```no_run
    /// let store = jitgate::store::PostgresStore::connect("postgres://jitgate@db:5432/jitgate", Some("secret"), 8)?;
    /// # Ok::<(), jitgate::store::StoreError>(())
    /// ```
    pub fn connect(url: &str, password: Option<&str>, pool_size: u32) -> Result<Self, StoreError> {
        Self::connect_with(url, password, pool_size, &PgTls::default())
    }

    /// [`PostgresStore::connect`] with TLS settings.
    pub fn connect_with(url: &str, password: Option<&str>, pool_size: u32, tls: &PgTls) -> Result<Self, StoreError> {
        let store = Self::open(url, password, pool_size, tls)?;
        store.migrate()?;
        Ok(store)
    }

    /// Connect without migrating, for commands that only read: refuses a
    /// database whose schema is missing or older than this binary's.
    pub fn connect_existing(url: &str, password: Option<&str>, pool_size: u32) -> Result<Self, StoreError> {
        Self::connect_existing_with(url, password, pool_size, &PgTls::default())
    }

    /// [`PostgresStore::connect_existing`] with TLS settings.
    pub fn connect_existing_with(url: &str, password: Option<&str>, pool_size: u32, tls: &PgTls) -> Result<Self, StoreError> {
        let store = Self::open(url, password, pool_size, tls)?;
        let found = store.with_client(schema_version)?;
        match found {
            None => Err(StoreError::Backend(
                "the PostgreSQL database has no jitgate schema yet; run `jitgate store migrate` (or start `jitgate serve`, which migrates) first".into(),
            )),
            Some(v) if v < LATEST => Err(StoreError::Backend(format!(
                "the PostgreSQL store's schema is version {v}, older than this jitgate needs ({LATEST}); run `jitgate store migrate`"
            ))),
            Some(v) if v > LATEST => Err(newer_schema(v)),
            Some(_) => Ok(store),
        }
    }

    /// Apply pending migrations, one replica at a time; returns the schema
    /// version before and after.
    pub fn migrate(&self) -> Result<(i64, i64), StoreError> {
        self.transaction(|tx| {
            // Replicas starting together queue here; the second finds the
            // work done. The version table itself is created under the lock
            // too, as two concurrent CREATE TABLE IF NOT EXISTS can collide.
            lock(tx, MIGRATION_LOCK)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS jitgate_schema_version (
                     one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
                     version BIGINT NOT NULL
                 )",
            )?;
            let from = schema_version(tx)?.unwrap_or(0);
            if from > LATEST {
                return Err(newer_schema(from).into());
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(from).unwrap_or(usize::MAX)) {
                tx.batch_execute(sql).map_err(|e| StoreError::Backend(format!("schema migration {} failed: {e}", i + 1)))?;
            }
            tx.execute(
                "INSERT INTO jitgate_schema_version(one, version) VALUES (true, $1) ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                &[&LATEST],
            )?;
            Ok((from, LATEST))
        })
    }

    fn open(url: &str, password: Option<&str>, pool_size: u32, tls: &PgTls) -> Result<Self, StoreError> {
        let mut config = client_config(url, password)?;
        default_ssl_mode(url, &mut config);
        let connector = tls_connector(tls)?;
        if pool_size == 0 {
            return Err(StoreError::Backend("the PostgreSQL pool size must be at least 1".into()));
        }
        let where_ = describe(&config);
        // Checked out connections are not tested first: that would cost a
        // round trip on every store operation. After PostgreSQL restarts, a
        // dead connection fails its one call (closed: store_unavailable, and
        // a cut-off transaction is never retried, as it may have committed)
        // and r2d2 then drops it, as it does any connection the driver marks
        // closed, so the pool recovers by itself.
        let outage = std::sync::Arc::new(pool::Outage::default());
        let async_pool = async_units::pool(config.clone(), connector.clone(), pool_size)?;
        let manager = Manager::new(config.into(), connector, outage.clone());
        // One connection first, by hand: a database that is down, or that
        // refuses this user or password, fails here at once with its own
        // reason, where r2d2 would retry until its timeout and then say
        // only that it timed out.
        // (Closing the connection blocks too: it is dropped inside.)
        blocking(|| r2d2::ManageConnection::connect(&manager).map(drop))
            .map_err(|e| StoreError::Backend(format!("cannot connect to the PostgreSQL store ({where_}): {e}")))?;
        let pool = blocking(|| r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .test_on_check_out(false)
            .error_handler(Box::new(pool::OutageReporter(outage)))
            .build(manager))
            .map_err(|e| StoreError::Backend(format!("cannot connect to the PostgreSQL store ({where_}): {e}")))?;
        Ok(Self { pool: Some(pool), async_parts: Some(async_units::AsyncParts::new(async_pool)) })
    }

    fn checkout(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        let pool = self.pool.as_ref().ok_or_else(|| StoreError::Backend("the PostgreSQL store was closed".into()))?;
        // r2d2's error names the last failed connection's reason, if any
        // connection failed; otherwise every connection was busy.
        pool.get().map_err(|e| {
            let why = e.to_string();
            let hint = if why.contains(": ") { "" } else { "; every connection of the pool was busy, or the store does not answer" };
            StoreError::Backend(format!("no connection to the PostgreSQL store within {} s ({why}{hint})", CONNECT_TIMEOUT.as_secs()))
        })
    }

    /// Run `body` in one transaction (READ COMMITTED), committed if it
    /// returns Ok and rolled back otherwise; retried when PostgreSQL rolled
    /// it back for a deadlock or a serialization failure.
    fn transaction<T: Send>(&self, body: impl FnMut(&mut Transaction<'_>) -> Result<T, Fail> + Send) -> Result<T, StoreError> {
        blocking(|| self.transaction_here(body))
    }

    fn transaction_here<T>(&self, mut body: impl FnMut(&mut Transaction<'_>) -> Result<T, Fail>) -> Result<T, StoreError> {
        let mut conn = self.checkout()?;
        let mut attempt = 1;
        loop {
            let result = (|| {
                let mut tx = conn.transaction()?;
                let value = body(&mut tx)?;
                tx.commit()?;
                Ok(value)
            })();
            match result {
                Err(f) if attempt < MAX_ATTEMPTS && retryable(&f) => {
                    std::thread::sleep(Duration::from_millis(5 << attempt));
                    attempt += 1;
                }
                other => return other.map_err(StoreError::from),
            }
        }
    }

    /// Run statements outside a transaction (each commits on its own), with
    /// the same retries: used where each statement is safe on its own and
    /// safe to repeat.
    fn with_client<T: Send>(&self, body: impl FnMut(&mut Client) -> Result<T, Fail> + Send) -> Result<T, StoreError> {
        blocking(|| self.with_client_here(body))
    }

    fn with_client_here<T>(&self, mut body: impl FnMut(&mut Client) -> Result<T, Fail>) -> Result<T, StoreError> {
        let mut conn = self.checkout()?;
        let mut attempt = 1;
        loop {
            match body(&mut conn) {
                Err(f) if attempt < MAX_ATTEMPTS && retryable(&f) => {
                    std::thread::sleep(Duration::from_millis(5 << attempt));
                    attempt += 1;
                }
                other => return other.map_err(StoreError::from),
            }
        }
    }
}

/// The driver's config from the URL, with the password, a connect timeout
/// and the application name (seen in `pg_stat_activity`).
fn client_config(url: &str, password: Option<&str>) -> Result<PgConfig, StoreError> {
    // The URL is not echoed back: it may hold a password.
    let mut config: PgConfig = url.parse().map_err(|e| {
        StoreError::Backend(format!(
            "the PostgreSQL URL is not valid ({e}); write it as postgres://user@host:port/database, with the password in its file or environment variable"
        ))
    })?;
    if let Some(p) = password {
        config.password(p);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("jitgate");
    }
    Ok(config)
}

/// Where the store is, for messages (never the password).
fn describe(config: &PgConfig) -> String {
    let host = match config.get_hosts().first() {
        Some(::postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(::postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("(default)");
    format!("database `{}` on {host}:{port} as user `{user}`", config.get_dbname().unwrap_or("(default)"))
}

fn newer_schema(found: i64) -> StoreError {
    StoreError::Backend(format!(
        "the PostgreSQL store's schema is version {found}, newer than this jitgate knows (version {LATEST}): a newer jitgate migrated it; upgrade this jitgate to the same version as the other replicas"
    ))
}

/// The schema version, or None when the version table does not exist.
fn schema_version(c: &mut impl GenericClient) -> Result<Option<i64>, Fail> {
    let exists: bool = c.query_one("SELECT to_regclass('jitgate_schema_version') IS NOT NULL", &[])?.try_get(0)?;
    if !exists {
        return Ok(None);
    }
    let row = c.query_opt("SELECT version FROM jitgate_schema_version", &[])?;
    Ok(Some(match row {
        Some(r) => r.try_get(0)?,
        None => 0,
    }))
}

/// Take an advisory lock until the transaction ends. Re-entrant: taking a
/// lock the transaction holds is a no-op in effect.
fn lock(tx: &mut Transaction<'_>, key: i64) -> Result<(), Fail> {
    if key == AUDIT_LOCK {
        // The audit chain's head row (schema v5), which every appender locks
        // first, the request path's single-statement units of work too
        // (`units`): a row lock, since those cannot take an advisory lock
        // before their first row lock within one statement.
        tx.execute("SELECT 1 FROM audit_head FOR UPDATE", &[])?;
        return Ok(());
    }
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])?;
    Ok(())
}

/// Take an agent's advisory lock of one kind until the transaction ends.
fn lock_agent(tx: &mut Transaction<'_>, kind: i32, agent: &str) -> Result<(), Fail> {
    tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&kind, &agent])?;
    Ok(())
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn phases_text(phases: &[Phase]) -> Result<String, StoreError> {
    serde_json::to_string(phases).map_err(|e| StoreError::Backend(e.to_string()))
}

fn task_from_row(r: &Row) -> Result<Task, Fail> {
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

fn token_from_row(r: &Row) -> Result<TokenRecord, Fail> {
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

fn insert_task(c: &mut impl GenericClient, t: &Task, phases: &str) -> Result<(), Fail> {
    c.execute(
        "INSERT INTO tasks(id, agent, sid, objective, phases, current_phase, state, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        &[&t.id, &t.agent, &t.sid, &t.objective, &phases, &to_i64(t.current_phase), &t.state.as_str(), &t.created_at, &t.expires_at],
    )?;
    Ok(())
}

fn insert_token(c: &mut impl GenericClient, t: &TokenRecord) -> Result<(), Fail> {
    c.execute(
        "INSERT INTO tokens(jti, task, agent, sid, tool, phase, state, issued_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,'issued',$7,$8)",
        &[&t.jti, &t.task, &t.agent, &t.sid, &t.tool, &to_i64(t.phase), &t.issued_at, &t.expires_at],
    )?;
    Ok(())
}

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
/// ([`super::revocation_event`]), so every caller takes [`AUDIT_LOCK`]
/// before [`REVOCATION_LOCK`] (the module's lock order: the audit lock
/// first).
fn revoke_in(tx: &mut Transaction<'_>, scope: &Scope, reason: &str, now: i64, task_state: TaskState) -> Result<(u64, i64), Fail> {
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
    // Approvals end with their task (see [`super::approval_ended_with_task`]). A person deciding at
    // the same moment locks only the approval (after the audit lock), so
    // the two cannot wait on each other.
    let end_approvals = |tx: &mut Transaction<'_>, column: &str, target: &str| -> Result<(), Fail> {
        let sql = format!(
            "UPDATE approvals SET expires_at=$1, note=COALESCE(note, $2) WHERE state IN ('pending','approved') AND expires_at > $1 AND task IN (SELECT id FROM tasks WHERE {column}=$3)"
        );
        tx.execute(sql.as_str(), &[&now, &super::approval_ended_with_task(reason), &target])?;
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
    audit::append_in(tx, &super::revocation_event(scope, reason, n, seq), now)?;
    Ok((n, seq))
}

fn scope_of(kind: &str, target: String) -> Result<Scope, StoreError> {
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
struct TokenRow {
    state: TokenState,
    phase: i64,
    changed_at: Option<i64>,
    reason: Option<String>,
}

/// Why a token cannot be consumed, or `None` if it can: the same judgement
/// as the SQLite store's ([`super::consumption_refusal`]).
fn refusal(token: TokenRow, task: super::TaskAt, now: i64) -> Option<Consumption> {
    super::consumption_refusal(token.state, token.changed_at, token.reason, to_usize(token.phase), task, now)
}

/// A task's row as [`refusal`] reads it: state, current phase, expiry, end reason.
fn task_at(state: &str, current_phase: i64, expires_at: i64, end_reason: Option<String>) -> Result<super::TaskAt, StoreError> {
    Ok(super::TaskAt { state: TaskState::parse(state)?, current_phase: to_usize(current_phase), expires_at, end_reason })
}

/// A failed write that carried audit records is an audit failure for the
/// caller (`audit_unavailable`), as a failed append is.
/// A record's failed append inside a transaction, reported as the audit
/// failure it is; a deadlock or serialization failure stays what it is, so
/// that the transaction is run again.
fn as_audit_failure(f: Fail) -> Fail {
    if retryable(&f) { f } else { Fail::Store(audit_or_store(StoreError::from(f))) }
}

fn audit_or_store(e: StoreError) -> StoreError {
    match e {
        StoreError::Backend(m) => StoreError::Audit(m),
        other => other,
    }
}

/// Why a token cannot be consumed now, read without changing it (`None`:
/// it can be).
fn consume_refusal(tx: &mut Transaction<'_>, jti: &str, now: i64) -> Result<Option<Consumption>, Fail> {
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
fn consume_in(tx: &mut Transaction<'_>, jti: &str, now: i64) -> Result<Consumption, Fail> {
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

impl Store for PostgresStore {
    fn units(&self) -> Option<&dyn super::units::AsyncUnits> {
        Some(self)
    }

    fn create_task(&self, t: &Task) -> Result<(), StoreError> {
        let phases = phases_text(&t.phases)?;
        self.with_client(|c| insert_task(c, t, &phases))
    }

    fn begin_task(&self, t: &Task, session: Option<(&str, &str)>, event: &crate::audit::Event, max_active: usize, now: i64) -> Result<BeginTask, StoreError> {
        let phases = phases_text(&t.phases)?;
        self.transaction(|tx| {
            // The audit lock, which this transaction needs anyway, also
            // makes every begin_task (and quarantine) wait for the one
            // before to commit: the reads below see its task, so two
            // concurrent requests cannot both pass the cap, and a
            // quarantine committed first is seen.
            lock(tx, AUDIT_LOCK)?;
            if let Some(row) = tx.query_opt("SELECT reason FROM quarantine WHERE agent=$1", &[&t.agent])? {
                return Ok(BeginTask::Quarantined(row.try_get(0)?));
            }
            let active: i64 = tx.query_one("SELECT count(*) FROM tasks WHERE agent=$1 AND state='active'", &[&t.agent])?.try_get(0)?;
            let active = to_usize(active);
            if active >= max_active {
                return Ok(BeginTask::TooMany(active));
            }
            audit::append_in(tx, event, now)?;
            if let Some((sid, instance)) = session {
                tx.execute(
                    "INSERT INTO sessions(sid, agent, opened_at, instance) VALUES ($1,$2,$3,$4) ON CONFLICT (sid) DO NOTHING",
                    &[&sid, &t.agent, &now, &instance],
                )?;
            }
            insert_task(tx, t, &phases)?;
            Ok(BeginTask::Created)
        })
    }

    fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        self.with_client(|c| c.query_opt("SELECT * FROM tasks WHERE id=$1", &[&id])?.map(|r| task_from_row(&r)).transpose())
    }

    fn advance_phase(&self, task: &str, from: usize, now: i64) -> Result<bool, StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            lock(tx, REVOCATION_LOCK)?;
            // Conditional: of concurrent advances from the same phase, the
            // first to commit moves it; the others re-check the row as
            // committed and match nothing.
            let moved = tx.execute(
                "UPDATE tasks SET current_phase=current_phase+1 WHERE id=$1 AND state='active' AND current_phase=$2 AND expires_at>$3",
                &[&task, &to_i64(from), &now],
            )?;
            if moved == 1 {
                revoke_in(tx, &Scope::Phase(task.to_owned()), &format!("phase {} ended", from.saturating_add(1)), now, TaskState::Active)?;
            }
            Ok(moved == 1)
        })
    }

    fn end_task(&self, task: &str, outcome: &str, now: i64) -> Result<bool, StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            lock(tx, REVOCATION_LOCK)?;
            let state: Option<String> = tx.query_opt("SELECT state FROM tasks WHERE id=$1 FOR UPDATE", &[&task])?.map(|r| r.try_get(0)).transpose()?;
            let active = state.as_deref() == Some("active");
            if active {
                revoke_in(tx, &Scope::Task(task.to_owned()), &format!("task ended: {outcome}"), now, TaskState::Ended)?;
            }
            Ok(active)
        })
    }

    fn record_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        self.with_client(|c| insert_token(c, t))
    }

    fn token(&self, jti: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.with_client(|c| c.query_opt("SELECT * FROM tokens WHERE jti=$1", &[&jti])?.map(|r| token_from_row(&r)).transpose())
    }

    fn consume(&self, jti: &str, now: i64) -> Result<Consumption, StoreError> {
        self.transaction(|tx| consume_in(tx, jti, now))
    }

    fn revoke(&self, scope: &Scope, reason: &str, now: i64) -> Result<Revocation, StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            lock(tx, REVOCATION_LOCK)?;
            let (tokens, seq) = revoke_in(tx, scope, reason, now, TaskState::Revoked)?;
            Ok(Revocation { seq, scope: scope.clone(), reason: reason.to_owned(), at: now, tokens })
        })
    }

    fn expire_tasks(&self, now: i64) -> Result<Vec<String>, StoreError> {
        // Every replica asks every second: the locks below (the audit's
        // among them) are taken only when some task has run out.
        let due = self.with_client(|c| Ok(c.query_opt("SELECT 1 FROM tasks WHERE state='active' AND expires_at<=$1 LIMIT 1", &[&now])?.is_some()))?;
        if !due {
            return Ok(Vec::new());
        }
        self.transaction(|tx| {
            // Under the revocation lock no other transaction changes a
            // task's state, so the list is exact; a second replica
            // expiring at the same moment finds nothing left.
            lock(tx, AUDIT_LOCK)?;
            lock(tx, REVOCATION_LOCK)?;
            let ids: Vec<String> = tx
                .query("SELECT id FROM tasks WHERE state='active' AND expires_at<=$1 ORDER BY expires_at, id", &[&now])?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            for id in &ids {
                revoke_in(tx, &Scope::Task(id.clone()), "task TTL expired", now, TaskState::Expired)?;
            }
            Ok(ids)
        })
    }

    fn revocations_since(&self, seq: i64) -> Result<Vec<Revocation>, StoreError> {
        self.with_client(|c| {
            let rows = c.query("SELECT seq, scope, target, reason, at, tokens FROM revocations WHERE seq>$1 ORDER BY seq", &[&seq])?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let kind: String = r.try_get(1)?;
                let tokens: i64 = r.try_get(5)?;
                out.push(Revocation {
                    seq: r.try_get(0)?,
                    scope: scope_of(&kind, r.try_get(2)?)?,
                    reason: r.try_get(3)?,
                    at: r.try_get(4)?,
                    tokens: u64::try_from(tokens).unwrap_or(0),
                });
            }
            Ok(out)
        })
    }

    fn active_tasks_of(&self, agent: &str) -> Result<Vec<String>, StoreError> {
        self.with_client(|c| {
            let rows = c.query("SELECT id FROM tasks WHERE agent=$1 AND state='active' ORDER BY created_at, id", &[&agent])?;
            Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
        })
    }

    fn recent_tasks(&self, agent: Option<&str>, since: i64, before: Option<(i64, String)>, limit: usize) -> Result<Vec<Task>, StoreError> {
        let (before_at, before_id) = before.unwrap_or((i64::MAX, String::new()));
        self.with_client(|c| {
            let rows = c.query(
                "SELECT * FROM tasks WHERE created_at >= $1 AND ($2::TEXT IS NULL OR agent = $2::TEXT)
                 AND (created_at < $3 OR (created_at = $3 AND ($4::TEXT = '' OR id < $4::TEXT)))
                 ORDER BY created_at DESC, id DESC LIMIT $5",
                &[&since, &agent, &before_at, &before_id, &to_i64(limit)],
            )?;
            rows.iter().map(task_from_row).collect()
        })
    }

    fn session_opened(&self, sid: &str, agent: &str, instance: &str, now: i64) -> Result<(), StoreError> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO sessions(sid, agent, opened_at, instance) VALUES ($1,$2,$3,$4) ON CONFLICT (sid) DO NOTHING",
                &[&sid, &agent, &now, &instance],
            )?;
            Ok(())
        })
    }

    fn register_instance(&self, id: &str, kind: &str, now: i64, lease_until: i64) -> Result<(), StoreError> {
        self.with_client(|c| runtime::register_instance(c, id, kind, now, lease_until))
    }

    fn renew_instance(&self, id: &str, lease_until: i64) -> Result<bool, StoreError> {
        self.with_client(|c| runtime::renew_instance(c, id, lease_until))
    }

    fn end_instance(&self, id: &str, reason: &str, now: i64) -> Result<Vec<Revocation>, StoreError> {
        self.transaction(|tx| runtime::end_instance(tx, id, reason, now))
    }

    fn lapsed_instances(&self, now: i64) -> Result<Vec<String>, StoreError> {
        self.with_client(|c| runtime::lapsed_instances(c, now))
    }

    fn record_taint(&self, agent: &str, entries: &[crate::taint::TaintEntry], source: &crate::taint::Source, now: i64, max: usize) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.transaction(|tx| runtime::record_taint(tx, agent, entries, source, now, max))
    }

    fn taint_ledger(&self, agent: &str) -> Result<crate::taint::TaintLedger, StoreError> {
        self.with_client(|c| runtime::taint_ledger(c, agent))
    }

    fn taint_lookup(&self, agent: &str, probe: &crate::taint::TaintProbe) -> Result<crate::taint::TaintLedger, StoreError> {
        self.with_client(|c| runtime::taint_lookup(c, agent, probe))
    }

    fn forget_taint(&self, before: i64) -> Result<u64, StoreError> {
        self.with_client(|c| runtime::forget_taint(c, before))
    }

    fn count_request(&self, agent: &str, now: i64) -> Result<u32, StoreError> {
        self.with_client(|c| units::count_request(c, agent, now))
    }

    fn dpop_proof_first_use(&self, jkt: &str, jti: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        self.with_client(|c| runtime::dpop_proof_first_use(c, jkt, jti, expires_at, now))
    }


    fn read_request(&self, read: &super::RequestRead) -> Result<super::RequestState, StoreError> {
        self.with_client(|c| units::read_request(c, read))
    }

    fn grant(&self, grant: &super::Grant<'_>) -> Result<super::Granted, StoreError> {
        // One statement: it commits on its own, all or nothing.
        self.with_client(|c| units::grant(c, grant)).map_err(audit_or_store)
    }

    fn consume_for_call(&self, jti: &str, forwarded: &crate::audit::Event, now: i64) -> Result<Consumption, StoreError> {
        // Almost always one statement. When it consumed nothing, a
        // transaction that consumes nothing says why; should the token be
        // consumable after all (its task's row moved in between), the
        // statement is tried again.
        for _ in 0..3 {
            if self.with_client(|c| units::consume_for_call(c, jti, forwarded, now)).map_err(audit_or_store)? {
                return Ok(Consumption::Consumed);
            }
            let why = self.transaction(|tx| consume_refusal(tx, jti, now))?;
            if let Some(refused) = why {
                return Ok(refused);
            }
        }
        Err(StoreError::Backend(format!("token {jti} could not be consumed: its task kept changing; try again")))
    }

    fn create_approval(&self, a: &Approval) -> Result<(), StoreError> {
        self.with_client(|c| human::create_approval(c, a))
    }

    fn open_approval(&self, a: &Approval, max_pending: usize, record: &crate::audit::Event, now: i64) -> Result<Option<usize>, StoreError> {
        self.transaction(|tx| {
            // The head first, as every writer: concurrent openings of any
            // agent take turns, so each counts the ones before it.
            lock(tx, AUDIT_LOCK)?;
            let pending = human::pending_of(tx, &a.agent, now)?;
            if pending >= max_pending {
                return Ok(Some(pending));
            }
            human::create_approval(tx, a)?;
            audit::append_in(tx, record, now).map_err(as_audit_failure)?;
            Ok(None)
        })
    }

    fn pending_approvals_of(&self, agent: &str, now: i64) -> Result<usize, StoreError> {
        self.with_client(|c| human::pending_of(c, agent, now))
    }

    // Reads take no lock (agents poll them): a lapsed approval is reported
    // as expired without rewriting the row; deciding rewrites it.
    fn approval(&self, id: &str, now: i64) -> Result<Option<Approval>, StoreError> {
        self.with_client(|c| Ok(human::approval_where(c, "id=$1", id)?.map(|a| human::lapse(a, now))))
    }

    fn approval_for_request(&self, digest: &str, now: i64) -> Result<Option<Approval>, StoreError> {
        self.with_client(|c| Ok(human::approval_where(c, &format!("digest=$1 {}", human::DECIDING_APPROVAL), digest)?.map(|a| human::lapse(a, now))))
    }

    fn approvals(&self, all: bool, now: i64) -> Result<Vec<Approval>, StoreError> {
        self.with_client(|c| human::approvals(c, all, now))
    }

    fn decide_approval(&self, id: &str, approve: bool, by: &str, note: &str, now: i64, use_until: i64, audit: &(dyn Fn(&Approval) -> crate::audit::Event + Sync)) -> Result<DecideOutcome, StoreError> {
        self.transaction(|tx| human::decide(tx, id, approve, by, note, now, use_until, audit))
    }

    fn use_approval(&self, id: &str, jti: &str, now: i64) -> Result<bool, StoreError> {
        // Conditional: concurrent users of one approval queue on its row,
        // and only the first finds it still approved.
        self.with_client(|c| {
            let n = c.execute("UPDATE approvals SET state='used', used_jti=$2 WHERE id=$1 AND state='approved' AND expires_at > $3", &[&id, &jti, &now])?;
            Ok(n == 1)
        })
    }

    fn record_break_glass(&self, g: &BreakGlassGrant) -> Result<(), StoreError> {
        self.with_client(|c| human::record_break_glass(c, g))
    }

    fn break_glass_grants(&self, all: bool) -> Result<Vec<BreakGlassGrant>, StoreError> {
        self.with_client(|c| human::break_glass_grants(c, all))
    }

    fn ack_break_glass(&self, id: &str, by: &str, note: &str, event: &crate::audit::Event, now: i64) -> Result<bool, StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            let n = tx.execute("UPDATE break_glass SET reviewed_at=$2, reviewed_by=$3, note=$4 WHERE id=$1 AND reviewed_at IS NULL", &[&id, &now, &by, &note])?;
            if n == 1 {
                audit::append_in(tx, event, now)?;
            }
            Ok(n == 1)
        })
    }

    fn quarantine(&self, agent: &str, reason: &str, event: &crate::audit::Event, now: i64) -> Result<Revocation, StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            lock(tx, REVOCATION_LOCK)?;
            audit::append_in(tx, event, now)?;
            tx.execute("INSERT INTO quarantine(agent, reason, since) VALUES ($1,$2,$3) ON CONFLICT (agent) DO NOTHING", &[&agent, &reason, &now])?;
            let scope = Scope::Agent(agent.to_owned());
            let why = format!("quarantined: {reason}");
            let (tokens, seq) = revoke_in(tx, &scope, &why, now, TaskState::Revoked)?;
            Ok(Revocation { seq, scope, reason: why, at: now, tokens })
        })
    }

    fn release(&self, agent: &str, by: &str, note: &str, event: &crate::audit::Event, now: i64) -> Result<bool, StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            let n = tx.execute(
                "INSERT INTO quarantine_releases(agent, reason, since, released_at, released_by, note)
                 SELECT agent, reason, since, $2, $3, $4 FROM quarantine WHERE agent=$1",
                &[&agent, &now, &by, &note],
            )?;
            tx.execute("DELETE FROM quarantine WHERE agent=$1", &[&agent])?;
            if n == 1 {
                // A person looked at the burst that quarantined it: its rate
                // window starts again, or the next request would drift at once.
                tx.execute("DELETE FROM request_windows WHERE agent=$1", &[&agent])?;
                tx.execute("DELETE FROM request_counts WHERE agent=$1", &[&agent])?;
                audit::append_in(tx, event, now)?;
            }
            Ok(n == 1)
        })
    }

    fn quarantined(&self, agent: &str) -> Result<Option<Quarantine>, StoreError> {
        self.with_client(|c| {
            let row = c.query_opt("SELECT agent, reason, since FROM quarantine WHERE agent=$1", &[&agent])?;
            Ok(match row {
                Some(r) => Some(Quarantine { agent: r.try_get(0)?, reason: r.try_get(1)?, since: r.try_get(2)? }),
                None => None,
            })
        })
    }

    fn ask_end_user(&self, id: &str, agent: &str, task: &str, digest: &str, now: i64, expires_at: i64, record: &crate::audit::Event) -> Result<(), StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            // Questions and declines are kept until they expire.
            tx.execute("DELETE FROM confirmations WHERE expires_at <= $1", &[&now])?;
            tx.execute(
                "INSERT INTO confirmations(id, agent, task, digest, asked_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6)",
                &[&id, &agent, &task, &digest, &now, &expires_at],
            )?;
            audit::append_in(tx, record, now).map_err(as_audit_failure)?;
            Ok(())
        })
    }

    fn take_end_user_answer(&self, id: &str, agent: &str, task: &str, digest: &str, now: i64) -> Result<bool, StoreError> {
        // Conditional: only the first taker finds it unanswered.
        self.with_client(|c| {
            let n = c.execute(
                // A decline by the end user, or a person's denial, of the same
                // request closes every question about it, whichever came first.
                "UPDATE confirmations SET answered_at=$5 WHERE id=$1 AND agent=$2 AND task=$3 AND digest=$4 AND answered_at IS NULL AND expires_at > $5
                   AND NOT EXISTS (SELECT 1 FROM confirmations d WHERE d.agent=$2 AND d.digest=$4 AND d.declined AND d.expires_at > $5)
                   AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.agent=$2 AND a.digest=$4 AND a.state='denied')",
                &[&id, &agent, &task, &digest, &now],
            )?;
            Ok(n == 1)
        })
    }

    fn record_end_user_decline(&self, agent: &str, task: &str, digest: &str, now: i64, until: i64) -> Result<(), StoreError> {
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).map_err(|e| StoreError::Backend(e.to_string()))?;
        let id = format!("d_{}", hex::encode(id));
        self.transaction(|tx| {
            tx.execute(
                "INSERT INTO confirmations(id, agent, task, digest, asked_at, expires_at, answered_at, declined) VALUES ($1,$2,$3,$4,$5,$6,$5,true)",
                &[&id, &agent, &task, &digest, &now, &until],
            )?;
            // Every other open question about this request is closed with it.
            tx.execute("UPDATE confirmations SET answered_at=$3 WHERE agent=$1 AND digest=$2 AND answered_at IS NULL", &[&agent, &digest, &now])?;
            Ok(())
        })
    }

    fn end_user_declined(&self, agent: &str, digest: &str, now: i64) -> Result<bool, StoreError> {
        self.with_client(|c| {
            let row = c.query_opt("SELECT 1 FROM confirmations WHERE agent=$1 AND digest=$2 AND declined AND expires_at > $3 LIMIT 1", &[&agent, &digest, &now])?;
            Ok(row.is_some())
        })
    }

    fn record_token_and_intent(&self, t: &TokenRecord, i: &Intent) -> Result<(), StoreError> {
        self.transaction(|tx| {
            insert_token(tx, t)?;
            tx.execute("INSERT INTO intents(jti, agent, task, tool, shape, at) VALUES ($1,$2,$3,$4,$5,$6)", &[&i.jti, &i.agent, &i.task, &i.tool, &i.shape, &i.at])?;
            Ok(())
        })
    }

    fn last_call_of(&self, agent: &str) -> Result<Option<Call>, StoreError> {
        self.with_client(|c| {
            let row = c.query_opt("SELECT jti, task, tool, at FROM calls WHERE agent=$1 ORDER BY seq DESC LIMIT 1", &[&agent])?;
            Ok(match row {
                Some(r) => Some(Call { jti: r.try_get(0)?, task: r.try_get(1)?, tool: r.try_get(2)?, at: r.try_get(3)? }),
                None => None,
            })
        })
    }

    fn intents_of(&self, agent: &str, since: i64, limit: usize) -> Result<Vec<Intent>, StoreError> {
        self.with_client(|c| {
            let rows = c.query("SELECT jti, agent, task, tool, shape, at FROM intents WHERE agent=$1 AND at >= $2 ORDER BY at, ord LIMIT $3", &[&agent, &since, &to_i64(limit)])?;
            rows.iter()
                .map(|r| Ok(Intent { jti: r.try_get(0)?, agent: r.try_get(1)?, task: r.try_get(2)?, tool: r.try_get(3)?, shape: r.try_get(4)?, at: r.try_get(5)? }))
                .collect()
        })
    }

    fn append_audit(&self, e: &crate::audit::Event, now: i64) -> Result<i64, StoreError> {
        // One statement, which commits on its own (audit::append).
        self.with_client(|c| audit::append(c, e, now)).map_err(|err| match err {
            StoreError::Audit(m) => StoreError::Audit(m),
            other => StoreError::Audit(other.to_string()),
        })
    }

    fn audit_records(&self, after: i64, limit: usize) -> Result<Vec<crate::audit::Record>, StoreError> {
        self.with_client(|c| audit::records(c, "seq > $1 ORDER BY seq LIMIT $2", &[&after, &to_i64(limit)]))
    }

    fn audit_of_task(&self, task: &str) -> Result<Vec<crate::audit::Record>, StoreError> {
        self.with_client(|c| audit::records(c, "task = $1 ORDER BY seq", &[&task]))
    }

    fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.with_client(audit::head)
    }

    fn record_checkpoint(&self, c: &crate::audit::Checkpoint) -> Result<(), StoreError> {
        self.with_client(|client| {
            client.execute("INSERT INTO audit_checkpoints(seq, hash, at, jws) VALUES ($1,$2,$3,$4)", &[&c.seq, &c.hash, &c.at, &c.jws])?;
            Ok(())
        })
    }

    fn checkpoints(&self) -> Result<Vec<crate::audit::Checkpoint>, StoreError> {
        self.with_client(|c| {
            let rows = c.query("SELECT seq, hash, at, jws FROM audit_checkpoints ORDER BY ord", &[])?;
            rows.iter().map(|r| Ok(crate::audit::Checkpoint { seq: r.try_get(0)?, hash: r.try_get(1)?, at: r.try_get(2)?, jws: r.try_get(3)? })).collect()
        })
    }
}

/// Parameters of a statement, as the driver takes them.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

#[cfg(test)]
mod tests {
    use super::*;
    use ::postgres::config::SslMode;

    /// The TLS mode a store URL ends up with.
    #[test]
    fn the_audit_heads_first_row_starts_the_chain_at_genesis() {
        // Schema v5 writes the genesis hash as text; it must be the chain's.
        assert!(schema::SCHEMA_V5.contains(&format!("'{}'", crate::audit::GENESIS)));
    }

    fn mode(url: &str) -> SslMode {
        let mut config = client_config(url, None).unwrap();
        default_ssl_mode(url, &mut config);
        config.get_ssl_mode()
    }

    #[test]
    fn sslmode_text_outside_a_parameter_name_leaves_tls_required() {
        for url in [
            "postgres://u@db.example/jit?application_name=sslmode%3Ddisable",
            "postgres://u@db.example/jit?application_name=sslmode=disable",
            "postgres://sslmode=disable@db.example/jit",
            "postgres://u@db.example/jit#sslmode=disable",
            "host=db.example user=u application_name='sslmode=disable'",
            "host=db.example user=sslmode=disable",
        ] {
            assert_eq!(mode(url), SslMode::Require, "{url}");
        }
    }

    #[test]
    fn a_remote_hostaddr_behind_a_loopback_host_needs_tls() {
        for url in [
            "host=127.0.0.1 hostaddr=10.0.0.5 user=u dbname=jit",
            "host=localhost hostaddr=10.0.0.5 user=u dbname=jit",
            "postgres://u@localhost/jit?hostaddr=203.0.113.9",
            "hostaddr=203.0.113.9 user=u dbname=jit",
        ] {
            assert_eq!(mode(url), SslMode::Require, "{url}");
        }
    }

    #[test]
    fn loopback_and_unix_sockets_stay_plain_and_an_explicit_sslmode_is_kept() {
        for url in [
            "postgres://u@localhost/jit",
            "postgres://u@127.0.0.1:5432/jit",
            "postgres://u@[::1]/jit",
            "postgres://u@localhost/jit?hostaddr=127.0.0.1",
            "host=localhost hostaddr=127.0.0.1 user=u dbname=jit",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/jit",
        ] {
            assert_eq!(mode(url), SslMode::Prefer, "{url}");
        }
        assert_eq!(mode("postgres://u@db.example/jit"), SslMode::Require);
        assert_eq!(mode("postgres://u@db.example/jit?sslmode=disable"), SslMode::Disable);
        // The driver decodes parameter names, so this one is sslmode too.
        assert_eq!(mode("postgres://u@db.example/jit?ssl%6Dode=disable"), SslMode::Disable);
        assert_eq!(mode("postgres://u@db.example/jit?application_name=x&sslmode=prefer"), SslMode::Prefer);
        assert_eq!(mode("host=db.example user=u sslmode='disable'"), SslMode::Disable);
        assert_eq!(mode("host=db.example application_name='a b\\' c' sslmode=prefer"), SslMode::Prefer);
    }
}
