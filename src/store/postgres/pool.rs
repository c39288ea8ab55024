//! Connections of the PostgreSQL store's pool: made with the store's TLS
//! rules, failing with PostgreSQL's own reason.
//!
//! r2d2 keeps only the `Display` of a failed connection, and the driver's
//! says no more than "db error" or "invalid configuration": the reason
//! (`password authentication failed for user "jitgate"`, `password
//! missing`) sits underneath. So [`Manager`] fails with a [`ConnectError`]
//! that carries it.

use ::postgres::Client;
use ::postgres::error::SqlState;
use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

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
                "; create the database first (createdb, or CREATE DATABASE as the README's deployment section shows)"
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
}

impl Manager {
    pub(super) fn new(config: ::postgres::Config, tls: MakeRustlsConnect) -> Self {
        Self { inner: PostgresConnectionManager::new(config, tls) }
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
        self.inner.connect().map_err(|e| ConnectError::from(&e))
    }

    fn is_valid(&self, client: &mut Client) -> Result<(), ConnectError> {
        self.inner.is_valid(client).map_err(|e| ConnectError::from(&e))
    }

    fn has_broken(&self, client: &mut Client) -> bool {
        self.inner.has_broken(client)
    }
}
