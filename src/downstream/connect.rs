//! Opening an MCP client connection to one downstream server.
//!
//! Spawned servers get a cleared environment: only a few basic variables
//! (PATH, HOME, locale, TMPDIR), the manifest's `env`, and the injected
//! credentials. The gateway's own environment may hold other servers'
//! secrets, and a downstream server must never see those.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;

use rmcp::service::{ClientLifecycleMode, ClientServiceExt as _};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ClientHandler};
use tokio::sync::Notify;

use crate::manifest::{CredentialTarget, DownstreamProtocol, Manifest, Transport};

/// Variables passed through from jitgate's environment to spawned servers.
const PASSTHROUGH_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "RUSTUP_HOME", "CARGO_HOME", "RUSTUP_TOOLCHAIN"];

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot start `{command}`: {source}; check the command path in the manifest or the gateway config's [[servers]] override")]
    Spawn { command: String, source: std::io::Error },
    #[error("credential for server `{server}`: {reason}")]
    Credential { server: String, reason: String },
    #[error("MCP initialize with server `{server}` failed: {reason}")]
    Initialize { server: String, reason: String },
    #[error("invalid header for server `{server}`: {reason}")]
    Header { server: String, reason: String },
}

/// jitgate's client-side handler: announces itself and relays tool-list changes.
#[derive(Clone)]
pub struct DownstreamClient {
    relist: Arc<Notify>,
}

impl ClientHandler for DownstreamClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("jitgate", env!("CARGO_PKG_VERSION")))
    }

    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.relist.notify_one();
    }
}

/// The program to start: a relative path with a directory in it
/// (`target/release/server`) is taken relative to the server's working
/// directory (`cwd`), as the shell would find it there; a bare name (`npx`)
/// is looked up on `PATH`. Spelled out because the standard library leaves
/// which directory a relative program is resolved against to the platform.
fn program_path(command: &str, cwd: &std::path::Path) -> std::path::PathBuf {
    let path = std::path::Path::new(command);
    if path.is_relative() && command.contains('/') { cwd.join(path) } else { path.to_owned() }
}

/// Connect to the server a manifest describes and run the MCP handshake.
pub async fn connect(manifest: &Manifest, relist: Arc<Notify>) -> Result<RunningService<RoleClient, DownstreamClient>, ConnectError> {
    connect_with(manifest, relist, None).await
}

/// [`connect`], with one more header on every request (a URL server's
/// per-caller credential; it replaces a static one of the same name).
pub async fn connect_with(
    manifest: &Manifest,
    relist: Arc<Notify>,
    per_caller: Option<(http::HeaderName, http::HeaderValue)>,
) -> Result<RunningService<RoleClient, DownstreamClient>, ConnectError> {
    let handler = DownstreamClient { relist };
    let server = manifest.name.clone();
    let init_err = |e: rmcp::service::ClientInitializeError| ConnectError::Initialize { server: server.clone(), reason: e.to_string() };
    match &manifest.transport {
        Transport::Command { command, args, env, cwd } => {
            let mut cmd = tokio::process::Command::new(program_path(command, cwd));
            cmd.args(args).current_dir(cwd).env_clear().kill_on_drop(true);
            for var in PASSTHROUGH_ENV {
                if let Ok(v) = std::env::var(var) {
                    cmd.env(var, v);
                }
            }
            cmd.envs(env);
            for cred in &manifest.credentials {
                if let CredentialTarget::Env(var) = &cred.target {
                    let value = cred.read_value().map_err(|reason| ConnectError::Credential { server: server.clone(), reason })?;
                    cmd.env(var, value);
                }
            }
            let (transport, stderr) = TokioChildProcess::builder(cmd)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| ConnectError::Spawn { command: command.clone(), source })?;
            let last_words = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
            if let Some(stderr) = stderr {
                tokio::spawn(relay_stderr(server.clone(), stderr, last_words.clone()));
            }
            match handler.serve_with_lifecycle(transport, lifecycle(manifest.protocol)).await {
                Ok(running) => Ok(running),
                Err(e) => {
                    // Why a server did not start is usually in what it wrote
                    // on stderr (npx asking to install a package, a missing
                    // argument): give it a moment to arrive, then say it.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    let said: Vec<String> = last_words.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
                    let mut err = init_err(e);
                    if let ConnectError::Initialize { reason, .. } = &mut err
                        && !said.is_empty()
                    {
                        reason.push_str(&format!("; the server's last words on stderr: {}", said.join(" | ")));
                    }
                    Err(err)
                }
            }
        }
        Transport::Url(url) => {
            let mut headers = HashMap::new();
            for cred in &manifest.credentials {
                if let CredentialTarget::Header { name, prefix } = &cred.target {
                    let value = cred.read_value().map_err(|reason| ConnectError::Credential { server: server.clone(), reason })?;
                    let header_err = |reason: String| ConnectError::Header { server: server.clone(), reason };
                    let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| header_err(e.to_string()))?;
                    let mut value = http::HeaderValue::from_str(&format!("{prefix}{value}")).map_err(|e| header_err(e.to_string()))?;
                    value.set_sensitive(true);
                    headers.insert(name, value);
                }
            }
            if let Some((name, value)) = per_caller {
                headers.insert(name, value);
            }
            let config = StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(headers);
            let http = http_client().map_err(|reason| ConnectError::Initialize { server: server.clone(), reason })?;
            let transport = StreamableHttpClientTransport::with_client(http, config);
            handler.serve_with_lifecycle(transport, lifecycle(manifest.protocol)).await.map_err(init_err)
        }
    }
}

