//! Connections of the PostgreSQL store's pool: made with the store's TLS
//! rules, failing with PostgreSQL's own reason, and an outage reported
//! once (then every [`REPORT_EVERY`]) instead of once per attempt.
//!
//! r2d2 keeps only the `Display` of a failed connection, and the driver's
//! says no more than "db error" or "invalid configuration": the reason
//! (`password authentication failed for user "jitgate"`, `password
//! missing`) sits underneath. So [`Manager`] fails with a [`ConnectError`]
//! that carries it. r2d2 also logs every failed attempt at error level
//! (its pool refills in the background while the database is down: about
//! four lines a second), which buries what else the log says during an
//! outage; [`OutageReporter`] takes its place.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::postgres::Client;
use ::postgres::error::SqlState;
use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How often a continuing outage is reported again.
pub(super) const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Why a connection to PostgreSQL failed, in the server's words where it
/// gave any, with what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ConnectError(pub(super) String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

impl From<&::postgres::Error> for ConnectError {
    fn from(e: &::postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            let hint = if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
                "; check the user in the URL and the password (the config's [store] password_file or password_env; --password-env for `jitgate store copy`)"
            } else if *code == SqlState::INVALID_CATALOG_NAME {
                "; create the database first (createdb, or CREATE DATABASE as docs/operations.md shows)"
            } else {
                ""
            };
            return ConnectError(format!("PostgreSQL refused the connection: {}{hint}", db.message()));
        }
        match std::error::Error::source(e).map(ToString::to_string) {
            // tokio-postgres's words when the server asks for a password
            // and the client has none.
            Some(cause) if cause == "password missing" => ConnectError(
                "PostgreSQL asks for a password and none was given: set [store] password_file or password_env in the config (for `jitgate store copy`, --password-env VAR)".into(),
            ),
            Some(cause) => ConnectError(format!("{e}: {cause}; is it running and reachable?")),
            None => ConnectError(format!("{e}; is it running and reachable?")),
        }
    }
}

/// r2d2's connection manager for the store.
pub(super) struct Manager {
    inner: PostgresConnectionManager<MakeRustlsConnect>,
    outage: Arc<Outage>,
}

impl Manager {
    pub(super) fn new(config: ::postgres::Config, tls: MakeRustlsConnect, outage: Arc<Outage>) -> Self {
        Self { inner: PostgresConnectionManager::new(config, tls), outage }
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The driver's config holds the password.
        f.write_str("Manager")
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Client;
    type Error = ConnectError;

    fn connect(&self) -> Result<Client, ConnectError> {
        let client = self.inner.connect().map_err(|e| ConnectError::from(&e))?;
        if let Some(down_for) = self.outage.connected(Instant::now()) {
            tracing::info!(target: "jitgate::store", "connected to the PostgreSQL store again after {} s", down_for.as_secs());
        }
        Ok(client)
    }

    fn is_valid(&self, client: &mut Client) -> Result<(), ConnectError> {
        self.inner.is_valid(client).map_err(|e| ConnectError::from(&e))
    }

    fn has_broken(&self, client: &mut Client) -> bool {
        self.inner.has_broken(client)
    }
}

/// The state of an outage: when it began and was last reported, and how
/// many failures were not reported since.
#[derive(Debug, Default)]
pub(super) struct Outage(Mutex<OutageState>);

#[derive(Debug, Default)]
struct OutageState {
    since: Option<Instant>,
    reported: Option<Instant>,
    unreported: u64,
}

impl Outage {
    fn state(&self) -> std::sync::MutexGuard<'_, OutageState> {
        // The state is counters only: one a panicking thread left is usable.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What to log for a connection that failed at `now`: the first failure
    /// of an outage, then one line per [`REPORT_EVERY`] with the count.
    fn failed(&self, now: Instant, why: &ConnectError) -> Option<String> {
        let mut s = self.state();
        let since = *s.since.get_or_insert(now);
        match s.reported {
            Some(last) if now.duration_since(last) < REPORT_EVERY => {
                s.unreported += 1;
                None
            }
            Some(_) => {
                let attempts = s.unreported + 1;
                s.unreported = 0;
                s.reported = Some(now);
                Some(format!(
                    "still no connection to the PostgreSQL store after {} s ({attempts} failed attempts since the last report): {why}",
                    now.duration_since(since).as_secs()
                ))
            }
            None => {
                s.reported = Some(now);
                Some(format!(
                    "cannot connect to the PostgreSQL store: {why}; calls that need it are refused until it is back (retrying; reported again every {} s while it lasts)",
                    REPORT_EVERY.as_secs()
                ))
            }
        }
    }

    /// A connection succeeded at `now`: how long the outage it ends lasted,
    /// if there was one.
    fn connected(&self, now: Instant) -> Option<Duration> {
        let mut s = self.state();
        let since = s.since.take()?;
        *s = OutageState::default();
        Some(now.duration_since(since))
    }
}

/// r2d2's error handler: failed connections reported as [`Outage`] says,
/// at warn (each call the outage refuses is logged where it is refused).
#[derive(Debug)]
pub(super) struct OutageReporter(pub(super) Arc<Outage>);

impl r2d2::HandleError<ConnectError> for OutageReporter {
    fn handle_error(&self, error: ConnectError) {
        if let Some(line) = self.0.failed(Instant::now(), &error) {
            tracing::warn!(target: "jitgate::store", "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_reported_once_then_every_interval_with_a_count() {
        let outage = Outage::default();
        let why = ConnectError("error connecting to server: Connection refused (os error 111); is it running and reachable?".into());
        let t0 = Instant::now();
        let first = outage.failed(t0, &why).unwrap();
        assert!(first.contains("cannot connect") && first.contains("Connection refused"), "{first}");
        // r2d2 retries about four times a second: none of those is a line.
        let quiet = (1..120u64).filter_map(|i| outage.failed(t0 + Duration::from_millis(250 * i), &why)).count();
        assert_eq!(quiet, 0);
        let again = outage.failed(t0 + REPORT_EVERY, &why).unwrap();
        assert!(again.contains("after 30 s (120 failed attempts since the last report)"), "{again}");
        assert_eq!(outage.failed(t0 + REPORT_EVERY + Duration::from_secs(1), &why), None);
        // Back: the outage's length, and the next failure starts a new one.
        assert_eq!(outage.connected(t0 + Duration::from_secs(40)), Some(Duration::from_secs(40)));
        assert_eq!(outage.connected(t0 + Duration::from_secs(41)), None);
        assert!(outage.failed(t0 + Duration::from_secs(42), &why).unwrap().contains("cannot connect"));
    }
}
