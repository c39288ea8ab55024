//! `[store]`: SQLite (the default) or PostgreSQL for replicas.

#[allow(unused_imports)]
use super::*;

/// `[store]`: where the shared authorization state lives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawStore {
    pub(in crate::config) url: String,
    pub(in crate::config) password_env: Option<String>,
    pub(in crate::config) password_file: Option<PathBuf>,
    pub(in crate::config) pool_size: Option<u32>,
    pub(in crate::config) ca_file: Option<PathBuf>,
}

/// Where the authorization state lives: the embedded SQLite file (one
/// machine) or PostgreSQL (several replicas).
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Sqlite(PathBuf),
    Postgres {
        /// `postgres://user@host:port/database`, without a password.
        url: String,
        password: Option<SecretSource>,
        pool_size: u32,
        /// The CA(s) of the server's certificate (default: platform roots).
        ca_file: Option<PathBuf>,
    },
}

/// What is wrong with a PostgreSQL store URL, if anything: it must parse,
/// and it must not carry a password (however spelled: the driver decodes
/// percent-escapes in parameter names), which belongs in a file or the
/// environment. The URL is never repeated in the message.
pub(crate) fn postgres_url_problem(url: &str) -> Option<String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Some("must be \"sqlite:PATH\" or \"postgres://USER@HOST:PORT/DATABASE\"".into());
    }
    match url.parse::<postgres::Config>() {
        Err(e) => Some(format!("not a valid PostgreSQL URL ({e}); write it as postgres://USER@HOST:PORT/DATABASE")),
        Ok(c) if c.get_password().is_some() => Some("must not contain a password: use password_env or password_file".into()),
        Ok(_) => None,
    }
}

pub(in crate::config) fn validate_store(file: &SourceFile, raw: Spanned<RawStore>) -> Result<StoreConfig, SourceError> {
    let span = raw.span();
    let r = raw.into_inner();
    let at = |m: String| file.error_at(Some(span.clone()), m);
    if let Some(path) = r.url.strip_prefix("sqlite:") {
        if r.password_env.is_some() || r.password_file.is_some() || r.pool_size.is_some() || r.ca_file.is_some() {
            return Err(at("[store] password_env, password_file, pool_size and ca_file are for PostgreSQL; an SQLite store is a file".into()));
        }
        return Ok(StoreConfig::Sqlite(file.resolve(Path::new(path))));
    }
    if let Some(problem) = postgres_url_problem(&r.url) {
        return Err(at(format!("[store] url: {problem}")));
    }
    let Ok(password) = secret_source(file, r.password_file, r.password_env) else {
        return Err(at("[store] takes one of password_env or password_file".into()));
    };
    let pool_size = r.pool_size.unwrap_or(16);
    if !(1..=256).contains(&pool_size) {
        return Err(at("[store] pool_size must be between 1 and 256".into()));
    }
    Ok(StoreConfig::Postgres { url: r.url, password, pool_size, ca_file: r.ca_file.map(|f| file.resolve(&f)) })
}