/// How long an idle downstream connection is kept: shorter than the idle
/// timeouts of common servers (5 s for Node's and uvicorn's), so the gateway
/// does not send a call on a connection the server is closing (a failed
/// send reads as a crashed server, which revokes the call's task).
const IDLE_CONNECTION: std::time::Duration = std::time::Duration::from_secs(4);

/// Redirects followed for one request to a downstream server.
const MAX_REDIRECTS: usize = 10;

/// The HTTP client of one downstream connection. rmcp's default client keeps
/// no idle connection, so every forwarded call opened a new TCP connection
/// (and the server accepted it): measured, tens of thousands of sockets in
/// TIME_WAIT after a benchmark. This one keeps its connections, with
/// TCP_NODELAY so that a reused connection's small requests are not held
/// back waiting for an acknowledgement. Redirects as rmcp follows them: only
/// 307 and 308 (which keep the method and the JSON-RPC body) to the same
/// origin, so a server cannot send the credential headers elsewhere.
fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(IDLE_CONNECTION)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt.previous().first().is_some_and(|first| first.origin() == attempt.url().origin());
            let keeps_body = matches!(attempt.status().as_u16(), 307 | 308);
            if same_origin && keeps_body && attempt.previous().len() <= MAX_REDIRECTS { attempt.follow() } else { attempt.stop() }
        }))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// How the client opens the connection for the manifest's `protocol`.
fn lifecycle(protocol: DownstreamProtocol) -> ClientLifecycleMode {
    let modern = vec![ProtocolVersion::V_2026_07_28];
    match protocol {
        DownstreamProtocol::Auto => ClientLifecycleMode::Auto { preferred_versions: modern, legacy_version: Some(ProtocolVersion::V_2025_11_25) },
        DownstreamProtocol::Stateless => ClientLifecycleMode::Discover { preferred_versions: modern },
        DownstreamProtocol::Handshake => ClientLifecycleMode::Initialize,
    }
}

/// Downstream stderr goes to jitgate's log, a line at a time, so a chatty or
/// hostile server cannot write into jitgate's own stdout (the stdio transport).
async fn relay_stderr(server: String, stderr: tokio::process::ChildStderr, last_words: Arc<std::sync::Mutex<std::collections::VecDeque<String>>>) {
    use crate::stdio::{Line, read_bounded};
    /// Longest stderr line kept in memory and logged.
    const MAX_LINE: usize = 2000;
    /// Lines kept for a start-up error message, and their length there.
    const KEPT: usize = 5;
    const KEPT_LEN: usize = 300;
    let mut reader = tokio::io::BufReader::new(stderr);
    loop {
        match read_bounded(&mut reader, MAX_LINE).await {
            Ok(Line::Complete(line)) => {
                let line = String::from_utf8_lossy(&line);
                tracing::info!(server = %server, "downstream stderr: {}", crate::telemetry::Clean(&line));
                let clean = crate::telemetry::cut(&crate::telemetry::Clean(line.trim()).to_string(), KEPT_LEN);
                if !clean.is_empty() {
                    let mut kept = last_words.lock().unwrap_or_else(|p| p.into_inner());
                    if kept.len() == KEPT {
                        kept.pop_front();
                    }
                    kept.push_back(clean);
                }
            }
            Ok(Line::Oversized(len)) => tracing::info!(server = %server, len, "downstream stderr: a line over {MAX_LINE} bytes was dropped"),
            Ok(Line::Eof) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::program_path;
    use std::path::Path;

    #[test]
    fn a_relative_program_is_found_in_the_servers_working_directory() {
        let cwd = Path::new("/srv/repo");
        assert_eq!(program_path("target/release/server", cwd), Path::new("/srv/repo/target/release/server"));
        assert_eq!(program_path("./server", cwd), Path::new("/srv/repo/./server"));
        assert_eq!(program_path("npx", cwd), Path::new("npx"), "a bare name is looked up on PATH");
        assert_eq!(program_path("/usr/bin/node", cwd), Path::new("/usr/bin/node"));
    }
}
