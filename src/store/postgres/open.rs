//! Opening the store: the pools, migrations, and the schema version check.

#[allow(unused_imports)]
use super::*;

impl PostgresStore {
    /// [`Store::begin_task`], bound to `delegation` when given.
    pub(in crate::store::postgres) fn begin_task_under(&self, t: &Task, session: Option<(&str, &str)>, event: &crate::audit::Event, max_active: usize, delegation: Option<&str>, now: i64) -> Result<BeginTask, StoreError> {
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
            if let Some(id) = delegation {
                let bound = tx.execute("UPDATE delegations SET child_task = $1 WHERE id = $2 AND child_task IS NULL AND expires_at > $3", &[&t.id, &id, &now])?;
                if bound != 1 {
                    return Ok(BeginTask::DelegationUsed);
                }
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

    pub(in crate::store::postgres) fn open(url: &str, password: Option<&str>, pool_size: u32, tls: &PgTls) -> Result<Self, StoreError> {
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
        let mut request_path = config.clone();
        for_the_request_path(&mut request_path);
        let async_pool = async_units::pool(request_path.clone(), connector.clone(), pool_size)?;
        let manager = Manager::new(config.into(), connector.clone(), outage.clone());
        // One connection first, by hand: a database that is down, or that
        // refuses this user or password, fails here at once with its own
        // reason, where r2d2 would retry until its timeout and then say
        // only that it timed out.
        // (Closing the connection blocks too: it is dropped inside.)
        blocking(|| r2d2::ManageConnection::connect(&manager).map(drop))
            .map_err(|e| StoreError::Backend(format!("cannot connect to the PostgreSQL store ({where_}): {e}")))?;
        // And one with the request path's startup options (its pool connects
        // on first use): a server or pooler that refuses them says so now,
        // not at the first request after a start that looked healthy.
        let checked = Manager::new(request_path.into(), connector, outage.clone());
        blocking(|| r2d2::ManageConnection::connect(&checked).map(drop)).map_err(|e| {
            StoreError::Backend(format!(
                "cannot connect to the PostgreSQL store ({where_}) with the request path's setting `plan_cache_mode=force_generic_plan`, sent as a startup option: {e}; a pooler must pass or ignore startup options (PgBouncer: ignore_startup_parameters = options)"
            ))
        })?;
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

    pub(in crate::store::postgres) fn checkout(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
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
    pub(in crate::store::postgres) fn transaction<T: Send>(&self, body: impl FnMut(&mut Transaction<'_>) -> Result<T, Fail> + Send) -> Result<T, StoreError> {
        blocking(|| self.transaction_here(body))
    }

    pub(in crate::store::postgres) fn transaction_here<T>(&self, mut body: impl FnMut(&mut Transaction<'_>) -> Result<T, Fail>) -> Result<T, StoreError> {
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
    pub(in crate::store::postgres) fn with_client<T: Send>(&self, body: impl FnMut(&mut Client) -> Result<T, Fail> + Send) -> Result<T, StoreError> {
        blocking(|| self.with_client_here(body))
    }

    pub(in crate::store::postgres) fn with_client_here<T>(&self, mut body: impl FnMut(&mut Client) -> Result<T, Fail>) -> Result<T, StoreError> {
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

pub(in crate::store::postgres) fn newer_schema(found: i64) -> StoreError {
    StoreError::Backend(format!(
        "the PostgreSQL store's schema is version {found}, newer than this jitgate knows (version {LATEST}): a newer jitgate migrated it; upgrade this jitgate to the same version as the other replicas"
    ))
}

/// The schema version, or None when the version table does not exist.
pub(in crate::store::postgres) fn schema_version(c: &mut impl GenericClient) -> Result<Option<i64>, Fail> {
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
