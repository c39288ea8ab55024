//! The command line: one file per subcommand, each with its own arguments
//! and `run`. Every command writes its result to stdout (`outln!`) and
//! warnings and errors to stderr, and exits with one convention
//! ([`CliError::exit_code`], shown under `jitgate --help`).

/// `println!` for a command's output that ends quietly when the reader of a
/// pipe goes away (`jitgate trace … --json | head`): Rust ignores SIGPIPE,
/// so the write fails, and `println!` would panic on it.
macro_rules! outln {
    () => {
        $crate::cli::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!`, the same way.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!($($arg)*))
    };
}

pub mod agents;
pub mod approvals;
pub mod audit;
pub mod baseline;
pub mod check;
pub mod identity;
pub mod keys;
pub mod manifest;
pub mod observe;
pub mod policy;
pub mod revoke;
pub mod serve;
pub mod store;
pub mod token;

use std::path::Path;

use clap::{Parser, Subcommand};

use crate::agent::AgentDirectory;
use crate::config::Config;
use crate::manifest::Manifest;
use crate::policy::PolicyEngine;
use crate::source::{SourceError, SourceErrors};

/// Write command output to stdout. A reader that went away ends the command
/// (exit 0, as `head` expects); any other write error ends it with a message.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write the output: {e}");
            std::process::exit(1);
        }
    }
}

/// What every command does with its output and its exit code, shown
/// under `jitgate --help`.
const CONVENTIONS: &str = "\
Output: a command's result (what it did, found or shows) goes to stdout,
as JSON with --json where offered; warnings, progress and errors go to
stderr.

Exit codes, the same for every command:
  0  done
  1  failed or refused (the store, a file, a decision that is not yours to make)
  2  usage: the command line or the config is wrong (an unknown agent, approval,
     task or token included); fix it and run again
  3  check or audit verify found problems
  4  identity or keys could not be set up
  5  a downstream server could not be reached";

/// jitgate: just-in-time authorization gateway for AI agents that use tools over MCP.
#[derive(Debug, Parser)]
#[command(name = "jitgate", version, about, long_about = None, propagate_version = true, after_help = CONVENTIONS)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log level when `JITGATE_LOG` does not set one. A gateway serving
    /// HTTP runs until stopped and its log is its running record: `info`.
    /// A gateway serving stdio is spawned by an MCP client, whose user sees
    /// our stderr inside the client's own (Claude Desktop's log, an SDK's
    /// terminal): only warnings and errors belong there. A one-shot
    /// command's output says what it did: `warn` too.
    pub fn default_log_level(&self) -> crate::telemetry::Level {
        match &self.command {
            Command::Serve(a) if !a.stdio => crate::telemetry::Level::Info,
            _ => crate::telemetry::Level::Warn,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (streamable HTTP with --listen, or one agent over --stdio).
    Serve(serve::ServeArgs),
    /// Validate the config, agent files and manifests; compare pins with the live servers.
    Check(check::CheckArgs),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Development identity issuer.
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
    /// Tool manifests.
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
    /// Revoke a task, an agent's authority or one token (works against a running gateway).
    Revoke(revoke::RevokeArgs),
    /// Capability tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Policy authoring: explain a decision, print the Cedar schema.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Approve or deny pending requests (people, with approver credentials).
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// Review break-glass grants (people, with approver credentials).
    #[command(subcommand)]
    Review(approvals::ReviewCommand),
    /// List, quarantine and release agents.
    #[command(subcommand)]
    Agents(agents::AgentsCommand),
    /// Agent baselines: learn a profile from the recorded history.
    #[command(subcommand)]
    Baseline(baseline::BaselineCommand),
    /// The tamper-evident audit trail: verify the chain, export records.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Show a task as a tree (decisions, calls, follow-ons), or list an agent's tasks.
    Trace(audit::TraceArgs),
    /// Observe mode: what enforcement would have changed for observed agents.
    #[command(subcommand)]
    Observe(observe::ObserveCommand),
    /// PostgreSQL store: migrations, and copying an SQLite deployment into it.
    #[command(subcommand)]
    Store(store::StoreCommand),
}

/// A command failure with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Config, agent files or manifests are invalid (exit 2).
    #[error("configuration is invalid:\n{0}")]
    Config(SourceErrors),
    /// `check` or `audit verify` found problems (exit 3).
    #[error("{0}")]
    CheckFailed(String),
    /// Keys or identity could not be set up (exit 4).
    #[error("{0}")]
    Identity(String),
    /// A downstream server could not be reached (exit 5).
    #[error("{0}")]
    Downstream(String),
    /// Failed or refused: files, sockets, the store, a decision refused
    /// (exit 1).
    #[error("{0}")]
    Other(String),
    /// The command line is wrong: a value it cannot take, or a name of
    /// something that is not there, such as an unknown agent (exit 2, as
    /// clap's own usage errors).
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Other(_) => 1,
            CliError::Config(_) | CliError::Usage(_) => 2,
            CliError::CheckFailed(_) => 3,
            CliError::Identity(_) => 4,
            CliError::Downstream(_) => 5,
        }
    }
}

impl From<SourceError> for CliError {
    fn from(e: SourceError) -> Self {
        CliError::Config(SourceErrors(vec![e]))
    }
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(a) => serve::run(a).await,
        Command::Check(a) => check::run(a).await,
        Command::Keys(c) => keys::run(c),
        Command::Identity(c) => identity::run(c),
        Command::Manifest(c) => manifest::run(c).await,
        Command::Revoke(a) => revoke::run(a),
        Command::Token(c) => token::run(c),
        Command::Policy(c) => policy::run(c),
        Command::Approvals(c) => approvals::run_approvals(c),
        Command::Review(c) => approvals::run_review(c),
        Command::Agents(c) => agents::run(c),
        Command::Baseline(c) => baseline::run(c),
        Command::Audit(c) => audit::run(c),
        Command::Trace(a) => audit::trace(a),
        Command::Observe(c) => observe::run(c),
        // The synchronous PostgreSQL client must not run on a thread that
        // drives the async runtime (it starts one of its own).
        Command::Store(c) => tokio::task::block_in_place(|| store::run(c)),
    }
}

/// Open the store of a deployment for an operator command; the gateway may
/// be running. Nothing is created or migrated here.
pub fn open_store(config: &Config) -> Result<std::sync::Arc<dyn crate::store::Store>, CliError> {
    match &config.store {
        crate::config::StoreConfig::Sqlite(path) => {
            if !path.exists() {
                return Err(CliError::Other(format!("no store at {}; has the gateway run with this config?", path.display())));
            }
            Ok(std::sync::Arc::new(crate::store::SqliteStore::open(path).map_err(|e| CliError::Other(e.to_string()))?))
        }
        crate::config::StoreConfig::Postgres { url, password, ca_file, .. } => {
            let password = read_store_password(password.as_ref())?;
            let tls = crate::store::PgTls { ca_file: ca_file.clone() };
            let store = crate::store::PostgresStore::connect_existing_with(url, password.as_deref(), 2, &tls).map_err(|e| CliError::Other(e.to_string()))?;
            Ok(std::sync::Arc::new(store))
        }
    }
}

/// Open (creating or migrating) the store a gateway serves from.
pub fn open_store_for_serving(config: &Config) -> Result<std::sync::Arc<dyn crate::store::Store>, CliError> {
    match &config.store {
        crate::config::StoreConfig::Sqlite(path) => {
            Ok(std::sync::Arc::new(crate::store::SqliteStore::open(path).map_err(|e| CliError::Other(e.to_string()))?))
        }
        crate::config::StoreConfig::Postgres { url, password, pool_size, ca_file } => {
            let password = read_store_password(password.as_ref())?;
            let tls = crate::store::PgTls { ca_file: ca_file.clone() };
            let store = crate::store::PostgresStore::connect_with(url, password.as_deref(), *pool_size, &tls).map_err(|e| CliError::Other(e.to_string()))?;
            Ok(std::sync::Arc::new(store))
        }
    }
}

fn read_store_password(source: Option<&crate::config::SecretSource>) -> Result<Option<String>, CliError> {
    source.map(|s| s.read().map_err(|e| CliError::Other(format!("[store] password: {e}")))).transpose()
}

/// The deployment's agent files.
pub(crate) fn load_agents(config: &Config) -> Result<crate::agent::AgentDirectory, CliError> {
    crate::agent::AgentDirectory::load(&config.agents_dir).map_err(|e| CliError::Config(SourceErrors(e)))
}

/// How a command lets an agent be named.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AgentRef {
    /// Its agent file's `name` only.
    Name,
    /// Its name, or its id (SPIFFE id or OAuth subject), for the commands
    /// that act on what the audit trail shows (`revoke`, `agents`).
    NameOrId,
}

/// The agent a command names. Every command answers a name that is not
/// there the same way: exit 2, naming the agents it knows. Where an id is
/// accepted too, a word that is one agent's name and another's id is refused
/// rather than guessed.
pub(crate) fn find_agent<'a>(agents: &'a crate::agent::AgentDirectory, config: &Config, name: &str, how: AgentRef) -> Result<&'a crate::agent::Agent, CliError> {
    let by_name = agents.by_name(name);
    let by_id = if how == AgentRef::NameOrId { agents.by_subject(name) } else { None };
    match (by_name, by_id) {
        (Some(a), Some(b)) if a.id != b.id => Err(CliError::Usage(format!(
            "`{name}` is the name of agent {} and the id of agent `{}`; give the full id of the one you mean",
            a.id, b.name
        ))),
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => {
            let known: Vec<&str> = agents.iter().map(|x| x.name.as_str()).collect();
            let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
            Err(CliError::Usage(format!("no agent named `{name}` in {}; known agents: {known}", config.agents_dir.display())))
        }
    }
}

/// Everything a config file refers to, loaded and validated.
pub struct Deployment {
    pub config: Config,
    pub agents: AgentDirectory,
    /// Manifests with their config overrides applied, and whether each is enabled.
    pub manifests: Vec<(Manifest, bool)>,
    /// The validated policy set.
    pub policy: PolicyEngine,
}

impl Deployment {
    /// Load the config and everything it names; all errors are collected.
    pub fn load(config_path: &Path) -> Result<Self, SourceErrors> {
        let config = Config::load(config_path).map_err(|e| SourceErrors(vec![e]))?;
        let mut errors = Vec::new();
        let agents = AgentDirectory::load(&config.agents_dir).unwrap_or_else(|e| {
            errors.extend(e);
            AgentDirectory::default()
        });
        let mut manifests: Vec<(Manifest, bool)> = Vec::new();
        for entry in &config.servers {
            match Manifest::load(&entry.manifest) {
                Ok(m) => {
                    if manifests.iter().any(|(other, _)| other.name == m.name) {
                        errors.push(SourceError {
                            file: entry.manifest.clone(),
                            line: 1,
                            column: 1,
                            message: format!("server name `{}` is registered twice; namespaces must be unique", m.name),
                        });
                        continue;
                    }
                    manifests.push((m.with_overrides(&entry.overrides, &config.base_dir()), entry.enabled));
                }
                Err(e) => errors.push(e),
            }
        }
        errors.extend(cross_check(&config, &agents, &manifests));
        let policy = match PolicyEngine::load_dir(&config.policy.dir) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.extend(e.0.into_iter().map(|p| SourceError { file: p.file, line: p.line, column: p.column, message: p.message }));
                None
            }
        };
        match policy {
            Some(policy) if errors.is_empty() => Ok(Self { config, agents, manifests, policy }),
            _ => Err(SourceErrors(errors)),
        }
    }
}

/// Agent files may only name tools of registered servers; a typo there would
/// otherwise silently grant nothing (or, after a later registration, something unintended).
fn cross_check(config: &Config, agents: &AgentDirectory, manifests: &[(Manifest, bool)]) -> Vec<SourceError> {
    let mut errors = Vec::new();
    // A per-caller credential needs somewhere to be exchanged, and a server
    // that every caller reaches over its own requests.
    for (m, _) in manifests {
        let Some(x) = &m.exchanged else { continue };
        let problem = if config.token_exchange.is_none() {
            Some(format!("server `{}` asks for a credential exchanged per caller (audience `{}`), but the gateway config has no [token_exchange] section naming the authorization server's token endpoint", m.name, x.audience))
        } else if !matches!(m.transport, crate::manifest::Transport::Url(_)) {
            Some(format!("server `{}` asks for a credential exchanged per caller, which only a URL server can receive per request; a spawned server is one process for every caller", m.name))
        } else {
            None
        };
        if let Some(message) = problem {
            errors.push(SourceError { file: m.path.clone(), line: 1, column: 1, message });
        }
    }
    // A delegate that is not there is a typo that would refuse every delegation.
    for agent in agents.iter() {
        for child in agents.delegates_to(&agent.id) {
            let problem = match agents.by_name(child) {
                None => Some(format!("agent `{}`: delegates_to names `{child}`, which is not an agent in {}", agent.name, config.agents_dir.display())),
                Some(c) if c.id == agent.id => Some(format!("agent `{}`: delegates_to names itself; an agent plans its own work as phases", agent.name)),
                Some(_) => None,
            };
            if let Some(message) = problem {
                errors.push(SourceError { file: agent.source.path.clone(), line: 1, column: 1, message });
            }
        }
    }
    for agent in agents.iter() {
        for (i, pattern) in agent.allowed_tools.iter().enumerate() {
            let server = pattern.server();
            let Some((m, _)) = manifests.iter().find(|(m, _)| m.name == server) else {
                errors.push(agent.source.error_at_tool(
                    i,
                    format!("agent `{}`: allowed tool pattern for server `{server}`, which is not registered in [[servers]]", agent.name),
                ));
                continue;
            };
            if let crate::agent::ToolPattern::Exact(t) = pattern {
                let tool = t.split_once(crate::manifest::NAMESPACE_SEPARATOR).map(|(_, t)| t).unwrap_or("");
                if !m.tools.contains_key(tool) {
                    errors.push(agent.source.error_at_tool(
                        i,
                        format!("agent `{}`: allowed tool `{t}` is not in the manifest of server `{server}` ({})", agent.name, m.path.display()),
                    ));
                }
            }
        }
    }
    errors
}
