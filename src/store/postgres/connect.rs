//! Reaching the database: the URL and its parameters, TLS, one direct client.

#[allow(unused_imports)]
use super::*;

/// How connections to PostgreSQL are protected.
#[derive(Debug, Clone, Default)]
pub struct PgTls {
    /// PEM file of the CA(s) that sign the server's certificate; default:
    /// the platform's root certificates.
    pub ca_file: Option<std::path::PathBuf>,
}

/// The rustls connector for the pool.
pub(in crate::store::postgres) fn tls_connector(tls: &PgTls) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
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
pub(in crate::store::postgres) fn default_ssl_mode(url: &str, config: &mut PgConfig) {
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
pub(in crate::store::postgres) fn parameter_names(url: &str) -> Vec<String> {
    match url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")) {
        Some(rest) => url_parameter_names(rest),
        None => keyword_parameter_names(url),
    }
}

/// A URL's parameter names: those of its query string, percent-decoded. As
/// in the driver, the user part ends at the first `@` and the query starts
/// at the first `?` after it; each parameter is a name up to the next `=`
/// and a value up to the next `&`.
pub(in crate::store::postgres) fn url_parameter_names(rest: &str) -> Vec<String> {
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
pub(in crate::store::postgres) fn keyword_parameter_names(s: &str) -> Vec<String> {
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
pub(in crate::store::postgres) fn percent_decode(s: &str) -> String {
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

/// The driver's config from the URL, with the password, a connect timeout
/// and the application name (seen in `pg_stat_activity`).
pub(in crate::store::postgres) fn client_config(url: &str, password: Option<&str>) -> Result<PgConfig, StoreError> {
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

/// The server setting of the request path's connections: one plan per
/// prepared statement.
const REQUEST_PATH_SETTINGS: &str = "-c plan_cache_mode=force_generic_plan";

/// The setting of the async pool, whose few statements are the request
/// path's (read, grant, consume, count, append), each written so that its
/// plan does not depend on its parameters' values: each is planned once per
/// connection. With the default (`auto`) PostgreSQL planned them again on
/// every execution, their generic plans estimated dearer than a custom one:
/// about a third of PostgreSQL's CPU per `jit_call` (profiled), and 597
/// against 902 `jit_call`s/s at 16 clients. The synchronous pool, which
/// runs everything else, keeps the default. Options the URL already gives
/// for `plan_cache_mode` are left as they are (a pooler that refuses
/// startup options is configured there).
pub(in crate::store::postgres) fn for_the_request_path(config: &mut PgConfig) {
    let options = match config.get_options() {
        Some(given) if given.contains("plan_cache_mode") => return,
        Some(given) if !given.trim().is_empty() => format!("{given} {REQUEST_PATH_SETTINGS}"),
        _ => REQUEST_PATH_SETTINGS.to_owned(),
    };
    config.options(&options);
}

/// Where the store is, for messages (never the password).
pub(in crate::store::postgres) fn describe(config: &PgConfig) -> String {
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
